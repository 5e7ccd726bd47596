// Package vmtest makes the guest of the VM tests: the installed kernel
// and modules (executor install vm) with an initramfs holding this
// source tree's agent, so that a test never runs another tree's agent.
package vmtest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/execd/execd/internal/install/vmguest"
	"github.com/execd/execd/internal/testutil"
)

// Guest is a guest's files: Dir holds vmlinux and initramfs.cpio.
type Guest struct {
	Dir, Kernel, Initramfs, KernelRelease string
}

var (
	once  sync.Once
	guest Guest
	err   error
	part  bool // err is a missing part, not a failure
)

// InstalledDir is the installed guest whose kernel and modules the
// tests use: EXECD_VM_GUEST_DIR, or the default.
func InstalledDir() string {
	if d := os.Getenv("EXECD_VM_GUEST_DIR"); d != "" {
		return d
	}
	return vmguest.DefaultDir
}

// Need returns the test binary's guest, made once, skipping the test
// (failing it in CI) when QEMU, the tools or the installed kernel are
// missing.
func Need(t testing.TB) Guest {
	t.Helper()
	once.Do(func() { guest, err, part = build() })
	if err != nil {
		if part {
			testutil.Missing(t, "qemu", err.Error())
		}
		t.Fatal(err)
	}
	return guest
}

func build() (Guest, error, bool) {
	for _, p := range []string{"qemu-system-x86_64", "mkfs.ext4", "mkfs.erofs", "debugfs", "go"} {
		if _, err := exec.LookPath(p); err != nil {
			return Guest{}, errors.New(p + " is not installed (executor install vm)"), true
		}
	}
	dir := InstalledDir()
	kernel, _, err := vmguest.Installed(dir)
	if err != nil {
		return Guest{}, err, true
	}
	m, err := vmguest.ReadManifest(dir)
	if err != nil {
		return Guest{}, err, true
	}
	mods, err := vmguest.InstalledModules(dir)
	if err != nil {
		return Guest{}, err, false
	}
	bb := vmguest.StaticBusybox("/bin/busybox")
	if bb == nil {
		return Guest{}, errors.New("no static /bin/busybox (apt-get install busybox-static)"), true
	}
	tmp, err := os.MkdirTemp("", "execd-vm-test-")
	if err != nil {
		return Guest{}, err, false
	}
	bin := filepath.Join(tmp, "agent")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "github.com/execd/execd/cmd/execd-vm-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return Guest{}, errors.New("build the agent: " + err.Error() + ": " + string(out)), false
	}
	agentBin, err := os.ReadFile(bin)
	if err != nil {
		return Guest{}, err, false
	}
	g := Guest{Dir: tmp, Kernel: filepath.Join(tmp, "vmlinux"), Initramfs: filepath.Join(tmp, "initramfs.cpio"), KernelRelease: m.KernelRelease}
	if err := os.Symlink(kernel, g.Kernel); err != nil {
		return Guest{}, err, false
	}
	if err := (vmguest.Initramfs{Agent: agentBin, Modules: mods, Busybox: bb}).WriteFile(g.Initramfs); err != nil {
		return Guest{}, err, false
	}
	return g, nil, false
}
