package sqlite

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/execd/execd/internal/store"
)

// TestQueryPlans checks, on 100k jobs, that the queries of the hot paths
// and of the UI search an index rather than scan the table. SQLite has no
// statistics here, so a plan can go wrong silently (see dequeueSQL).
func TestQueryPlans(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "execd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.write.ExecContext(ctx, `
		WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
		INSERT INTO jobs (queue, state, spec, repository_name, queued_at)
		SELECT CASE WHEN i % 10 = 0 THEN 'codeintel' ELSE 'batches' END,
			CASE WHEN i > 99000 THEN 'queued' ELSE 'completed' END,
			'{}', 'github.com/x/' || (i % 100), i
		FROM n`)
	if err != nil {
		t.Fatal(err)
	}
	list := func(opts store.ListOptions) (string, []any) { return listJobsQuery("batches", opts) }
	for _, tc := range []struct {
		name  string
		query string
		args  []any
		want  string // in the plan
	}{
		{"Dequeue", dequeueSQL, []any{"batches", 1, 1, "ex", []byte{1}}, "USING INDEX jobs_dequeue"},
		{"QueuedCount", queuedCountSQL, []any{"batches", 1}, "USING INDEX jobs_dequeue"},
		{"TokenOwner", tokenOwnerSQL, []any{[]byte{1}}, "(token_sha256=?)"},
		{"AddLogEntry", addLogSQL, []any{1, "batches", "ex", "k", "[]", 1, nil, "", nil, 0}, "PRIMARY KEY"},
		{"UpdateLogEntry", updateLogSQL, []any{1, "batches", "ex", 1, "k", "[]", 1, nil, "", nil, 0}, "PRIMARY KEY"},
		{"MarkComplete", markCompleteSQL, []any{1, "batches", "ex", 1}, "INTEGER PRIMARY KEY"},
		{"CountByState", countByStateSQL, nil, "COVERING INDEX jobs_queue_state"},
	} {
		t.Run(tc.name, func(t *testing.T) { checkPlan(t, s, tc.query, tc.args, tc.want) })
	}
	for _, tc := range []struct {
		name string
		opts store.ListOptions
		want string
	}{
		{"ListJobs", store.ListOptions{}, "jobs_queue_id"},
		{"ListJobs page", store.ListOptions{BeforeID: 5000}, "jobs_queue_id"},
		{"ListJobs state", store.ListOptions{State: "queued"}, "jobs_queue_state"},
		{"ListJobs repository", store.ListOptions{RepositoryName: "github.com/x/1"}, "jobs_queue_repository"},
		{"ListJobs state and repository", store.ListOptions{State: "queued", RepositoryName: "github.com/x/1"}, "USING INDEX jobs_queue_"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, args := list(tc.opts)
			checkPlan(t, s, q, args, tc.want)
		})
	}
}

func checkPlan(t *testing.T, s *Store, query string, args []any, want string) {
	t.Helper()
	rows, err := s.write.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	text := strings.Join(plan, "\n")
	for _, line := range plan {
		if strings.HasPrefix(line, "SCAN jobs") && !strings.Contains(line, "COVERING INDEX") {
			t.Errorf("plan scans the jobs table:\n%s", text)
		}
	}
	if !strings.Contains(text, want) {
		t.Errorf("plan does not contain %q:\n%s", want, text)
	}
}
