package firecracker_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/execd/execd/internal/sandbox/vm/firecracker"
)

func TestVersion(t *testing.T) {
	ctx := testContext(t)
	h := newFake(t, fakeConfig{})
	if v, err := firecracker.Version(ctx, h.bin); v != "v1.16.1" || err != nil {
		t.Errorf("Version() = %q, %v, want v1.16.1", v, err)
	}
	if _, err := firecracker.Version(ctx, "/bin/true"); err == nil {
		t.Error("Version of /bin/true succeeded")
	} else {
		checkContains(t, "error", err.Error(), "is it Firecracker?")
	}
	_, err := firecracker.Version(ctx, filepath.Join(h.dir, "missing"))
	checkContains(t, "error", fmt.Sprint(err), "no usable", "https://github.com/firecracker-microvm/firecracker/releases")
}

func TestCheck(t *testing.T) {
	ctx := testContext(t)
	h := newFake(t, fakeConfig{})
	kvm := h.file(t, "kvm")
	stable := func(*os.File) (int, error) { return 12, nil }

	t.Run("usable", func(t *testing.T) {
		defer firecracker.SetKVM(kvm, stable)()
		if err := firecracker.Check(ctx, h.bin); err != nil {
			t.Errorf("Check() = %v, want nil", err)
		}
	})
	t.Run("binary found in PATH", func(t *testing.T) {
		defer firecracker.SetKVM(kvm, stable)()
		t.Setenv("PATH", h.dir)
		if err := firecracker.Check(ctx, ""); err != nil {
			t.Errorf("Check() = %v, want nil", err)
		}
	})
	t.Run("neither binary nor KVM", func(t *testing.T) {
		defer firecracker.SetKVM(filepath.Join(h.dir, "no-kvm"), stable)()
		t.Setenv("PATH", t.TempDir())
		err := firecracker.Check(ctx, "")
		checkContains(t, "error", fmt.Sprint(err),
			`no usable "firecracker"`, "firecracker/releases",
			"no-kvm does not exist: this host offers no KVM", "QEMU monitor")
	})
	t.Run("not a KVM device", func(t *testing.T) {
		defer firecracker.SetKVM("/dev/null", nil)()
		err := firecracker.Check(ctx, h.bin)
		checkContains(t, "error", fmt.Sprint(err), "/dev/null does not answer KVM_GET_API_VERSION", "not a KVM device")
	})
	t.Run("unknown KVM API", func(t *testing.T) {
		defer firecracker.SetKVM(kvm, func(*os.File) (int, error) { return 11, nil })()
		err := firecracker.Check(ctx, h.bin)
		checkContains(t, "error", fmt.Sprint(err), "KVM API version 11, want 12")
	})
	t.Run("permission denied", func(t *testing.T) {
		err := firecracker.KVMOpenError("/dev/kvm", &fs.PathError{Op: "open", Path: "/dev/kvm", Err: syscall.EACCES})
		checkContains(t, "error", err.Error(), "cannot open /dev/kvm read-write", "permission denied", "group owning /dev/kvm (usually kvm)")
		if os.Geteuid() != 0 { // root may open any file: the mapping above covers it
			if err := os.Chmod(kvm, 0); err != nil {
				t.Fatal(err)
			}
			defer firecracker.SetKVM(kvm, stable)()
			if err := firecracker.Check(ctx, h.bin); !errors.Is(err, os.ErrPermission) {
				t.Errorf("Check() with an unreadable device = %v, want permission denied", err)
			}
		}
	})
}
