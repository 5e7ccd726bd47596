package rootfs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// DefaultDir is where the cache keeps its images by default.
const DefaultDir = "/var/lib/execd/vm/images"

// Config configures a [Cache].
type Config struct {
	// Dir holds the cache; default DefaultDir. Executors on one host may
	// share it.
	Dir string
	// MaxImageBytes fails the build of an image whose files hold more
	// than this (ErrTooLarge), before it fills the disk: a layer may
	// decompress to far more than its download. 0 means no limit.
	MaxImageBytes int64
	// BuildDir is where image layers are extracted before mkfs makes the
	// image of them; default Dir's tmp/. A tmpfs (/dev/shm) makes a cold
	// build several times faster (docs/vm-images.md) at the cost of
	// memory as large as the image while it builds.
	BuildDir string
	// Format is the file system of new images; "" is DefaultFormat, or
	// ext4 where mkfs.erofs is missing. See [ChooseFormat].
	Format Format
	// Compression compresses new erofs images ("lz4", "lz4hc"; default
	// none). See [MakeOptions].
	Compression string
	// MaxBytes caps the disk space of the cached images (allocated
	// blocks); least recently used images that no VM uses are removed to
	// stay under it. 0 means no cap.
	MaxBytes int64
	// Sources are where images are looked up, in order; default
	// DefaultSources.
	Sources []Source
	// DockerHost is the Docker daemon's address for SourceDaemon; empty
	// means DOCKER_HOST or the default socket.
	DockerHost string
	// LayoutDir is an OCI image layout directory for SourceLayout; empty
	// skips that source.
	LayoutDir string
	// RegistryMirrors are registry mirrors (URLs or host[:port]) that
	// Docker Hub images are fetched through first
	// (EXECUTOR_DOCKER_REGISTRY_MIRROR_URL).
	RegistryMirrors []string
	// Auth holds registry credentials, registry host -> base64 of
	// "user:password", used when Get is given none.
	Auth map[string]string
	// Transport, when set, carries the requests to registries.
	Transport http.RoundTripper
	// Logger receives the cache's messages; nil discards them.
	Logger *slog.Logger
}

// Cache turns container images into root file system images, and keeps
// them on disk by image digest. It is safe for concurrent use, by several
// goroutines and by several processes sharing its directory.
//
// Layout of Dir:
//
//	sha256-<hex>/rootfs.erofs   the image (or rootfs.ext4)
//	sha256-<hex>/image.json     its Meta; its mtime is the last use
//	locks/sha256-<hex>.lock     flock: shared while leased, exclusive to build or evict
//	tmp/                        builds under way, and evicted images being removed
type Cache struct {
	cfg    Config
	format Format
	res    *resolver
	log    *slog.Logger
	now    func() time.Time
}

// Meta describes a cached image: what the guest needs to run steps as the
// image would (ImageConfig) and how the image was made.
type Meta struct {
	// ID is the image's config digest ("sha256:..."), the cache key. It
	// names the same image whatever source or tag it came from.
	ID string `json:"id"`
	// Ref is the reference the image was first built for, and Source where
	// it was found.
	Ref    string `json:"ref"`
	Source string `json:"source"`
	// Format is the file system of the image file.
	Format Format `json:"format"`
	// Config is the image's run configuration.
	Config ImageConfig `json:"config"`
	// Built is when the image was made, and BuildSeconds how long it took
	// (fetching included).
	Built        time.Time `json:"built"`
	BuildSeconds float64   `json:"buildSeconds"`
}

// ImageConfig is what of the image's config the guest needs to run a step
// as docker would: as User, with Env, in WorkingDir.
type ImageConfig struct {
	User       string   `json:"user,omitempty"`
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
}

// Image is a cached root file system image leased by a caller: it is not
// evicted until Release.
type Image struct {
	Meta
	// Path is the image file, to attach read-only to a VM.
	Path string
	// MetaPath is the JSON of Meta next to it.
	MetaPath string
	// Fresh is true when this Get built the image, false when it was
	// cached or another built it meanwhile.
	Fresh bool

	lease *lockFile
}

// LeaseFile is the open file whose shared lock is the lease (nil after
// Release). A VM monitor started with it as an inherited descriptor keeps
// the image leased for as long as it runs, even if the executor dies
// first.
func (im *Image) LeaseFile() *os.File {
	if im.lease == nil {
		return nil
	}
	return im.lease.f
}

// Release ends the lease. It is idempotent.
func (im *Image) Release() error {
	if im.lease == nil {
		return nil
	}
	err := im.lease.close()
	im.lease = nil
	return err
}

// New returns a cache in cfg.Dir, which it creates (mode 0700: the
// extracted trees hold the images' setuid programs).
func New(cfg Config) (*Cache, error) {
	if cfg.Dir == "" {
		cfg.Dir = DefaultDir
	}
	if len(cfg.Sources) == 0 {
		cfg.Sources = DefaultSources
	}
	for _, s := range cfg.Sources {
		switch s {
		case SourceDaemon, SourceLayout, SourceRegistry:
		default:
			return nil, fmt.Errorf("unknown image source %q (want daemon, layout or registry)", s)
		}
	}
	format, err := ChooseFormat(cfg.Format)
	if err != nil {
		return nil, err
	}
	if format != FormatErofs {
		cfg.Compression = "" // mkfs.erofs is missing: ext4 instead, uncompressed
	}
	for _, d := range []string{cfg.Dir, filepath.Join(cfg.Dir, "locks"), filepath.Join(cfg.Dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("image cache: %w", err)
		}
	}
	if err := os.Chmod(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Cache{cfg: cfg, format: format, res: &resolver{cfg: cfg}, log: log, now: time.Now}, nil
}

// Dir is the cache's directory.
func (c *Cache) Dir() string { return c.cfg.Dir }

// Format is the file system the cache builds new images with.
func (c *Cache) Format() Format { return c.format }

// Get returns the root file system image of ref, leased: building it when
// the cache lacks it, or waiting for the build another job or executor
// has under way. auths, registry host -> base64 "user:password", replace
// the cache's Config.Auth when given. Progress goes to out (nil discards
// it). The caller must Release the image when its VM is gone.
//
// Errors wrap sandbox.ErrImageNotFound or sandbox.ErrRegistryDenied when
// no retry can help.
func (c *Cache) Get(ctx context.Context, ref string, auths map[string]string, out io.Writer) (*Image, error) {
	if out == nil {
		out = io.Discard
	}
	if auths == nil {
		auths = c.cfg.Auth
	}
	start := c.now()
	f, err := c.res.resolve(ctx, ref, auths)
	if err != nil {
		return nil, err
	}
	key := keyOf(f.id)
	fmt.Fprintf(out, "image %s is %s (from %s)\n", ref, f.id, f.source)
	for {
		lk, err := c.lock(ctx, key, true)
		if err != nil {
			return nil, err
		}
		if im, err := c.open(key, lk); err == nil {
			fmt.Fprintf(out, "root file system image %s is cached\n", im.Path)
			return im, nil
		}
		// Not there: build it with the lock held exclusively, so that
		// others wait for this build instead of making their own; or,
		// once the lock is had, find that another just built it.
		lk.close()
		if lk, err = c.lock(ctx, key, false); err != nil {
			return nil, err
		}
		fresh := false
		if _, err := os.Stat(c.metaPath(key)); err != nil {
			if err := c.build(ctx, key, ref, f, start, out); err != nil {
				lk.close()
				return nil, err
			}
			fresh = true
		}
		// Down to shared. That is not atomic: an evictor may take the
		// image in between, and then the loop builds it again.
		if err := lk.relock(ctx, true); err != nil {
			lk.close()
			return nil, err
		}
		im, err := c.open(key, lk)
		if err == nil {
			im.Fresh = fresh
			if fresh {
				c.evict(key)
			}
			return im, nil
		}
		lk.close()
	}
}

// open returns the cached image key, leased with lk (held shared), and
// records its use.
func (c *Cache) open(key string, lk *lockFile) (*Image, error) {
	b, err := os.ReadFile(c.metaPath(key))
	if err != nil {
		return nil, err
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("image cache: %s: %w", c.metaPath(key), err)
	}
	p := filepath.Join(c.cfg.Dir, key, "rootfs."+string(m.Format))
	if _, err := os.Stat(p); err != nil {
		return nil, err
	}
	now := c.now()
	os.Chtimes(c.metaPath(key), now, now)
	return &Image{Meta: m, Path: p, MetaPath: c.metaPath(key), lease: lk}, nil
}

// build makes the image of key, holding its lock exclusively: in a
// temporary directory under tmp/, renamed into place when complete.
func (c *Cache) build(ctx context.Context, key, ref string, f *found, start time.Time, out io.Writer) error {
	// Made 0700 by MkdirTemp: the tree in it holds the image's setuid
	// programs, which no one else may reach.
	tmp, err := os.MkdirTemp(filepath.Join(c.cfg.Dir, "tmp"), key+".build-")
	if err != nil {
		return fmt.Errorf("image cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	holder := tmp
	if c.cfg.BuildDir != "" {
		if holder, err = os.MkdirTemp(c.cfg.BuildDir, key+".build-"); err != nil {
			return fmt.Errorf("image cache: build directory: %w", err)
		}
		defer os.RemoveAll(holder)
	}
	// The image's root directory is the tree's: 0755, root's, unless a
	// layer says otherwise.
	tree := filepath.Join(holder, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		return fmt.Errorf("image cache: %w", err)
	}
	if err := os.Chmod(tree, 0o755); err != nil { // whatever the umask
		return fmt.Errorf("image cache: %w", err)
	}
	entry := filepath.Join(tmp, "entry")
	if err := os.Mkdir(entry, 0o755); err != nil {
		return fmt.Errorf("image cache: %w", err)
	}
	cf, err := f.img.ConfigFile()
	if err != nil {
		return fmt.Errorf("image %s: read its config: %w", ref, err)
	}
	fmt.Fprintf(out, "extracting the layers of %s\n", ref)
	t0 := c.now()
	if err := flatten(ctx, f.img, tree, c.cfg.MaxImageBytes); err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	fmt.Fprintf(out, "extracted in %.1fs; making the %s root file system image\n", c.now().Sub(t0).Seconds(), c.format)
	t0 = c.now()
	image := filepath.Join(entry, "rootfs."+string(c.format))
	if err := MakeImage(ctx, c.format, tree, image, MakeOptions{Compression: c.cfg.Compression}); err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	fmt.Fprintf(out, "made %s (%d MiB) in %.1fs\n", filepath.Base(image), diskUsage(image)>>20, c.now().Sub(t0).Seconds())
	m := Meta{
		ID: f.id.String(), Ref: ref, Source: f.source, Format: c.format,
		Config: imageConfig(cf), Built: c.now().UTC(),
	}
	m.BuildSeconds = c.now().Sub(start).Seconds()
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(entry, "image.json"), b, 0o644); err != nil {
		return fmt.Errorf("image cache: %w", err)
	}
	if err := syncTree(entry); err != nil {
		return fmt.Errorf("image cache: %w", err)
	}
	if err := os.Rename(entry, filepath.Join(c.cfg.Dir, key)); err != nil {
		return fmt.Errorf("image cache: %w", err)
	}
	c.log.Info("built root file system image", "ref", ref, "id", m.ID, "format", m.Format, "seconds", m.BuildSeconds)
	return nil
}

// syncTree flushes an entry's files before it is renamed into place, so
// that a crash never leaves a complete-looking entry with lost content.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}

func imageConfig(cf *v1.ConfigFile) ImageConfig {
	c := cf.Config
	return ImageConfig{User: c.User, Env: c.Env, WorkingDir: c.WorkingDir, Entrypoint: c.Entrypoint, Cmd: c.Cmd}
}

// keyOf names a digest in the cache: "sha256-<hex>".
func keyOf(h v1.Hash) string { return h.Algorithm + "-" + h.Hex }

func (c *Cache) metaPath(key string) string { return filepath.Join(c.cfg.Dir, key, "image.json") }

func (c *Cache) lockPath(key string) string {
	return filepath.Join(c.cfg.Dir, "locks", key+".lock")
}

// isKey reports whether name is a cache entry's name.
func isKey(name string) bool {
	alg, hexs, ok := strings.Cut(name, "-")
	if !ok || alg != "sha256" || len(hexs) != 64 {
		return false
	}
	_, err := hex.DecodeString(hexs)
	return err == nil
}

func randomSuffix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

var errBusy = errors.New("busy")
