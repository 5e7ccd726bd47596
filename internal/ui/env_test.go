package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/execd/execd/internal/coordinator"
	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/queueclient"
)

const (
	execSecret = "executor-secret-0123456789"
	apiToken   = "api-token-0123456789abcdef"
	// coordinatorVersion is the version the test coordinator claims.
	coordinatorVersion = "1.2.0"
)

// testConfig is the site config of the tests: executors count as active
// for 2s only, so that a stopped executor turns grey quickly.
var testConfig = fmt.Sprintf(`// Site config of a UI test.
{
  "executors.accessToken": %q,
  "api.accessToken": %q,
  "executors.queues": ["batches", "codeintel"],
  "executors.activeThreshold": "2s",
}
`, execSecret, apiToken)

// env is a real coordinator served over HTTP on loopback, with its
// background work (the UI's sampler among it) running.
type env struct {
	t     testing.TB
	c     *coordinator.Coordinator
	srv   *httptest.Server
	close func() // stops it; also done when the test ends
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvAt(t, t.TempDir(), "")
}

// newEnvAt is newEnv with its data directory and database: empty for
// SQLite in dir, else a postgres:// URL.
func newEnvAt(t testing.TB, dir, database string) *env {
	t.Helper()
	cfg := filepath.Join(dir, "site-config.json")
	if err := os.WriteFile(cfg, []byte(testConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := coordinator.New(context.Background(), coordinator.Options{
		DataDir: dir, SiteConfigPath: cfg, Database: database, Logger: slog.New(slog.DiscardHandler), Version: coordinatorVersion,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	srv := httptest.NewServer(c.Handler())
	stop := sync.OnceFunc(func() {
		srv.CloseClientConnections()
		srv.Close()
		cancel()
		<-done
		c.Close()
	})
	t.Cleanup(stop)
	return &env{t: t, c: c, srv: srv, close: stop}
}

// executor is a queue API client acting as an executor called name.
func (e *env) executor(name string) *queueclient.Client {
	return &queueclient.Client{BaseURL: e.srv.URL, Secret: execSecret, ExecutorName: name}
}

// heartbeat reports executor ex alive on queue batches.
func heartbeat(ctx context.Context, ex *queueclient.Client, jobs ...protocol.Job) error {
	_, err := ex.Heartbeat(ctx, []string{"batches"}, protocol.HeartbeatRequest{
		OS: "linux", Architecture: "amd64", ExecutorVersion: coordinatorVersion,
		DockerVersion: "20.10.24", GitVersion: "2.39.5", IgniteVersion: "", Runtime: "gvisor",
	}, jobs, 0)
	return err
}

// submit enqueues a job on queue batches through the submission API.
func (e *env) submit(spec string) int {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+"/api/queues/batches/jobs", strings.NewReader(spec))
	req.Header.Set("Authorization", "token "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("submit: %d %s", resp.StatusCode, body)
	}
	var j struct{ ID int }
	if err := json.Unmarshal(body, &j); err != nil {
		e.t.Fatal(err)
	}
	return j.ID
}

// dequeue takes the next job of batches as ex.
func dequeue(t testing.TB, ex *queueclient.Client) protocol.Job {
	t.Helper()
	job, ok, err := ex.Dequeue(context.Background(), []string{"batches"}, queueclient.DequeueOptions{Version: coordinatorVersion})
	if err != nil || !ok {
		t.Fatalf("dequeue: ok=%v err=%v", ok, err)
	}
	return job
}

const jobSpec = `{
  "repositoryName": "github.com/acme/widgets",
  "commit": "4f2a9c1e0b7d3a5f6c8e9d0a1b2c3d4e5f6a7b8c",
  "dockerSteps": [{"key": "test", "image": "golang:1.22", "commands": ["go test ./..."], "dir": ".", "env": ["TOKEN=hunter2-very-secret"]}],
  "redactedValues": {"hunter2-very-secret": "[REDACTED]"}
}`

// client is an HTTP client with a cookie jar that does not follow
// redirects, so tests see them.
func client(t testing.TB) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// signIn signs c in and returns the CSRF token of its session, read from
// the executors page.
func (e *env) signIn(c *http.Client) string {
	e.t.Helper()
	resp, err := c.PostForm(e.srv.URL+"/ui/sign-in", url.Values{"token": {apiToken}})
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("sign in: %d, want 303", resp.StatusCode)
	}
	code, body := e.get(c, "/ui/executors")
	if code != http.StatusOK {
		e.t.Fatalf("executors page after sign-in: %d", code)
	}
	return csrfOf(e.t, body)
}

// csrfOf returns the CSRF token of a signed-in page.
func csrfOf(t testing.TB, page string) string {
	t.Helper()
	_, rest, ok := strings.Cut(page, `name="csrf" value="`)
	if !ok {
		t.Fatalf("no CSRF field on the page")
	}
	token, _, _ := strings.Cut(rest, `"`)
	return token
}

func (e *env) get(c *http.Client, path string) (int, string) {
	e.t.Helper()
	resp, err := c.Get(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (e *env) post(c *http.Client, path string, form url.Values, header map[string]string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
