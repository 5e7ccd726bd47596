package store

import (
	"context"
	"time"
)

// Leaser grants named leases: a lease is held by one holder at a time until
// it expires or is released, across every coordinator sharing the
// database. The coordinator uses one to elect the single publisher of the
// autoscaling metric. Both implementations of [Store] implement it; its
// conformance suite is storetest.RunLeaser.
//
// Expiry compares the times callers pass in, so coordinators sharing a
// database need clocks that agree to well within a lease's duration.
type Leaser interface {
	// AcquireLease takes the lease name for holder until now+ttl, if it is
	// free, expired by now, or already holder's (which renews it), and
	// reports whether holder holds it. A lease held by another is left
	// alone: held is false and err nil.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration, now time.Time) (held bool, err error)
	// ReleaseLease frees the lease name if holder holds it, so that
	// another may take it at once; otherwise it does nothing.
	ReleaseLease(ctx context.Context, name, holder string) error
}
