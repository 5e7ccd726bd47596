package rootfs_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/execd/execd/internal/sandbox/vm/rootfs"
)

// writeLayout writes an OCI image layout holding images by name.
func writeLayout(t *testing.T, images map[string]v1.Image) string {
	t.Helper()
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	for name, img := range images {
		if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": name})); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// randomImage is an image of one layer of random content.
func randomImage(t *testing.T, size int64) v1.Image {
	t.Helper()
	l, err := random.Layer(size, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func newCache(t *testing.T, cfg rootfs.Config) *rootfs.Cache {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Sources == nil {
		cfg.Sources = []rootfs.Source{rootfs.SourceLayout}
	}
	c, err := rootfs.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func get(t *testing.T, c *rootfs.Cache, ref string) *rootfs.Image {
	t.Helper()
	im, err := c.Get(context.Background(), ref, nil, nil)
	if err != nil {
		t.Fatalf("Get(%s) = %v", ref, err)
	}
	t.Cleanup(func() { im.Release() })
	return im
}

func TestCache_Get(t *testing.T) {
	needRoot(t)
	img := imageOf(t, sampleLayers()...)
	img, err := mutate.Config(img, v1.Config{User: "1000:1000", Env: []string{"PATH=/bin", "A=1"}, WorkingDir: "/home/u", Cmd: []string{"/bin/sh"}})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := img.ConfigName()
	dir := writeLayout(t, map[string]v1.Image{"example.com/app:1": img, "other.example/app:latest": img})
	c := newCache(t, rootfs.Config{LayoutDir: dir})
	needFormat(t, c.Format())

	im := get(t, c, "example.com/app:1")
	if !im.Fresh || im.ID != id.String() || im.Format != c.Format() {
		t.Errorf("Get() = fresh %v, ID %s, format %s; want fresh, %s, %s", im.Fresh, im.ID, im.Format, id, c.Format())
	}
	want := rootfs.ImageConfig{User: "1000:1000", Env: []string{"PATH=/bin", "A=1"}, WorkingDir: "/home/u", Cmd: []string{"/bin/sh"}}
	var m rootfs.Meta
	b, err := os.ReadFile(im.MetaPath)
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil || !configEqual(m.Config, want) || !configEqual(im.Config, want) {
		t.Errorf("image config = %+v (file: %+v, %v), want %+v", im.Config, m.Config, err, want)
	}
	checkSample(t, mountImage(t, im.Format, im.Path))

	// The same image under another name is the same cache entry.
	im2 := get(t, c, "other.example/app")
	if im2.Fresh || im2.Path != im.Path {
		t.Errorf("Get() of the same image by another name: fresh %v, path %s; want cached %s", im2.Fresh, im2.Path, im.Path)
	}
}

func configEqual(a, b rootfs.ImageConfig) bool {
	return a.User == b.User && slices.Equal(a.Env, b.Env) && a.WorkingDir == b.WorkingDir && slices.Equal(a.Cmd, b.Cmd)
}

// TestCache_GetConcurrent: jobs wanting one image at once build it once.
// Each Get opens the lock file itself, as another executor would: flock
// locks of separate opens exclude each other as processes do.
func TestCache_GetConcurrent(t *testing.T) {
	needRoot(t)
	dir := writeLayout(t, map[string]v1.Image{"example.com/app:1": randomImage(t, 4<<20)})
	cacheDir := t.TempDir()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		fresh int
		paths = map[string]bool{}
	)
	for range 8 {
		// A Cache each, as separate executors sharing the directory.
		c := newCache(t, rootfs.Config{Dir: cacheDir, LayoutDir: dir})
		wg.Go(func() {
			im, err := c.Get(context.Background(), "example.com/app:1", nil, nil)
			if err != nil {
				t.Errorf("Get() = %v", err)
				return
			}
			defer im.Release()
			mu.Lock()
			defer mu.Unlock()
			if im.Fresh {
				fresh++
			}
			paths[im.Path] = true
		})
	}
	wg.Wait()
	if fresh != 1 || len(paths) != 1 {
		t.Errorf("8 concurrent Gets built %d times, into %d paths; want 1 build, 1 path", fresh, len(paths))
	}
}

func TestCache_Evict(t *testing.T) {
	needRoot(t)
	imgs := map[string]v1.Image{}
	for _, n := range []string{"a", "b", "c"} {
		imgs["example.com/"+n+":1"] = randomImage(t, 2<<20)
	}
	dir := writeLayout(t, imgs)
	probe := newCache(t, rootfs.Config{LayoutDir: dir})
	one := get(t, probe, "example.com/a:1")
	one.Release()
	size, err := probe.Usage()
	if err != nil || size == 0 {
		t.Fatalf("Usage() = %d, %v", size, err)
	}

	// Room for one image and a half.
	c := newCache(t, rootfs.Config{LayoutDir: dir, MaxBytes: size * 3 / 2})
	a := get(t, c, "example.com/a:1")
	a.Release()
	b := get(t, c, "example.com/b:1") // a is not in use: evicted
	if _, err := os.Stat(a.Path); !os.IsNotExist(err) {
		t.Errorf("a unused and least recently used: %v, want it evicted", err)
	}
	cc := get(t, c, "example.com/c:1") // b is in use: kept
	if _, err := os.Stat(b.Path); err != nil {
		t.Errorf("b leased: %v, want it kept", err)
	}
	if n, _ := c.Usage(); n <= size*3/2 {
		t.Errorf("usage %d with two images leased, want over the cap %d", n, size*3/2)
	}
	b.Release()
	if err := c.Clean(context.Background()); err != nil {
		t.Fatalf("Clean() = %v", err)
	}
	if _, err := os.Stat(b.Path); !os.IsNotExist(err) {
		t.Errorf("b released: %v, want it evicted by Clean", err)
	}
	if _, err := os.Stat(cc.Path); err != nil {
		t.Errorf("c leased: %v, want it kept", err)
	}
	// An evicted image comes back.
	if again := get(t, c, "example.com/a:1"); !again.Fresh {
		t.Error("Get() of an evicted image: not fresh, want it built again")
	}
}

func TestCache_Clean(t *testing.T) {
	needRoot(t)
	dir, buildDir := t.TempDir(), t.TempDir()
	c := newCache(t, rootfs.Config{Dir: dir, BuildDir: buildDir, LayoutDir: t.TempDir()})
	key := func(b byte) string { return "sha256-" + string(slices.Repeat([]byte{b}, 64)) }
	leftovers := map[string]bool{ // path -> kept
		filepath.Join(dir, "tmp", key('a')+".build-123"):   false,
		filepath.Join(dir, "tmp", key('b')+".evicted-456"): false,
		filepath.Join(dir, "tmp", "junk"):                  false,
		filepath.Join(dir, key('d')):                       false, // an entry without image.json
		filepath.Join(dir, "tmp", key('c')+".build-789"):   true,  // its build is under way
		filepath.Join(buildDir, key('a')+".build-abc"):     false,
		filepath.Join(buildDir, key('c')+".build-def"):     true,
		filepath.Join(buildDir, "someone-elses"):           true,
	}
	for p := range leftovers {
		if err := os.MkdirAll(filepath.Join(p, "tree", "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A live build holds its image's lock.
	lock, err := os.OpenFile(filepath.Join(dir, "locks", key('c')+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if err := c.Clean(context.Background()); err != nil {
		t.Fatalf("Clean() = %v", err)
	}
	for p, kept := range leftovers {
		_, err := os.Stat(p)
		if got := err == nil; got != kept {
			t.Errorf("%s: exists %v after Clean, want %v", p, got, kept)
		}
	}
}

func TestCache_GetTooLarge(t *testing.T) {
	needRoot(t)
	dir := writeLayout(t, map[string]v1.Image{"example.com/big:1": randomImage(t, 4<<20)})
	c := newCache(t, rootfs.Config{LayoutDir: dir, MaxImageBytes: 1 << 20})
	if _, err := c.Get(context.Background(), "example.com/big:1", nil, nil); !errors.Is(err, rootfs.ErrTooLarge) {
		t.Fatalf("Get() = %v, want %v", err, rootfs.ErrTooLarge)
	}
	if n, _ := c.Usage(); n != 0 {
		t.Errorf("usage %d after a failed build, want 0", n)
	}
	if des, _ := os.ReadDir(filepath.Join(c.Dir(), "tmp")); len(des) != 0 {
		t.Errorf("tmp/ holds %d entries after a failed build, want none", len(des))
	}
}

// TestImage_LeaseFile: a VM monitor that inherited the lease keeps the
// image from eviction after the executor released it (or died).
func TestImage_LeaseFile(t *testing.T) {
	needRoot(t)
	dir := writeLayout(t, map[string]v1.Image{"example.com/app:1": randomImage(t, 1<<20)})
	c := newCache(t, rootfs.Config{LayoutDir: dir, MaxBytes: 1})
	im := get(t, c, "example.com/app:1")
	monitor := exec.Command("sleep", "60")
	monitor.ExtraFiles = []*os.File{im.LeaseFile()}
	if err := monitor.Start(); err != nil {
		t.Fatal(err)
	}
	defer monitor.Process.Kill()
	im.Release()
	if im.LeaseFile() != nil {
		t.Error("LeaseFile() after Release is not nil")
	}
	if err := c.Clean(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(im.Path); err != nil {
		t.Fatalf("image leased by a running monitor: %v, want it kept", err)
	}
	monitor.Process.Kill()
	monitor.Wait()
	if err := c.Clean(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(im.Path); !os.IsNotExist(err) {
		t.Errorf("image after its monitor ended: %v, want it evicted", err)
	}
}
