package vmguest_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pierrec/lz4/v4"

	"github.com/execd/execd/internal/install/vmguest"
)

// fakeBzImage wraps payload in a minimal x86 boot image header.
func fakeBzImage(payload []byte) []byte {
	img := make([]byte, 5*512)
	img[0x1f1] = 4 // setup sectors
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x206:], 0x20f)
	binary.LittleEndian.PutUint32(img[0x248:], 16)
	binary.LittleEndian.PutUint32(img[0x24c:], uint32(len(payload)))
	img = append(img, make([]byte, 16)...)
	return append(img, payload...)
}

// elfImage returns a small valid ELF file: this test binary's start
// would be too big, so it takes /bin/true.
func elfImage(t *testing.T) []byte {
	b, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Skip("no /bin/true")
	}
	return b
}

func TestVmlinux(t *testing.T) {
	kernel := elfImage(t)
	sizeTail := binary.LittleEndian.AppendUint32(nil, uint32(len(kernel)))

	var lz bytes.Buffer
	w := lz4.NewWriter(&lz)
	w.Apply(lz4.LegacyOption(true))
	w.Write(kernel)
	w.Close()
	var gz bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(kernel)
	gw.Close()

	for name, payload := range map[string][]byte{
		"lz4":  append(lz.Bytes(), sizeTail...),
		"gzip": gz.Bytes(),
	} {
		got, err := vmguest.Vmlinux(fakeBzImage(payload))
		if err != nil || !bytes.Equal(got, kernel) {
			t.Errorf("%s: %d bytes, %v", name, len(got), err)
		}
	}
	for name, img := range map[string][]byte{
		"not a kernel": []byte("hello"),
		"zstd":         fakeBzImage(append([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0}, sizeTail...)),
		"not elf": fakeBzImage(func() []byte {
			var b bytes.Buffer
			g := gzip.NewWriter(&b)
			g.Write([]byte("text"))
			g.Close()
			return b.Bytes()
		}()),
		"truncated": fakeBzImage(lz.Bytes()[:20])[:5*512+40],
	} {
		if _, err := vmguest.Vmlinux(img); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestInitramfs(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("no cpio to read the archive back")
	}
	dir := t.TempDir()
	mod := filepath.Join(dir, "m.ko")
	os.WriteFile(mod, []byte("module"), 0o644)
	var buf bytes.Buffer
	in := vmguest.Initramfs{Agent: []byte("agent!"), Modules: []vmguest.Module{{Name: "virtio", Path: mod}}, Busybox: []byte("bb"), Gzip: true}
	if err := in.Write(&buf); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	cmd := exec.Command(cpio, "-t", "-v")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v: %s", err, out)
	}
	for _, want := range []string{"init", "lib/modules/00-virtio.ko", "dev/console", "bin/sh -> busybox"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("archive lacks %s:\n%s", want, out)
		}
	}
}

func TestResolveModules(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/fs/ext4/ext4.ko\n"), 0o644)
	// Modules as ELF objects with a .modinfo section, made by the
	// assembler when there is one.
	as, err := exec.LookPath("as")
	if err != nil {
		t.Skip("no assembler to make test modules")
	}
	mk := func(name, depends string) {
		src := filepath.Join(dir, name+".s")
		os.WriteFile(src, []byte(".section .modinfo\n.asciz \"name="+name+"\"\n.asciz \"depends="+depends+"\"\n"), 0o644)
		if out, err := exec.Command(as, "-o", filepath.Join(dir, name+".ko"), src).CombinedOutput(); err != nil {
			t.Fatalf("as: %v: %s", err, out)
		}
	}
	mk("virtio_ring", "")
	mk("virtio", "virtio_ring")
	mk("virtio_blk", "virtio,virtio_ring")
	mods, err := vmguest.ResolveModules(dir, []string{"virtio_blk", "ext4"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range mods {
		names = append(names, m.Name)
	}
	if got := strings.Join(names, " "); got != "virtio_ring virtio virtio_blk" {
		t.Errorf("modules = %s", got)
	}
	if _, err := vmguest.ResolveModules(dir, []string{"erofs"}); err == nil || !strings.Contains(err.Error(), "neither built in") {
		t.Errorf("missing module: %v", err)
	}
}

func TestStripSignature(t *testing.T) {
	mod := []byte("\x7fELF module body")
	sig := bytes.Repeat([]byte{0xab}, 300)
	info := []byte{0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x2c} // sig_len 300
	signed := append(append(append(append([]byte(nil), mod...), sig...), info...), "~Module signature appended~\n"...)
	if got := vmguest.StripSignature(signed); !bytes.Equal(got, mod) {
		t.Errorf("stripped = %q", got)
	}
	if got := vmguest.StripSignature(mod); !bytes.Equal(got, mod) {
		t.Errorf("unsigned changed: %q", got)
	}
	if got := vmguest.StripSignature([]byte("x~Module signature appended~\n")); len(got) == 0 {
		t.Error("a short file lost its bytes")
	}
}
