// Package sandboxtest holds helpers shared by the tests of the sandbox
// runtimes.
package sandboxtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/diskimage"
)

// jobSeq numbers the jobs of a test binary; atomic because tests run in
// parallel.
var jobSeq atomic.Int64

// Seq returns the next number of the test binary's sequence, for unique
// job ids and owners.
func Seq() int64 { return jobSeq.Add(1) }

// Prepare prepares a sandbox of rt with opts (defaults filled in as
// [Options] does, for owner), fills its workspace with fill (if not nil)
// and seals it; the sandbox is destroyed when the test ends, and then
// left, if not nil, must find nothing of it (containers, cgroups...),
// nor may its workspace be left.
func Prepare(t testing.TB, rt sandbox.Runtime, opts sandbox.Options, owner string, left func(sb sandbox.Sandbox, opts sandbox.Options) []string, fill ...func(dir string)) (sandbox.Sandbox, sandbox.Options) {
	t.Helper()
	opts = Options(t, opts, owner)
	sb, err := rt.Prepare(context.Background(), opts)
	if err != nil {
		if sb != nil {
			sb.Destroy(context.Background())
		}
		t.Fatalf("Prepare: %v", err)
	}
	for _, f := range fill {
		f(sb.Workspace().HostDir())
	}
	if err := sb.Workspace().Seal(context.Background()); err != nil {
		sb.Destroy(context.Background())
		t.Fatalf("Seal: %v", err)
	}
	t.Cleanup(func() {
		if err := sb.Destroy(context.Background()); err != nil {
			t.Errorf("Destroy: %v", err)
		}
		if _, err := os.Lstat(opts.Workspace); !opts.KeepWorkspace && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("workspace %s left after Destroy (%v)", opts.Workspace, err)
		}
		if left == nil {
			return
		}
		if l := left(sb, opts); len(l) > 0 {
			t.Errorf("left after Destroy: %v", l)
		}
	})
	return sb, opts
}

// Options returns opts with its unset fields filled in for a test: a new
// job of owner, a workspace path in a new temporary directory, generous limits (1 CPU, 256 MiB,
// 256 processes) and no network.
func Options(t testing.TB, opts sandbox.Options, owner string) sandbox.Options {
	t.Helper()
	if opts.JobID == "" {
		opts.JobID = fmt.Sprintf("%d-test", Seq())
	}
	if opts.Owner == "" {
		opts.Owner = owner
	}
	if opts.Workspace == "" {
		opts.Workspace = WorkspacePath(t)
	}
	if opts.MemoryBytes == 0 {
		opts.MemoryBytes = 256 << 20
	}
	if opts.PIDs == 0 {
		opts.PIDs = 256
	}
	if opts.CPUs == 0 {
		opts.CPUs = 1
	}
	if opts.Network == "" {
		opts.Network = sandbox.NetworkNone
	}
	return opts
}

// WorkspacePath returns a path for a sandbox's workspace, in a new
// temporary directory whose mounts are undone when the test ends (a
// killed stand-in executor, or a test that never calls Destroy, leaves
// its workspace mounted).
func WorkspacePath(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() { _ = diskimage.UnmountUnder(dir) })
	return filepath.Join(dir, "workspace")
}
