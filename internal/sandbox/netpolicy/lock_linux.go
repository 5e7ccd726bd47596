package netpolicy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// lock takes the host-wide lock of firewall changes, waiting for it until
// ctx ends. Each call opens the file anew, so that goroutines of one
// process exclude each other as processes do.
func lock(ctx context.Context) (unlock func(), err error) {
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("netpolicy: open the lock file (run as root): %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("netpolicy: lock %s: %w", lockPath, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("netpolicy: wait for %s, held by another firewall change: %w", lockPath, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
