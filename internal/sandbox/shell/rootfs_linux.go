package shell

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Paths inside the sandbox.
const (
	// sandboxWorkspace is where the job's workspace is mounted.
	sandboxWorkspace = "/workspace"
	// sandboxHome is the step's HOME: the private /tmp, since nothing
	// else but the workspace is writable.
	sandboxHome = "/tmp"
	// sandboxPath is the step's default PATH.
	sandboxPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Paths of the init while it builds the sandbox, in its private mount
// namespace.
const (
	// stageDir is the host directory the init mounts its staging tmpfs
	// on and pivots into. It must exist; the mount hides it from nothing
	// but the init itself.
	stageDir = "/tmp"
	// hostDir is where the host's tree stays reachable on the stage,
	// until the init pivots into newDir and detaches it.
	hostDir = "/host"
	// newDir is the sandbox's root on the stage.
	newDir = "/new"
)

// setUpFilesystem replaces the init's view of the host with the sandbox's:
// a read-only tmpfs root with the host's system directories read-only,
// a generated /etc, a private /tmp, the workspace, a minimal /dev and a
// /proc of the sandbox's PID namespace. Nothing else of the host stays
// reachable.
func setUpFilesystem(cfg *initConfig) error {
	// Read what the sandbox copies from the host's /etc while absolute
	// symbolic links (resolv.conf -> /run/...) still resolve.
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read /etc/resolv.conf: %w", err)
	}
	// Nothing mounted here may propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := pivotToStage(); err != nil {
		return err
	}
	steps := []func() error{
		func() error { return mountSystemDirs() },
		func() error { return makeEtc(cfg, resolv) },
		func() error { return mountTmpfs(newDir+"/tmp", "mode=1777") },
		func() error { return mountWorkspace(cfg.Workspace) },
		func() error { return makeDev() },
		func() error { return mountProc() },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return enterNewRoot()
}

// pivotToStage makes a staging tmpfs the init's root, with the host tree
// at hostDir and an empty tmpfs for the sandbox's root at newDir. Staging
// keeps every host path reachable while the sandbox is built, even one
// that a sandbox mount would hide (a workspace under /tmp).
func pivotToStage() error {
	if err := unix.Mount("tmpfs", stageDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size=64k"); err != nil {
		return fmt.Errorf("mount staging tmpfs: %w", err)
	}
	if err := os.Chdir(stageDir); err != nil {
		return fmt.Errorf("enter staging tmpfs: %w", err)
	}
	for _, d := range []string{"." + hostDir, "." + newDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return fmt.Errorf("staging: %w", err)
		}
	}
	if err := unix.PivotRoot(".", "."+hostDir); err != nil {
		return fmt.Errorf("pivot into staging tmpfs: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", newDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m"); err != nil {
		return fmt.Errorf("mount root tmpfs: %w", err)
	}
	return nil
}

// enterNewRoot pivots into the sandbox's root, detaches the stage and the
// host tree under it, and makes the root read-only.
func enterNewRoot() error {
	if err := unix.Unmount(hostDir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach host tree: %w", err)
	}
	if err := os.Chdir(newDir); err != nil {
		return err
	}
	// pivot_root(".", ".") stacks the stage on top of the new root, from
	// where it can be detached (pivot_root(2)).
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot into sandbox root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach staging tmpfs: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	// The step writes only in /workspace, /tmp and /dev/shm, which are
	// mounts of their own.
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("make root read-only: %w", err)
	}
	return nil
}

// mountSystemDirs bind-mounts the host's system directories read-only,
// without set-user-ID or devices. Those that are symbolic links on the
// host, as on merged-/usr systems (/bin -> usr/bin), are recreated as the
// same links.
func mountSystemDirs() error {
	for _, name := range []string{"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"} {
		src, dst := filepath.Join(hostDir, name), filepath.Join(newDir, name)
		fi, err := os.Lstat(src)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return fmt.Errorf("system directory: %w", err)
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return fmt.Errorf("system directory: %w", err)
			}
			if err := os.Symlink(target, dst); err != nil {
				return fmt.Errorf("system directory: %w", err)
			}
		case fi.IsDir():
			if err := os.Mkdir(dst, 0o755); err != nil {
				return fmt.Errorf("system directory: %w", err)
			}
			if err := bindMount(src, dst, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV); err != nil {
				return err
			}
		}
	}
	return nil
}

// makeEtc writes the sandbox's /etc: users and groups that know only root
// and the sandbox user, hosts, resolv.conf (useless without a network, but
// expected), and nsswitch.conf reading files only. The host's
// /etc/alternatives and /etc/ld.so.cache are bound read-only: without them
// Debian's awk, which and other alternatives break and libraries in
// ld.so.conf.d directories are not found. No other host file, no
// shadow, no keys.
func makeEtc(cfg *initConfig, resolv []byte) error {
	etc := filepath.Join(newDir, "etc")
	if err := os.Mkdir(etc, 0o755); err != nil {
		return fmt.Errorf("/etc: %w", err)
	}
	files := map[string]string{
		"passwd":        passwdFile(cfg.UID),
		"group":         groupFile(cfg.GID),
		"hosts":         "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + cfg.Hostname + "\n",
		"nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
	}
	if resolv != nil {
		files["resolv.conf"] = string(resolv)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("/etc: %w", err)
		}
	}
	for _, name := range []string{"alternatives", "ld.so.cache"} {
		if err := bindHostPath(filepath.Join(hostDir, "etc", name), filepath.Join(etc, name)); err != nil {
			return err
		}
	}
	return nil
}

// passwdFile returns /etc/passwd for a step run as uid (-1: root of a user
// namespace). The sandbox user's home is the writable /tmp.
func passwdFile(uid int) string {
	if uid < 0 || uid == 0 {
		return "root:x:0:0:sandbox user:" + sandboxHome + ":/bin/sh\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
	}
	name := "sandbox"
	if uid == 65534 {
		name = "nobody"
	}
	return "root:x:0:0:root:/root:/usr/sbin/nologin\n" +
		fmt.Sprintf("%s:x:%d:%d:sandbox user:%s:/bin/sh\n", name, uid, uid, sandboxHome)
}

// groupFile returns /etc/group for a step run as gid (-1: root of a user
// namespace).
func groupFile(gid int) string {
	s := "root:x:0:\n"
	switch {
	case gid < 0 || gid == 0 || gid == 65534:
		return s + "nogroup:x:65534:\n"
	default:
		return s + fmt.Sprintf("sandbox:x:%d:\nnogroup:x:65534:\n", gid)
	}
}

// mountWorkspace binds the workspace read-write, without set-user-ID or
// devices, at sandboxWorkspace.
func mountWorkspace(workspace string) error {
	dst := filepath.Join(newDir, sandboxWorkspace)
	if err := os.Mkdir(dst, 0o755); err != nil {
		return fmt.Errorf("workspace: %w", err)
	}
	return bindMount(filepath.Join(hostDir, workspace), dst, unix.MS_NOSUID|unix.MS_NODEV)
}

// makeDev builds a minimal read-only /dev: the host's null, zero, full,
// random, urandom and tty bound in, the usual links to /proc, and a
// private tmpfs /dev/shm.
func makeDev() error {
	dev := filepath.Join(newDir, "dev")
	if err := os.Mkdir(dev, 0o755); err != nil {
		return fmt.Errorf("/dev: %w", err)
	}
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
		return fmt.Errorf("/dev: %w", err)
	}
	for _, name := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		if err := bindHostPath(filepath.Join(hostDir, "dev", name), filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	links := [][2]string{{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"}}
	for _, l := range links {
		if err := os.Symlink(l[1], filepath.Join(dev, l[0])); err != nil {
			return fmt.Errorf("/dev: %w", err)
		}
	}
	if err := mountTmpfs(filepath.Join(dev, "shm"), "mode=1777"); err != nil {
		return err
	}
	if err := unix.Mount("", dev, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("/dev: make read-only: %w", err)
	}
	return nil
}

// mountProc mounts a /proc of the sandbox's PID namespace, with
// /proc/sys read-only.
func mountProc() error {
	proc := filepath.Join(newDir, "proc")
	if err := os.Mkdir(proc, 0o555); err != nil {
		return fmt.Errorf("/proc: %w", err)
	}
	if err := unix.Mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	sys := filepath.Join(proc, "sys")
	return bindMount(sys, sys, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC)
}

// mountTmpfs makes dir and mounts a tmpfs, without set-user-ID or
// devices, on it. Its pages count against the job's memory limit.
func mountTmpfs(dir, options string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("tmpfs %s: %w", dir, err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, options); err != nil {
		return fmt.Errorf("tmpfs %s: %w", dir, err)
	}
	return nil
}

// bindHostPath binds the host file or directory src read-only at dst,
// creating dst; a missing src is skipped.
func bindHostPath(src, dst string) error {
	fi, err := os.Stat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	if fi.IsDir() {
		err = os.Mkdir(dst, 0o755)
	} else {
		err = os.WriteFile(dst, nil, 0o644)
	}
	if err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	flags := uintptr(unix.MS_RDONLY | unix.MS_NOSUID)
	if fi.Mode()&fs.ModeDevice != 0 {
		flags = 0 // device nodes: read-only would not stop writes to them anyway
	}
	return bindMount(src, dst, flags)
}

// bindMount binds src (not its submounts) at dst with flags. It keeps the
// flags the source mount has: in a user namespace the kernel locks them,
// and a remount that drops one fails.
func bindMount(src, dst string, flags uintptr) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	if flags == 0 {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dst, &st); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	if err := unix.Mount("", dst, "", unix.MS_REMOUNT|unix.MS_BIND|flags|mountFlags(int64(st.Flags)), ""); err != nil {
		return fmt.Errorf("bind %s: remount: %w", src, err)
	}
	return nil
}

// mountFlags translates statfs(2) flags into the mount(2) flags that a
// bind remount must repeat.
func mountFlags(statfs int64) uintptr {
	// ST_* values from <sys/statvfs.h>.
	pairs := [][2]int64{
		{1, unix.MS_RDONLY}, {2, unix.MS_NOSUID}, {4, unix.MS_NODEV}, {8, unix.MS_NOEXEC},
		{1024, unix.MS_NOATIME}, {2048, unix.MS_NODIRATIME}, {4096, unix.MS_RELATIME},
	}
	var flags uintptr
	for _, p := range pairs {
		if statfs&p[0] != 0 {
			flags |= uintptr(p[1])
		}
	}
	return flags
}
