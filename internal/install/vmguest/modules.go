package vmguest

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// GuestModules are the modules the guest needs, when the kernel has
// them as modules rather than built in: virtio over MMIO (QEMU microvm,
// Firecracker), its block, console (virtio-serial) and network devices,
// vsock (Firecracker's channel), and the file systems of the workspace
// (ext4), the image roots (erofs, ext4) and their overlay.
var GuestModules = []string{
	"virtio_mmio", "virtio_blk", "virtio_console", "virtio_net",
	"vmw_vsock_virtio_transport",
	"ext4", "erofs", "overlay",
}

// Module is a kernel module chosen for the initramfs.
type Module struct {
	Name string
	Path string // the .ko file
}

// ResolveModules returns the modules of want that modDir (a
// lib/modules/VERSION directory) has as loadable modules, with all
// their dependencies, dependencies first. A module that is built in
// (modules.builtin) needs nothing; one that is neither is an error. The
// dependencies are read from each module's .modinfo section, since a
// kernel package ships no modules.dep (depmod makes it on install).
func ResolveModules(modDir string, want []string) ([]Module, error) {
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(modDir, "modules.builtin")); err == nil {
		for line := range strings.Lines(string(b)) {
			builtin[modName(strings.TrimSpace(line))] = true
		}
	}
	files := map[string]string{}
	err := filepath.WalkDir(modDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.Contains(d.Name(), ".ko") {
			files[modName(d.Name())] = path
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []Module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name, from string) error
	visit = func(name, from string) error {
		name = modName(name)
		switch {
		case state[name] == 2:
			return nil
		case state[name] == 1:
			return fmt.Errorf("module dependency cycle at %s", name)
		case builtin[name] && files[name] == "":
			state[name] = 2
			return nil
		}
		path, ok := files[name]
		if !ok {
			return fmt.Errorf("kernel module %s (%s) is neither built in nor in %s", name, from, modDir)
		}
		if !strings.HasSuffix(path, ".ko") {
			return fmt.Errorf("kernel module %s is compressed (%s): only uncompressed modules are supported", name, filepath.Base(path))
		}
		state[name] = 1
		deps, err := moduleDepends(path)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, "needed by "+name); err != nil {
				return err
			}
		}
		state[name] = 2
		out = append(out, Module{Name: name, Path: path})
		return nil
	}
	for _, w := range want {
		if err := visit(w, "wanted by the guest"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// modName turns a module's file name or path into its name.
func modName(s string) string {
	s = filepath.Base(s)
	if i := strings.Index(s, ".ko"); i >= 0 {
		s = s[:i]
	}
	return strings.ReplaceAll(s, "-", "_")
}

// moduleDepends reads depends= from a module's .modinfo section.
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kernel module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("kernel module %s has no .modinfo", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for kv := range bytes.SplitSeq(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var deps []string
			for d := range strings.SplitSeq(string(v), ",") {
				if d != "" {
					deps = append(deps, d)
				}
			}
			return deps, nil
		}
	}
	return nil, nil
}

// sigMagic ends a signed kernel module.
const sigMagic = "~Module signature appended~\n"

// StripSignature returns a module without its appended signature. The
// guest's kernel does not enforce signatures (Debian's, outside UEFI
// secure boot), and checking 14 RSA signatures under software emulation
// cost about 100 ms of each boot. A module without a signature is
// returned as it is.
func StripSignature(ko []byte) []byte {
	if !bytes.HasSuffix(ko, []byte(sigMagic)) {
		return ko
	}
	// struct module_signature (12 bytes) precedes the magic; its last
	// field is the signature's length, big-endian.
	end := len(ko) - len(sigMagic)
	if end < 12 {
		return ko
	}
	info := ko[end-12 : end]
	sigLen := int(info[8])<<24 | int(info[9])<<16 | int(info[10])<<8 | int(info[11])
	if sigLen < 0 || end-12-sigLen < 0 {
		return ko
	}
	return ko[:end-12-sigLen]
}
