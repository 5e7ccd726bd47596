package rootfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// entryInfo is a cached image as eviction sees it.
type entryInfo struct {
	key   string
	used  time.Time // image.json's mtime
	bytes int64     // allocated on disk
}

// entries lists the cached images.
func (c *Cache) entries() ([]entryInfo, error) {
	des, err := os.ReadDir(c.cfg.Dir)
	if err != nil {
		return nil, err
	}
	var es []entryInfo
	for _, de := range des {
		if !de.IsDir() || !isKey(de.Name()) {
			continue
		}
		e := entryInfo{key: de.Name()}
		if fi, err := os.Stat(c.metaPath(e.key)); err == nil {
			e.used = fi.ModTime()
		}
		e.bytes = diskUsage(filepath.Join(c.cfg.Dir, e.key))
		es = append(es, e)
	}
	return es, nil
}

// diskUsage is the space the files of dir take on disk (their allocated
// blocks: ext4 images are sparse).
func diskUsage(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		var st unix.Stat_t
		if err == nil && unix.Lstat(p, &st) == nil {
			n += st.Blocks * 512
		}
		return nil
	})
	return n
}

// Usage is the disk space of the cached images, in bytes.
func (c *Cache) Usage() (int64, error) {
	es, err := c.entries()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range es {
		n += e.bytes
	}
	return n, nil
}

// evict removes least recently used images until the cache is within
// Config.MaxBytes, skipping keep and every image leased. An image in use
// stays even if the cache then remains over its cap.
func (c *Cache) evict(keep string) {
	if c.cfg.MaxBytes <= 0 {
		return
	}
	es, err := c.entries()
	if err != nil {
		c.log.Warn("image cache: list images", "err", err)
		return
	}
	var total int64
	for _, e := range es {
		total += e.bytes
	}
	slices.SortFunc(es, func(a, b entryInfo) int { return a.used.Compare(b.used) })
	for _, e := range es {
		if total <= c.cfg.MaxBytes {
			return
		}
		if e.key == keep {
			continue
		}
		removed, err := c.removeEntry(e.key)
		if err != nil {
			c.log.Warn("image cache: evict", "image", e.key, "err", err)
		}
		if removed {
			c.log.Info("image cache: evicted", "image", e.key, "bytes", e.bytes)
			total -= e.bytes
		}
	}
	if total > c.cfg.MaxBytes {
		c.log.Warn("image cache: over its cap, the rest is in use", "bytes", total, "max", c.cfg.MaxBytes)
	}
}

// removeEntry removes the image key unless someone holds its lock (a
// lease, or a build); it reports whether it did.
func (c *Cache) removeEntry(key string) (bool, error) {
	lk, err := c.tryLock(key, false)
	if errors.Is(err, errBusy) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer lk.close()
	// Out of sight first (an atomic rename), then removed at leisure: a
	// crash in between leaves a leftover in tmp/ for Clean.
	trash := filepath.Join(c.cfg.Dir, "tmp", key+".evicted-"+randomSuffix())
	if err := os.Rename(filepath.Join(c.cfg.Dir, key), trash); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	lk.remove()
	return true, os.RemoveAll(trash)
}

// Clean is the cache's janitor: it removes what builds and evictions of
// crashed executors left in tmp/, lock files of images not cached,
// incomplete entries, and then evicts down to Config.MaxBytes. It leaves
// alone whatever a live process holds the lock of, so it is safe while
// other executors use the cache.
func (c *Cache) Clean(ctx context.Context) error {
	errs := []error{c.cleanTmp(ctx, filepath.Join(c.cfg.Dir, "tmp"), true)}
	if c.cfg.BuildDir != "" {
		errs = append(errs, c.cleanTmp(ctx, c.cfg.BuildDir, false))
	}
	errs = append(errs, c.cleanEntries())
	c.evict("")
	return errors.Join(errs...)
}

// cleanTmp removes the leftovers in tmp of builds and evictions that are
// not under way. With all, it removes what is not a build's too (the
// cache's own tmp/); otherwise only builds' (a shared BuildDir).
func (c *Cache) cleanTmp(ctx context.Context, tmp string, all bool) error {
	var errs []error
	des, err := os.ReadDir(tmp)
	if err != nil {
		return fmt.Errorf("image cache: %w", err)
	}
	for _, de := range des {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		key, rest, _ := strings.Cut(de.Name(), ".")
		if !isKey(key) || !(strings.HasPrefix(rest, "build-") || strings.HasPrefix(rest, "evicted-")) {
			if all {
				errs = append(errs, os.RemoveAll(filepath.Join(tmp, de.Name())))
			}
			continue
		}
		lk, err := c.tryLock(key, false)
		if errors.Is(err, errBusy) {
			continue // a build under way
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.log.Info("image cache: removing a leftover", "path", filepath.Join(tmp, de.Name()))
		errs = append(errs, os.RemoveAll(filepath.Join(tmp, de.Name())))
		lk.close()
	}
	return errors.Join(errs...)
}

// cleanEntries removes entries without their image.json, and lock files
// of images not cached, when no one holds their lock.
func (c *Cache) cleanEntries() error {
	var errs []error
	locks, err := os.ReadDir(filepath.Join(c.cfg.Dir, "locks"))
	if err != nil {
		return err
	}
	keys := map[string]bool{}
	for _, de := range locks {
		if k, ok := strings.CutSuffix(de.Name(), ".lock"); ok && isKey(k) {
			keys[k] = true
		}
	}
	des, err := os.ReadDir(c.cfg.Dir)
	if err != nil {
		return err
	}
	for _, de := range des {
		if isKey(de.Name()) {
			keys[de.Name()] = true
		}
	}
	for key := range keys {
		lk, err := c.tryLock(key, false)
		if errors.Is(err, errBusy) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		dir := filepath.Join(c.cfg.Dir, key)
		if _, err := os.Stat(c.metaPath(key)); errors.Is(err, os.ErrNotExist) {
			errs = append(errs, os.RemoveAll(dir))
			lk.remove()
		}
		lk.close()
	}
	return errors.Join(errs...)
}
