package executor

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// The KVM ioctls that tell whether KVM can run a VM.
const (
	kvmGetAPIVersion = 0xAE00 // _IO(KVMIO, 0x00)
	kvmCreateVM      = 0xAE01 // _IO(KVMIO, 0x01)
	kvmAPIVersion    = 12     // the only stable KVM API
)

// checkKVM reports whether the KVM device at path can run virtual
// machines, as the reference's guide checks before installing
// firecracker: the device exists, opens read-write, speaks the stable
// API and creates a VM. The error says what is missing and how to get it.
func checkKVM(path string) error {
	const fix = "firecracker needs hardware virtualization: a bare-metal instance, or nested virtualization enabled for this VM"
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s does not exist (no KVM: %s; the kvm_intel or kvm_amd module must be loaded)", path, fix)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%s cannot be opened (%w): run the executor as root or in the kvm group", path, err)
	case err != nil:
		return fmt.Errorf("%s cannot be opened: %w", path, err)
	}
	defer f.Close()
	version, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), kvmGetAPIVersion, 0)
	if errno != 0 || version != kvmAPIVersion {
		return fmt.Errorf("%s does not speak the KVM API (KVM_GET_API_VERSION: %d, %v): %s", path, version, errno, fix)
	}
	vm, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), kvmCreateVM, 0)
	if errno != 0 {
		return fmt.Errorf("%s cannot create a VM (KVM_CREATE_VM: %v): %s", path, errno, fix)
	}
	unix.Close(int(vm))
	return nil
}
