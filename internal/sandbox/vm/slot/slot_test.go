//go:build linux

package slot_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/execd/execd/internal/sandbox/vm/slot"
	"github.com/execd/execd/internal/testutil"
)

// image writes a small image whose first block is filled with b.
func image(t *testing.T, b byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), string(b)+".img")
	if err := os.WriteFile(p, bytes.Repeat([]byte{b}, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// readDirect reads the first block of an open device, bypassing the
// host's caches as the monitor does (O_DIRECT needs an aligned buffer).
func readDirect(t *testing.T, f *os.File) byte {
	t.Helper()
	buf, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(buf)
	if _, err := unix.Pread(int(f.Fd()), buf, 0); err != nil {
		t.Fatal(err)
	}
	return buf[0]
}

func needLoop(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.Missing(t, "namespaces", "loop devices need root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		testutil.Missing(t, "namespaces", "no /dev/loop-control: "+err.Error())
	}
}

// TestSlot_Swap: a device opened before the swap (as a running VM's
// monitor holds it) reads the new image after it, whatever the images'
// sizes; the device is read-only.
func TestSlot_Swap(t *testing.T) {
	needLoop(t)
	a, b := image(t, 'A'), image(t, 'B')
	s, err := slot.New(a)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	vm, err := os.OpenFile(s.Device(), os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	if got := readDirect(t, vm); got != 'A' {
		t.Fatalf("slot reads %q, want A", got)
	}
	if err := s.Swap(b); err != nil {
		t.Fatal(err)
	}
	if got := readDirect(t, vm); got != 'B' {
		t.Errorf("after Swap the open device reads %q, want B", got)
	}
	if err := s.Swap(a); err != nil {
		t.Fatal(err)
	}
	if got := readDirect(t, vm); got != 'A' {
		t.Errorf("after swapping back the open device reads %q, want A", got)
	}
	if w, err := os.OpenFile(s.Device(), os.O_WRONLY, 0); err == nil {
		_, err = w.Write([]byte("x"))
		if err == nil {
			err = w.Sync()
		}
		w.Close()
		if err == nil {
			t.Error("a write to the slot's device succeeded")
		}
	}
	for _, p := range []string{a, b} {
		if fi, err := os.Stat(p); err != nil || fi.Size() != slot.Size {
			t.Errorf("%s: size %v, %v; want padded to %d", p, fi.Size(), err, int64(slot.Size))
		}
	}
}

// TestSlot_Close: the loop device unbinds once its last user closed it.
func TestSlot_Close(t *testing.T) {
	needLoop(t)
	s, err := slot.New(image(t, 'A'))
	if err != nil {
		t.Fatal(err)
	}
	dev := s.Device()
	vm, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Swap(image(t, 'B')); err == nil {
		t.Error("Swap after Close: no error")
	}
	if info, err := unix.IoctlLoopGetStatus64(int(vm.Fd())); err != nil || info == nil {
		t.Errorf("the device unbound while the monitor still held it: %v", err)
	}
	vm.Close()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := unix.IoctlLoopGetStatus64(int(f.Fd())); err == nil {
		t.Errorf("%s is still bound after its users closed it", dev)
	}
}

func TestPad_TooBig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, slot.Size+1); err != nil {
		t.Fatal(err)
	}
	if err := slot.Pad(p); err == nil {
		t.Error("Pad of an image above Size: no error")
	}
}
