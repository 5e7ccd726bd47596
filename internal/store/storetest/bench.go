package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/execd/execd/internal/benchutil"
	"github.com/execd/execd/internal/store"
)

// Bench measures the store's side of the executor protocol cycle (Dequeue,
// AddLogEntry, UpdateLogEntry, MarkComplete: one b.N iteration per job) on
// jobs enqueued beforehand, and reports jobs/s. The top-level run uses
// b.RunParallel; the workers=N runs use exactly N goroutines, each acting as
// an executor of its own, because b.SetParallelism can only make multiples
// of GOMAXPROCS. open returns a new, empty store and arranges for it to be
// closed.
func Bench(b *testing.B, open func(b *testing.B) store.Store) {
	b.Run("RunParallel", func(b *testing.B) {
		s := open(b)
		enqueueN(b, s, b.N)
		var workers atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			ex := fmt.Sprintf("bench-%d", workers.Add(1))
			for i := 0; pb.Next(); i++ {
				if err := cycle(s, ex, i); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
	})
	for _, n := range []int{1, 8, 32, 128} {
		b.Run(fmt.Sprintf("workers=%d", n), func(b *testing.B) {
			s := open(b)
			enqueueN(b, s, b.N)
			var (
				done atomic.Int64
				wg   sync.WaitGroup
			)
			b.ResetTimer()
			for w := range n {
				wg.Go(func() {
					ex := fmt.Sprintf("bench-%d", w)
					for i := 0; ; i++ {
						if err := cycle(s, ex, i); errors.Is(err, errEmpty) {
							return
						} else if err != nil {
							b.Error(err)
							return
						}
						done.Add(1)
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			if got := done.Load(); got != int64(b.N) {
				b.Errorf("processed %d jobs, want %d", got, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
		})
	}
}

const benchQueue = "bench"

var errEmpty = benchutil.ErrEmpty

// cycle runs one job through the protocol as executor ex.
func cycle(s store.Store, ex string, i int) error {
	return benchutil.StoreCycle(context.Background(), s, benchQueue, ex, i)
}

// enqueueN enqueues n jobs from a few goroutines, outside the timer.
func enqueueN(b *testing.B, s store.Store, n int) {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	if err := benchutil.Enqueue(context.Background(), s, benchQueue, n); err != nil {
		b.Fatal(err)
	}
}
