// Package sandbox defines the sandbox runtimes that executors run job steps
// in. One package per runtime implements [Runtime] (shell: Linux namespaces
// and cgroups; docker and gvisor in later work); cmd/executor lists them.
//
// Call order for one job:
//
//	rt.Check(ctx)                       // may the runtime be used here?
//	sb, err := rt.Prepare(ctx, opts)    // once per job: the sandbox and its empty workspace
//	ws := sb.Workspace()                // fill ws.HostDir() (clone, files), then
//	err = ws.Seal(ctx)                  // hand the workspace over to the steps
//	res, err := sb.Run(ctx, step, out)  // once per step, in order, never concurrently
//	sb.Destroy(ctx)                     // always, even if Prepare or Run failed
//
// The sandbox owns its workspace: it makes it where Options.Workspace
// says, bounded by Options.DiskBytes, in the form its steps need (a
// directory a container mounts, a disk a virtual machine attaches), and
// Destroy removes it.
//
// Different jobs' sandboxes are independent and used concurrently.
//
// Optional abilities are small interfaces, found by type assertion:
// a [Sandbox] that runs steps in container images is a [Puller], and a
// [Runtime] whose sandboxes can outlive a crashed executor (containers,
// networks) is a [Janitor], and one that works ahead of its jobs (a warm
// pool) is a [Starter].
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// Runtime creates sandboxes.
type Runtime interface {
	// Name is the runtime's EXECUTOR_RUNTIME value ("shell", "docker"...).
	Name() string
	// Capabilities says what the runtime's sandboxes offer; the job
	// runner, `executor validate` and EXECUTOR_RUNTIME=auto decide from
	// it, never from the name.
	Capabilities() Capabilities
	// Check reports whether the runtime can run on this host; the error
	// says what is missing and how to fix it.
	Check(ctx context.Context) error
	// Prepare creates the sandbox of one job and its empty workspace.
	// Everything it creates is labelled with opts.JobID and opts.Owner so
	// a janitor can find it after a crash.
	Prepare(ctx context.Context, opts Options) (Sandbox, error)
}

// Sandbox runs the steps of one job.
type Sandbox interface {
	// Workspace is the job's workspace, empty until the job runner fills
	// it. Run may be called only after its Seal.
	Workspace() Workspace
	// Run runs step to completion and returns its exit code. Output goes to
	// out.Stdout and out.Stderr as it is produced. When ctx ends, every
	// process of the step is killed (SIGTERM, a short grace, SIGKILL)
	// before Run returns ctx's error. Processes a step leaves in the
	// background are killed when the step ends.
	Run(ctx context.Context, step Step, out Output) (Result, error)
	// Destroy removes everything Prepare made, the workspace included
	// unless Options.KeepWorkspace. It is idempotent and safe to call
	// after a failed Prepare or Run.
	Destroy(ctx context.Context) error
}

// Workspace is how the job runner fills a sandbox's workspace before its
// steps run: through a host directory, then handed over with Seal.
type Workspace interface {
	// HostDir is a host directory holding the workspace until Seal: the
	// job runner clones the repository and writes the job's files there,
	// as root. It lives in a directory only root can reach.
	HostDir() string
	// Seal hands the filled workspace over to the steps: it is called
	// once, before the first step. A runtime whose steps see the
	// workspace as a disk detaches it from the host here; a runtime whose
	// steps run as another user gives it the files. After Seal the job
	// runner no longer uses HostDir.
	Seal(ctx context.Context) error
}

// WorkspaceKind says where a runtime's steps find their workspace.
type WorkspaceKind string

const (
	// WorkspaceHostDir: steps see the host directory itself (a bind
	// mount), while they run.
	WorkspaceHostDir WorkspaceKind = "host directory"
	// WorkspaceDisk: steps see a disk image that the host filled and
	// then detached: the host never shares a file system with them.
	WorkspaceDisk WorkspaceKind = "disk image"
)

// Capabilities are what a runtime's sandboxes offer.
type Capabilities struct {
	// Workspace says where steps find their workspace.
	Workspace WorkspaceKind
	// Images: a step runs in its container image. Otherwise steps run on
	// the host's system files and Step.Image is not used.
	Images bool
	// Networks are the network policies the runtime can give a job, the
	// default (for a job that names none) first.
	Networks []Network
	// Limits are the limits of Options the runtime enforces.
	Limits Limits
}

// Limits tells which of a job's limits a runtime enforces.
type Limits struct {
	CPU, Memory, Processes bool
	// Disk: Options.DiskBytes bounds everything a step writes that
	// lands on the host's disk (its workspace, a container's writable
	// layer).
	Disk bool
}

// Supports reports whether the runtime can give a job network n.
func (c Capabilities) Supports(n Network) bool { return slices.Contains(c.Networks, n) }

// DefaultNetwork is the network of a job when the executor names none.
func (c Capabilities) DefaultNetwork() Network {
	if len(c.Networks) == 0 {
		return NetworkNone
	}
	return c.Networks[0]
}

// Options describe a job's sandbox.
type Options struct {
	// JobID identifies the job ("<id>-<queue>"), for names and labels.
	JobID string
	// Owner identifies the executor, for names and labels.
	Owner string
	// Workspace is the host path where Prepare makes the job's
	// workspace (a directory, or a disk image and its mount point at
	// Workspace+".img"): a new name in a directory only root can reach.
	// The job's logs show it as /workspace.
	Workspace string
	// DiskBytes bounds the workspace, and whatever else of the step
	// lands on the host's disk, when the runtime's Limits say Disk
	// (EXECUTOR_FIRECRACKER_DISK_SPACE); 0 means no limit.
	DiskBytes int64
	// KeepWorkspace leaves the workspace on the host after Destroy, for
	// debugging (EXECUTOR_KEEP_WORKSPACES).
	KeepWorkspace bool
	// CPUs limits the job's CPU (cores); 0 means no limit.
	CPUs int
	// MemoryBytes limits the job's memory; 0 means no limit.
	MemoryBytes int64
	// PIDs limits the number of processes and threads; 0 means no limit.
	PIDs int
	// Network is the job's network policy.
	Network Network
	// RegistryAuth holds the job's registry credentials, registry host
	// -> base64 of "user:password" (a docker config's "auths"), for
	// runtimes that pull images. When set it replaces the executor's own
	// (EXECUTOR_DOCKER_AUTH_CONFIG), as the job's dockerAuthConfig does
	// in the reference.
	RegistryAuth map[string]string
	// Steps is how many steps the job will run, when known (0: unknown).
	// A runtime may skip work that only later steps would use, such as
	// a network namespace shared between steps. Run must still work for
	// more steps than this.
	Steps int
}

// Network is a sandbox's network policy.
type Network string

const (
	// NetworkNone: no network at all, only loopback.
	NetworkNone Network = "none"
	// NetworkInternet: the internet, but no private ranges, link-local
	// addresses, host services or other sandboxes.
	NetworkInternet Network = "internet"
)

// Step is one command script to run in a sandbox.
type Step struct {
	// Key names the step in logs.
	Key string
	// Image is the container image (container runtimes only).
	Image string
	// Commands are run as one script by /bin/sh, in order, stopping at the
	// first failure (set -e).
	Commands []string
	// Dir is the working directory, relative to the workspace.
	Dir string
	// Env is the step's entire environment besides PATH and HOME, as
	// NAME=value. Nothing of the executor's own environment leaks in.
	Env []string
}

// Output receives a step's output streams.
type Output struct {
	Stdout io.Writer
	Stderr io.Writer
}

// Result is how a step ended.
type Result struct {
	ExitCode int
	// OOMKilled is true when the step was killed for exceeding its memory
	// limit.
	OOMKilled bool
	// DiskFull is true when the step failed and its workspace was full:
	// it wrote as much as Options.DiskBytes allows.
	DiskFull bool
}

// Puller is implemented by sandboxes that run steps in container images.
// The job runner calls Pull once for each distinct image of the job's
// steps, before the first step, and shows out as the job's
// setup.docker.pull log entry. Pull makes image available to Run,
// pulling it when it is missing; its error says whether the image, the
// registry or the container engine is at fault, and what to do. Run must
// still work for an image that was not pulled first.
type Puller interface {
	Pull(ctx context.Context, image string, out io.Writer) error
}

// Starter is implemented by runtimes that work ahead of their jobs (a
// warm pool of booted virtual machines). The executor calls Start once,
// after the runtime was chosen and its workspace directory is locked, and
// Stop when it stops, after its last job. Start's error stops the
// executor: the runtime cannot run.
type Starter interface {
	Start(ctx context.Context) error
	Stop()
}

// Janitor is implemented by runtimes whose sandboxes leave things behind
// when an executor dies without calling Destroy (containers, networks,
// firewall rules).
type Janitor interface {
	// Clean removes the leftovers of every sandbox for which stale
	// reports true. It must not remove anything of a sandbox whose Prepare
	// or Destroy is running when stale reports false for it. It is safe to
	// call concurrently with the runtime's other methods, and does
	// nothing when there is nothing to remove.
	Clean(ctx context.Context, stale func(Leftover) bool) error
}

// Leftover describes what a runtime made for one sandbox, from the labels
// it gave it: Prepare's Options. A Leftover without JobID is what a
// runtime made for an owner as a whole (the shell runtime's cgroup of an
// executor); its Workspace is then the owner's directory of workspaces.
type Leftover struct {
	JobID     string
	Owner     string
	Workspace string
}

// DirError is Run's error for a step whose dir is not a directory in the
// workspace. No retry can fix it: the job fails at once.
type DirError struct{ Msg string }

func (e *DirError) Error() string { return e.Msg }

// CheckDir reports why a step's dir, relative to the workspace, is not a
// directory there, as a *[DirError]. It resolves within the workspace
// only (a symbolic link out of it is refused), so it tells nothing of the
// host. Every runtime's Run fails with it (or, where the workspace is not
// on the host, with a DirError of the same words) rather than make a
// missing dir (as docker would), so that a typo fails the same
// everywhere.
func CheckDir(workspace, dir string) error {
	if dir == "" || filepath.Clean(dir) == "." {
		return nil
	}
	root, err := os.OpenRoot(workspace)
	if err != nil {
		return fmt.Errorf("open the workspace: %w", err)
	}
	defer root.Close()
	fi, err := root.Stat(filepath.Clean(dir))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &DirError{fmt.Sprintf("the step's dir %q does not exist in the workspace (dir is relative to the workspace root, where the repository is checked out; an earlier step may create it)", dir)}
	case err != nil:
		return &DirError{fmt.Sprintf("the step's dir %q is not a directory within the workspace", dir)}
	case !fi.IsDir():
		return &DirError{fmt.Sprintf("the step's dir %q is not a directory", dir)}
	}
	return nil
}

// ErrUnavailable wraps Check errors: the runtime cannot run on this host.
var ErrUnavailable = errors.New("runtime unavailable")

// Errors of [Puller.Pull] (and of Run, which pulls a missing image) that
// no retry can fix; the job fails at once. A registry that cannot be
// reached, or a container engine that fails, is neither: trying again
// later may succeed.
var (
	// ErrImageNotFound: the image's registry answered that it has no
	// such image (repository, tag or digest).
	ErrImageNotFound = errors.New("image not found")
	// ErrRegistryDenied: the registry refused the credentials given, or
	// asked for credentials and none were given.
	ErrRegistryDenied = errors.New("registry denied access")
	// ErrImageTooLarge: the image's files hold more than the runtime
	// allows an image (a VM's root file system).
	ErrImageTooLarge = errors.New("image too large")
)
