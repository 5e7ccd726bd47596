package rootfs_test

import (
	"archive/tar"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/execd/execd/internal/sandbox/vm/rootfs"
	"github.com/execd/execd/internal/testutil"
)

// needFormat skips (or in CI fails) a test of format f when its mkfs tool
// is missing.
func needFormat(t testing.TB, f rootfs.Format) {
	t.Helper()
	tool := map[rootfs.Format]string{rootfs.FormatErofs: "mkfs.erofs", rootfs.FormatExt4: "mkfs.ext4"}[f]
	if _, err := exec.LookPath(tool); err != nil {
		part := map[rootfs.Format]string{rootfs.FormatErofs: "erofs", rootfs.FormatExt4: "e2fsprogs"}[f]
		testutil.Missing(t, part, tool+" is not installed: apt-get install erofs-utils e2fsprogs")
	}
}

// mountImage mounts a root file system image read-only on a loop device,
// until the test ends.
func mountImage(t *testing.T, f rootfs.Format, image string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", string(f), "-o", "loop,ro", image, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("mount %s image: %v: %s", f, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	})
	return dir
}

// sampleLayers is a small image with what a root file system must keep.
func sampleLayers() [][]entry {
	return [][]entry{
		{
			dir("bin"), {name: "bin/sh", body: "#!elf", mode: 0o755},
			{name: "bin/su", body: "elf", mode: 0o4755},
			{name: "usr/bin/wall", body: "elf", mode: 0o2755, gid: 5},
			{name: "tmp", typ: tar.TypeDir, mode: 0o1777},
			{name: "home/u", typ: tar.TypeDir, mode: 0o750, uid: 1000, gid: 1000},
			{name: "home/u/.profile", body: "export A=1\n", mode: 0o600, uid: 1000, gid: 1000},
			{name: "etc/gone", body: "x", mode: 0o644},
			{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
			{name: "big", body: strings.Repeat("0123456789abcdef", 64<<10), mode: 0o644},
			{name: "attr", body: "a", mode: 0o644, xattrs: map[string]string{"user.execd": "yes"}},
		},
		{
			hardlink("bin/sh2", "bin/sh"), symlink("bin/link", "/bin/sh"), file("etc/.wh.gone", ""),
		},
	}
}

func TestMakeImage(t *testing.T) {
	needRoot(t)
	for _, tt := range []struct {
		f           rootfs.Format
		compression string
	}{{rootfs.FormatErofs, ""}, {rootfs.FormatErofs, "lz4"}, {rootfs.FormatErofs, "lz4hc"}, {rootfs.FormatExt4, ""}} {
		f := tt.f
		t.Run(string(f)+tt.compression, func(t *testing.T) {
			needFormat(t, f)
			tree := t.TempDir()
			os.Chmod(tree, 0o755)
			if err := rootfs.Flatten(context.Background(), imageOf(t, sampleLayers()...), tree); err != nil {
				t.Fatal(err)
			}
			image := filepath.Join(t.TempDir(), "rootfs."+string(f))
			if err := rootfs.MakeImage(context.Background(), f, tree, image, rootfs.MakeOptions{Compression: tt.compression}); err != nil {
				t.Fatalf("MakeImage() = %v", err)
			}
			checkSample(t, mountImage(t, f, image))
		})
	}
}

// checkSample checks a mounted image of sampleLayers.
func checkSample(t *testing.T, root string) {
	t.Helper()
	mode(t, root, ".", unix.S_IFDIR|0o755, 0, 0)
	content(t, root, "bin/sh", "#!elf")
	mode(t, root, "bin/sh", unix.S_IFREG|0o755, 0, 0)
	mode(t, root, "bin/su", unix.S_IFREG|0o4755, 0, 0)
	mode(t, root, "usr/bin/wall", unix.S_IFREG|0o2755, 0, 5)
	mode(t, root, "usr/bin", unix.S_IFDIR|0o755, 0, 0) // made for wall, whatever the umask
	mode(t, root, "tmp", unix.S_IFDIR|0o1777, 0, 0)
	mode(t, root, "home/u", unix.S_IFDIR|0o750, 1000, 1000)
	mode(t, root, "home/u/.profile", unix.S_IFREG|0o600, 1000, 1000)
	content(t, root, "big", strings.Repeat("0123456789abcdef", 64<<10))
	absent(t, root, "etc/gone")
	absent(t, root, "etc/.wh.gone")
	linkTo(t, root, "bin/link", "/bin/sh")
	if a, b := stat(t, root, "bin/sh"), stat(t, root, "bin/sh2"); a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("bin/sh and bin/sh2: inodes %d and %d, links %d; want one inode with 2 links", a.Ino, b.Ino, a.Nlink)
	}
	if st := stat(t, root, "dev/null"); st.Mode != unix.S_IFCHR|0o666 || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		t.Errorf("dev/null: mode %o device %d:%d, want char 0666 1:3", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	buf := make([]byte, 16)
	if n, err := unix.Lgetxattr(filepath.Join(root, "attr"), "user.execd", buf); err != nil || string(buf[:n]) != "yes" {
		t.Errorf("attr's user.execd = %q, %v; want yes", buf[:max(n, 0)], err)
	}
	if err := os.WriteFile(filepath.Join(root, "new"), nil, 0o644); err == nil {
		t.Error("wrote a file in the mounted image, want it read-only")
	}
}
