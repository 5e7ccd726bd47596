package netpolicy

import (
	"context"
	"fmt"

	"github.com/execd/execd/internal/hostlock"
)

// lock takes the host-wide lock of firewall changes, waiting for it until
// ctx ends.
func lock(ctx context.Context) (unlock func(), err error) {
	unlock, err = hostlock.Lock(ctx, lockPath)
	if err != nil {
		return nil, fmt.Errorf("netpolicy: %w", err)
	}
	return unlock, nil
}
