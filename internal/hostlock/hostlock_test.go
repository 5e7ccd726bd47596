package hostlock_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/execd/execd/internal/hostlock"
)

// A second Lock of the same file waits for the first to be released, and
// gives up when its context ends.
func TestLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := hostlock.Lock(t.Context(), path)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := hostlock.Lock(ctx, path); err == nil {
		t.Fatal("a second Lock while the first is held succeeded")
	}
	got := make(chan error, 1)
	go func() {
		unlock2, err := hostlock.Lock(t.Context(), path)
		if err == nil {
			unlock2()
		}
		got <- err
	}()
	unlock()
	if err := <-got; err != nil {
		t.Errorf("Lock after unlock: %v", err)
	}
}
