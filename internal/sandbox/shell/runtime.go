package shell

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/execd/execd/internal/sandbox"
)

// Runtime is the shell runtime. It is safe for concurrent use by multiple
// goroutines; its sandboxes are independent.
type Runtime struct {
	cfg Config
}

var _ sandbox.Runtime = (*Runtime)(nil)

// New returns a shell runtime. Config errors are reported by
// [Runtime.Check] and [Runtime.Prepare].
func New(cfg Config) *Runtime {
	return &Runtime{cfg: cfg.withDefaults()}
}

// Name returns "shell".
func (r *Runtime) Name() string { return "shell" }

// InitProgram is the program that starts each step ([Config.Init]);
// empty when it is this program itself.
func (r *Runtime) InitProgram() string { return r.cfg.Init }

// Capabilities: steps run on the host's system files, without network,
// with CPU, memory and process limits.
func (r *Runtime) Capabilities() sandbox.Capabilities {
	return sandbox.Capabilities{
		Workspace: sandbox.WorkspaceHostDir,
		Networks:  []sandbox.Network{sandbox.NetworkNone},
		// A step writes to the host's disk only in its workspace; its
		// /tmp is a tmpfs charged to the job's memory.
		Limits: sandbox.Limits{CPU: true, Memory: true, Processes: true, Disk: true},
	}
}

// Check reports whether this host can run shell sandboxes: Linux
// namespaces, /bin/sh, and writable cgroups with the memory, pids and cpu
// controllers. Its error wraps [sandbox.ErrUnavailable] and says how to
// fix what is missing.
func (r *Runtime) Check(ctx context.Context) error {
	if err := r.cfg.validate(); err != nil {
		return fmt.Errorf("%w: %w", sandbox.ErrUnavailable, err)
	}
	if err := r.check(ctx); err != nil {
		return fmt.Errorf("%w: shell: %w", sandbox.ErrUnavailable, err)
	}
	return nil
}

// Prepare creates the job's cgroup with opts' limits and, when the
// executor runs as root, hands the workspace to the sandbox user (see the
// package documentation). The network policy must be
// [sandbox.NetworkNone]: this runtime has no network.
//
// Even when it fails, Prepare returns a Sandbox whose Destroy is safe to
// call.
func (r *Runtime) Prepare(ctx context.Context, opts sandbox.Options) (sandbox.Sandbox, error) {
	if err := r.cfg.validate(); err != nil {
		return &Sandbox{}, err
	}
	if err := validateOptions(opts); err != nil {
		return &Sandbox{}, err
	}
	return r.prepare(ctx, opts)
}

// Clean removes the cgroups of the jobs for which stale reports true,
// killing what still runs in them, and the owner's cgroup once stale
// reports true for the owner itself (a Leftover without JobID) and it
// holds no job. A job cgroup of another owner that still has processes is
// left alone, whatever stale says: the processes of an executor that died
// die with it (their init dies with the executor), so only a live
// executor, perhaps one with another workspace root, has them.
func (r *Runtime) Clean(ctx context.Context, stale func(sandbox.Leftover) bool) error {
	if err := r.cfg.validate(); err != nil {
		return err
	}
	return r.clean(ctx, stale)
}

// validateOptions checks opts before anything is created.
func validateOptions(opts sandbox.Options) error {
	switch opts.Network {
	case sandbox.NetworkNone, "":
	case sandbox.NetworkInternet:
		return errors.New("shell: network policy \"internet\" is not supported: shell sandboxes have no network " +
			"(only loopback); set EXECUTOR_JOB_NETWORK=none to use the shell runtime, or use the docker or gvisor runtime")
	default:
		return fmt.Errorf("shell: unknown network policy %q", opts.Network)
	}
	if _, err := cgroupName(opts.JobID); err != nil {
		return fmt.Errorf("shell: job ID: %w", err)
	}
	if _, err := cgroupName(opts.Owner); err != nil {
		return fmt.Errorf("shell: owner: %w", err)
	}
	if !filepath.IsAbs(opts.Workspace) {
		return fmt.Errorf("shell: workspace %q is not an absolute path", opts.Workspace)
	}
	if opts.CPUs < 0 || opts.MemoryBytes < 0 || opts.PIDs < 0 {
		return fmt.Errorf("shell: negative limit (CPUs %d, memory %d, PIDs %d)", opts.CPUs, opts.MemoryBytes, opts.PIDs)
	}
	return nil
}

// cgroupName turns a job ID or owner into a cgroup directory name: bytes
// other than letters, digits, '.', '_' and '-' become '_', so that names
// are safe in paths and still recognisable to a janitor.
func cgroupName(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty")
	}
	name := strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '_'
	}, s)
	if name == "." || name == ".." {
		return "", fmt.Errorf("%q is not a valid name", s)
	}
	return name, nil
}
