package vmguest

import (
	"fmt"
	"io"
	"strings"
)

// CPIO writes a "newc" cpio archive, the format of a Linux initramfs.
// Entries are written in order: a directory before what it holds.
type CPIO struct {
	w   io.Writer
	ino uint32
	n   int64
	err error
}

// NewCPIO returns a CPIO writing to w.
func NewCPIO(w io.Writer) *CPIO { return &CPIO{w: w, ino: 1} }

// File modes of entries.
const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
	modeChar    = 0o020000
)

// Dir adds a directory.
func (c *CPIO) Dir(name string, perm uint32) error { return c.entry(name, modeDir|perm, 0, 0, nil) }

// File adds a regular file holding data.
func (c *CPIO) File(name string, perm uint32, data []byte) error {
	return c.entry(name, modeFile|perm, 0, 0, data)
}

// Symlink adds a symbolic link to target.
func (c *CPIO) Symlink(name, target string) error {
	return c.entry(name, modeSymlink|0o777, 0, 0, []byte(target))
}

// CharDev adds a character device node.
func (c *CPIO) CharDev(name string, perm, major, minor uint32) error {
	return c.entry(name, modeChar|perm, major, minor, nil)
}

// Close writes the trailer. It does not close the underlying writer.
func (c *CPIO) Close() error { return c.entry("TRAILER!!!", 0, 0, 0, nil) }

func (c *CPIO) entry(name string, mode, rmajor, rminor uint32, data []byte) error {
	if c.err != nil {
		return c.err
	}
	name = strings.TrimPrefix(name, "/")
	if name == "" || strings.ContainsRune(name, 0) {
		return fmt.Errorf("cpio: bad name %q", name)
	}
	nlink := uint32(1)
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	ino := c.ino
	c.ino++
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write([]byte(name + "\x00"))
	c.pad()
	c.write(data)
	c.pad()
	return c.err
}

func (c *CPIO) write(b []byte) {
	if c.err != nil {
		return
	}
	var n int
	n, c.err = c.w.Write(b)
	c.n += int64(n)
}

func (c *CPIO) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}
