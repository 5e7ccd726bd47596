// Package vmguest makes the VM guest that `executor install vm`
// installs: the uncompressed kernel (vmlinux) extracted from a Debian
// kernel package's bzImage, and the initramfs holding the agent
// (cmd/execd-vm-agent) as /init and the kernel modules it loads.
package vmguest

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Initramfs describes the initramfs's contents.
type Initramfs struct {
	// Agent is the static agent binary, installed as /init.
	Agent []byte
	// Modules are installed flat in /lib/modules, named so that their
	// lexical order is the load order (dependencies first), without
	// their signatures (see [StripSignature]).
	Modules []Module
	// Gzip compresses the archive. Under software emulation the
	// kernel's gunzip costs more (about 240 ms a boot here) than
	// reading 6 MB instead of 2.5 MB from the page cache, so the
	// installed initramfs is not compressed.
	Gzip bool
	// Busybox, when not nil, is a static busybox installed as
	// /bin/busybox with /bin/sh: steps whose root is "none" (executor
	// test-vm without an image) get a shell.
	Busybox []byte
}

// Write writes the initramfs as a newc cpio archive.
func (in Initramfs) Write(w io.Writer) error {
	out := w
	var gz *gzip.Writer
	if in.Gzip {
		gz, _ = gzip.NewWriterLevel(w, gzip.BestCompression)
		out = gz
	}
	c := NewCPIO(out)
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "workspace", "lib", "lib/modules"} {
		c.Dir(d, 0o755)
	}
	c.CharDev("dev/console", 0o600, 5, 1)
	c.CharDev("dev/null", 0o666, 1, 3)
	c.File("init", 0o755, in.Agent)
	for i, m := range in.Modules {
		data, err := os.ReadFile(m.Path)
		if err != nil {
			return err
		}
		c.File(fmt.Sprintf("lib/modules/%02d-%s.ko", i, m.Name), 0o644, StripSignature(data))
	}
	if in.Busybox != nil {
		c.Dir("bin", 0o755)
		c.File("bin/busybox", 0o755, in.Busybox)
		c.Symlink("bin/sh", "busybox")
	}
	if err := c.Close(); err != nil {
		return err
	}
	if gz != nil {
		return gz.Close()
	}
	return nil
}

// WriteFile writes the initramfs to name atomically.
func (in Initramfs) WriteFile(name string) error {
	f, err := os.CreateTemp(filepath.Dir(name), ".initramfs-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := in.Write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}
