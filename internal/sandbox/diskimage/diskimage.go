// Package diskimage bounds a job's workspace: a sparse file of the job's
// disk limit holding an ext4 file system, mounted on the workspace
// directory through a loop device, nosuid and nodev. A step that writes
// past the limit gets "No space left on device", and the host's disk is
// untouched beyond the image's size. The image costs nothing until
// written (sparse), and about 25 ms to make and mount.
package diskimage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/execd/execd/internal/sandbox/mountinfo"
)

// Check reports whether bounded workspaces can be made here: as root,
// with mkfs.ext4 (e2fsprogs) and loop devices.
func Check(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("bounded workspaces need root (loop devices); workspaces are plain directories without a size limit")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		return fmt.Errorf("mkfs.ext4 is missing (apt-get install e2fsprogs): %w", err)
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return fmt.Errorf("no loop devices (/dev/loop-control): %w", err)
	}
	return nil
}

// Mount makes image, a sparse file of size bytes with an ext4 file
// system, and mounts it on dir (an existing directory) nosuid,nodev. The
// file system's root is left as dir was (mode 0777, as a new workspace)
// and without lost+found, which a step would see.
func Mount(ctx context.Context, image, dir string, size int64) error {
	err := Create(ctx, image, size)
	if err == nil {
		if err = MountImage(ctx, image, dir); err != nil {
			_ = os.Remove(image)
		}
	}
	if err != nil {
		return fmt.Errorf("bounded workspace of %d bytes: %w", size, err)
	}
	return nil
}

// Create makes image, a new sparse file of size bytes holding an empty
// ext4 file system whose root anyone may write (mode 0777, as a new
// workspace) and without lost+found, which a step would see.
func Create(ctx context.Context, image string, size int64) error {
	if size < 1<<20 {
		return fmt.Errorf("disk limit of %d bytes is below 1 MiB", size)
	}
	f, err := os.OpenFile(image, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = Format(ctx, image)
	}
	if err != nil {
		_ = os.Remove(image)
		return err
	}
	return nil
}

// Format makes an empty ext4 file system on image, an existing file of
// the file system's size.
func Format(ctx context.Context, image string) error {
	// No reserved blocks: the whole limit is the step's. Lazy
	// initialisation keeps a 20G image's creation at milliseconds. The
	// root's mode is set when mounted: mkfs.ext4 (1.47) has no option
	// for it.
	return run(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", image)
}

// MountImage mounts the file system of image on dir (an existing
// directory) through a loop device, nosuid,nodev, with its root writable
// by anyone and without lost+found.
func MountImage(ctx context.Context, image, dir string) error {
	if err := run(ctx, "mount", "-o", "loop,nosuid,nodev", image, dir); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(dir, "lost+found"))
	if err := os.Chmod(dir, 0o777); err != nil {
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		return err
	}
	return nil
}

// UnmountUnder detaches every mount below dir (not dir itself), deepest
// first: what a killed executor left, before its directory is removed.
func UnmountUnder(dir string) error {
	points, err := mountinfo.Points()
	if err != nil {
		return err
	}
	var under []string
	for _, p := range points {
		if strings.HasPrefix(p, dir+"/") {
			under = append(under, p)
		}
	}
	slices.SortFunc(under, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range under {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// Full reports whether the file system holding path has no space left
// for a step (what a write past the limit leaves).
func Full(path string) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return false
	}
	return st.Bavail*uint64(st.Bsize) < 64<<10
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
