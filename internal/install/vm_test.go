package install_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/execd/execd/internal/install"
	"github.com/execd/execd/internal/install/vmguest"
)

// vmHost plays a Debian host with apt for `install vm`: a kernel package
// whose bzImage holds /bin/true (gzip) and two modules, and a Go that
// builds the agent.
type vmHost struct {
	t        *testing.T
	dir      string
	programs map[string]string
	ran      []string
	agent    string // what go build writes
}

func (h *vmHost) Start(context.Context, install.Cmd) error { return errors.New("unexpected start") }

func (h *vmHost) Run(_ context.Context, c install.Cmd) ([]byte, error) {
	args := strings.Join(append([]string{filepath.Base(c.Name)}, c.Args...), " ")
	h.ran = append(h.ran, strings.ReplaceAll(args, h.dir, "$DIR"))
	switch {
	case args == "apt-get update -q":
	case strings.HasPrefix(args, "apt-get install -y -q --no-install-recommends "):
		for _, pkg := range c.Args[4:] {
			h.programs[map[string]string{"erofs-utils": "mkfs.erofs", "qemu-system-x86": "qemu-system-x86_64", "e2fsprogs": "mkfs.ext4"}[pkg]] = "/usr/bin/x"
		}
	case args == "apt-cache depends linux-image-cloud-amd64":
		return []byte("linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-99-cloud-amd64\n"), nil
	case args == "apt-get download -q linux-image-6.1.0-99-cloud-amd64":
		return nil, os.WriteFile(filepath.Join(c.Dir, "linux-image-6.1.0-99-cloud-amd64_6.1.999-1_amd64.deb"), []byte("deb"), 0o644)
	case strings.HasPrefix(args, "dpkg-deb -x "):
		h.unpackKernel(c.Args[2])
	case args == "go list -m":
		return []byte("github.com/execd/execd\n"), nil
	case strings.HasPrefix(args, "go build -trimpath"):
		if !slices.Contains(c.Env, "CGO_ENABLED=0") || c.Args[len(c.Args)-1] != install.AgentModule {
			h.t.Errorf("agent build: %s", c)
		}
		return nil, os.WriteFile(c.Args[slices.Index(c.Args, "-o")+1], []byte(h.agent), 0o755)
	default:
		h.t.Errorf("unexpected command %s", c)
		return nil, errors.New("unexpected command")
	}
	return nil, nil
}

// unpackKernel writes the fake kernel package's files into dir.
func (h *vmHost) unpackKernel(dir string) {
	t := h.t
	kernel, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Skip("no /bin/true")
	}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(kernel)
	w.Close()
	img := make([]byte, 5*512)
	img[0x1f1] = 4
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x206:], 0x20f)
	binary.LittleEndian.PutUint32(img[0x24c:], uint32(gz.Len()))
	img = append(img, gz.Bytes()...)
	os.MkdirAll(filepath.Join(dir, "boot"), 0o755)
	must(t, os.WriteFile(filepath.Join(dir, "boot/vmlinuz-6.1.0-99-cloud-amd64"), img, 0o644))

	mods := filepath.Join(dir, "lib/modules/6.1.0-99-cloud-amd64")
	os.MkdirAll(filepath.Join(mods, "kernel"), 0o755)
	var builtin []string
	for _, m := range vmguest.GuestModules {
		if m != "virtio_blk" {
			builtin = append(builtin, "kernel/x/"+m+".ko")
		}
	}
	must(t, os.WriteFile(filepath.Join(mods, "modules.builtin"), []byte(strings.Join(builtin, "\n")+"\n"), 0o644))
	for name, deps := range map[string]string{"virtio": "", "virtio_blk": "virtio"} {
		src := filepath.Join(h.dir, name+".s")
		must(t, os.WriteFile(src, []byte(".section .modinfo\n.asciz \"depends="+deps+"\"\n"), 0o644))
		if out, err := exec.Command("as", "-o", filepath.Join(mods, "kernel", name+".ko"), src).CombinedOutput(); err != nil {
			t.Fatalf("as: %v: %s", err, out)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestInstaller_VM(t *testing.T) {
	if _, err := exec.LookPath("as"); err != nil {
		t.Skip("no assembler (binutils) to make test modules")
	}
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "os-release"), []byte("ID=debian\n"), 0o644))
	h := &vmHost{t: t, dir: dir, agent: "agent v1", programs: map[string]string{
		"go": "/usr/bin/go", "qemu-system-x86_64": "/usr/bin/qemu-system-x86_64", "mkfs.ext4": "/sbin/mkfs.ext4",
	}}
	var out bytes.Buffer
	in := &install.Installer{
		Out: &out, Runner: h, OSRelease: filepath.Join(dir, "os-release"),
		VMDir: filepath.Join(dir, "vm"), Busybox: filepath.Join(dir, "no-busybox"),
		LookPath: func(name string) (string, error) {
			if p, ok := h.programs[name]; ok {
				return p, nil
			}
			return "", exec.ErrNotFound
		},
	}
	ctx := context.Background()
	must(t, in.Install(ctx, "vm"))
	want := []string{
		"apt-get update -q",
		"apt-get install -y -q --no-install-recommends erofs-utils",
		"apt-cache depends linux-image-cloud-amd64",
		"go list -m",
	}
	if !slices.Equal(h.ran[:4], want) {
		t.Errorf("first commands = %q, want %q", h.ran[:4], want)
	}
	for _, c := range []string{"apt-get download -q linux-image-6.1.0-99-cloud-amd64", "dpkg-deb -x $DIR/vm/cache/linux-image-6.1.0-99-cloud-amd64_6.1.999-1_amd64.deb"} {
		if !slices.ContainsFunc(h.ran, func(r string) bool { return strings.HasPrefix(r, c) }) {
			t.Errorf("did not run %s: %q", c, h.ran)
		}
	}
	vmlinux, _ := os.ReadFile(filepath.Join(dir, "vm/vmlinux"))
	trueBin, _ := os.ReadFile("/bin/true")
	if !bytes.Equal(vmlinux, trueBin) {
		t.Errorf("vmlinux is not the package's kernel (%d bytes)", len(vmlinux))
	}
	mods, _ := filepath.Glob(filepath.Join(dir, "vm/modules/*"))
	if len(mods) != 2 || filepath.Base(mods[0]) != "00-virtio.ko" || filepath.Base(mods[1]) != "01-virtio_blk.ko" {
		t.Errorf("modules = %q", mods)
	}
	m, err := vmguest.ReadManifest(filepath.Join(dir, "vm"))
	if err != nil || m.KernelRelease != "6.1.0-99-cloud-amd64" || m.KernelPackage != "linux-image-6.1.0-99-cloud-amd64" {
		t.Errorf("manifest = %+v, %v", m, err)
	}
	if _, _, err := vmguest.Installed(filepath.Join(dir, "vm")); err != nil {
		t.Error(err)
	}

	// Again: nothing to do.
	h.ran, out = nil, bytes.Buffer{}
	must(t, in.Install(ctx, "vm"))
	if !strings.Contains(out.String(), "is up to date") || slices.ContainsFunc(h.ran, func(r string) bool { return strings.HasPrefix(r, "apt-get") || strings.HasPrefix(r, "dpkg") }) {
		t.Errorf("second run ran %q:\n%s", h.ran, out.String())
	}

	// A new agent: only the initramfs is made again.
	h.ran, out, h.agent = nil, bytes.Buffer{}, "agent v2"
	must(t, in.Install(ctx, "vm"))
	if !strings.Contains(out.String(), "kernel 6.1.0-99-cloud-amd64 already installed") || slices.ContainsFunc(h.ran, func(r string) bool { return strings.HasPrefix(r, "dpkg") }) {
		t.Errorf("agent change ran %q:\n%s", h.ran, out.String())
	}
	if m2, _ := vmguest.ReadManifest(filepath.Join(dir, "vm")); m2.AgentSHA256 == m.AgentSHA256 {
		t.Error("the manifest kept the old agent")
	}
}
