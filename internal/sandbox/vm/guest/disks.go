//go:build linux

package guest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// validID is the form of a drive ID: what fits a virtio-blk serial (20
// bytes) and is safe in a path.
var validID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,20}$`)

// findDrive returns the block device (/dev/vdX) of the drive whose
// virtio serial is id (QEMU sets it from the drive's ID), or, for
// monitors without serials (Firecracker), the device named id itself
// (vdb). It waits up to a few seconds for the device to appear.
func findDrive(sysBlock, id string) (string, error) {
	if !validID.MatchString(id) {
		return "", fmt.Errorf("refused: %q is not a drive ID", id)
	}
	deadline := time.Now().Add(time.Second)
	for {
		entries, _ := os.ReadDir(sysBlock)
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(sysBlock, e.Name(), "serial"))
			if err == nil && strings.TrimRight(string(b), "\x00\n ") == id {
				return "/dev/" + e.Name(), nil
			}
		}
		if dev := driveByOrder(sysBlock, id); dev != "" {
			return dev, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no drive with the ID %q in the VM (%d block devices)", id, len(entries))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// driveOrder is the value of execd.drives on the kernel command line:
// the drive IDs in attachment order, for monitors without serials.
var driveOrder string

// driveByOrder finds drive id as the monitor attached it: the i-th ID of
// execd.drives is /dev/vd(a+i); an ID that is itself a device name
// (vdb) is that device.
func driveByOrder(sysBlock, id string) string {
	dev := ""
	if strings.HasPrefix(id, "vd") {
		dev = id
	}
	for i, d := range strings.Split(driveOrder, ",") {
		if d == id && i < 26 {
			dev = "vd" + string(rune('a'+i))
		}
	}
	if dev == "" {
		return ""
	}
	if _, err := os.Stat(filepath.Join(sysBlock, dev)); err != nil {
		return ""
	}
	if b, err := os.ReadFile(filepath.Join(sysBlock, dev, "serial")); err == nil && strings.TrimRight(string(b), "\x00\n ") != "" && dev != id {
		return "" // it has a serial, and not this ID
	}
	return "/dev/" + dev
}

// ensureWorkspace mounts the workspace drive id (ext4) at /workspace
// nosuid,nodev, once; "" mounts a tmpfs instead.
func ensureWorkspace(id string) error {
	if w := mounted.workspace; w != nil {
		if *w != id {
			return fmt.Errorf("refused: the workspace is the drive %q, not %q", *w, id)
		}
		return nil
	}
	if err := os.MkdirAll(workspaceDir, 0o755); err != nil {
		return err
	}
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	if id == "" {
		if err := unix.Mount("tmpfs", workspaceDir, "tmpfs", flags, "mode=0777"); err != nil {
			return fmt.Errorf("mount a tmpfs workspace: %w", err)
		}
	} else {
		dev, err := findDrive("/sys/block", id)
		if err != nil {
			return fmt.Errorf("the workspace: %w", err)
		}
		// The host filled the disk after this kernel first read it.
		if err := dropCache(dev); err != nil {
			return fmt.Errorf("the workspace: %w", err)
		}
		if err := unix.Mount(dev, workspaceDir, "ext4", flags, ""); err != nil {
			return fmt.Errorf("mount the workspace %s (ext4) on %s: %w", dev, workspaceDir, err)
		}
	}
	mounted.workspace = &id
	return nil
}

// mountRoot mounts the root drive id read-only (erofs or ext4) afresh
// for each step, and returns where: the host may have pointed the drive
// at another image since the last step (a warm VM's root slot). When
// the host names the content (key, such as the image's digest) and it is
// the mounted one's, the mount, and the cache of what the last step
// read, are kept: a step in the image of the step before costs no
// re-reading of its binaries from the device.
func mountRoot(id, key string) (string, error) {
	<-rootModules
	dir := filepath.Join(rootsDir, id)
	if have, ok := mounted.roots[id]; ok && key != "" && have == key {
		return dir, nil
	}
	if _, ok := mounted.roots[id]; ok {
		// The last step's overlay on it is gone, or going. A lazy
		// unmount would not do: a new mount of the device while the old
		// one lives shares its super block, and so its stale cache.
		if err := unmountRetry(dir); err != nil {
			return "", fmt.Errorf("unmount the last step's root: %w", err)
		}
		delete(mounted.roots, id)
	}
	dev, err := findDrive("/sys/block", id)
	if err != nil {
		return "", fmt.Errorf("the step's root: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := dropCache(dev); err != nil {
		return "", fmt.Errorf("the step's root: %w", err)
	}
	flags := uintptr(unix.MS_RDONLY | unix.MS_NODEV)
	errErofs := unix.Mount(dev, dir, "erofs", flags, "")
	if errErofs != nil {
		if err := unix.Mount(dev, dir, "ext4", flags, "noload"); err != nil {
			return "", fmt.Errorf("mount the step's root %s: neither erofs (%v) nor ext4 (%v)", dev, errErofs, err)
		}
	}
	mounted.roots[id] = key
	return dir, nil
}

// setupOverlay makes a step's root: lower under a writable overlay on a
// fresh tmpfs, with the workspace, /proc, /sys, /dev and a /tmp of its
// own. The caller detaches stepDir (and so all of it) afterwards.
func setupOverlay(lower string) (string, error) {
	if err := os.MkdirAll(stepDir, 0o755); err != nil {
		return "", err
	}
	if err := unix.Mount("tmpfs", stepDir, "tmpfs", 0, "mode=0755"); err != nil {
		return "", fmt.Errorf("mount the step's tmpfs: %w", err)
	}
	upper, work, merged := filepath.Join(stepDir, "upper"), filepath.Join(stepDir, "work"), filepath.Join(stepDir, "merged")
	for _, d := range []string{upper, work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", err
		}
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		return "", fmt.Errorf("mount the step's overlay: %w", err)
	}
	type m struct {
		source, target, fstype string
		flags                  uintptr
		data                   string
	}
	for _, x := range []m{
		{workspaceDir, "workspace", "", unix.MS_BIND | unix.MS_REC, ""},
		{"proc", "proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"/dev", "dev", "", unix.MS_BIND | unix.MS_REC, ""},
		{"tmpfs", "tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	} {
		target := filepath.Join(merged, x.target)
		if fi, err := os.Lstat(target); err == nil && !fi.IsDir() {
			os.Remove(target)
		}
		if err := os.MkdirAll(target, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("make /%s in the step's root: %w", x.target, err)
		}
		if err := unix.Mount(x.source, target, x.fstype, x.flags, x.data); err != nil {
			return "", fmt.Errorf("mount /%s in the step's root: %w", x.target, err)
		}
	}
	if resolvConf != "" {
		rc := filepath.Join(merged, "etc/resolv.conf")
		os.MkdirAll(filepath.Dir(rc), 0o755)
		os.Remove(rc) // a symlink into /run, as systemd images have
		if err := os.WriteFile(rc, []byte(resolvConf), 0o644); err != nil {
			return "", fmt.Errorf("write the step's /etc/resolv.conf: %w", err)
		}
	}
	return merged, nil
}

// unmountRetry unmounts dir, retrying for a second while it is busy.
func unmountRetry(dir string) error {
	deadline := time.Now().Add(time.Second)
	for {
		err := unix.Unmount(dir, 0)
		if err != unix.EBUSY || time.Now().After(deadline) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dropCache drops the kernel's cache of a block device's content, which
// the host may have changed since (BLKFLSBUF).
func dropCache(dev string) error {
	f, err := os.Open(dev)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0); err != nil {
		return fmt.Errorf("drop the cache of %s: %w", dev, err)
	}
	return nil
}
