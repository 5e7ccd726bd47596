package rootfs_test

import (
	"cmp"
	"context"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/daemon"
	"golang.org/x/sys/unix"

	"github.com/execd/execd/internal/sandbox/vm/rootfs"
)

// benchImage is the image the formats are compared on: a Go toolchain
// image (bench build's, about 230 MB) where dockerd has it.
var benchImage = os.Getenv("EXECD_BENCH_IMAGE")

// BenchmarkFormats compares erofs and ext4 on one image of the local
// dockerd: the layers' extraction (docker save included), each format's
// build (with the image's size on disk), and reading every file of the
// mounted image with a cold page cache. docs/vm-images.md has results:
//
//	EXECD_BENCH_IMAGE=execd-bench/go:go1.26.8 go test -run '^$' -bench Formats -benchtime 3x ./internal/sandbox/vm/rootfs
func BenchmarkFormats(b *testing.B) {
	needRoot(b)
	cli := needDocker(b)
	ref, err := name.ParseReference(cmp.Or(benchImage, testImage))
	if err != nil {
		b.Fatal(err)
	}
	img, err := daemon.Image(ref, daemon.WithClient(cli), daemon.WithFileBufferedOpener())
	if err != nil {
		b.Fatalf("%s: %v", ref, err)
	}
	tree := b.TempDir()
	if err := rootfs.Flatten(context.Background(), img, tree); err != nil {
		b.Fatal(err)
	}
	b.Run("flatten", func(b *testing.B) {
		for b.Loop() {
			dir := b.TempDir()
			if err := rootfs.Flatten(context.Background(), img, dir); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, v := range []struct {
		f           rootfs.Format
		compression string
	}{{rootfs.FormatErofs, ""}, {rootfs.FormatErofs, "lz4"}, {rootfs.FormatExt4, ""}} {
		f, variant := v.f, string(v.f)
		if v.compression != "" {
			variant += "-" + v.compression
		}
		image := filepath.Join(b.TempDir(), "rootfs."+string(f))
		b.Run(variant+"/build", func(b *testing.B) {
			needFormat(b, f)
			for b.Loop() {
				os.Remove(image)
				if err := rootfs.MakeImage(context.Background(), f, tree, image, rootfs.MakeOptions{Compression: v.compression}); err != nil {
					b.Fatal(err)
				}
			}
			var st unix.Stat_t
			if err := unix.Stat(image, &st); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(st.Blocks*512)/(1<<20), "MiB-on-disk")
		})
		b.Run(variant+"/read-cold", func(b *testing.B) {
			if _, err := os.Stat(image); err != nil {
				b.Skip("no image was built")
			}
			root := b.TempDir()
			if out, err := exec.Command("mount", "-t", string(f), "-o", "loop,ro", image, root).CombinedOutput(); err != nil {
				b.Fatalf("mount: %v: %s", err, out)
			}
			defer exec.Command("umount", root).Run()
			var total int64
			for b.Loop() {
				b.StopTimer()
				unix.Sync()
				os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
				b.StartTimer()
				total = readAll(b, root)
			}
			b.SetBytes(total)
		})
	}
}

// readAll reads every regular file under root, returning the bytes read.
func readAll(b *testing.B, root string) int64 {
	var n int64
	buf := make([]byte, 1<<20)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		m, err := io.CopyBuffer(io.Discard, f, buf)
		n += m
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// BenchmarkCache_Get measures what a job waits for its image: cold (docker
// save, extraction, mkfs, into an empty cache) and cached (the image
// resolved again, found, leased).
//
//	EXECD_BENCH_IMAGE=execd-bench/go:go1.26.8 go test -run '^$' -bench Cache_Get -benchtime 3x ./internal/sandbox/vm/rootfs
func BenchmarkCache_Get(b *testing.B) {
	needRoot(b)
	needDocker(b)
	ref := cmp.Or(benchImage, testImage)
	newCache := func(dir string) *rootfs.Cache {
		c, err := rootfs.New(rootfs.Config{Dir: dir, Sources: []rootfs.Source{rootfs.SourceDaemon}})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			im, err := newCache(b.TempDir()).Get(context.Background(), ref, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			im.Release()
		}
	})
	b.Run("cached", func(b *testing.B) {
		c := newCache(b.TempDir())
		im, err := c.Get(context.Background(), ref, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		im.Release()
		for b.Loop() {
			im, err := c.Get(context.Background(), ref, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			im.Release()
		}
	})
}
