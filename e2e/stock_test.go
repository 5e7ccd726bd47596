package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/execd/execd/internal/protocol"
)

// stockInstance stands in for a Sourcegraph instance: it serves only the
// reference's executor routes, answering anything else 404 as Sourcegraph
// does, and records each request that a stock instance would not expect.
type stockInstance struct {
	t    *testing.T
	job  protocol.Job
	mu   sync.Mutex
	odd  []string // requests outside the reference protocol
	out  map[int]string
	done chan string // the mark that ended the job
	sent bool
	next int
}

// referenceRoutes are the executor routes of a Sourcegraph instance.
var referenceRoutes = regexp.MustCompile(`^(GET /\.executors/test/auth|POST /\.executors/queue/(dequeue|heartbeat)|POST /\.executors/queue/[a-z]+/(dequeue|heartbeat|addExecutionLogEntry|updateExecutionLogEntry|markComplete|markErrored|markFailed)|(GET|POST) /\.executors/git/.+|(GET|HEAD) /\.executors/files/.+)$`)

func (s *stockInstance) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	route := r.Method + " " + r.URL.Path
	if !referenceRoutes.MatchString(route) {
		s.odd = append(s.odd, route+"?"+r.URL.RawQuery)
		http.NotFound(w, r)
		return
	}
	if r.URL.RawQuery != "" {
		s.odd = append(s.odd, "query string on "+route+"?"+r.URL.RawQuery)
	}
	for name := range r.Header {
		if strings.HasPrefix(name, "X-Execd") || name == protocol.WaitHeader {
			s.odd = append(s.odd, fmt.Sprintf("header %s on %s", name, route))
		}
	}
	body, _ := io.ReadAll(r.Body)
	switch {
	case strings.HasSuffix(route, "/dequeue"):
		if s.sent {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		s.sent = true
		job := s.job
		job.Queue = ""
		writeJSONBody(w, job)
	case strings.HasSuffix(route, "/heartbeat"):
		var req protocol.HeartbeatRequest
		json.Unmarshal(body, &req)
		writeJSONBody(w, protocol.HeartbeatResponse{KnownIDs: req.JobIDs, CancelIDs: []string{}})
	case strings.HasSuffix(route, "/addExecutionLogEntry"):
		var req protocol.AddExecutionLogEntryRequest
		json.Unmarshal(body, &req)
		s.next++
		s.out[s.next] = req.Out
		writeJSONBody(w, s.next)
	case strings.HasSuffix(route, "/updateExecutionLogEntry"):
		var req protocol.UpdateExecutionLogEntryRequest
		json.Unmarshal(body, &req)
		s.out[req.EntryID] = req.Out
		w.WriteHeader(http.StatusNoContent)
	case strings.Contains(route, "/mark"):
		var req protocol.MarkErroredRequest
		json.Unmarshal(body, &req)
		w.WriteHeader(http.StatusNoContent)
		s.done <- route[strings.LastIndex(route, "/")+1:] + " " + req.ErrorMessage
	default:
		http.NotFound(w, r)
	}
}

func writeJSONBody(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// TestStockInstance_OnlyReferenceRequests runs our executor against a
// stand-in for a stock Sourcegraph instance: every request it sends is one
// the reference executor sends (no extension route, no wait header, no
// query string), and the job's log still arrives whole, through the
// reference's whole-entry updates.
func TestStockInstance_OnlyReferenceRequests(t *testing.T) {
	s := &stockInstance{t: t, out: map[int]string{}, done: make(chan string, 1), job: protocol.Job{
		Version: 2, ID: 7, Token: "stock-job-token-0123456789",
		DockerSteps: []protocol.DockerStep{{
			Key: "count", Image: "alpine",
			// Long enough for updates while it runs.
			Commands: []string{"for i in 1 2 3; do echo line $i; sleep 1; done"},
		}},
	}}
	srv := httptest.NewServer(s)
	defer srv.Close()

	dir := tempDir(t)
	start(t, "executor", []string{
		"EXECUTOR_FRONTEND_URL=" + srv.URL,
		"EXECUTOR_FRONTEND_PASSWORD=" + execSecret,
		"EXECUTOR_QUEUE_NAME=" + queue,
		"EXECUTOR_METRICS_ADDR=off",
		"EXECUTOR_JOB_MEMORY=512M",
		"EXECUTOR_JOB_NUM_CPUS=1",
		"EXECUTOR_WORKSPACE_ROOT=" + filepath.Join(dir, "workspaces"),
		"EXECUTOR_RUNTIME=shell",
		"EXECUTOR_QUEUE_POLL_INTERVAL=100ms",
	}, "executor", "run")

	var mark string
	select {
	case mark = <-s.done:
	case <-time.After(60 * time.Second):
		t.Fatal("the job was not marked within 60s")
	}
	// A few more polls and heartbeats after the job.
	time.Sleep(1500 * time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	if mark != "markComplete " {
		t.Errorf("the job ended with %q, want markComplete", mark)
	}
	for _, odd := range s.odd {
		t.Errorf("the stock instance received a request the reference executor never sends: %s", odd)
	}
	var all strings.Builder
	for _, out := range s.out {
		all.WriteString(out)
	}
	for _, want := range []string{"stdout: line 1\n", "stdout: line 2\n", "stdout: line 3\n"} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("the stock instance's log entries lack %q: %v", want, s.out)
		}
	}
}
