package storetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/execd/execd/internal/protocol"
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

var errEmpty = errors.New("bench queue is empty")

// cycle runs one job through the protocol as executor ex.
func cycle(s store.Store, ex string, i int) error {
	ctx := context.Background()
	tok := store.HashToken(ex + "/" + strconv.Itoa(i))
	j, ok, err := s.Dequeue(ctx, benchQueue, store.DequeueOptions{ExecutorName: ex, TokenHash: tok}, time.Now())
	if err != nil {
		return err
	}
	if !ok {
		return errEmpty
	}
	entry := protocol.ExecutionLogEntry{Key: "step.docker.0", Command: []string{"sh", "-c", "make test"}, StartTime: time.Now()}
	eid, err := s.AddLogEntry(ctx, benchQueue, j.ID, ex, entry)
	if err != nil {
		return err
	}
	exit, dur := 0, 12
	entry.Out, entry.ExitCode, entry.DurationMs = "stdout: ok\n", &exit, &dur
	if err := s.UpdateLogEntry(ctx, benchQueue, j.ID, ex, eid, entry); err != nil {
		return err
	}
	return s.MarkComplete(ctx, benchQueue, j.ID, ex, time.Now())
}

// enqueueN enqueues n jobs from a few goroutines, outside the timer.
func enqueueN(b *testing.B, s store.Store, n int) {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	spec := store.Spec{
		RepositoryName: "github.com/execd/bench",
		Commit:         "0123456789abcdef0123456789abcdef01234567",
		DockerSteps:    []protocol.DockerStep{{Key: "test", Image: "alpine:3", Commands: []string{"make test"}, Dir: "."}},
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if _, err := s.Enqueue(context.Background(), benchQueue, spec, 1, time.Now()); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}
