package firecracker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultBinary is the name looked up in PATH when no binary is given.
const DefaultBinary = "firecracker"

const installHint = "install the static release binary (firecracker-vX.Y.Z-x86_64) from " +
	"https://github.com/firecracker-microvm/firecracker/releases as /usr/local/bin/firecracker, or configure its path"

// lookBinary resolves binary, a path or a name in PATH ("" is
// DefaultBinary).
func lookBinary(binary string) (string, error) {
	if binary == "" {
		binary = DefaultBinary
	}
	path, err := exec.LookPath(binary)
	if err != nil {
		return "", fmt.Errorf("firecracker: no usable %q: %w: %s", binary, err, installHint)
	}
	return path, nil
}

// Version runs `binary --version` and returns the version it prints, as
// "v1.16.1" ("Firecracker v1.16.1" is its first line).
func Version(ctx context.Context, binary string) (string, error) {
	path, err := lookBinary(binary)
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && len(exit.Stderr) > 0 {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(exit.Stderr))
		}
		return "", fmt.Errorf("firecracker: %s --version: %w", path, err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	v, ok := strings.CutPrefix(strings.TrimSpace(line), "Firecracker ")
	if !ok || v == "" {
		return "", fmt.Errorf("firecracker: %s --version printed %q, not \"Firecracker v<version>\": is it Firecracker?", path, firstLine(out))
	}
	return v, nil
}

func firstLine(b []byte) string {
	s := bufio.NewScanner(bytes.NewReader(b))
	if s.Scan() {
		return s.Text()
	}
	return ""
}

// Check tells whether this host can run Firecracker VMs: the binary
// (as for [Start]) runs and prints its version, and the KVM device can be
// opened read-write and answers KVM_GET_API_VERSION with the stable API.
// Every problem found is in the error, each with its fix. It cannot tell
// whether a guest will boot on the host's KVM (a nested "PVM" KVM passes
// and then fails to boot ordinary guest kernels).
func Check(ctx context.Context, binary string) error {
	var errs []error
	if _, err := Version(ctx, binary); err != nil {
		errs = append(errs, err)
	}
	if err := checkKVM(kvmDevice); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Test seams: the KVM device and its ioctl.
var (
	kvmDevice     = "/dev/kvm"
	kvmAPIVersion = func(f *os.File) (int, error) {
		return unix.IoctlRetInt(int(f.Fd()), kvmGetAPIVersion)
	}
)

func kvmOpenError(device string, err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("firecracker: %s does not exist: this host offers no KVM. "+
			"Enable virtualisation (VT-x or AMD-V) in the firmware and load kvm_intel or kvm_amd, "+
			"or use a bare-metal or nested-virtualisation instance; without KVM use the QEMU monitor with software emulation", device)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("firecracker: cannot open %s read-write: %w: "+
			"run the executor as root or add its user to the group owning %s (usually kvm)", device, err, device)
	default:
		return fmt.Errorf("firecracker: cannot open %s read-write: %w", device, err)
	}
}

// kvmGetAPIVersion is _IO(KVMIO, 0x00), KVMIO being 0xAE.
const kvmGetAPIVersion = 0xAE00

// kvmStableAPI is the only KVM API version there has been since Linux 2.6.22.
const kvmStableAPI = 12

func checkKVM(device string) error {
	f, err := os.OpenFile(device, os.O_RDWR, 0)
	if err != nil {
		return kvmOpenError(device, err)
	}
	defer f.Close()
	v, err := kvmAPIVersion(f)
	if err != nil {
		return fmt.Errorf("firecracker: %s does not answer KVM_GET_API_VERSION (%w): it is not a KVM device", device, err)
	}
	if v != kvmStableAPI {
		return fmt.Errorf("firecracker: %s has KVM API version %d, want %d", device, v, kvmStableAPI)
	}
	return nil
}
