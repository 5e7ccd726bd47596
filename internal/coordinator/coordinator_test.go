package coordinator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/execd/execd/internal/coordinator"
	"github.com/execd/execd/internal/store/postgres/pgtest"
)

const (
	execSecret = "executor-secret-0123456789"
	apiToken   = "api-token-0123456789abcdef"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// env is a coordinator served over real HTTP on loopback.
type env struct {
	t     testing.TB
	c     *coordinator.Coordinator
	srv   *httptest.Server
	dir   string
	cfgFn string
}

const baseConfig = `{
  "executors.accessToken": %q,
  "api.accessToken": %q,
  "executors.queues": ["batches", "codeintel"],
  "executors.queueSettings": {"batches": {"maxAttempts": 2, "retryDelay": "1ms", "stalledAge": "1s", "maxResets": 1}},
}`

func newEnv(t testing.TB, database string) *env {
	return newEnvConfig(t, database, fmt.Sprintf(baseConfig, execSecret, apiToken))
}

func newEnvConfig(t testing.TB, database, config string) *env {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "site-config.json")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := coordinator.New(context.Background(), coordinator.Options{DataDir: dir, SiteConfigPath: cfg, Database: database, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(func() { srv.Close(); c.Close() })
	return &env{t: t, c: c, srv: srv, dir: dir, cfgFn: cfg}
}

// call sends a request with raw headers and body, returning code and body.
func (e *env) call(method, path string, header map[string]string, body string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

func execAuth() map[string]string {
	return map[string]string{"Authorization": "token-executor " + execSecret}
}

func jobAuth(token string, id int, executor string) map[string]string {
	return map[string]string{
		"Authorization":               "Bearer " + token,
		"X-Sourcegraph-Job-ID":        fmt.Sprint(id),
		"X-Sourcegraph-Executor-Name": executor,
	}
}

// submit enqueues a job through the submission API and returns its id.
func (e *env) submit(queue, spec string) int {
	e.t.Helper()
	code, body := e.call("POST", "/api/queues/"+queue+"/jobs", map[string]string{"Authorization": "token " + apiToken}, spec)
	if code != http.StatusCreated {
		e.t.Fatalf("submit: %d %s", code, body)
	}
	var j struct{ ID int }
	if err := json.Unmarshal([]byte(body), &j); err != nil {
		e.t.Fatal(err)
	}
	return j.ID
}

func (e *env) jobState(queue string, id int) map[string]any {
	e.t.Helper()
	code, body := e.call("GET", fmt.Sprintf("/api/queues/%s/jobs/%d", queue, id), map[string]string{"Authorization": "token " + apiToken}, "")
	if code != http.StatusOK {
		e.t.Fatalf("get job: %d %s", code, body)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		e.t.Fatal(err)
	}
	return m
}

// dequeue dequeues from queue as executor with version, wanting a job.
func (e *env) dequeue(queue, executor, version string) map[string]any {
	e.t.Helper()
	code, body := e.call("POST", "/.executors/queue/"+queue+"/dequeue", execAuth(),
		fmt.Sprintf(`{"executorName": %q, "version": %q, "numCPUs": 4, "memory": "12G", "diskSpace": "20G"}`, executor, version))
	if code != http.StatusOK {
		e.t.Fatalf("dequeue: got %d %s, want 200", code, body)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		e.t.Fatal(err)
	}
	return m
}

func compact(s string) string {
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		return s
	}
	return b.String()
}

func decodeMap(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	return m
}
