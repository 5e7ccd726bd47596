//go:build linux

// Package guest is the agent inside a job's virtual machine: the init
// (PID 1) of the initramfs that `executor install vm` builds, as the
// program cmd/execd-vm-agent. It mounts /proc, /sys and /dev, loads the
// kernel modules shipped in the initramfs, opens its channel to the host
// (a virtio-serial port named [PortName], or vsock), says Hello and runs
// the host's steps (package agent) until told to shut down. It never
// exits: PID 1 exiting panics the kernel, so every way out powers the
// VM off.
package guest

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// PortName is the name of the virtio-serial port of the agent's channel.
const PortName = "org.execd.agent"

// resolvConf is the steps' /etc/resolv.conf; "" leaves the image's.
var resolvConf string

// ModulesDir holds the kernel modules the initramfs ships, flat.
const ModulesDir = "/lib/modules"

// Main is the agent's main function. It does not return.
func Main() {
	defer func() {
		if r := recover(); r != nil {
			logf("panic: %v\n%s", r, debug.Stack())
		}
		powerOff()
	}()
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "execd-vm-agent: this is the init of the executor's VM guest; it runs as PID 1 inside the VM only")
		os.Exit(2)
	}
	if err := run(); err != nil {
		logf("%v", err)
	}
}

func run() error {
	start := time.Now()
	if err := mountBasics(); err != nil {
		return err
	}
	// The vsock modules serve Firecracker's channel only: loading them
	// cost 30 to 60 ms of a boot under emulation.
	cmdline, _ := os.ReadFile("/proc/cmdline")
	_, vsock := cmdlineValue(string(cmdline), "execd.vsock")
	driveOrder, _ = cmdlineValue(string(cmdline), "execd.drives")
	// Nor the network's when the machine has none (no execd.ip): each
	// module costs tens of milliseconds of the boot under emulation.
	_, network := cmdlineValue(string(cmdline), "execd.ip")
	skip := func(name string) bool {
		return !vsock && strings.Contains(name, "vsock") || !network && strings.Contains(name, "failover") || !network && strings.Contains(name, "virtio_net")
	}
	// The root file systems' modules are not needed to say Hello: they
	// load meanwhile (the host prepares the job's disks then), and the
	// first step that mounts a root waits for them.
	rootFS := func(name string) bool {
		return strings.Contains(name, "erofs") || strings.Contains(name, "overlay") || strings.Contains(name, "crc32c")
	}
	if n, err := loadModules(ModulesDir, func(name string) bool { return skip(name) || rootFS(name) }); err != nil {
		logf("modules: %v", err)
	} else {
		logf("loaded %d modules in %v", n, time.Since(start).Round(time.Millisecond))
	}
	go func() {
		defer close(rootModules)
		if _, err := loadModules(ModulesDir, func(name string) bool { return !rootFS(name) }); err != nil {
			logf("root file system modules: %v", err)
		}
	}()
	rc, err := setupNetwork(string(cmdline))
	if err != nil {
		// Steps run, and find out: the job's network is broken, not the VM.
		logf("network: %v", err)
	}
	resolvConf = rc
	writeResolvConf(rc)
	ch, err := openChannel(10 * time.Second)
	if err != nil {
		return err
	}
	s := newServer(ch)
	return s.serve()
}

// rootModules is closed once the modules of the steps' root file
// systems (erofs, overlay) are loaded.
var rootModules = make(chan struct{})

// mountBasics mounts the kernel's file systems and a tmpfs on /tmp and
// /run.
func mountBasics() error {
	for _, m := range []struct{ fstype, target string }{
		{"devtmpfs", "/dev"},
		{"proc", "/proc"},
		{"sysfs", "/sys"},
		{"tmpfs", "/run"},
		{"tmpfs", "/tmp"},
	} {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return err
		}
		flags := uintptr(unix.MS_NOSUID)
		if m.fstype != "devtmpfs" {
			flags |= unix.MS_NODEV
		}
		if err := unix.Mount(m.fstype, m.target, m.fstype, flags, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

// loadModules loads the .ko files of dir but those skip says. It loads
// in passes until a pass loads nothing new, for the modules may come
// without their dependency order; modules already present (built in,
// or loaded) are fine.
func loadModules(dir string, skip func(name string) bool) (int, error) {
	all, err := filepath.Glob(filepath.Join(dir, "*.ko"))
	if err != nil || len(all) == 0 {
		return 0, err
	}
	var paths []string
	for _, p := range all {
		if !skip(filepath.Base(p)) {
			paths = append(paths, p)
		}
	}
	loaded := 0
	var lastErr error
	for len(paths) > 0 {
		var left []string
		for _, p := range paths {
			err := loadModule(p)
			switch err {
			case nil:
				loaded++
			case unix.EEXIST:
			default:
				left = append(left, p)
				lastErr = fmt.Errorf("%s: %w", filepath.Base(p), err)
			}
		}
		if len(left) == len(paths) {
			return loaded, fmt.Errorf("%d modules did not load, last: %v", len(left), lastErr)
		}
		paths = left
	}
	return loaded, nil
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.FinitModule(int(f.Fd()), "", 0)
}

// powerOff syncs, unmounts what it can and powers the VM off.
func powerOff() {
	unmountAll()
	unix.Sync()
	for {
		unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		time.Sleep(time.Second)
	}
}

// unmountAll detaches the step and disk mounts; the disks are synced.
func unmountAll() {
	unix.Unmount(stepDir, unix.MNT_DETACH)
	unix.Unmount(workspaceDir, 0)
	roots, _ := filepath.Glob(filepath.Join(rootsDir, "*"))
	for _, r := range roots {
		unix.Unmount(r, unix.MNT_DETACH)
	}
	unix.Sync()
}

// logf writes a line to the console (the kernel's log, which the host
// keeps for its error messages).
func logf(format string, args ...any) {
	line := fmt.Sprintf("execd-vm-agent: "+format+"\n", args...)
	if f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
		io.WriteString(f, line)
		f.Close()
		return
	}
	os.Stderr.WriteString(line)
}
