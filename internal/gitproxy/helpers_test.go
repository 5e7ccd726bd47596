package gitproxy_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/execd/execd/internal/coordinator"
	"github.com/execd/execd/internal/jobsapi"
	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/queueclient"
	"github.com/execd/execd/internal/store"
	"github.com/execd/execd/internal/testutil"
)

const (
	execSecret = "executor-secret-0123456789"
	apiToken   = "api-token-0123456789abcdef"
)

// needGit skips (or, in CI, fails) a test without git.
func needGit(t *testing.T) { testutil.NeedGit(t) }

func runGit(t *testing.T, dir string, args ...string) string { return testutil.Git(t, dir, args...) }

func tryGit(t *testing.T, dir string, args ...string) (string, error) {
	return testutil.TryGit(t, dir, args...)
}

// repo is a test repository (see testutil.NewGitRepo).
type repo = testutil.GitRepo

func newRepo(t *testing.T, dir string, bare bool) *repo { return testutil.NewGitRepo(t, dir, bare) }

// syncBuffer is a concurrency-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is a coordinator served over real HTTP on loopback.
type env struct {
	t       *testing.T
	c       *coordinator.Coordinator
	url     string
	dataDir string
	cfgPath string
	logs    *syncBuffer
}

// options of newEnv.
type envOptions struct {
	reposDir     string
	repositories string // JSON array for the site config key "repositories"
	interval     time.Duration
	background   bool // run the coordinator's background work (mirror fetches)
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "site-config.json")
	repos := o.repositories
	if repos == "" {
		repos = "[]"
	}
	e := &env{t: t, dataDir: dir, cfgPath: cfgPath, logs: &syncBuffer{}}
	e.writeConfig(repos)
	c, err := coordinator.New(context.Background(), coordinator.Options{
		DataDir:        dir,
		SiteConfigPath: cfgPath,
		ReposDir:       o.reposDir,
		MirrorInterval: o.interval,
		Logger:         slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	if o.background {
		go func() {
			defer close(done)
			c.Run(ctx)
		}()
	} else {
		close(done)
	}
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
		c.Close()
		if t.Failed() {
			t.Logf("coordinator logs:\n%s", e.logs)
		}
	})
	e.c, e.url = c, srv.URL
	return e
}

// writeConfig writes the site config with the given repositories.
func (e *env) writeConfig(repositories string) {
	e.t.Helper()
	cfg := fmt.Sprintf(`{"executors.accessToken": %q, "api.accessToken": %q, "repositories": %s}`, execSecret, apiToken, repositories)
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// job submits a job for repository and dequeues it as executor, returning
// the dequeued job (with its token).
func (e *env) job(repository, executor string) protocol.Job {
	e.t.Helper()
	ctx := e.t.Context()
	api := &jobsapi.Client{BaseURL: e.url, Token: apiToken}
	if _, err := api.Submit(ctx, "batches", jobsapi.SubmitRequest{Spec: store.Spec{
		RepositoryName: repository,
		Commit:         "HEAD",
		CliSteps:       []protocol.CliStep{{Commands: []string{"true"}}},
	}}); err != nil {
		e.t.Fatal(err)
	}
	qc := &queueclient.Client{BaseURL: e.url, Secret: execSecret, ExecutorName: executor}
	job, ok, err := qc.Dequeue(ctx, []string{"batches"}, queueclient.DequeueOptions{Version: "5.0.0"})
	if err != nil || !ok {
		e.t.Fatalf("dequeue: ok=%v, err=%v; want a job", ok, err)
	}
	if job.RepositoryName != repository {
		e.t.Fatalf("dequeued a job of %q, want %q", job.RepositoryName, repository)
	}
	return job
}

// jobHeaders are the headers of a job-authenticated request.
func jobHeaders(job protocol.Job, executor string) map[string]string {
	return map[string]string{
		"Authorization":               "Bearer " + job.Token,
		"X-Sourcegraph-Job-ID":        fmt.Sprint(job.ID),
		"X-Sourcegraph-Executor-Name": executor,
	}
}

func secretHeaders() map[string]string {
	return map[string]string{"Authorization": "token-executor " + execSecret}
}

// gitConfigArgs turns headers into `git -c http.extraHeader=...` options.
func gitConfigArgs(headers map[string]string) []string {
	var args []string
	for k, v := range headers {
		args = append(args, "-c", "http.extraHeader="+k+": "+v)
	}
	return args
}

// fetch runs `git fetch` of ref from the coordinator's copy of repository
// into a new repository with the given headers and extra fetch options,
// and returns the fetched commit (FETCH_HEAD).
func (e *env) fetch(repository string, headers map[string]string, ref string, opts ...string) (string, error) {
	e.t.Helper()
	return e.fetchWith(repository, headers, []string{"-c", "protocol.version=2"}, ref, opts...)
}

// fetchWith is fetch with git options (before the subcommand).
func (e *env) fetchWith(repository string, headers map[string]string, gitOpts []string, ref string, opts ...string) (string, error) {
	e.t.Helper()
	dir := e.t.TempDir()
	runGit(e.t, dir, "init", "--quiet")
	args := append(gitConfigArgs(headers), gitOpts...)
	args = append(args, "fetch", "--quiet")
	args = append(args, opts...)
	args = append(args, e.url+"/.executors/git/"+repository, ref)
	if _, err := tryGit(e.t, dir, args...); err != nil {
		return "", err
	}
	return tryGit(e.t, dir, "rev-parse", "FETCH_HEAD^{commit}")
}

// lsRemote lists the refs the coordinator serves for repository.
func (e *env) lsRemote(repository string, headers map[string]string) (string, error) {
	e.t.Helper()
	args := append(gitConfigArgs(headers), "-c", "protocol.version=2", "ls-remote", e.url+"/.executors/git/"+repository)
	return tryGit(e.t, e.t.TempDir(), args...)
}

// call sends one HTTP request and returns the status code and body.
func call(t *testing.T, method, url string, headers map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// eventually retries f every 50ms until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
