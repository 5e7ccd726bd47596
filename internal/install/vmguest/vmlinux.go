package vmguest

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/pierrec/lz4/v4"
)

// Vmlinux returns the uncompressed kernel (an ELF image, which QEMU
// microvm and Firecracker boot directly through PVH) inside bzImage, a
// Linux x86 boot image (/boot/vmlinuz-*). It reads the payload's place
// from the boot protocol's setup header and decompresses it: Debian's
// kernels use LZ4 (legacy frames); gzip is read too.
func Vmlinux(bzImage []byte) ([]byte, error) {
	if len(bzImage) < 0x250 || string(bzImage[0x202:0x206]) != "HdrS" {
		return nil, errors.New("not a Linux x86 boot image (no HdrS setup header)")
	}
	if v := binary.LittleEndian.Uint16(bzImage[0x206:]); v < 0x208 {
		return nil, fmt.Errorf("boot protocol %#x is too old to locate the payload", v)
	}
	setupSects := int(bzImage[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	start := (setupSects + 1) * 512
	off := int(binary.LittleEndian.Uint32(bzImage[0x248:]))
	n := int(binary.LittleEndian.Uint32(bzImage[0x24c:]))
	if n < 8 || start+off < 0 || start+off+n > len(bzImage) {
		return nil, fmt.Errorf("payload [%d, +%d) lies outside the image of %d bytes", start+off, n, len(bzImage))
	}
	payload := bzImage[start+off : start+off+n]
	// The build appends the uncompressed size, little-endian.
	size := int64(binary.LittleEndian.Uint32(payload[n-4:]))
	if size <= 0 || size > 1<<30 {
		return nil, fmt.Errorf("implausible uncompressed kernel size %d", size)
	}
	var r io.Reader
	switch {
	case bytes.HasPrefix(payload, []byte{0x02, 0x21, 0x4c, 0x18}): // LZ4 legacy
		r = lz4.NewReader(bytes.NewReader(payload))
	case bytes.HasPrefix(payload, []byte{0x1f, 0x8b}):
		gz, err := gzip.NewReader(bytes.NewReader(payload))
		if err != nil {
			return nil, fmt.Errorf("gzip payload: %w", err)
		}
		gz.Multistream(false)
		r = gz
	default:
		return nil, fmt.Errorf("the kernel's payload is compressed with a method this installer does not read (magic % x); Debian's kernels use LZ4", payload[:min(6, len(payload))])
	}
	var out bytes.Buffer
	out.Grow(int(size))
	// The decoder may fail on the appended size after the data: what
	// counts is the bytes it produced.
	_, err := io.CopyN(&out, r, size)
	if int64(out.Len()) != size {
		return nil, fmt.Errorf("decompressed %d of the kernel's %d bytes: %v", out.Len(), size, err)
	}
	f, err := elf.NewFile(bytes.NewReader(out.Bytes()))
	if err != nil {
		return nil, fmt.Errorf("the decompressed kernel is not ELF: %w", err)
	}
	f.Close()
	return out.Bytes(), nil
}
