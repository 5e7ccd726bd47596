package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/execd/execd/internal/benchutil"
	"github.com/execd/execd/internal/coordinator"
	"github.com/execd/execd/internal/queueclient"
	"github.com/execd/execd/internal/store"
)

// throughputJobs is how many jobs each measurement drains.
const throughputJobs = 2000

// throughput measures whole protocol cycles per second (dequeue, add and
// update a log entry, markComplete; benchutil.ProtocolCycle, as
// BenchmarkProtocolCycle) over HTTP on loopback with 1, 8, 32 and 128
// clients, each an executor of its own, draining pre-enqueued jobs from an
// in-process coordinator; and the same cycle as direct store calls with as
// many goroutines (benchutil.StoreCycle, as storetest.Bench): the ceiling.
// On SQLite and on PostgreSQL, each measurement on a new, empty database.
func throughput(ctx context.Context, b *bench) ([]*figure, error) {
	figs, err := b.repeat(ctx, func(int) ([]sample, error) {
		var out []sample
		for _, db := range []string{"sqlite", "postgres"} {
			for _, clients := range []int{1, 8, 32, 128} {
				rates := map[string]float64{}
				for _, path := range []string{"http", "store"} {
					rate, err := throughputRun(ctx, b, db, path, clients)
					if err != nil {
						return nil, fmt.Errorf("%s %s %d: %w", db, path, clients, err)
					}
					rates[path] = rate
					out = append(out, sample{name: fmt.Sprintf("throughput/%s/%s/clients=%d", db, path, clients), unit: "jobs/s", value: rate, note: "n=" + strconv.Itoa(throughputJobs)})
				}
				if clients == 32 {
					out = append(out, sample{name: fmt.Sprintf("throughput/%s/store-over-http/clients=32", db), unit: "x", value: rates["store"] / rates["http"]})
				}
			}
		}
		return out, nil
	})
	for _, f := range figs {
		if f.name == "throughput/sqlite/http/clients=32" || f.name == "throughput/postgres/http/clients=32" {
			f.goal = &goal{atLeast: true, value: 1000}
		}
		if strings.Contains(f.name, "/store-over-http/") {
			f.goal = &goal{value: 3}
		}
	}
	return figs, err
}

// throughputRun measures one database, path and client count in jobs/s.
func throughputRun(ctx context.Context, b *bench, db, path string, clients int) (float64, error) {
	dir, err := b.tempDir("throughput")
	if err != nil {
		return 0, err
	}
	database := ""
	if db == "postgres" {
		if database, err = b.postgres(ctx); err != nil {
			return 0, err
		}
	}
	var (
		s     store.Store
		cycle func(w, i int) error
	)
	if path == "store" {
		if s, err = coordinator.OpenStore(ctx, database, dir); err != nil {
			return 0, err
		}
		defer s.Close()
		cycle = func(w, i int) error {
			return benchutil.StoreCycle(ctx, s, "batches", "bench-"+strconv.Itoa(w), i)
		}
	} else {
		co, err := startCoordinator(ctx, dir, database, siteConfig(""))
		if err != nil {
			return 0, err
		}
		defer co.stop()
		s = co.c.Store()
		transport := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
		defer transport.CloseIdleConnections()
		cs := make([]*queueclient.Client, clients)
		for w := range cs {
			cs[w] = &queueclient.Client{BaseURL: co.url, Secret: execSecret, ExecutorName: "bench-" + strconv.Itoa(w), HTTP: &http.Client{Transport: transport}}
		}
		cycle = func(w, _ int) error { return benchutil.ProtocolCycle(ctx, cs[w], "batches") }
	}
	if err := benchutil.Enqueue(ctx, s, "batches", throughputJobs); err != nil {
		return 0, fmt.Errorf("enqueue: %w", err)
	}
	start := time.Now()
	done, err := benchutil.Drain(clients, cycle)
	elapsed := time.Since(start)
	if err != nil {
		return 0, err
	}
	if done != throughputJobs {
		return 0, fmt.Errorf("completed %d jobs, want %d", done, throughputJobs)
	}
	return float64(done) / elapsed.Seconds(), nil
}
