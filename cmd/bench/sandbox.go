package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/docker"
	"github.com/execd/execd/internal/sandbox/netpolicy"
	"github.com/execd/execd/internal/sandbox/shell"
)

// Sandbox sizes: sandboxes and steps per run for the shell runtime and the
// bare namespaces, and for docker and gVisor (a few hundred ms each).
const (
	sandboxSteps       = 50
	sandboxDockerSteps = 10
	sandboxImage       = "execd-test/busybox" // built by deploy/images/build-test-images.sh
)

// sandbox measures sandbox start for each runtime, beside the bare tool
// doing the same, in the same run:
//
//   - first-byte: from the start of Prepare (what the executor does right
//     after dequeue) to the first byte of a step `echo x`, the sandbox
//     destroyed after each; bare: from the start of the command to its
//     first byte of output.
//   - step: the mean time of a step `true` in one prepared sandbox; bare:
//     of the whole command.
//
// The shell runtime runs each step under an init program: shell is with
// execd-sandbox-init, shell/init=executor with the executor itself (what
// an executor without execd-sandbox-init next to it uses). Both are set
// beside `unshare -m -p -f -n -i -u` and a plain fork+exec;
// docker beside `docker run --rm --network=none IMAGE`, gvisor beside the
// same with --runtime=runsc, and for a job with the internet (its own
// bridge with the firewall) beside `docker run --rm --network=BRIDGE` on
// a bridge made for the run. Ratios are ours over bare, per run.
func sandboxStart(ctx context.Context, b *bench) ([]*figure, error) {
	dockerWhy := dockerMissing(ctx)
	if dockerWhy != "" {
		fmt.Fprintf(os.Stderr, "bench: sandbox: docker and gvisor skipped: %s\n", dockerWhy)
	}
	// The shell runtime with each init an executor may use: the program
	// made for it, and the executor itself.
	owner := fmt.Sprintf("bench-%d", os.Getpid())
	var shells []*shell.Runtime
	for _, name := range []string{"execd-sandbox-init", "executor"} {
		bin, err := b.binary(ctx, name)
		if err != nil {
			return nil, err
		}
		sh := shell.New(shell.Config{Init: bin})
		if err := sh.Check(ctx); err != nil {
			return nil, fmt.Errorf("shell runtime unavailable: %w", err)
		}
		shells = append(shells, sh)
	}
	defer shells[0].Clean(context.WithoutCancel(ctx), func(l sandbox.Leftover) bool { return l.Owner == owner })
	var containers []*docker.Runtime
	bridge := fmt.Sprintf("execd-bench-%d", os.Getpid())
	if dockerWhy == "" {
		for _, gvisor := range []bool{false, true} {
			rt := docker.New(docker.Config{GVisor: gvisor, Firewall: &netpolicy.Firewall{}})
			if err := rt.Check(ctx); err != nil {
				return nil, fmt.Errorf("%s runtime unavailable: %w", rt.Name(), err)
			}
			defer rt.Clean(context.WithoutCancel(ctx), func(l sandbox.Leftover) bool { return l.Owner == owner })
			containers = append(containers, rt)
		}
		if out, err := exec.CommandContext(ctx, "docker", "network", "create", bridge).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("docker network create: %v: %s", err, bytes.TrimSpace(out))
		}
		defer exec.Command("docker", "network", "rm", bridge).Run()
	}

	figs, err := b.repeat(ctx, func(run int) ([]sample, error) {
		ws, err := b.tempDir("sandbox")
		if err != nil {
			return nil, err
		}
		opts := sandbox.Options{Owner: owner, Workspace: ws, MemoryBytes: 256 << 20, PIDs: 256, CPUs: 1, Network: sandbox.NetworkNone}
		var out []sample
		for i, sh := range shells {
			opts.JobID = fmt.Sprintf("%d-shell%d-bench", run, i)
			name := "shell"
			if i == 1 {
				name = "shell/init=executor"
			}
			samples, err := measureRuntime(ctx, name, sh, opts, sandboxSteps, false)
			if err != nil {
				return nil, err
			}
			out = append(out, samples...)
		}
		for _, c := range []struct {
			name string
			args []string
		}{
			{"sandbox/bare/unshare/step", []string{"unshare", "-m", "-p", "-f", "-n", "-i", "-u", "true"}},
			{"sandbox/bare/exec/step", []string{"/bin/true"}},
		} {
			_, d, err := timeCommand(ctx, sandboxSteps, c.args)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.name, err)
			}
			out = append(out, sample{name: c.name, unit: "ms", value: ms(d), note: fmt.Sprintf("n=%d", sandboxSteps)})
		}
		for _, rt := range containers {
			opts.JobID = fmt.Sprintf("%d-%s-bench", run, rt.Name())
			s, err := measureContainers(ctx, rt, opts, bridge)
			if err != nil {
				return nil, err
			}
			out = append(out, s...)
		}
		return out, nil
	})
	for _, f := range figs {
		switch f.name {
		case "sandbox/shell/first-byte/p50", "sandbox/shell/step":
			f.goal = &goal{value: 10}
		case "sandbox/docker/first-byte/p50-over-bare", "sandbox/docker/step-over-bare", "sandbox/docker/step-over-bare/network=internet":
			f.goal = &goal{value: 1.2}
		case "sandbox/gvisor/first-byte/p50-over-bare", "sandbox/gvisor/step-over-bare", "sandbox/gvisor/step-over-bare/network=internet":
			f.goal = &goal{value: 1.3}
		}
	}
	return figs, err
}

// measureContainers measures a container runtime (docker or gvisor) and
// the bare docker CLI doing the same, with no network and with a bridge.
func measureContainers(ctx context.Context, rt *docker.Runtime, opts sandbox.Options, bridge string) ([]sample, error) {
	name := rt.Name()
	out, err := measureRuntime(ctx, name, rt, opts, sandboxDockerSteps, true)
	if err != nil {
		return nil, err
	}
	opts.Network = sandbox.NetworkInternet
	opts.JobID += "-net"
	netStep, err := runtimeSteps(ctx, rt, opts, sandboxDockerSteps, sandbox.Step{Commands: []string{"true"}, Image: sandboxImage})
	if err != nil {
		return nil, fmt.Errorf("%s with network: %w", name, err)
	}
	note := fmt.Sprintf("n=%d", sandboxDockerSteps)
	out = append(out, sample{name: "sandbox/" + name + "/step/network=internet", unit: "ms", value: ms(netStep), note: note})

	run := []string{"docker", "run", "--rm"}
	if name == "gvisor" {
		run = append(run, "--runtime=runsc")
	}
	bare := "sandbox/bare/docker-run"
	if name == "gvisor" {
		bare += "-runsc"
	}
	none := append(slices.Clone(run), "--network=none", sandboxImage)
	first, _, err := timeCommand(ctx, sandboxDockerSteps, append(slices.Clone(none), "echo", "x"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", bare, err)
	}
	_, step, err := timeCommand(ctx, sandboxDockerSteps, append(none, "true"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", bare, err)
	}
	_, bridged, err := timeCommand(ctx, sandboxDockerSteps, append(run, "--network="+bridge, sandboxImage, "true"))
	if err != nil {
		return nil, fmt.Errorf("%s on a bridge: %w", bare, err)
	}
	firstP50 := percentile(first, 50)
	out = append(out,
		sample{name: bare + "/first-byte/p50", unit: "ms", value: ms(firstP50), note: note},
		sample{name: bare + "/step", unit: "ms", value: ms(step), note: note},
		sample{name: bare + "/step/network=bridge", unit: "ms", value: ms(bridged), note: note},
	)
	// The ratios, from this run's figures.
	value := func(n string) float64 {
		i := slices.IndexFunc(out, func(s sample) bool { return s.name == n })
		return out[i].value
	}
	out = append(out,
		sample{name: "sandbox/" + name + "/first-byte/p50-over-bare", unit: "x", value: value("sandbox/"+name+"/first-byte/p50") / ms(firstP50)},
		sample{name: "sandbox/" + name + "/step-over-bare", unit: "x", value: value("sandbox/"+name+"/step") / ms(step)},
		sample{name: "sandbox/" + name + "/step-over-bare/network=internet", unit: "x", value: ms(netStep) / ms(bridged)},
	)
	return out, nil
}

// measureRuntime measures first-byte over n sandboxes and step over n
// steps of one sandbox of rt, as figures of name; image says whether
// steps name the image.
func measureRuntime(ctx context.Context, name string, rt sandbox.Runtime, opts sandbox.Options, n int, image bool) ([]sample, error) {
	step := func(cmd string) sandbox.Step {
		s := sandbox.Step{Commands: []string{cmd}}
		if image {
			s.Image = sandboxImage
		}
		return s
	}
	var first []time.Duration
	job := opts.JobID
	for i := range n {
		opts.JobID = fmt.Sprintf("%s-%d", job, i)
		d, err := firstByte(ctx, rt, opts, step("echo x"))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		first = append(first, d)
	}
	out := latencies("sandbox/"+name+"/first-byte", first)
	opts.JobID = job + "-steps"
	perStep, err := runtimeSteps(ctx, rt, opts, n, step("true"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return append(out, sample{name: "sandbox/" + name + "/step", unit: "ms", value: ms(perStep), note: fmt.Sprintf("n=%d", n)}), nil
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
		return "image " + sandboxImage + " is not present: run deploy/images/build-test-images.sh"
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

// prepareSealed prepares a sandbox whose empty workspace is made in
// directory opts.Workspace, and seals the workspace, as the job runner
// does.
func prepareSealed(ctx context.Context, rt sandbox.Runtime, opts sandbox.Options) (sandbox.Sandbox, error) {
	opts.Workspace = filepath.Join(opts.Workspace, "ws-"+rand.Text())
	sb, err := rt.Prepare(ctx, opts)
	if err == nil {
		err = sb.Workspace().Seal(ctx)
	}
	if err != nil {
		if sb != nil {
			sb.Destroy(context.WithoutCancel(ctx))
		}
		return nil, fmt.Errorf("prepare: %w", err)
	}
	return sb, nil
}

// firstByte prepares a sandbox, runs step (which prints), destroys the
// sandbox, and returns the time from the start of Prepare to the output's
// first byte.
func firstByte(ctx context.Context, rt sandbox.Runtime, opts sandbox.Options, step sandbox.Step) (time.Duration, error) {
	w := &firstByteWriter{}
	start := time.Now()
	sb, err := prepareSealed(ctx, rt, opts)
	if err != nil {
		return 0, err
	}
	defer sb.Destroy(context.WithoutCancel(ctx))
	res, err := sb.Run(ctx, step, sandbox.Output{Stdout: w, Stderr: io.Discard})
	if err != nil || res.ExitCode != 0 {
		return 0, fmt.Errorf("%v: exit %d: %v", step.Commands, res.ExitCode, err)
	}
	if w.at.IsZero() {
		return 0, fmt.Errorf("%v printed nothing", step.Commands)
	}
	return w.at.Sub(start), nil
}

// runtimeSteps returns the mean time of n runs of step in one prepared
// sandbox.
func runtimeSteps(ctx context.Context, rt sandbox.Runtime, opts sandbox.Options, n int, s sandbox.Step) (time.Duration, error) {
	sb, err := prepareSealed(ctx, rt, opts)
	if err != nil {
		return 0, err
	}
	defer sb.Destroy(context.WithoutCancel(ctx))
	out := sandbox.Output{Stdout: io.Discard, Stderr: io.Discard}
	start := time.Now()
	for range n {
		if res, err := sb.Run(ctx, s, out); err != nil || res.ExitCode != 0 {
			return 0, fmt.Errorf("%v: exit %d: %v", s.Commands, res.ExitCode, err)
		}
	}
	return time.Since(start) / time.Duration(n), nil
}

// timeCommand runs args n times and returns, for each run, the time to
// the first byte of its standard output (if it printed), and the mean time
// of a whole run.
func timeCommand(ctx context.Context, n int, args []string) (first []time.Duration, mean time.Duration, err error) {
	var total time.Duration
	for range n {
		w := &firstByteWriter{}
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Stdout, cmd.Stderr = w, &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return nil, 0, fmt.Errorf("%v: %s", err, bytes.TrimSpace(stderr.Bytes()))
		}
		total += time.Since(start)
		if !w.at.IsZero() {
			first = append(first, w.at.Sub(start))
		}
	}
	slices.Sort(first)
	return first, total / time.Duration(n), nil
}
