package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/execd/execd/internal/install/vmguest"
	"github.com/execd/execd/internal/sandbox/vm/agent"
	"github.com/execd/execd/internal/sandbox/vm/qemu"
	"github.com/execd/execd/internal/sandbox/vm/vmm"
)

const testVMUsage = `Usage: executor test-vm [flags] [command...]

Boots a VM with the guest of 'executor install vm', runs the command (a
shell command line; default: uname -a) in it, prints its output and
exits with its exit code. Without --rootfs the command runs in the
initramfs's own root (busybox, when the host had busybox-static).

Without usable KVM the VM runs in software emulation only when allowed:
--allow-emulation or EXECUTOR_VM_ALLOW_EMULATION=true.

Flags:
`

// runTestVM runs `executor test-vm`.
func runTestVM(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("test-vm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, testVMUsage); fs.PrintDefaults() }
	allowDefault, _ := strconv.ParseBool(getenv("EXECUTOR_VM_ALLOW_EMULATION"))
	guestDir := fs.String("guest", vmguest.DefaultDir, "the directory of the installed guest (kernel, initramfs)")
	rootfs := fs.String("rootfs", "", "a root file system image (erofs or ext4) to run the command in")
	workspace := fs.String("workspace", "", "an ext4 image mounted at /workspace (default: a tmpfs)")
	dir := fs.String("dir", "", "the working directory, relative to /workspace")
	user := fs.String("user", "", "the user (uid:gid or a name of the root's /etc/passwd)")
	cpus := fs.Int("cpus", 1, "vCPUs")
	memory := fs.Int("memory", 512, "memory in MiB")
	allow := fs.Bool("allow-emulation", allowDefault, "run in software emulation (TCG) without usable KVM (EXECUTOR_VM_ALLOW_EMULATION)")
	timeout := fs.Duration("timeout", 5*time.Minute, "stop the command after this long")
	var env multiFlag
	fs.Var(&env, "env", "NAME=value for the command (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	command := strings.Join(fs.Args(), " ")
	if command == "" {
		command = "uname -a"
	}
	kernel, initramfs, err := vmguest.Installed(*guestDir)
	if err != nil {
		fmt.Fprintf(stderr, "executor test-vm: %v\n", err)
		return 1
	}
	spec := vmm.Spec{
		Kernel: kernel, Initramfs: initramfs,
		VCPUs: *cpus, MemoryMiB: *memory,
		AllowEmulation: *allow,
	}
	run := agent.Run{Commands: []string{command}, Env: env, Dir: *dir, User: *user, Root: agent.RootNone}
	if *workspace != "" {
		spec.Drives = append(spec.Drives, vmm.Drive{ID: "workspace", Path: *workspace})
		run.Workspace = "workspace"
	}
	if *rootfs != "" {
		spec.Drives = append(spec.Drives, vmm.Drive{ID: "root", Path: *rootfs, ReadOnly: true})
		run.Root = "root"
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	mon := &qemu.Monitor{}
	start := time.Now()
	bootCtx, cancelBoot := context.WithTimeout(ctx, 2*time.Minute)
	m, err := mon.Start(bootCtx, spec)
	cancelBoot()
	if err != nil {
		fmt.Fprintf(stderr, "executor test-vm: %v\n", err)
		if errors.Is(err, vmm.ErrNoKVM) {
			return 1
		}
		return 1
	}
	defer m.Kill()
	booted := time.Since(start)
	accel := "?"
	if a, ok := m.(interface{ Accel() qemu.Accel }); ok {
		accel = string(a.Accel())
	}
	fmt.Fprintf(stderr, "test-vm: guest kernel %s booted in %v (qemu microvm, %s)\n", m.Agent().Hello().Kernel, booted.Round(time.Millisecond), accel)

	stepCtx, cancelStep := context.WithTimeout(ctx, *timeout)
	defer cancelStep()
	stepStart := time.Now()
	ex, err := m.Agent().Run(stepCtx, run, stdout, stderr)
	stepTime := time.Since(stepStart)
	if err != nil {
		fmt.Fprintf(stderr, "executor test-vm: %v\n", err)
		return 1
	}
	m.Agent().Shutdown()
	waited := make(chan error, 1)
	go func() { waited <- m.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			fmt.Fprintf(stderr, "executor test-vm: %v\n", err)
		}
	case <-time.After(30 * time.Second):
		fmt.Fprintln(stderr, "executor test-vm: the guest did not power off within 30s; killed")
		m.Kill()
	}
	oom := ""
	if ex.OOMKilled {
		oom = " (out of memory: a process was killed)"
	}
	fmt.Fprintf(stderr, "test-vm: exit code %d%s; step %v; total %v\n", ex.Code, oom, stepTime.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	return ex.Code
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
