package vmguest

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultDir is where `executor install vm` puts the guest.
const DefaultDir = "/var/lib/execd/vm"

// The files of a guest directory.
const (
	KernelFile    = "vmlinux"
	InitramfsFile = "initramfs.cpio"
	ManifestFile  = "manifest.json"
	ModulesDir    = "modules" // the modules, named in load order
)

// Manifest records what a guest directory holds.
type Manifest struct {
	KernelPackage string   `json:"kernelPackage"` // the Debian package, versioned
	KernelRelease string   `json:"kernelRelease"` // uname -r in the guest
	Modules       []string `json:"modules"`
	AgentSHA256   string   `json:"agentSHA256"`
	Protocol      int      `json:"protocol"`
	Busybox       bool     `json:"busybox"`
}

// ReadManifest reads dir's manifest.
func ReadManifest(dir string) (Manifest, error) {
	var m Manifest
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", filepath.Join(dir, ManifestFile), err)
	}
	return m, nil
}

// WriteManifest writes dir's manifest.
func WriteManifest(dir string, m Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ManifestFile), append(b, '\n'), 0o644)
}

// Installed returns the kernel and initramfs of the guest in dir, or an
// error saying how to install them.
func Installed(dir string) (kernel, initramfs string, err error) {
	kernel, initramfs = filepath.Join(dir, KernelFile), filepath.Join(dir, InitramfsFile)
	for _, p := range []string{kernel, initramfs} {
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("the VM guest is not installed in %s (run `executor install vm`): %w", dir, err)
		}
	}
	return kernel, initramfs, nil
}

// InstallKernel takes the kernel and the guest's modules from root, a
// Debian kernel package extracted (dpkg -x), and writes them to dir:
// vmlinux, and modules/NN-name.ko in load order. It returns the kernel
// release and the modules' names.
func InstallKernel(root, dir string) (string, []string, error) {
	vmlinuzes, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(vmlinuzes) != 1 {
		return "", nil, fmt.Errorf("want one boot/vmlinuz-* in the kernel package, found %d", len(vmlinuzes))
	}
	release := strings.TrimPrefix(filepath.Base(vmlinuzes[0]), "vmlinuz-")
	bz, err := os.ReadFile(vmlinuzes[0])
	if err != nil {
		return "", nil, err
	}
	vmlinux, err := Vmlinux(bz)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", vmlinuzes[0], err)
	}
	mods, err := ResolveModules(filepath.Join(root, "lib", "modules", release), GuestModules)
	if err != nil {
		return "", nil, err
	}
	modDir := filepath.Join(dir, ModulesDir)
	if err := os.RemoveAll(modDir); err != nil {
		return "", nil, err
	}
	if err := os.MkdirAll(modDir, 0o755); err != nil {
		return "", nil, err
	}
	var names []string
	for i, m := range mods {
		data, err := os.ReadFile(m.Path)
		if err != nil {
			return "", nil, err
		}
		if err := os.WriteFile(filepath.Join(modDir, fmt.Sprintf("%02d-%s.ko", i, m.Name)), data, 0o644); err != nil {
			return "", nil, err
		}
		names = append(names, m.Name)
	}
	tmp := filepath.Join(dir, ".vmlinux.tmp")
	if err := os.WriteFile(tmp, vmlinux, 0o644); err != nil {
		return "", nil, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, KernelFile)); err != nil {
		return "", nil, err
	}
	return release, names, nil
}

// InstalledModules returns the modules InstallKernel wrote to dir, in
// load order.
func InstalledModules(dir string) ([]Module, error) {
	paths, err := filepath.Glob(filepath.Join(dir, ModulesDir, "*.ko"))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var mods []Module
	for _, p := range paths {
		name := strings.TrimSuffix(filepath.Base(p), ".ko")
		if _, n, ok := strings.Cut(name, "-"); ok {
			name = n
		}
		mods = append(mods, Module{Name: name, Path: p})
	}
	return mods, nil
}

// StaticBusybox returns the busybox at path when it is a static
// executable (Debian's busybox-static), else nil.
func StaticBusybox(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return nil
		}
	}
	return b
}
