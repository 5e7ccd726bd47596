// Package shell is the zero-dependency sandbox runtime: it runs each step
// with /bin/sh in Linux namespaces and a cgroup, with nothing but the
// kernel and the executor's own binary.
//
// # What a step sees
//
// Each step runs `/bin/sh -c` its commands, joined one a line after
// `set -e`, in new mount, PID, IPC, UTS, network and cgroup namespaces
// (and a user namespace when the executor is not root), built for the
// step and gone when it ends. Its filesystem is a read-only tmpfs root
// holding:
//
//   - the host's /usr, /bin, /sbin, /lib, /lib32, /lib64 and /libx32,
//     bound read-only and without set-user-ID, where they exist; those
//     that are symbolic links on the host (merged /usr) are the same links;
//   - a generated /etc: passwd and group knowing only root, nobody and the
//     sandbox user, hosts, nsswitch.conf, and a copy of the host's
//     resolv.conf; the host's /etc/alternatives and /etc/ld.so.cache are
//     bound read-only, as Debian's programs and libraries need them. No
//     other host file: no shadow, no keys;
//   - the job's workspace, read-write, at /workspace: the working
//     directory of a step is /workspace/<Step.Dir>;
//   - a private tmpfs /tmp, which is also HOME;
//   - a /proc of the step's PID namespace (/proc/sys read-only);
//   - a minimal /dev: null, zero, full, random, urandom and tty bound from
//     the host, and a private tmpfs /dev/shm.
//
// Nothing else of the host is there: no /root, /home, /var, /run, /sys,
// nor the executor's files. The network namespace has only loopback, so
// a step has no network at all; [sandbox.NetworkInternet] is not
// supported (use a docker or gvisor runtime for it). The environment is
// exactly the step's Env plus PATH and HOME.
//
// # Privileges
//
// When the executor runs as root, a step runs as nobody (65534:65534)
// and the workspace's Seal makes that user the owner of its files (except
// files with several hard links, which may be shared with files outside
// it), so that steps can write there; the executor, as root, can still
// read and remove them. Otherwise the executor's user is mapped to root
// in a user namespace, and steps run as that root, whose files on the
// host are the executor user's. Either way a step has no capabilities (an
// empty bounding set), cannot gain any (no_new_privs, nosuid mounts), and
// every mount it could write through is its own.
//
// # Limits and lifetime
//
// Prepare creates the job's cgroup, <Config.CgroupParent>/<Owner>/<JobID>
// under the root of each cgroup hierarchy (cgroup v2, or the v1 memory,
// pids and cpu hierarchies), with Options' limits: a CPU quota, a memory
// limit without swap, and a process count. Each step's processes are in
// it before any of the step's code runs. Result.OOMKilled reports the
// kernel's OOM kills in the cgroup during a failed step.
//
// The first process of a step's PID namespace is an init: the executor's
// own binary, re-executed (see [MaybeRunInit]). It builds the sandbox,
// runs the step's shell, reaps orphans and exits with the shell's status;
// when it exits the kernel kills every other process of the namespace,
// so nothing a step starts in the background outlives it. The init dies
// with the executor (the parent-death signal is SIGKILL), so even an
// executor killed with SIGKILL leaves no step running. A cancelled step
// gets SIGTERM, then SIGKILL two seconds later. Destroy kills whatever
// is left in the cgroup and removes it. The runtime is a janitor
// ([Runtime.Clean]): the executor's janitor removes the cgroups of the
// jobs of an executor that crashed (whose workspace lock is free), and an
// executor that stops removes its own.
package shell
