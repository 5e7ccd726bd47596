package postgres

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/execd/execd/internal/store"
	"github.com/execd/execd/internal/store/postgres/pgtest"
)

// TestQueryPlans checks, on 100k analysed jobs, that the queries of the hot
// paths and of the UI use an index rather than scan the table.
func TestQueryPlans(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.pool.Exec(ctx, `
		INSERT INTO jobs (queue, state, spec, repository_name, queued_at)
		SELECT CASE WHEN i % 10 = 0 THEN 'codeintel' ELSE 'batches' END,
			CASE WHEN i > 99000 THEN 'queued' ELSE 'completed' END,
			'{}', 'github.com/x/' || (i % 100), now()
		FROM generate_series(1, 100000) AS i;
		ANALYZE jobs`)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok := make([]byte, 32)
	list := func(opts store.ListOptions) (string, []any) { return listJobsQuery("codeintel", opts) }
	type check struct {
		name  string
		query string
		args  []any
		want  string // in the plan
	}
	checks := []check{
		{"Dequeue", dequeueSQL, []any{"batches", now, "ex", tok}, "jobs_dequeue"},
		{"QueuedCount", queuedCountSQL, []any{"batches", now}, "jobs_dequeue"},
		{"TokenOwner", tokenOwnerSQL, []any{tok}, "jobs_token_sha256_key"},
		{"Heartbeat", heartbeatSQL, []any{now, []int{1, 2}, "batches", "ex", "[]", "", "", "", "", "", "", "", ""}, "Index"},
		{"AddLogEntry", addLogSQL, []any{1, "batches", "ex", "k", "[]", now, nil, "", nil, 0}, "Index"},
		{"UpdateLogEntry", updateLogSQL, []any{1, "batches", "ex", 1, "k", "[]", now, nil, "", nil, 0}, "Index"},
	}
	for _, lc := range []struct {
		name string
		opts store.ListOptions
	}{
		{"ListJobs", store.ListOptions{}},
		{"ListJobs page", store.ListOptions{BeforeID: 5000}},
		{"ListJobs state", store.ListOptions{State: "queued"}},
		{"ListJobs repository", store.ListOptions{RepositoryName: "github.com/x/10"}},
		{"ListJobs state and repository", store.ListOptions{State: "queued", RepositoryName: "github.com/x/10"}},
	} {
		q, args := list(lc.opts)
		checks = append(checks, check{lc.name, q, args, "Index"})
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			rows, err := s.pool.Query(ctx, "EXPLAIN "+c.query, c.args...)
			if err != nil {
				t.Fatal(err)
			}
			lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			plan := strings.Join(lines, "\n")
			if strings.Contains(plan, "Seq Scan on jobs") {
				t.Errorf("plan scans the jobs table:\n%s", plan)
			}
			if !strings.Contains(plan, c.want) {
				t.Errorf("plan does not mention %q:\n%s", c.want, plan)
			}
		})
	}

	// CountByState reads every row; report how long that takes.
	start := time.Now()
	if _, err := s.CountByState(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("CountByState over 100k jobs: %v", time.Since(start))
}
