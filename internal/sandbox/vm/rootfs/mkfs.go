package rootfs

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// Format is the file system of a root file system image.
type Format string

const (
	// FormatErofs is EROFS, a compact read-only file system (mkfs.erofs,
	// Debian package erofs-utils); the default where mkfs.erofs exists.
	FormatErofs Format = "erofs"
	// FormatExt4 is ext4 without a journal (mkfs.ext4 -d, e2fsprogs), the
	// fallback.
	FormatExt4 Format = "ext4"
)

// DefaultFormat is the format Build uses where its tool is installed:
// docs/vm-images.md has the measurements behind the choice.
const DefaultFormat = FormatErofs

// mkfsTool is the program that makes a format's images.
var mkfsTool = map[Format]string{FormatErofs: "mkfs.erofs", FormatExt4: "mkfs.ext4"}

// ChooseFormat returns want when its tool is installed, and otherwise the
// other format whose tool is: want "" means [DefaultFormat] preferred.
func ChooseFormat(want Format) (Format, error) {
	if want == "" {
		want = DefaultFormat
	}
	tool, ok := mkfsTool[want]
	if !ok {
		return "", fmt.Errorf("unknown root file system format %q (want erofs or ext4)", want)
	}
	if _, err := lookTool(tool); err == nil {
		return want, nil
	}
	for _, f := range []Format{FormatErofs, FormatExt4} {
		if _, err := lookTool(mkfsTool[f]); err == nil {
			return f, nil
		}
	}
	return "", fmt.Errorf("neither mkfs.erofs nor mkfs.ext4 is installed: apt-get install erofs-utils (or e2fsprogs)")
}

// lookTool finds a program in PATH, or in /usr/sbin and /sbin, where
// e2fsprogs puts mkfs.ext4 and which a user's PATH may lack.
func lookTool(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if fi, serr := os.Stat(filepath.Join(dir, name)); serr == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return filepath.Join(dir, name), nil
		}
	}
	return "", err
}

// MakeOptions tune MakeImage.
type MakeOptions struct {
	// Compression compresses erofs images: "" (none, the default), "lz4"
	// or "lz4hc". The guest kernel needs CONFIG_EROFS_FS_ZIP, and pays
	// for decompression in CPU time: docs/vm-images.md has the trade.
	Compression string
}

// MakeImage writes a file system image of format f at image, holding the
// tree at dir, owners and modes as they are there. The image is read-only
// in use: ext4 images have no journal and no reserved blocks, and are
// sparse files a little larger than their content.
func MakeImage(ctx context.Context, f Format, dir, image string, opts MakeOptions) error {
	if _, ok := mkfsTool[f]; !ok {
		return fmt.Errorf("unknown root file system format %q (want erofs or ext4)", f)
	}
	tool, err := lookTool(mkfsTool[f])
	if err != nil {
		return fmt.Errorf("make a %s image: %w", f, err)
	}
	var cmd *exec.Cmd
	switch f {
	case FormatErofs:
		args := []string{"--quiet"}
		switch opts.Compression {
		case "":
		case "lz4", "lz4hc":
			args = append(args, "-z"+opts.Compression)
		default:
			return fmt.Errorf("unknown erofs compression %q (want lz4 or lz4hc)", opts.Compression)
		}
		cmd = exec.CommandContext(ctx, tool, append(args, image, dir)...)
	case FormatExt4:
		if opts.Compression != "" {
			return fmt.Errorf("ext4 images cannot be compressed")
		}
		size, inodes, err := ext4Size(dir)
		if err != nil {
			return err
		}
		fh, err := os.OpenFile(image, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		err = fh.Truncate(size)
		fh.Close()
		if err != nil {
			return err
		}
		cmd = exec.CommandContext(ctx, tool, "-q", "-F", "-d", dir,
			"-O", "^has_journal,^resize_inode", "-m", "0", "-N", strconv.FormatInt(inodes, 10),
			"-I", "256", "-b", "4096", "-E", "lazy_itable_init=0,nodiscard", image)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		os.Remove(image)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s: %w: %s", cmd.Path, err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// ext4Size estimates the size and inode count of an ext4 file system that
// holds the tree at dir: its files' blocks, a block per directory, inode
// tables, and a margin for the allocator's metadata.
func ext4Size(dir string) (size, inodes int64, err error) {
	const block = 4096
	var blocks int64
	err = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		inodes++
		switch {
		case d.IsDir():
			blocks++
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			blocks += (fi.Size() + block - 1) / block
		case d.Type()&fs.ModeSymlink != 0:
			blocks++ // long targets take a block
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("measure %s: %w", dir, err)
	}
	inodes += inodes/10 + 64
	size = blocks*block + blocks*block/10 + inodes*256 + 16<<20
	return (size + block - 1) / block * block, inodes, nil
}
