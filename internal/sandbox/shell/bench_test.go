package shell_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/sandboxtest"
	"github.com/execd/execd/internal/sandbox/shell"
)

// BenchmarkRun_True measures a step that does nothing: the sandbox's own
// cost, with the test binary as each step's init (as an executor without
// execd-sandbox-init), and with execd-sandbox-init. Compare with
// BenchmarkUnshare_True.
func BenchmarkRun_True(b *testing.B) {
	rt := needSandbox(b)
	ctx := context.Background()
	step := sandbox.Step{Commands: []string{"true"}}
	out := sandbox.Output{Stdout: io.Discard, Stderr: io.Discard}

	b.Run("run", func(b *testing.B) {
		sb, _ := prepare(b, rt, sandbox.Options{})
		for b.Loop() {
			if res, err := sb.Run(ctx, step, out); err != nil || res.ExitCode != 0 {
				b.Fatal(res, err)
			}
		}
	})
	b.Run("run/init=execd-sandbox-init", func(b *testing.B) {
		bin := filepath.Join(b.TempDir(), "execd-sandbox-init")
		if out, err := exec.Command("go", "build", "-o", bin, "github.com/execd/execd/cmd/execd-sandbox-init").CombinedOutput(); err != nil {
			b.Fatalf("go build execd-sandbox-init: %v\n%s", err, out)
		}
		sb, _ := prepare(b, shell.New(shell.Config{CgroupParent: testCgroupParent, Init: bin}), sandbox.Options{})
		for b.Loop() {
			if res, err := sb.Run(ctx, step, out); err != nil || res.ExitCode != 0 {
				b.Fatal(res, err)
			}
		}
	})
	b.Run("prepare-run-destroy", func(b *testing.B) {
		opts := sandbox.Options{JobID: "bench", Owner: testOwner, Workspace: sandboxtest.WorkspacePath(b), MemoryBytes: 256 << 20, PIDs: 256, CPUs: 1}
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
