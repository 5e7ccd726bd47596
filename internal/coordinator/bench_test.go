package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/execd/execd/internal/benchutil"
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

var errNoJob = benchutil.ErrEmpty

func benchCycle(c *queueclient.Client) error {
	return benchutil.ProtocolCycle(context.Background(), c, "batches")
}

func enqueue(b *testing.B, s store.Store, n int) {
	b.Helper()
	if err := benchutil.Enqueue(context.Background(), s, "batches", n); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPickupLatency measures enqueue-to-dequeue latency over HTTP: a
// job is submitted through the submission API while one executor waits for
// it, either long-polling (X-Executor-Wait) or polling every second as the
// reference executor does. It reports p50 and p99 in ms.
func BenchmarkPickupLatency(b *testing.B) {
	for _, db := range []string{"sqlite", "postgres"} {
		for _, mode := range []string{"longpoll", "poll1s"} {
			b.Run(fmt.Sprintf("db=%s/mode=%s", db, mode), func(b *testing.B) {
				url := ""
				if db == "postgres" {
					url = pgtest.URL(b)
				}
				e := newEnv(b, url)
				c := &queueclient.Client{BaseURL: e.srv.URL, Secret: execSecret, ExecutorName: "latency"}
				got := make(chan time.Time)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				go func() {
					for ctx.Err() == nil {
						opts := queueclient.DequeueOptions{Version: "5.0.0"}
						if mode == "longpoll" {
							opts.Wait = 30 * time.Second
						}
						job, ok, err := c.Dequeue(ctx, []string{"batches"}, opts)
						if err != nil || !ok {
							if mode == "poll1s" {
								select {
								case <-time.After(time.Second):
								case <-ctx.Done():
								}
							}
							continue
						}
						got <- time.Now()
						_ = c.MarkComplete(ctx, job)
					}
				}()
				// Phase-shift submissions against the poll so poll1s samples
				// the whole interval, as independent producers would.
				lat := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for i := range b.N {
					if mode == "poll1s" {
						time.Sleep(time.Duration(i*137%1000) * time.Millisecond)
					}
					start := time.Now()
					e.submit("batches", spec)
					lat = append(lat, (<-got).Sub(start))
				}
				b.StopTimer()
				slices.Sort(lat)
				b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
				b.ReportMetric(ms(lat[(len(lat)*99)/100]), "p99-ms")
			})
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
