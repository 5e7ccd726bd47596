// Package benchutil holds the job cycles that the Go benchmarks and the
// bench command share: the executor protocol cycle over HTTP, the same
// cycle as direct store calls (the ceiling), and bulk enqueueing.
package benchutil

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/queueclient"
	"github.com/execd/execd/internal/store"
)

// ErrEmpty is returned by the cycles when the queue has no job left.
var ErrEmpty = errors.New("queue is empty")

// Spec is the job the cycles run: one docker step, as most jobs have.
var Spec = store.Spec{
	RepositoryName: "github.com/execd/bench",
	Commit:         "0123456789abcdef0123456789abcdef01234567",
	DockerSteps:    []protocol.DockerStep{{Key: "test", Image: "alpine:3", Commands: []string{"make test"}, Dir: "."}},
}

// Enqueue enqueues n copies of [Spec] into queue from a few goroutines.
func Enqueue(ctx context.Context, s store.Store, queue string, n int) error {
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range 8 {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if _, err := s.Enqueue(ctx, queue, Spec, 1, time.Now()); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// StoreCycle runs one job of queue through the store's side of the
// protocol as executor ex (Dequeue, AddLogEntry, UpdateLogEntry,
// MarkComplete); i makes the job's token unique. It returns [ErrEmpty]
// when the queue is empty.
func StoreCycle(ctx context.Context, s store.Store, queue, ex string, i int) error {
	tok := store.HashToken(ex + "/" + strconv.Itoa(i))
	j, ok, err := s.Dequeue(ctx, queue, store.DequeueOptions{ExecutorName: ex, TokenHash: tok}, time.Now())
	if err != nil {
		return err
	}
	if !ok {
		return ErrEmpty
	}
	entry := protocol.ExecutionLogEntry{Key: "step.docker.0", Command: []string{"sh", "-c", "make test"}, StartTime: time.Now()}
	eid, err := s.AddLogEntry(ctx, queue, j.ID, ex, entry)
	if err != nil {
		return err
	}
	exit, dur := 0, 12
	entry.Out, entry.ExitCode, entry.DurationMs = "stdout: ok\n", &exit, &dur
	if err := s.UpdateLogEntry(ctx, queue, j.ID, ex, eid, entry); err != nil {
		return err
	}
	return s.MarkComplete(ctx, queue, j.ID, ex, time.Now())
}

// ProtocolCycle runs one job of queue through the executor protocol over
// HTTP, as an executor does: dequeue, add a log entry, update it,
// markComplete. It returns [ErrEmpty] when the queue is empty.
func ProtocolCycle(ctx context.Context, c *queueclient.Client, queue string) error {
	job, ok, err := c.Dequeue(ctx, []string{queue}, queueclient.DequeueOptions{Version: "5.0.0"})
	if err != nil {
		return err
	}
	if !ok {
		return ErrEmpty
	}
	start := time.Now()
	id, err := c.AddLogEntry(ctx, job, protocol.ExecutionLogEntry{Key: "step.docker.0", Command: []string{"true"}, StartTime: start})
	if err != nil {
		return err
	}
	code, dur := 0, 3
	if err := c.UpdateLogEntry(ctx, job, id, protocol.ExecutionLogEntry{Key: "step.docker.0", Command: []string{"true"}, StartTime: start, ExitCode: &code, DurationMs: &dur, Out: "stdout: ok\n"}); err != nil {
		return err
	}
	return c.MarkComplete(ctx, job)
}

// Drain runs cycle from n goroutines, worker w calling cycle(w, i) for its
// i-th job, until every one gets [ErrEmpty] or another error. It returns
// the number of cycles completed and the errors other than ErrEmpty.
func Drain(n int, cycle func(w, i int) error) (int64, error) {
	var (
		done atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for w := range n {
		wg.Go(func() {
			for i := 0; ; i++ {
				err := cycle(w, i)
				if errors.Is(err, ErrEmpty) {
					return
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	return done.Load(), errors.Join(errs...)
}
