package e2e_test

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestE2E_PermanentFailures: a job that asks for what does not exist is
// failed after its first attempt, although it may be tried three times,
// with a message that names the cause and neither the log key nor the
// command line.
func TestE2E_PermanentFailures(t *testing.T) {
	s := newSystem(t, `{"maxAttempts": 3, "retryDelay": "1s"}`)
	s.startExecutor()
	missing := strings.Repeat("0", 39) + "1"
	tests := []struct {
		name, spec string
		want       []string
	}{
		{
			name: "commit that does not exist",
			spec: `{"repositoryName": "` + repoName + `", "commit": "` + missing + `", "cliSteps": [{"command": ["true"]}]}`,
			want: []string{"prepare workspace: commit " + missing + " does not exist in repository " + repoName, "not our ref"},
		},
		{
			name: "repository the coordinator does not serve",
			spec: `{"repositoryName": "github.com/acme/nowhere", "commit": "` + missing + `", "cliSteps": [{"command": ["true"]}]}`,
			want: []string{"prepare workspace: repository github.com/acme/nowhere is not served by the coordinator"},
		},
		{
			name: "file that was never uploaded",
			spec: `{"files": {"in/put": {"bucket": "uploads", "key": "never-uploaded"}}, "cliSteps": [{"command": ["true"]}]}`,
			want: []string{`prepare workspace: job file "in/put": the coordinator has no file uploads/never-uploaded`},
		},
	}
	ids := make([]int, len(tests))
	for i, tt := range tests {
		ids[i] = s.submit(tt.spec)
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := s.waitState(ids[i], 60*time.Second, "failed", "completed", "canceled")
			if j.State != "failed" || j.NumFailures != 1 || j.MaxAttempts != 3 {
				t.Fatalf("job %s after %d of %d attempts, want failed after 1; logs:\n%s", j.State, j.NumFailures, j.MaxAttempts, formatLogs(j))
			}
			for _, w := range tt.want {
				if !strings.Contains(j.FailureMessage, w) {
					t.Errorf("failure message %q, want it to contain %q", j.FailureMessage, w)
				}
			}
			for _, nw := range []string{"setup.git", "protocol.version", "exit status"} {
				if strings.Contains(j.FailureMessage, nw) {
					t.Errorf("failure message %q contains %q", j.FailureMessage, nw)
				}
			}
		})
	}
}

// TestE2E_CoordinatorUnreachableDuringFetch: when the coordinator cannot
// be reached for the repository, the attempt errors and the job is tried
// again, and completes once the coordinator answers.
func TestE2E_CoordinatorUnreachableDuringFetch(t *testing.T) {
	s := newSystem(t, `{"maxAttempts": 3, "retryDelay": "2s"}`)
	// The executor reaches the coordinator through a proxy that drops
	// the connections of git requests while broken is set.
	target, err := url.Parse(s.url())
	if err != nil {
		t.Fatal(err)
	}
	var broken atomic.Bool
	broken.Store(true)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = log.New(io.Discard, "", 0) // long polls end with the test
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if broken.Load() && strings.HasPrefix(r.URL.Path, "/.executors/git/") {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	s.startExecutor("EXECUTOR_FRONTEND_URL=" + front.URL)

	id := s.submit(`{"repositoryName": "` + repoName + `", "commit": "` + s.repo.commits[1] + `", "cliSteps": [{"command": ["cat", "README.md"]}]}`)
	deadline := time.Now().Add(60 * time.Second)
	j := s.job(id)
	for j.NumFailures == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("job %s with no failed attempt after 60s; logs:\n%s", j.State, formatLogs(j))
		}
		time.Sleep(50 * time.Millisecond)
		j = s.job(id)
	}
	broken.Store(false)
	if j.State == "failed" || !strings.Contains(j.FailureMessage, "prepare workspace: the coordinator could not be reached to fetch repository "+repoName) {
		t.Errorf("after the first attempt: job %s, failure message %q; want it errored, saying the coordinator could not be reached", j.State, j.FailureMessage)
	}
	j = s.waitState(id, 60*time.Second, "completed", "failed")
	if j.State != "completed" || j.NumFailures != 1 {
		t.Fatalf("job %s after %d failed attempts, want completed after 1; logs:\n%s", j.State, j.NumFailures, formatLogs(j))
	}
}
