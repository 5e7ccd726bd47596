// Package docker is the container sandbox runtime: it runs each step in a
// container of the step's image through the Docker Engine API (the
// official Go client, negotiating the API version down to the daemon's,
// so Debian's dockerd 20.10 with API 1.41 works). With [Config.GVisor] it
// is the gvisor runtime: the same containers, run by gVisor's runsc
// registered in dockerd as an OCI runtime (`executor install gvisor`
// registers it), so that a step talks to gVisor's user-space kernel
// instead of the host's.
//
// # What a step sees
//
// Each step runs in a new container of its image: `/bin/sh -c` its
// commands, joined one a line after `set -e`, as the entrypoint (a
// script longer than an argument may be is copied into the container as
// /.execd-step.sh instead). PID 1 is docker's minimal init, which
// forwards signals and reaps orphans; when the shell exits the container
// ends, and every process a step started in the background with it. The
// job's workspace (made by Prepare with package hostdir: nosuid, nodev,
// bounded by Options.DiskBytes) is bind-mounted read-write at
// /workspace, and the working directory is /workspace/<Step.Dir> (Run
// refuses a missing one, which docker would create). Nothing else of the host is there but the additional mounts
// of [Config.AdditionalMounts]: the root file system is the image's,
// writable, and a fresh copy for each step, so only the workspace carries
// files from one step to the next. The environment is the image's
// (PATH...) plus the step's Env; nothing of the executor's.
//
// # Privileges
//
// Steps run as the image's user, root for most images. That root has no
// capabilities (all are dropped), cannot gain any (no-new-privileges),
// and is confined by dockerd's default seccomp and AppArmor profiles; it
// is never a privileged container. Files it writes in the workspace are
// owned by root on the host, where the executor (root) removes them.
// Images whose steps need capabilities (package managers that switch
// users, chown) will fail; run such work in the image's build instead.
//
// # Limits
//
// Each container gets the job's limits: Options.DiskBytes as the size
// of its writable layer where dockerd can bound it (see disk.go; with
// gVisor, runsc's root overlay in memory bounds it), Options.CPUs as a CPU quota
// (NanoCPUs), Options.MemoryBytes as its memory limit with the same
// memory-plus-swap limit (no swap), and Options.PIDs as its process
// limit. Result.OOMKilled is dockerd's OOMKilled of a step that failed.
// Under gVisor the process limit applies to the host tasks of the whole
// sandbox, which include gVisor's own threads and a host task for each
// process of the step: it is set to 2*PIDs+64, and a step that reaches
// it ends the sandbox (the step fails, exit code 2) instead of seeing
// fork fail.
//
// # Network
//
// With [sandbox.NetworkNone] containers have no network but loopback.
// With [sandbox.NetworkInternet], Prepare creates a bridge network for
// the job, whose bridge interface on the host is named execd<sandbox id>
// (com.docker.network.bridge.name), and [Config.Firewall] installs the
// network policy on it (no private ranges, link-local addresses, host
// services or other jobs); Destroy removes both. [Config.AddHostGateway]
// adds host.docker.internal, resolving to the host, to containers on a
// network.
//
// A job's steps after the first share one network namespace (loopback
// only, or on the job's bridge), held by a container that does nothing,
// started in the first step's image once the first step's container has
// started, and removed by Destroy: dockerd is slow to make a namespace
// for each container, and joining one costs nothing. The first step gets
// a namespace of its own, as a bare `docker run` would, so that the time
// to its first byte is not spent on the holder. A job of one step
// (sandbox.Options.Steps) gets no holder at all: it would only cost a
// container, a whole sandbox under gVisor. gVisor moves a namespace's
// interfaces into its sandbox's own network stack, so the steps of a
// gvisor job with a network each join the bridge instead, at that cost.
//
// # Images
//
// A step's image is used when present; otherwise it is pulled, Docker Hub
// images through each of [Config.RegistryMirrors] in order before Docker
// Hub itself, with the credentials of the job (Options.RegistryAuth) or
// else of [Config.AuthConfig]. [Sandbox.Pull] is the job runner's
// setup.docker.pull step. Errors say whether the daemon, the registry or
// the image is at fault, and what to do.
//
// # Leftovers
//
// A step's result does not wait for its container's removal: Run
// removes it in the background (a cancelled step's at once), and
// Destroy waits for those removals before it removes the rest.
//
// Containers and networks carry the labels execd.managed=true,
// execd.owner, execd.job, execd.workspace and execd.sandbox (and
// execd.role=network on the container holding a job's network). Destroy
// removes those of its sandbox; [Runtime.Clean] removes those of any
// sandbox its caller calls stale, such as the jobs of an executor that
// was killed: nothing of a step stops when the executor dies, as dockerd
// runs the containers.
package docker
