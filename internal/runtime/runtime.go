// Package runtime defines the sandbox runtimes that executors run job steps
// in. One package per runtime implements [Runtime] (shell: Linux namespaces
// and cgroups; docker and gvisor in later work); cmd/executor lists them.
//
// Call order for one job:
//
//	rt.Check(ctx)                       // may the runtime be used here?
//	sb, err := rt.Prepare(ctx, opts)    // once per job
//	res, err := sb.Run(ctx, step, out)  // once per step, in order, never concurrently
//	sb.Destroy(ctx)                     // always, even if Prepare or Run failed
//
// Different jobs' sandboxes are independent and used concurrently.
package runtime

import (
	"context"
	"errors"
	"io"
)

// Runtime creates sandboxes.
type Runtime interface {
	// Name is the runtime's EXECUTOR_RUNTIME value ("shell", "docker"...).
	Name() string
	// Check reports whether the runtime can run on this host; the error
	// says what is missing and how to fix it.
	Check(ctx context.Context) error
	// Prepare creates the sandbox of one job around an existing workspace
	// directory. Everything it creates is labelled with opts.JobID and
	// opts.Owner so a janitor can find it after a crash.
	Prepare(ctx context.Context, opts Options) (Sandbox, error)
}

// Sandbox runs the steps of one job.
type Sandbox interface {
	// Run runs step to completion and returns its exit code. Output goes to
	// out.Stdout and out.Stderr as it is produced. When ctx ends, every
	// process of the step is killed (SIGTERM, a short grace, SIGKILL)
	// before Run returns ctx's error. Processes a step leaves in the
	// background are killed when the step ends.
	Run(ctx context.Context, step Step, out Output) (Result, error)
	// Destroy removes everything Prepare made, except the workspace. It is
	// idempotent and safe to call after a failed Prepare or Run.
	Destroy(ctx context.Context) error
}

// Options describe a job's sandbox.
type Options struct {
	// JobID identifies the job ("<id>-<queue>"), for names and labels.
	JobID string
	// Owner identifies the executor, for names and labels.
	Owner string
	// Workspace is the host directory the job's steps read and write.
	Workspace string
	// CPUs limits the job's CPU (cores); 0 means no limit.
	CPUs int
	// MemoryBytes limits the job's memory; 0 means no limit.
	MemoryBytes int64
	// PIDs limits the number of processes and threads; 0 means no limit.
	PIDs int
	// Network is the job's network policy.
	Network Network
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
}

// ErrUnavailable wraps Check errors: the runtime cannot run on this host.
var ErrUnavailable = errors.New("runtime unavailable")
