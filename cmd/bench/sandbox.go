package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/execd/execd/internal/runtime"
	"github.com/execd/execd/internal/runtime/shell"
)

// Sandbox sizes: steps per run for the shell runtime and the bare
// namespaces, and for docker (about half a second each).
const (
	sandboxSteps       = 50
	sandboxDockerSteps = 10
	sandboxImage       = "execd-test/busybox" // pulled by the docker e2e tests
)

// sandbox measures sandbox start. For the shell runtime (used directly, as
// the executor's job runner does, run as root): the time from the start of
// Prepare (what the executor does right after dequeue) to the first byte of
// a step's output (echo), and the per-step cost of a step `true` in a
// prepared sandbox. Beside them, the same `true` under bare `unshare -m -p
// -f -n -i -u`, a plain fork+exec, and, when `docker info` works, `docker
// run --rm IMAGE true` with the default runtime and with runsc. Our docker
// and gvisor runtimes are not measured here.
func sandbox(ctx context.Context, b *bench) ([]*figure, error) {
	dockerWhy := dockerMissing(ctx)
	if dockerWhy != "" {
		fmt.Fprintf(os.Stderr, "bench: sandbox: docker skipped: %s\n", dockerWhy)
	}
	rt := shell.New(shell.Config{})
	if err := rt.Check(ctx); err != nil {
		return nil, fmt.Errorf("shell runtime unavailable: %w", err)
	}
	owner := fmt.Sprintf("bench-%d", os.Getpid())
	defer rt.RemoveStale(context.WithoutCancel(ctx), owner)
	figs, err := b.repeat(ctx, func(run int) ([]sample, error) {
		ws, err := b.tempDir("sandbox")
		if err != nil {
			return nil, err
		}
		opts := runtime.Options{Owner: owner, Workspace: ws, MemoryBytes: 256 << 20, PIDs: 256, CPUs: 1}
		var first []time.Duration
		for i := range sandboxSteps {
			opts.JobID = fmt.Sprintf("%d-%d-bench", run, i)
			d, err := firstByte(ctx, rt, opts)
			if err != nil {
				return nil, err
			}
			first = append(first, d)
		}
		out := latencies("sandbox/shell/first-byte", first)
		opts.JobID = fmt.Sprintf("%d-steps-bench", run)
		perStep, err := shellSteps(ctx, rt, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, sample{name: "sandbox/shell/step", unit: "ms", value: ms(perStep), note: fmt.Sprintf("n=%d", sandboxSteps)})
		for _, c := range []struct {
			name string
			n    int
			args []string
			skip string
		}{
			{"sandbox/bare/unshare", sandboxSteps, []string{"unshare", "-m", "-p", "-f", "-n", "-i", "-u", "true"}, ""},
			{"sandbox/bare/exec", sandboxSteps, []string{"/bin/true"}, ""},
			{"sandbox/bare/docker-run", sandboxDockerSteps, []string{"docker", "run", "--rm", "--network=none", sandboxImage, "true"}, dockerWhy},
			{"sandbox/bare/docker-run-runsc", sandboxDockerSteps, []string{"docker", "run", "--rm", "--network=none", "--runtime=runsc", sandboxImage, "true"}, dockerWhy},
		} {
			if c.skip != "" {
				continue
			}
			d, err := timeCommand(ctx, c.n, c.args)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.name, err)
			}
			out = append(out, sample{name: c.name, unit: "ms", value: ms(d), note: fmt.Sprintf("n=%d", c.n)})
		}
		return out, nil
	})
	for _, f := range figs {
		if strings.HasPrefix(f.name, "sandbox/shell/") && !strings.HasSuffix(f.name, "/p99") {
			f.goal = &goal{value: 10}
		}
	}
	return figs, err
}

// dockerMissing says why docker cannot be measured, or "" when it can.
func dockerMissing(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{json .Runtimes}}").CombinedOutput(); err != nil {
		return fmt.Sprintf("docker info: %v: %s", err, bytes.TrimSpace(out))
	} else if !bytes.Contains(out, []byte("runsc")) {
		return "docker has no runsc runtime"
	}
	if err := exec.CommandContext(ctx, "docker", "image", "inspect", sandboxImage).Run(); err != nil {
		return "image " + sandboxImage + " is not present (no network to pull it)"
	}
	return ""
}

// firstByteWriter records when its first byte arrives.
type firstByteWriter struct {
	once sync.Once
	at   time.Time
}

func (w *firstByteWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { w.at = time.Now() })
	return len(p), nil
}

// firstByte prepares a sandbox, runs `echo x`, destroys the sandbox, and
// returns the time from the start of Prepare to the output's first byte.
func firstByte(ctx context.Context, rt *shell.Runtime, opts runtime.Options) (time.Duration, error) {
	w := &firstByteWriter{}
	start := time.Now()
	sb, err := rt.Prepare(ctx, opts)
	if err != nil {
		return 0, fmt.Errorf("prepare: %w", err)
	}
	defer sb.Destroy(context.WithoutCancel(ctx))
	res, err := sb.Run(ctx, runtime.Step{Commands: []string{"echo x"}}, runtime.Output{Stdout: w, Stderr: io.Discard})
	if err != nil || res.ExitCode != 0 {
		return 0, fmt.Errorf("echo x: exit %d: %v", res.ExitCode, err)
	}
	if w.at.IsZero() {
		return 0, fmt.Errorf("echo x printed nothing")
	}
	return w.at.Sub(start), nil
}

// shellSteps returns the mean time of a step `true` in one prepared sandbox.
func shellSteps(ctx context.Context, rt *shell.Runtime, opts runtime.Options) (time.Duration, error) {
	sb, err := rt.Prepare(ctx, opts)
	if err != nil {
		return 0, fmt.Errorf("prepare: %w", err)
	}
	defer sb.Destroy(context.WithoutCancel(ctx))
	out := runtime.Output{Stdout: io.Discard, Stderr: io.Discard}
	start := time.Now()
	for range sandboxSteps {
		if res, err := sb.Run(ctx, runtime.Step{Commands: []string{"true"}}, out); err != nil || res.ExitCode != 0 {
			return 0, fmt.Errorf("true: exit %d: %v", res.ExitCode, err)
		}
	}
	return time.Since(start) / sandboxSteps, nil
}

// timeCommand returns the mean time of n runs of args.
func timeCommand(ctx context.Context, n int, args []string) (time.Duration, error) {
	start := time.Now()
	for range n {
		if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
		}
	}
	return time.Since(start) / time.Duration(n), nil
}
