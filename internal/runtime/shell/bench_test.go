package shell_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"testing"

	"github.com/execd/execd/internal/runtime"
)

// BenchmarkRun_True measures a step that does nothing: the sandbox's own
// cost. Compare with BenchmarkUnshare_True.
func BenchmarkRun_True(b *testing.B) {
	rt := needSandbox(b)
	ctx := context.Background()
	step := runtime.Step{Commands: []string{"true"}}
	out := runtime.Output{Stdout: io.Discard, Stderr: io.Discard}

	b.Run("run", func(b *testing.B) {
		sb, _ := prepare(b, rt, runtime.Options{})
		for b.Loop() {
			if res, err := sb.Run(ctx, step, out); err != nil || res.ExitCode != 0 {
				b.Fatal(res, err)
			}
		}
	})
	b.Run("prepare-run-destroy", func(b *testing.B) {
		opts := runtime.Options{JobID: "bench", Owner: testOwner, Workspace: b.TempDir(), MemoryBytes: 256 << 20, PIDs: 256, CPUs: 1}
		for b.Loop() {
			sb, err := rt.Prepare(ctx, opts)
			if err != nil {
				b.Fatal(err)
			}
			if res, err := sb.Run(ctx, step, out); err != nil || res.ExitCode != 0 {
				b.Fatal(res, err)
			}
			if err := sb.Destroy(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkUnshare_True is the bare cost of the namespaces, for
// comparison: util-linux unshare running true in new mount, PID, network,
// IPC and UTS namespaces (and a user namespace when not root); and a
// plain fork and exec.
func BenchmarkUnshare_True(b *testing.B) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		b.Skip("unshare is not installed")
	}
	args := []string{"-m", "-p", "-f", "-n", "-i", "-u", "true"}
	if os.Geteuid() != 0 {
		args = append([]string{"--user", "--map-root-user"}, args...)
	}
	b.Run("unshare", func(b *testing.B) {
		for b.Loop() {
			if err := exec.Command(unshare, args...).Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("exec", func(b *testing.B) {
		for b.Loop() {
			if err := exec.Command("/bin/true").Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
