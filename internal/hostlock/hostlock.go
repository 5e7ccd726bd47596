// Package hostlock serialises changes to the host's shared state (its
// firewall, its network interfaces) between the goroutines and the
// processes that make them, with an exclusive flock(2) on a lock file.
package hostlock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// errUnsupported is Lock's error where there is no flock(2).
var errUnsupported = errors.New("file locks are not supported on this system")

// Lock takes the exclusive lock of the file at path, creating it, and
// waits for it until ctx ends. Each call opens the file anew, so that
// goroutines of one process exclude each other as processes do. Calling
// unlock releases the lock; a process that dies releases its locks.
func Lock(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the lock file (run as root): %w", err)
	}
	for {
		busy, err := tryLock(f)
		if err == nil && !busy {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for %s, held by another change: %w", path, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
