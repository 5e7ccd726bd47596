package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/execd/execd/internal/install/vmguest"
	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/vm"
	"github.com/execd/execd/internal/sandbox/vm/agent"
	"github.com/execd/execd/internal/sandbox/vm/qemu"
	"github.com/execd/execd/internal/sandbox/vm/vmm"
)

// vmRuns is how many machines each VM figure is measured over.
const vmRuns = 5

// vmStart measures the micro-VM runtime (QEMU microvm; software
// emulation where there is no KVM) against QEMU alone, in one run:
//
//   - cold first-byte: from the start of Prepare, with no warm machine,
//     to the first byte of a step `echo x` in the test image; bare: QEMU
//     booting the same kernel and initramfs with busybox as the init
//     running `echo x`, to that line on its console;
//   - warm first-byte: the same with a machine waiting in the pool;
//   - step: a step `true` in the test image in a prepared machine, against
//     the agent running `true` in the guest's own root (no image);
//   - the host memory (RSS) of an idle machine of the pool.
func vmStart(ctx context.Context, b *bench) ([]*figure, error) {
	assets := vmguest.DefaultDir
	if _, _, err := vmguest.Installed(assets); err != nil {
		return nil, fmt.Errorf("the VM guest is not installed (executor install vm): %w", err)
	}
	if why := dockerMissing(ctx); why != "" {
		return nil, fmt.Errorf("vm: the test image comes from docker: %s", why)
	}
	owner := fmt.Sprintf("bench-vm-%d", os.Getpid())
	figs, err := b.repeat(ctx, func(run int) ([]sample, error) {
		dir, err := b.tempDir("vm")
		if err != nil {
			return nil, err
		}
		opts := sandbox.Options{Owner: owner, Workspace: dir, MemoryBytes: 256 << 20, CPUs: 1, DiskBytes: 1 << 30, Network: sandbox.NetworkNone}
		cfg := vm.Config{Owner: owner, Dir: filepath.Join(dir, "machines"), AllowEmulation: true, Assets: assets, Machine: opts}
		step := sandbox.Step{Image: sandboxImage, Commands: []string{"echo x"}}
		var out []sample

		cold := vm.New(cfg)
		if err := cold.Check(ctx); err != nil {
			return nil, err
		}
		var first []time.Duration
		for i := range vmRuns {
			opts.JobID = fmt.Sprintf("%d-cold-%d", run, i)
			d, err := firstByte(ctx, cold, opts, step)
			if err != nil {
				return nil, fmt.Errorf("vm cold: %w", err)
			}
			first = append(first, d)
		}
		out = append(out, latencies("vm/cold/first-byte", first)...)

		bare, err := bareQEMU(ctx, assets)
		if err != nil {
			return nil, err
		}
		out = append(out, latencies("vm/bare/qemu/first-byte", bare)...)
		out = append(out, sample{name: "vm/cold/first-byte/p50-over-bare", unit: "x", value: ms(percentile(first, 50)) / ms(percentile(bare, 50))})

		cfg.WarmPool = 1
		warm := vm.New(cfg)
		if err := warm.Start(ctx); err != nil {
			return nil, err
		}
		defer warm.Stop()
		var warmFirst []time.Duration
		var rss []float64
		for i := range vmRuns {
			// Let the pool boot its machine.
			if err := waitIdleMachine(ctx, owner, 60*time.Second); err != nil {
				return nil, err
			}
			if kb := machineRSS(owner); kb > 0 {
				rss = append(rss, kb/1024)
			}
			opts.JobID = fmt.Sprintf("%d-warm-%d", run, i)
			d, err := firstByte(ctx, warm, opts, step)
			if err != nil {
				return nil, fmt.Errorf("vm warm: %w", err)
			}
			warmFirst = append(warmFirst, d)
		}
		out = append(out, latencies("vm/warm/first-byte", warmFirst)...)
		if len(rss) > 0 {
			out = append(out, sample{name: "vm/pool/idle-machine-rss", unit: "MB", value: rss[len(rss)/2], note: "256 MiB machine"})
		}

		opts.JobID = fmt.Sprintf("%d-steps", run)
		perStep, err := runtimeSteps(ctx, cold, opts, 20, sandbox.Step{Image: sandboxImage, Commands: []string{"true"}})
		if err != nil {
			return nil, fmt.Errorf("vm steps: %w", err)
		}
		direct, err := directSteps(ctx, assets, 20)
		if err != nil {
			return nil, err
		}
		out = append(out,
			sample{name: "vm/step", unit: "ms", value: ms(perStep), note: "n=20"},
			sample{name: "vm/bare/agent-step", unit: "ms", value: ms(direct), note: "n=20, the guest's own root"},
			sample{name: "vm/step-overhead", unit: "ms", value: ms(perStep - direct)},
		)
		return out, nil
	})
	for _, f := range figs {
		switch f.name {
		case "vm/cold/first-byte/p50-over-bare":
			f.goal = &goal{value: 1.3}
		case "vm/warm/first-byte/p50":
			f.goal = &goal{value: 300}
		case "vm/step-overhead":
			f.goal = &goal{value: 20}
		}
	}
	return figs, err
}

// bareQEMU boots the guest's kernel and initramfs with busybox as init
// running `echo x`, and returns the times to that line, vmRuns times.
func bareQEMU(ctx context.Context, assets string) ([]time.Duration, error) {
	kernel, initramfs, err := vmguest.Installed(assets)
	if err != nil {
		return nil, err
	}
	var out []time.Duration
	for range vmRuns {
		spec := vmm.Spec{Kernel: kernel, Initramfs: initramfs, VCPUs: 1, MemoryMiB: 256, Cmdline: "rdinit=/bin/busybox -- echo x"}
		args := qemu.Args(spec, qemu.AccelTCG, 3)
		// No agent channel: busybox is the init.
		for i, a := range args {
			if a == "-device" && strings.HasPrefix(args[i+1], "virtio-serial") {
				args = args[:i]
				break
			}
		}
		cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		var at time.Duration
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "x" && at == 0 {
				at = time.Since(start)
				break
			}
		}
		_ = cmd.Process.Kill()
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		if at == 0 {
			return nil, fmt.Errorf("bare qemu: no x on the console")
		}
		out = append(out, at)
	}
	return out, nil
}

// directSteps boots a machine with QEMU alone and returns the mean time
// of n steps `true` run by the agent in the guest's own root.
func directSteps(ctx context.Context, assets string, n int) (time.Duration, error) {
	kernel, initramfs, err := vmguest.Installed(assets)
	if err != nil {
		return 0, err
	}
	m, err := (&qemu.Monitor{}).Start(ctx, vmm.Spec{Kernel: kernel, Initramfs: initramfs, VCPUs: 1, MemoryMiB: 256, AllowEmulation: true})
	if err != nil {
		return 0, err
	}
	defer m.Kill()
	start := time.Now()
	for range n {
		if _, err := m.Agent().Run(ctx, agent.Run{Commands: []string{"true"}, Root: agent.RootNone}, io.Discard, io.Discard); err != nil {
			return 0, err
		}
	}
	return time.Since(start) / time.Duration(n), nil
}

// waitIdleMachine waits until the pool's machine has booted: its monitor
// runs and its memory stopped growing, or timeout passed (a busy host:
// the figure then includes what is left of the boot).
func waitIdleMachine(ctx context.Context, owner string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := -1.0
	for time.Now().Before(deadline) {
		if rss := machineRSS(owner); rss > 0 && rss == last {
			return nil
		} else {
			last = rss
		}
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	fmt.Fprintf(os.Stderr, "bench: vm: the pool's machine did not settle in %v\n", timeout)
	return nil
}

// machineRSS is the resident memory (KiB) of owner's pooled machine.
func machineRSS(owner string) float64 {
	for pid, label := range vm.Monitors() {
		if !strings.HasPrefix(label, "execd-vm:"+owner+":pool:") {
			continue
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				return kb
			}
		}
	}
	return 0
}
