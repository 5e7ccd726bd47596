package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/execd/execd/internal/sandbox"
)

// Whiteout names of the OCI image layer format: a file ".wh.NAME" deletes
// NAME of the layers below, and ".wh..wh..opq" in a directory hides
// everything the layers below put in it.
const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// ErrUnsafeLayer wraps the errors of layers that try to write outside the
// root file system: entry or hard-link names with "..".
var ErrUnsafeLayer = errors.New("unsafe image layer")

// Flatten writes the file system of img into dir, an existing empty
// directory: its layers applied in order, whiteouts and opaque
// directories honoured, owners, modes (setuid, setgid and sticky bits
// included), hard links, symbolic links, device nodes, file capabilities
// and user extended attributes kept.
//
// The layers are untrusted. Every path, an entry's and a hard link's
// target, is resolved by the kernel as if dir were the root (openat2 with
// RESOLVE_IN_ROOT): a symbolic link in the image, absolute or relative,
// leads somewhere in dir and never out of it, and an entry is created
// under its own name, never through a symbolic link. Names that climb out
// with ".." are refused with [ErrUnsafeLayer]. Owners are kept only when
// the caller is root (or has CAP_CHOWN); otherwise Flatten fails.
func Flatten(ctx context.Context, img v1.Image, dir string) error {
	return flatten(ctx, img, dir, 0)
}

// ErrTooLarge is returned when an image's files exceed the size allowed.
// It is sandbox.ErrImageTooLarge: no retry can fix it.
var ErrTooLarge = sandbox.ErrImageTooLarge

// flatten is Flatten, failing with ErrTooLarge when the files' content
// exceeds maxBytes (0: no limit): a small layer may decompress to a
// disk-filling one.
func flatten(ctx context.Context, img v1.Image, dir string, maxBytes int64) error {
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("list the image's layers: %w", err)
	}
	t, err := openTree(dir)
	if err != nil {
		return err
	}
	defer t.close()
	t.max, t.left = maxBytes, maxBytes
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return fmt.Errorf("layer %d: %w", i+1, err)
		}
		err = t.apply(ctx, tar.NewReader(rc))
		if err == nil {
			// To the end: a registry's layer is verified against its
			// digest there, past the tar's last entry.
			if _, err = io.Copy(io.Discard, rc); err != nil {
				err = fmt.Errorf("read the layer: %w", err)
			}
		}
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer %d: %w", i+1, err)
		}
	}
	t.setDirTimes()
	return nil
}

// tree is a directory being filled with an image's file system.
type tree struct {
	root     int                  // the directory, O_RDONLY|O_DIRECTORY
	dirTimes map[string]time.Time // a directory's mtime, set last
	max      int64                // bytes of content allowed; 0: no limit
	left     int64                // of which still free
}

func openTree(dir string) (*tree, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	return &tree{root: fd, dirTimes: map[string]time.Time{}}, nil
}

func (t *tree) close() { unix.Close(t.root) }

// apply extracts one layer.
func (t *tree) apply(ctx context.Context, tr *tar.Reader) error {
	seen := map[string]bool{} // the paths this layer made: an opaque directory keeps them
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the layer: %w", err)
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return err
		}
		dir, base := path.Split(name)
		dir = strings.TrimSuffix(dir, "/")
		switch {
		case base == whiteoutOpaque:
			err = t.opaque(dir, seen)
		case strings.HasPrefix(base, whiteoutMeta):
			// Other AUFS metadata (.wh..wh.plnk...): not part of the tree.
		case strings.HasPrefix(base, whiteoutPrefix):
			err = t.remove(path.Join(dir, base[len(whiteoutPrefix):]))
		default:
			err = t.entry(name, hdr, tr)
			seen[name] = true
		}
		if err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
}

// cleanName makes an entry name relative to the root ("" for the root
// itself), refusing names that climb out of it.
func cleanName(name string) (string, error) {
	c := path.Clean("/" + name)
	if strings.Contains(name, "\x00") || hasDotDot(name) {
		return "", fmt.Errorf("%w: entry %q climbs out of the root", ErrUnsafeLayer, name)
	}
	return strings.TrimPrefix(c, "/"), nil
}

// hasDotDot reports whether a name has a ".." element. Docker's and
// containerd's extraction refuse the ones that would climb out of the
// root; here every one is refused: no honest image writes "a/../b".
func hasDotDot(name string) bool {
	for _, e := range strings.Split(name, "/") {
		if e == ".." {
			return true
		}
	}
	return false
}

// openDir opens the directory rel of the tree, resolving every symbolic
// link on the way as if the tree were the root.
func (t *tree) openDir(rel string) (int, error) {
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(t.root, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOSYS) {
		return -1, errors.New("the kernel lacks openat2 (Linux 5.6 or later is needed to extract images safely)")
	}
	return fd, err
}

// mkdirAll opens directory rel, making it and its missing parents
// (root's, mode 0755) first.
func (t *tree) mkdirAll(rel string) (int, error) {
	fd, err := t.openDir(rel)
	if !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	parent, base := path.Split(rel)
	pfd, err := t.mkdirAll(strings.TrimSuffix(parent, "/"))
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	switch err := unix.Mkdirat(pfd, base, 0o755); {
	case err == nil:
		// 0755 whatever the umask: the guest's users must get through.
		if err := unix.Fchmodat(pfd, base, 0o755, 0); err != nil {
			return -1, err
		}
	case !errors.Is(err, unix.EEXIST):
		return -1, err
	}
	return t.openDir(rel)
}

// remove removes rel (a whiteout); it is no error that it does not exist.
func (t *tree) remove(rel string) error {
	if rel == "" {
		return nil
	}
	dir, base := path.Split(rel)
	fd, err := t.openDir(strings.TrimSuffix(dir, "/"))
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return removeAt(fd, base)
}

// removeAt removes name in directory dirfd, with all it holds when it is a
// directory, never following a symbolic link.
func removeAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if errors.Is(err, unix.ENOENT) || err == nil {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) {
		return err
	}
	if err := clearDir(dirfd, name, nil); err != nil {
		return err
	}
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}

// clearDir removes what directory name of dirfd holds, except the names
// keep reports true for.
func clearDir(dirfd int, name string, keep func(string) bool) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		if keep != nil && keep(n) {
			continue
		}
		if err := removeAt(fd, n); err != nil {
			return err
		}
	}
	return nil
}

// opaque empties directory rel of what the layers below put there.
func (t *tree) opaque(rel string, seen map[string]bool) error {
	fd, err := t.openDir(rel)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return clearDir(fd, ".", func(n string) bool { return seen[path.Join(rel, n)] })
}

// entry creates one entry of a layer, replacing what is at its name unless
// both are directories.
func (t *tree) entry(name string, hdr *tar.Header, r io.Reader) error {
	if name == "" { // the root directory itself
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: the root is not a directory", ErrUnsafeLayer)
		}
		t.dirTimes[name] = hdr.ModTime
		return setMeta(t.root, ".", hdr)
	}
	dir, base := path.Split(name)
	dfd, err := t.mkdirAll(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return fmt.Errorf("parent directory: %w", err)
	}
	defer unix.Close(dfd)

	var st unix.Stat_t
	err = unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	exists := err == nil
	if exists && !(hdr.Typeflag == tar.TypeDir && st.Mode&unix.S_IFMT == unix.S_IFDIR) {
		if err := removeAt(dfd, base); err != nil {
			return err
		}
		exists = false
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		if !exists {
			if err := unix.Mkdirat(dfd, base, 0o700); err != nil {
				return err
			}
		}
		t.dirTimes[name] = hdr.ModTime
		return setMeta(dfd, base, hdr)
	case tar.TypeReg, tar.TypeRegA:
		if t.max > 0 {
			if t.left -= hdr.Size; t.left < 0 {
				return fmt.Errorf("%w: its files hold more than %d bytes", ErrTooLarge, t.max)
			}
		}
		return writeFile(dfd, base, hdr, r)
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, dfd, base); err != nil {
			return err
		}
		return setMeta(dfd, base, hdr)
	case tar.TypeLink:
		return t.link(dfd, base, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknodat(dfd, base, mode|0o600, int(dev)); err != nil {
			return err
		}
		return setMeta(dfd, base, hdr)
	}
	return nil // pax global headers, GNU long names... carry no file
}

// link makes base in dfd a hard link to target, a name in the tree.
func (t *tree) link(dfd int, base, target string) error {
	target, err := cleanName(target)
	if err != nil {
		return err
	}
	if target == "" {
		return fmt.Errorf("%w: a hard link to the root", ErrUnsafeLayer)
	}
	tdir, tbase := path.Split(target)
	tfd, err := t.openDir(strings.TrimSuffix(tdir, "/"))
	if err != nil {
		return fmt.Errorf("hard link target %s: %w", target, err)
	}
	defer unix.Close(tfd)
	// Without AT_SYMLINK_FOLLOW: a link to a symbolic link links the
	// symbolic link itself, as tar does.
	if err := unix.Linkat(tfd, tbase, dfd, base, 0); err != nil {
		return fmt.Errorf("hard link to %s: %w", target, err)
	}
	return nil
}

// writeFile creates regular file base in dfd with the entry's content.
func writeFile(dfd int, base string, hdr *tar.Header, r io.Reader) error {
	fd, err := unix.Openat(dfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	if _, err := io.Copy(f, r); err != nil {
		return err
	}
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return ownerError(err)
	}
	// After the owner: chown clears the setuid and setgid bits.
	if err := unix.Fchmod(fd, uint32(hdr.Mode&0o7777)); err != nil {
		return err
	}
	if err := setXattrs(fd, hdr); err != nil {
		return err
	}
	ts := []unix.Timespec{unix.NsecToTimespec(hdr.AccessTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	if hdr.AccessTime.IsZero() {
		ts[0] = ts[1]
	}
	return unix.UtimesNanoAt(dfd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// setMeta gives base in dfd (not a regular file) the entry's owner, mode,
// extended attributes and time; directories' times are set at the end.
func setMeta(dfd int, base string, hdr *tar.Header) error {
	if err := unix.Fchownat(dfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return ownerError(err)
	}
	if hdr.Typeflag == tar.TypeSymlink {
		ts := unix.NsecToTimespec(hdr.ModTime.UnixNano())
		return unix.UtimesNanoAt(dfd, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
	}
	// base was just made by us and is no symbolic link: fchmodat, which
	// follows one, is safe.
	if err := unix.Fchmodat(dfd, base, uint32(hdr.Mode&0o7777), 0); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeDir && len(xattrs(hdr)) > 0 {
		fd, err := unix.Openat(dfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return setXattrs(fd, hdr)
	}
	if hdr.Typeflag != tar.TypeDir {
		ts := unix.NsecToTimespec(hdr.ModTime.UnixNano())
		return unix.UtimesNanoAt(dfd, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

func ownerError(err error) error {
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("set the owner: %w (building a root file system image needs root, to keep the image's owners)", err)
	}
	return fmt.Errorf("set the owner: %w", err)
}

// xattrs are the extended attributes of an entry that are kept: file
// capabilities (security.capability) and user.* attributes. Others
// (trusted.*, security.selinux, system ACLs) are the host's business.
func xattrs(hdr *tar.Header) map[string]string {
	var m map[string]string
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok || !(name == "security.capability" || strings.HasPrefix(name, "user.")) {
			continue
		}
		if m == nil {
			m = map[string]string{}
		}
		m[name] = v
	}
	return m
}

func setXattrs(fd int, hdr *tar.Header) error {
	for name, v := range xattrs(hdr) {
		err := unix.Fsetxattr(fd, name, []byte(v), 0)
		if errors.Is(err, unix.ENOTSUP) {
			continue // the build directory's file system has none
		}
		if err != nil {
			return fmt.Errorf("set extended attribute %s: %w", name, err)
		}
	}
	return nil
}

// setDirTimes gives directories the times of their entries, now that
// nothing more is written in them. A directory that is gone is skipped.
func (t *tree) setDirTimes() {
	for name, mt := range t.dirTimes {
		ts := unix.NsecToTimespec(mt.UnixNano())
		if name == "" {
			unix.UtimesNanoAt(t.root, ".", []unix.Timespec{ts, ts}, 0)
			continue
		}
		dir, base := path.Split(name)
		fd, err := t.openDir(strings.TrimSuffix(dir, "/"))
		if err != nil {
			continue
		}
		unix.UtimesNanoAt(fd, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
		unix.Close(fd)
	}
}
