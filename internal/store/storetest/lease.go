package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/execd/execd/internal/store"
)

// RunLeaser runs the conformance suite of [store.Leaser] on two stores of
// one database, as two coordinators sharing it would use them. open
// returns two stores on one new, empty database and arranges for both to
// be closed.
func RunLeaser(t *testing.T, open func(t *testing.T) (a, b store.Leaser)) {
	tests := []struct {
		name string
		fn   func(t *testing.T, a, b store.Leaser)
	}{
		{"Expiry", testLeaseExpiry},
		{"Release", testLeaseRelease},
		{"Names", testLeaseNames},
		{"Concurrent", testLeaseConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, b := open(t)
			tt.fn(t, a, b)
		})
	}
}

const leaseTTL = 15 * time.Second

func checkAcquire(t *testing.T, s store.Leaser, name, holder string, now time.Duration, want bool) {
	t.Helper()
	held, err := s.AcquireLease(t.Context(), name, holder, leaseTTL, at(now))
	mustOK(t, err)
	if held != want {
		t.Errorf("AcquireLease(%q, %q) at t0+%v = %v, want %v", name, holder, now, held, want)
	}
}

func testLeaseExpiry(t *testing.T, a, b store.Leaser) {
	checkAcquire(t, a, "publisher", "coord-a", 0, true)
	checkAcquire(t, b, "publisher", "coord-b", 0, false)
	checkAcquire(t, a, "publisher", "coord-a", 5*time.Second, true) // renewed until t0+20s
	checkAcquire(t, b, "publisher", "coord-b", 19*time.Second, false)
	checkAcquire(t, b, "publisher", "coord-b", 20*time.Second, true) // expired at t0+20s
	checkAcquire(t, a, "publisher", "coord-a", 21*time.Second, false)
	checkAcquire(t, b, "publisher", "coord-b", 25*time.Second, true)
}

func testLeaseRelease(t *testing.T, a, b store.Leaser) {
	checkAcquire(t, a, "publisher", "coord-a", 0, true)
	mustOK(t, b.ReleaseLease(t.Context(), "publisher", "coord-b")) // not b's: nothing happens
	checkAcquire(t, b, "publisher", "coord-b", time.Second, false)
	mustOK(t, a.ReleaseLease(t.Context(), "publisher", "coord-a"))
	checkAcquire(t, b, "publisher", "coord-b", time.Second, true)
	mustOK(t, a.ReleaseLease(t.Context(), "absent", "coord-a"))
}

func testLeaseNames(t *testing.T, a, b store.Leaser) {
	checkAcquire(t, a, "x", "coord-a", 0, true)
	checkAcquire(t, b, "y", "coord-b", 0, true)
	checkAcquire(t, b, "x", "coord-b", 0, false)
	checkAcquire(t, a, "y", "coord-a", 0, false)
}

// testLeaseConcurrent races holders through both stores for a free lease:
// exactly one wins.
func testLeaseConcurrent(t *testing.T, a, b store.Leaser) {
	const holders = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		won  []string
		errs []error
	)
	for i := range holders {
		s := a
		if i%2 == 1 {
			s = b
		}
		holder := fmt.Sprintf("coord-%d", i)
		wg.Go(func() {
			held, err := s.AcquireLease(t.Context(), "publisher", holder, leaseTTL, t0)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			if held {
				won = append(won, holder)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if len(won) != 1 {
		t.Errorf("holders that acquired a free lease at once: %v, want exactly one", won)
	}
}
