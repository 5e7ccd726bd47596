package rootfs_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/execd/execd/internal/sandbox/vm/rootfs"
)

// entry is one tar entry of a hand-made layer.
type entry struct {
	name     string
	typ      byte // tar.TypeReg by default
	mode     int64
	uid, gid int
	body     string // a regular file's content
	link     string // a link's target
	xattrs   map[string]string
	major    int64
	minor    int64
}

func file(name, body string) entry { return entry{name: name, body: body, mode: 0o644} }
func dir(name string) entry        { return entry{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, to string) entry {
	return entry{name: name, typ: tar.TypeSymlink, link: to, mode: 0o777}
}
func hardlink(name, to string) entry {
	return entry{name: name, typ: tar.TypeLink, link: to, mode: 0o644}
}

// layerTar is the tar stream of entries.
func layerTar(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			Linkname: e.link, ModTime: time.Unix(1700000000, 0), Devmajor: e.major, Devminor: e.minor, Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %s: %v", e.name, err)
		}
		if h.Typeflag == tar.TypeReg {
			io.WriteString(tw, e.body)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// imageOf is an image of hand-made layers, bottom first.
func imageOf(t testing.TB, layers ...[]entry) v1.Image {
	t.Helper()
	img := empty.Image
	for _, entries := range layers {
		b := layerTar(t, entries)
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: extracting images keeps their owners, which needs root")
	}
}

// host is a directory outside the tree that malicious layers aim at,
// with a victim file in it.
type host struct{ dir, victim string }

func newHost(t *testing.T) host {
	h := host{dir: t.TempDir()}
	h.victim = filepath.Join(h.dir, "victim")
	if err := os.WriteFile(h.victim, []byte("safe"), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

// check verifies the host directory is as it was: the victim alone, safe.
func (h host) check(t *testing.T) {
	t.Helper()
	des, _ := os.ReadDir(h.dir)
	if len(des) != 1 {
		var names []string
		for _, de := range des {
			names = append(names, de.Name())
		}
		t.Errorf("host directory holds %v, want only victim: a layer wrote outside the tree", names)
	}
	if b, err := os.ReadFile(h.victim); err != nil || string(b) != "safe" {
		t.Errorf("host victim = %q, %v; want \"safe\": a layer wrote outside the tree", b, err)
	}
}

func TestFlatten(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name    string
		layers  func(h host) [][]entry
		wantErr error
		check   func(t *testing.T, root string, h host)
	}{
		{
			name: "whiteout removes a file of a lower layer",
			layers: func(host) [][]entry {
				return [][]entry{{dir("a"), file("a/b", "b"), file("a/c", "c")}, {file("a/.wh.b", "")}}
			},
			check: func(t *testing.T, root string, _ host) {
				absent(t, root, "a/b")
				absent(t, root, "a/.wh.b")
				content(t, root, "a/c", "c")
			},
		},
		{
			name: "whiteout removes a directory and what it holds",
			layers: func(host) [][]entry {
				return [][]entry{{dir("d"), dir("d/x"), file("d/x/y", "y"), file("keep", "k")}, {file(".wh.d", "")}}
			},
			check: func(t *testing.T, root string, _ host) {
				absent(t, root, "d")
				content(t, root, "keep", "k")
			},
		},
		{
			name: "opaque directory hides the lower layers' entries only",
			layers: func(host) [][]entry {
				return [][]entry{
					{dir("o"), file("o/old", "old"), dir("o/sub"), file("o/sub/deep", "d")},
					{dir("o"), file("o/before", "b"), file("o/.wh..wh..opq", ""), file("o/after", "a")},
				}
			},
			check: func(t *testing.T, root string, _ host) {
				absent(t, root, "o/old")
				absent(t, root, "o/sub")
				absent(t, root, "o/.wh..wh..opq")
				content(t, root, "o/before", "b")
				content(t, root, "o/after", "a")
			},
		},
		{
			name: "hard link shares the file",
			layers: func(host) [][]entry {
				return [][]entry{{file("f", "data")}, {hardlink("h", "f")}}
			},
			check: func(t *testing.T, root string, _ host) {
				content(t, root, "h", "data")
				if a, b := stat(t, root, "f"), stat(t, root, "h"); a.Ino != b.Ino || a.Nlink != 2 {
					t.Errorf("f and h: inodes %d and %d, links %d; want one inode with 2 links", a.Ino, b.Ino, a.Nlink)
				}
			},
		},
		{
			name: "symbolic links are kept as they are",
			layers: func(host) [][]entry {
				return [][]entry{{dir("etc"), symlink("etc/abs", "/etc/passwd"), symlink("rel", "../../x")}}
			},
			check: func(t *testing.T, root string, _ host) {
				linkTo(t, root, "etc/abs", "/etc/passwd")
				linkTo(t, root, "rel", "../../x")
			},
		},
		{
			name: "owners and modes, setuid setgid and sticky bits kept",
			layers: func(host) [][]entry {
				return [][]entry{{
					{name: "bin/su", body: "elf", mode: 0o4755},
					{name: "bin/wall", body: "elf", mode: 0o2755, gid: 5},
					{name: "tmp", typ: tar.TypeDir, mode: 0o1777},
					{name: "home/u", typ: tar.TypeDir, mode: 0o700, uid: 1000, gid: 1000},
					{name: "home/u/f", body: "x", mode: 0o600, uid: 1000, gid: 1000},
					{name: "home/u/l", typ: tar.TypeSymlink, link: "f", uid: 1000, gid: 1001},
				}}
			},
			check: func(t *testing.T, root string, _ host) {
				mode(t, root, "bin/su", unix.S_IFREG|0o4755, 0, 0)
				mode(t, root, "bin/wall", unix.S_IFREG|0o2755, 0, 5)
				mode(t, root, "tmp", unix.S_IFDIR|0o1777, 0, 0)
				mode(t, root, "home/u", unix.S_IFDIR|0o700, 1000, 1000)
				mode(t, root, "home/u/f", unix.S_IFREG|0o600, 1000, 1000)
				if st := stat(t, root, "home/u/l"); st.Uid != 1000 || st.Gid != 1001 {
					t.Errorf("home/u/l owned by %d:%d, want 1000:1001", st.Uid, st.Gid)
				}
			},
		},
		{
			name: "devices and fifos",
			layers: func(host) [][]entry {
				return [][]entry{{
					{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
					{name: "dev/fifo", typ: tar.TypeFifo, mode: 0o600},
				}}
			},
			check: func(t *testing.T, root string, _ host) {
				st := stat(t, root, "dev/null")
				if st.Mode != unix.S_IFCHR|0o666 || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
					t.Errorf("dev/null: mode %o, device %d:%d; want char 0666 1:3", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
				}
				mode(t, root, "dev/fifo", unix.S_IFIFO|0o600, 0, 0)
			},
		},
		{
			name: "a file replaces a directory, a directory a file",
			layers: func(host) [][]entry {
				return [][]entry{{dir("p"), file("p/q", "q"), file("r", "r")}, {file("p", "now a file"), dir("r"), file("r/s", "s")}}
			},
			check: func(t *testing.T, root string, _ host) {
				content(t, root, "p", "now a file")
				content(t, root, "r/s", "s")
			},
		},
		{
			name: "extended attributes",
			layers: func(host) [][]entry {
				return [][]entry{{{name: "x", body: "x", mode: 0o644, xattrs: map[string]string{"user.execd": "yes", "trusted.evil": "no"}}}}
			},
			check: func(t *testing.T, root string, _ host) {
				buf := make([]byte, 16)
				n, err := unix.Lgetxattr(filepath.Join(root, "x"), "user.execd", buf)
				if err != nil || string(buf[:n]) != "yes" {
					t.Errorf("user.execd = %q, %v; want yes", buf[:n], err)
				}
				if _, err := unix.Lgetxattr(filepath.Join(root, "x"), "trusted.evil", buf); err == nil {
					t.Error("trusted.evil was set; only user.* and security.capability are kept")
				}
			},
		},
		{
			name:    "entry climbing out with ..",
			layers:  func(host) [][]entry { return [][]entry{{file("../../../../evil", "x")}} },
			wantErr: rootfs.ErrUnsafeLayer,
		},
		{
			name:    "entry climbing out with .. in the middle",
			layers:  func(host) [][]entry { return [][]entry{{dir("a"), file("a/../../evil", "x")}} },
			wantErr: rootfs.ErrUnsafeLayer,
		},
		{
			name: "hard link to a file outside",
			layers: func(h host) [][]entry {
				return [][]entry{{hardlink("h", "../../../../../../.."+h.victim)}}
			},
			wantErr: rootfs.ErrUnsafeLayer,
		},
		{
			name: "hard link to an absolute path stays inside",
			layers: func(h host) [][]entry {
				return [][]entry{{hardlink("h", h.victim)}}
			},
			wantErr: unix.ENOENT, // the victim's path does not exist in the tree
		},
		{
			name: "absolute path names are inside the tree",
			layers: func(h host) [][]entry {
				return [][]entry{{file(h.victim, "pwned")}}
			},
			check: func(t *testing.T, root string, h host) { content(t, root, h.victim, "pwned") },
		},
		{
			name: "absolute symbolic link, then a file through it, lands inside",
			layers: func(h host) [][]entry {
				return [][]entry{{dir("target"), symlink("esc", "/target")}, {file("esc/pwned", "x")}}
			},
			check: func(t *testing.T, root string, h host) { content(t, root, "target/pwned", "x") },
		},
		{
			name: "relative symbolic link climbing out, then a file through it, lands inside",
			layers: func(h host) [][]entry {
				return [][]entry{{dir("target"), dir("a"), symlink("a/esc", "../../../../../../../../target"), file("a/esc/pwned", "x")}}
			},
			check: func(t *testing.T, root string, h host) { content(t, root, "target/pwned", "x") },
		},
		{
			name: "symbolic link to a host directory, then a file through it",
			layers: func(h host) [][]entry {
				return [][]entry{{symlink("esc", h.dir)}, {file("esc/pwned", "x"), file("esc/victim", "pwned")}}
			},
			wantErr: unix.ENOENT, // the host directory's path does not exist in the tree
		},
		{
			name: "symbolic link to a host directory and a file through it in one layer",
			layers: func(h host) [][]entry {
				return [][]entry{{dir("a"), symlink("a/esc", "../../../../../../../.."+h.dir), file("a/esc/pwned", "x")}}
			},
			wantErr: unix.ENOENT,
		},
		{
			name: "a file replaces a symbolic link, not its target",
			layers: func(h host) [][]entry {
				return [][]entry{{symlink("s", h.victim)}, {file("s", "pwned")}}
			},
			check: func(t *testing.T, root string, _ host) { content(t, root, "s", "pwned") },
		},
		{
			name: "a directory replaces a symbolic link to a directory",
			layers: func(h host) [][]entry {
				return [][]entry{{symlink("d", h.dir)}, {dir("d"), file("d/victim", "pwned")}}
			},
			check: func(t *testing.T, root string, _ host) { content(t, root, "d/victim", "pwned") },
		},
		{
			name: "hard link to a symbolic link links the symbolic link",
			layers: func(h host) [][]entry {
				return [][]entry{{symlink("s", h.victim), hardlink("h", "s")}}
			},
			check: func(t *testing.T, root string, h host) { linkTo(t, root, "h", h.victim) },
		},
		{
			name: "hard link through a symbolic link to a host directory",
			layers: func(h host) [][]entry {
				return [][]entry{{symlink("esc", h.dir), hardlink("h", "esc/victim")}}
			},
			wantErr: unix.ENOENT,
		},
		{
			name: "whiteout through a symbolic link to a host directory",
			layers: func(h host) [][]entry {
				return [][]entry{{symlink("esc", h.dir)}, {file("esc/.wh.victim", "")}}
			},
			check: func(t *testing.T, root string, h host) { linkTo(t, root, "esc", h.dir) },
		},
		{
			name: "opaque directory through a symbolic link to a host directory",
			layers: func(h host) [][]entry {
				return [][]entry{{symlink("esc", h.dir)}, {file("esc/.wh..wh..opq", "")}}
			},
			check: func(t *testing.T, root string, h host) { linkTo(t, root, "esc", h.dir) },
		},
		{
			name: "setuid file through a symbolic link to a host directory",
			layers: func(h host) [][]entry {
				return [][]entry{{symlink("esc", h.dir)}, {{name: "esc/sh", body: "x", mode: 0o4755}}}
			},
			wantErr: unix.ENOENT,
		},
		{
			name: "symbolic link to the host's root, then a file through it",
			layers: func(h host) [][]entry {
				return [][]entry{{dir("tmp"), symlink("root", "/"), symlink("up", "..")}, {file("root"+h.victim, "pwned"), file("up/up/x", "x")}}
			},
			check: func(t *testing.T, root string, h host) {
				content(t, root, h.victim, "pwned")
				content(t, root, "x", "x")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHost(t)
			root := t.TempDir()
			err := rootfs.Flatten(context.Background(), imageOf(t, tt.layers(h)...), root)
			h.check(t)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Flatten() = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Flatten() = %v", err)
			}
			tt.check(t, root, h)
		})
	}
}

func stat(t *testing.T, root, name string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, name), &st); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return st
}

func absent(t *testing.T, root, name string) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(root, name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists (%v), want it removed", name, err)
	}
}

func content(t *testing.T, root, name, want string) {
	t.Helper()
	st := stat(t, root, name)
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Fatalf("%s has mode %o, want a regular file", name, st.Mode)
	}
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil || string(b) != want {
		t.Errorf("%s = %q, %v; want %q", name, b, err, want)
	}
}

func linkTo(t *testing.T, root, name, want string) {
	t.Helper()
	got, err := os.Readlink(filepath.Join(root, name))
	if err != nil || got != want {
		t.Errorf("%s -> %q, %v; want -> %q", name, got, err, want)
	}
}

func mode(t *testing.T, root, name string, want uint32, uid, gid uint32) {
	t.Helper()
	st := stat(t, root, name)
	if st.Mode != want || st.Uid != uid || st.Gid != gid {
		t.Errorf("%s: mode %o owner %d:%d, want mode %o owner %d:%d", name, st.Mode, st.Uid, st.Gid, want, uid, gid)
	}
}
