package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/queueclient"
	"github.com/execd/execd/internal/store"
	"github.com/execd/execd/internal/store/postgres/pgtest"
)

// BenchmarkProtocolCycle measures whole executor protocol cycles over real
// HTTP on loopback (dequeue, add and update a log entry, markComplete: one
// b.N iteration per job) with 1, 8, 32 and 128 concurrent clients, each an
// executor of its own, on SQLite and on PostgreSQL. It reports jobs/s.
func BenchmarkProtocolCycle(b *testing.B) {
	for _, db := range []string{"sqlite", "postgres"} {
		for _, clients := range []int{1, 8, 32, 128} {
			b.Run(fmt.Sprintf("db=%s/clients=%d", db, clients), func(b *testing.B) {
				url := ""
				if db == "postgres" {
					url = pgtest.URL(b)
				}
				e := newEnv(b, url)
				enqueue(b, e.c.Store(), b.N)
				transport := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
				defer transport.CloseIdleConnections()
				var (
					done atomic.Int64
					wg   sync.WaitGroup
				)
				b.ResetTimer()
				for i := range clients {
					c := &queueclient.Client{BaseURL: e.srv.URL, Secret: execSecret, ExecutorName: fmt.Sprintf("bench-%d", i), HTTP: &http.Client{Transport: transport}}
					wg.Go(func() {
						for {
							err := benchCycle(c)
							if errors.Is(err, errNoJob) {
								return
							}
							if err != nil {
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
					b.Fatalf("completed %d jobs, want %d", got, b.N)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
			})
		}
	}
}

var errNoJob = errors.New("queue drained")

func benchCycle(c *queueclient.Client) error {
	ctx := context.Background()
	job, ok, err := c.Dequeue(ctx, []string{"batches"}, queueclient.DequeueOptions{Version: "5.0.0"})
	if err != nil {
		return err
	}
	if !ok {
		return errNoJob
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

func enqueue(b *testing.B, s store.Store, n int) {
	b.Helper()
	spec := store.Spec{DockerSteps: []protocol.DockerStep{{Image: "alpine", Commands: []string{"true"}}}}
	now := time.Now()
	for range n {
		if _, err := s.Enqueue(context.Background(), "batches", spec, 1, now); err != nil {
			b.Fatal(err)
		}
	}
}
