//go:build linux

// Package slot gives a running virtual machine a read-only disk whose
// content the host swaps between steps: a loop device, bound read-only to
// an image file, that the machine's monitor opens once at boot, and that
// the host re-points to another image with LOOP_CHANGE_FD. A machine
// booted ahead of its job (the warm pool) thus receives the job's step
// images without device hotplug, which QEMU's microvm lacks.
//
// The kernel changes a loop device's file only when both files have the
// same size: every image is padded (sparse, costing nothing) to [Size].
// A file system image does not mind the space after it.
//
// After a swap, reads must not come from caches of the old content: the
// host drops the loop device's buffer cache here, the monitor opens the
// device with O_DIRECT (QEMU cache=none), and the guest drops its own
// before it mounts the disk (BLKFLSBUF).
package slot

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Size is the size of every image a slot holds: far above any container
// image's root file system.
const Size = 256 << 30

// loopChangeFD is LOOP_CHANGE_FD, which x/sys/unix does not name.
const loopChangeFD = 0x4C06

// Slot is a read-only loop device. Its methods are safe for concurrent
// use.
type Slot struct {
	mu     sync.Mutex
	dev    *os.File // open for as long as the slot is bound
	path   string
	closed bool
}

// Pad makes image [Size] bytes long, sparse, if it is shorter, so that a
// slot can hold it. It fails for an image above Size.
func Pad(image string) error {
	fi, err := os.Stat(image)
	if err != nil {
		return err
	}
	switch {
	case fi.Size() == Size:
		return nil
	case fi.Size() > Size:
		return fmt.Errorf("image %s is %d bytes, above a slot's %d", image, fi.Size(), int64(Size))
	}
	return os.Truncate(image, Size)
}

// New binds a free loop device read-only to image, which it pads to Size.
func New(image string) (*Slot, error) {
	if err := Pad(image); err != nil {
		return nil, fmt.Errorf("slot: %w", err)
	}
	f, err := os.Open(image)
	if err != nil {
		return nil, fmt.Errorf("slot: %w", err)
	}
	defer f.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("slot: loop devices: %w", err)
	}
	defer ctl.Close()
	// Another process may take the free device first: try again.
	for range 10 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("slot: find a free loop device: %w", err)
		}
		path := fmt.Sprintf("/dev/loop%d", n)
		dev, err := os.OpenFile(path, os.O_RDONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("slot: %w", err)
		}
		cfg := unix.LoopConfig{Fd: uint32(f.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if errors.Is(err, unix.EBUSY) {
			dev.Close()
			continue
		}
		if err != nil {
			dev.Close()
			return nil, fmt.Errorf("slot: bind %s to %s: %w", path, image, err)
		}
		return &Slot{dev: dev, path: path}, nil
	}
	return nil, errors.New("slot: every free loop device was taken by another process first")
}

// Device is the loop device's path, for the monitor to open.
func (s *Slot) Device() string { return s.path }

// Swap re-points the slot to image, which it pads to Size.
func (s *Slot) Swap(image string) error {
	if err := Pad(image); err != nil {
		return fmt.Errorf("slot: %w", err)
	}
	f, err := os.Open(image)
	if err != nil {
		return fmt.Errorf("slot: %w", err)
	}
	defer f.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("slot: swap on a closed slot")
	}
	if err := unix.IoctlSetInt(int(s.dev.Fd()), loopChangeFD, int(f.Fd())); err != nil {
		return fmt.Errorf("slot: point %s to %s: %w", s.path, image, err)
	}
	if err := unix.IoctlSetInt(int(s.dev.Fd()), unix.BLKFLSBUF, 0); err != nil {
		return fmt.Errorf("slot: drop the cache of %s: %w", s.path, err)
	}
	return nil
}

// Close releases the slot: the loop device unbinds once the monitor,
// too, has closed it (autoclear). It is idempotent.
func (s *Slot) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.dev.Close()
}
