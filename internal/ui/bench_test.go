package ui_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/siteconfig"
	"github.com/execd/execd/internal/store"
	"github.com/execd/execd/internal/store/sqlite"
	"github.com/execd/execd/internal/ui"
)

// BenchmarkPages renders every page from an SQLite store holding 10,000
// jobs of the last hour (most finished, 100 queued, 50 processing) and 100
// executors, through the UI's handler and an httptest.ResponseRecorder.
// The goal is under 100 ms a page (docs/benchmarks.md).
func BenchmarkPages(b *testing.B) {
	const (
		numJobs      = 10000
		numExecutors = 100
		numQueued    = 100
		numRunning   = 50
	)
	ctx := context.Background()
	dir := b.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "execd.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	cfgPath := filepath.Join(dir, "site-config.json")
	if err := os.WriteFile(cfgPath, []byte(testConfig), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := siteconfig.NewWatcher(cfgPath, nil)
	if err != nil {
		b.Fatal(err)
	}

	start := time.Now()
	now := start.Add(-time.Hour)
	tick := time.Hour / numJobs
	queueOf := func(i int) string {
		if i%5 == 0 {
			return "codeintel"
		}
		return "batches"
	}
	for i := range numJobs {
		spec := store.Spec{
			RepositoryName: fmt.Sprintf("github.com/acme/repo-%d", i%50), Commit: fmt.Sprintf("%040x", i),
			DockerSteps: []protocol.DockerStep{{Key: "test", Image: "golang:1.22", Commands: []string{"go test ./..."}, Dir: "."}},
		}
		if _, err := st.Enqueue(ctx, queueOf(i), spec, 3, now.Add(time.Duration(i)*tick)); err != nil {
			b.Fatal(err)
		}
	}
	var jobPage string
	out := strings.Repeat("stdout: a line of test output, as long as most of them are\n", 200)
	for i := range numJobs - numQueued {
		q := queueOf(i)
		at := now.Add(time.Duration(i) * tick)
		ex := fmt.Sprintf("bench-host-%02d-%d", i%numExecutors, i%numExecutors)
		job, ok, err := st.Dequeue(ctx, q, store.DequeueOptions{ExecutorName: ex, TokenHash: store.HashToken(fmt.Sprint("token-", i))}, at)
		if err != nil || !ok {
			b.Fatalf("dequeue %d: %v %v", i, ok, err)
		}
		if i < numJobs-numQueued-numRunning {
			end := at.Add(time.Duration(20+i%60) * time.Second)
			if i%10 == 0 {
				err = st.MarkFailed(ctx, q, job.ID, ex, "step test: exit status 1", end)
			} else {
				err = st.MarkComplete(ctx, q, job.ID, ex, end)
			}
			if err != nil {
				b.Fatal(err)
			}
			continue
		}
		if jobPage == "" {
			// The job page's job: running, with 20 log entries of 12 KB.
			for k := range 20 {
				code, ms := 0, 1500
				entry := protocol.ExecutionLogEntry{Key: fmt.Sprintf("step.%d", k), Command: []string{"go", "test", "./..."}, StartTime: at, Out: out, ExitCode: &code, DurationMs: &ms}
				if _, err := st.AddLogEntry(ctx, q, job.ID, ex, entry); err != nil {
					b.Fatal(err)
				}
			}
			jobPage = fmt.Sprintf("/ui/jobs/%s/%d", q, job.ID)
		}
	}
	for i := range numExecutors {
		e := store.Executor{Name: fmt.Sprintf("bench-host-%02d-%d", i, i), Queues: []string{"batches", "codeintel"}, OS: "linux", Architecture: "amd64",
			ExecutorVersion: "1.2.0", DockerVersion: "20.10.24", GitVersion: "2.39.5"}
		if _, _, err := st.Heartbeat(ctx, e, "", nil, start.Add(-time.Duration(i)*time.Second)); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("filled the store in %v", time.Since(start).Round(time.Millisecond))

	u, err := ui.New(ui.Options{Store: st, Config: cfg, Version: coordinatorVersion})
	if err != nil {
		b.Fatal(err)
	}
	u.AddSample(time.Now(), map[string]int{"batches": 120, "codeintel": 30})
	h := u.Handler()
	cookie := signInRecorder(b, h)
	pages := []struct{ name, path, want string }{
		{"executors", "/ui/executors", `data-executor="bench-host-99-99"`},
		{"queues", "/ui/queues", "<svg"},
		{"jobs", "/ui/jobs/batches", "data-job="},
		{"jobs-filtered", "/ui/jobs/codeintel?state=failed&repository=github.com/acme/repo-10", "data-job="},
		{"job", jobPage, `data-entry-id="20"`},
		{"site-config", "/ui/site-config", "executors.activeThreshold"},
	}
	for _, p := range pages {
		b.Run(p.name, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest("GET", p.path, nil)
				req.AddCookie(cookie)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), p.want) {
					b.Fatalf("GET %s = %d: %.300s", p.path, rec.Code, rec.Body.String())
				}
			}
		})
	}
}

// signInRecorder signs in through h and returns the session cookie.
func signInRecorder(b *testing.B, h http.Handler) *http.Cookie {
	req := httptest.NewRequest("POST", "/ui/sign-in", strings.NewReader(url.Values{"token": {apiToken}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	cookies := rec.Result().Cookies()
	if rec.Code != http.StatusSeeOther || len(cookies) != 1 {
		b.Fatalf("sign in: %d, cookies %v", rec.Code, cookies)
	}
	return cookies[0]
}
