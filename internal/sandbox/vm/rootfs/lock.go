package rootfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// lockFile is a held flock(2) lock on a cache entry's lock file. flock
// locks belong to the open file, so goroutines of one process exclude each
// other as processes do, and a lock dies with the last process holding
// the descriptor (a VM monitor that inherited it, say).
type lockFile struct {
	f    *os.File
	path string
}

// lock takes key's lock, shared or exclusive, waiting for it until ctx
// ends.
func (c *Cache) lock(ctx context.Context, key string, shared bool) (*lockFile, error) {
	delay := 5 * time.Millisecond
	for {
		lk, err := c.tryLock(key, shared)
		if err == nil {
			return lk, nil
		}
		if !errors.Is(err, errBusy) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// tryLock takes key's lock if it is free, and fails with errBusy if not.
// A lock file removed by an evictor while this opened it is opened anew.
func (c *Cache) tryLock(key string, shared bool) (*lockFile, error) {
	p := c.lockPath(key)
	for {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("image cache: %w", err)
		}
		if err := flock(f, shared); err != nil {
			f.Close()
			return nil, err
		}
		// The lock counts only if the file is still the one at p.
		var held, now unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(p, &now) == nil && held.Ino == now.Ino && held.Dev == now.Dev {
			return &lockFile{f: f, path: p}, nil
		}
		f.Close()
	}
}

func flock(f *os.File, shared bool) error {
	how := unix.LOCK_EX
	if shared {
		how = unix.LOCK_SH
	}
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EWOULDBLOCK):
			return errBusy
		}
		return fmt.Errorf("image cache: lock %s: %w", f.Name(), err)
	}
}

// relock turns the lock shared or exclusive, waiting until ctx ends. The
// change is not atomic: another may take the lock in between.
func (l *lockFile) relock(ctx context.Context, shared bool) error {
	delay := 5 * time.Millisecond
	for {
		err := flock(l.f, shared)
		if !errors.Is(err, errBusy) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// remove deletes the lock file while the lock is held exclusively; those
// waiting for it find it gone and make a new one.
func (l *lockFile) remove() { os.Remove(l.path) }

func (l *lockFile) close() error { return l.f.Close() }
