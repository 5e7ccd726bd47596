package workspace_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	"github.com/execd/execd/internal/workspace"
)

const (
	execSecret = "executor-secret-0123456789"
	apiToken   = "api-token-0123456789abcdef"
	repoName   = "github.com/acme/app"
	executor   = "ex-workspace"
)

// harness is a coordinator serving one repository over real HTTP, with
// the clients a producer and an executor use.
type harness struct {
	t       *testing.T
	url     string
	api     *jobsapi.Client
	queue   *queueclient.Client
	repo    *testutil.GitRepo
	outside string // a directory outside every workspace, which links in the repository point at
}

// newHarness serves a repository with the commits of
// testutil.NewGitRepo plus a fourth that adds symbolic links: evil ->
// <outside> (absolute), up -> .. (leaves a workspace holding the
// repository at its root), inside -> sub (stays inside).
func newHarness(t *testing.T) *harness {
	t.Helper()
	testutil.NeedGit(t)
	reposDir := t.TempDir()
	repo := testutil.NewGitRepo(t, filepath.Join(reposDir, repoName), false)
	outside := t.TempDir()
	for link, target := range map[string]string{"evil": outside, "up": "..", "inside": "sub"} {
		if err := os.Symlink(target, filepath.Join(repo.Dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	repo.Commit(t, nil)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "site-config.json")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`{"executors.accessToken": %q, "api.accessToken": %q}`, execSecret, apiToken)), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := coordinator.New(context.Background(), coordinator.Options{DataDir: dir, SiteConfigPath: cfg, ReposDir: reposDir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(func() { srv.Close(); c.Close() })
	return &harness{
		t:       t,
		url:     srv.URL,
		api:     &jobsapi.Client{BaseURL: srv.URL, Token: apiToken},
		queue:   &queueclient.Client{BaseURL: srv.URL, Secret: execSecret, ExecutorName: executor},
		repo:    repo,
		outside: outside,
	}
}

// job submits spec (with a step added) and dequeues it as the executor.
func (h *harness) job(spec store.Spec) protocol.Job {
	h.t.Helper()
	spec.CliSteps = []protocol.CliStep{{Commands: []string{"true"}}}
	if _, err := h.api.Submit(h.t.Context(), "batches", jobsapi.SubmitRequest{Spec: spec}); err != nil {
		h.t.Fatal(err)
	}
	job, ok, err := h.queue.Dequeue(h.t.Context(), []string{"batches"}, queueclient.DequeueOptions{Version: "5.0.0"})
	if err != nil || !ok {
		h.t.Fatalf("dequeue: ok=%v, err=%v; want a job", ok, err)
	}
	if job.Version != 2 || job.Token == "" {
		h.t.Fatalf("dequeued job version %d, token %q; want a v2 job with a token", job.Version, job.Token)
	}
	return job
}

// prepare runs Prepare for job in a new workspace, through a git proxy,
// with an exec runner and a queue client file fetcher.
func (h *harness) prepare(job protocol.Job) (dir string, runner *execRunner, err error) {
	h.t.Helper()
	dir = h.t.TempDir()
	runner = &execRunner{env: testutil.GitEnv(h.t)}
	opts := workspace.Options{Dir: dir, Runner: runner, Files: queueFetcher{client: h.queue, job: job}}
	if job.RepositoryName != "" {
		proxy, err := workspace.NewGitProxy(h.url, job, executor, nil)
		if err != nil {
			h.t.Fatal(err)
		}
		defer proxy.Close()
		opts.GitProxy = proxy
	}
	return dir, runner, workspace.Prepare(h.t.Context(), job, opts)
}

// execRunner runs commands with os/exec and records them.
type execRunner struct {
	env []string // base environment

	mu    sync.Mutex
	calls []call
}

type call struct {
	key  string
	argv []string
	dir  string
	env  []string
}

func (r *execRunner) Run(ctx context.Context, key string, command []string, dir string, env []string) error {
	r.mu.Lock()
	r.calls = append(r.calls, call{key, command, dir, env})
	r.mu.Unlock()
	cmd := exec.CommandContext(ctx, command[0], command[1:]...)
	cmd.Dir = dir
	cmd.Env = append(slices.Clip(r.env), env...)
	// Output keeps the end of stderr in the *exec.ExitError, as
	// CommandRunner asks.
	_, err := cmd.Output()
	return err
}

func (r *execRunner) keys() []string {
	var keys []string
	for _, c := range r.calls {
		keys = append(keys, c.key)
	}
	return keys
}

func (r *execRunner) argv(key string) []string {
	for _, c := range r.calls {
		if c.key == key {
			return c.argv
		}
	}
	return nil
}

// queueFetcher downloads job files through the queue client.
type queueFetcher struct {
	client *queueclient.Client
	job    protocol.Job
}

// Fetch answers fs.ErrNotExist for a blob the coordinator does not have,
// as the executor's fetcher does.
func (f queueFetcher) Fetch(ctx context.Context, bucket, key string) (io.ReadCloser, error) {
	rc, err := f.client.GetFile(ctx, f.job, bucket, key)
	if se := (*queueclient.StatusError)(nil); errors.As(err, &se) && se.Code == http.StatusNotFound {
		return nil, fmt.Errorf("%w: %w", fs.ErrNotExist, err)
	}
	return rc, err
}

func git(t *testing.T, dir string, args ...string) string { return testutil.Git(t, dir, args...) }

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// checkNoToken fails if the job's token appears in the repository's git
// directory or in any command the runner ran, or its environment.
func checkNoToken(t *testing.T, gitDir string, runner *execRunner, token string) {
	t.Helper()
	err := filepath.WalkDir(gitDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, []byte(token)) {
			t.Errorf("%s contains the job token", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range runner.calls {
		if strings.Contains(strings.Join(c.argv, " ")+strings.Join(c.env, " "), token) {
			t.Errorf("command %s %q carries the job token", c.key, c.argv)
		}
	}
}

var (
	cloneKeys  = []string{"setup.git.init", "setup.git.add-remote", "setup.git.disable-gc", "setup.git.fetch", "setup.git.checkout"}
	sparseKeys = []string{"setup.git.init", "setup.git.add-remote", "setup.git.disable-gc", "setup.git.fetch", "setup.git.sparse-checkout-config", "setup.git.sparse-checkout", "setup.git.checkout"}
)

func TestPrepare_Git(t *testing.T) {
	h := newHarness(t)
	c := h.repo.Commits
	tests := []struct {
		name      string
		spec      store.Spec
		repoDir   string   // where the repository lands, relative to the workspace
		head      string   // the commit checked out
		count     int      // commits in its history as fetched
		tags      []string // git tag
		present   []string // paths that must exist, relative to repoDir
		absent    []string // paths that must not
		keys      []string
		fetchArgs []string // options the fetch must have
	}{
		{
			name: "latest commit", spec: store.Spec{Commit: c[2]},
			head: c[2], count: 3, present: []string{"README.md", "sub/a.txt", "sub/b.txt", "other/c.txt"}, absent: []string{"evil"},
			keys: cloneKeys, fetchArgs: []string{"--no-tags", "--progress", "--no-recurse-submodules"},
		},
		{
			name: "old commit, shallow", spec: store.Spec{Commit: c[0], ShallowClone: true},
			head: c[0], count: 1, present: []string{"README.md", "sub/a.txt"}, absent: []string{"sub/b.txt", "other"},
			keys: cloneKeys, fetchArgs: []string{"--depth=1", "--no-tags"},
		},
		{
			name: "old commit, full history", spec: store.Spec{Commit: c[1]},
			head: c[1], count: 2, present: []string{"sub/b.txt"},
			keys: cloneKeys,
		},
		{
			name: "fetch tags", spec: store.Spec{Commit: c[1], FetchTags: true},
			head: c[1], count: 2, tags: []string{"v1", "v2"},
			keys: cloneKeys, fetchArgs: []string{"--tags"},
		},
		{
			name: "sparse checkout", spec: store.Spec{Commit: c[2], SparseCheckout: []string{"sub/"}},
			head: c[2], count: 3, present: []string{"sub/a.txt", "sub/b.txt"}, absent: []string{"README.md", "other"},
			keys: sparseKeys, fetchArgs: []string{"--filter=blob:none"},
		},
		{
			name: "sparse, shallow, several patterns", spec: store.Spec{Commit: c[1], ShallowClone: true, SparseCheckout: []string{"/other/*", "/sub/a.txt"}},
			head: c[1], count: 1, present: []string{"other/c.txt", "sub/a.txt"}, absent: []string{"README.md", "sub/b.txt"},
			keys: sparseKeys, fetchArgs: []string{"--filter=blob:none", "--depth=1"},
		},
		{
			name: "repository directory", spec: store.Spec{Commit: c[2], RepositoryDirectory: "sub/dir"}, repoDir: "sub/dir",
			head: c[2], count: 3, present: []string{"README.md", "sub/a.txt"},
			keys: cloneKeys,
		},
		{
			name: "tag name", spec: store.Spec{Commit: "v1", ShallowClone: true},
			head: c[0], count: 1, present: []string{"README.md"}, absent: []string{"sub/b.txt"},
			keys: cloneKeys,
		},
		{
			name: "HEAD with tags", spec: store.Spec{Commit: "HEAD", FetchTags: true},
			head: c[3], count: 4, tags: []string{"v1", "v2"}, present: []string{"evil", "up", "inside"},
			keys: cloneKeys,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.RepositoryName = repoName
			job := h.job(tt.spec)
			dir, runner, err := h.prepare(job)
			if err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			repoDir := filepath.Join(dir, filepath.FromSlash(tt.repoDir))
			if got := git(t, repoDir, "rev-parse", "HEAD"); got != tt.head {
				t.Errorf("HEAD = %s, want %s", got, tt.head)
			}
			if got := git(t, repoDir, "rev-list", "--count", "HEAD"); got != fmt.Sprint(tt.count) {
				t.Errorf("rev-list --count HEAD = %s, want %d", got, tt.count)
			}
			if got := strings.Fields(git(t, repoDir, "tag")); !slices.Equal(got, tt.tags) {
				t.Errorf("git tag = %q, want %q", got, tt.tags)
			}
			for _, p := range tt.present {
				if !exists(filepath.Join(repoDir, p)) {
					t.Errorf("%s is missing", p)
				}
			}
			for _, p := range tt.absent {
				if exists(filepath.Join(repoDir, p)) {
					t.Errorf("%s exists, want it absent", p)
				}
			}
			if tt.repoDir != "" && exists(filepath.Join(dir, ".git")) {
				t.Errorf("the workspace root has a .git; the repository belongs in %s", tt.repoDir)
			}
			if got := runner.keys(); !slices.Equal(got, tt.keys) {
				t.Errorf("commands run = %q, want %q", got, tt.keys)
			}
			fetch := runner.argv("setup.git.fetch")
			for _, arg := range append(tt.fetchArgs, "protocol.version=2", "origin", tt.spec.Commit) {
				if !slices.Contains(fetch, arg) {
					t.Errorf("fetch command %q lacks %q", fetch, arg)
				}
			}
			for _, c := range runner.calls {
				if c.dir != repoDir || !slices.Contains(c.env, "GIT_TERMINAL_PROMPT=0") {
					t.Errorf("command %s ran in %s with env %q, want %s and GIT_TERMINAL_PROMPT=0", c.key, c.dir, c.env, repoDir)
				}
			}
			if got := git(t, repoDir, "config", "--local", "gc.auto"); got != "0" {
				t.Errorf("gc.auto = %q, want 0", got)
			}
			checkNoToken(t, filepath.Join(repoDir, ".git"), runner, job.Token)
			if err := h.queue.MarkComplete(t.Context(), job); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPrepare_Files(t *testing.T) {
	h := newHarness(t)
	blob := []byte("uploaded through the submission API\x00\xff")
	if _, err := h.api.PutFile(t.Context(), "inputs", "job/data.bin", bytes.NewReader(blob)); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2021, 2, 3, 4, 5, 6, 0, time.UTC)
	job := h.job(store.Spec{
		RepositoryName: repoName,
		Commit:         h.repo.Commits[3],
		Files: map[string]protocol.VirtualFile{
			"inline.txt":             {Content: []byte("inline v2 bytes\x00\x01"), ModifiedAt: mtime},
			"blobs/data.bin":         {Bucket: "inputs", Key: "job/data.bin"},
			"empty/nested/empty.txt": {},
			"inside/new.txt":         {Content: []byte("through a link inside the workspace")},
			"sub/a.txt":              {Content: []byte("replaces the checked-out file")},
			"./dot/../clean.txt":     {Content: []byte("cleaned path")},
		},
	})
	dir, runner, err := h.prepare(job)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	tests := []struct {
		path, want string
	}{
		{"inline.txt", "inline v2 bytes\x00\x01"},
		{"blobs/data.bin", string(blob)},
		{"empty/nested/empty.txt", ""},
		{"sub/new.txt", "through a link inside the workspace"},
		{"sub/a.txt", "replaces the checked-out file"},
		{"clean.txt", "cleaned path"},
		{"README.md", "hello again\n"},
	}
	for _, tt := range tests {
		got, err := os.ReadFile(filepath.Join(dir, tt.path))
		if err != nil || string(got) != tt.want {
			t.Errorf("%s = %q, %v; want %q", tt.path, got, err, tt.want)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "inline.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().Equal(mtime) {
		t.Errorf("inline.txt modified at %v, want %v", fi.ModTime().UTC(), mtime)
	}
	if fi.Mode().Perm()&0o100 == 0 {
		t.Errorf("inline.txt mode %v, want executable by its owner", fi.Mode())
	}
	if fi, err := os.Stat(filepath.Join(dir, "blobs/data.bin")); err != nil || time.Since(fi.ModTime()) > time.Minute {
		t.Errorf("blobs/data.bin without modifiedAt: modified %v, %v; want now", fi.ModTime(), err)
	}
	checkNoToken(t, filepath.Join(dir, ".git"), runner, job.Token)
	if entries, _ := os.ReadDir(h.outside); len(entries) > 0 {
		t.Errorf("files were written outside the workspace: %v", entries)
	}
}

// TestPrepare_EscapingPaths refuses files that would land outside the
// workspace, by their path or through a symbolic link of the repository.
func TestPrepare_EscapingPaths(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name     string
		path     string
		withRepo bool // submitted with the repository (links present); else a job made by hand, refused at submission
		want     string
	}{
		{"absolute link of the repository", "evil/passwd", true, `"evil/passwd" escapes the workspace: symbolic link evil -> ` + h.outside + ` leads outside it`},
		{"the link itself", "evil", true, `"evil" escapes the workspace`},
		{"relative link of the repository", "up/x.txt", true, `"up/x.txt" escapes the workspace: symbolic link up -> .. leads outside it`},
		{"absolute path", filepath.Join(h.outside, "abs.txt"), false, "escapes the workspace: it is absolute"},
		{"dot-dot", "../escape.txt", false, `"../escape.txt" escapes the workspace`},
		{"dot-dot after a directory", "a/../../escape.txt", false, `"a/../../escape.txt" escapes the workspace`},
		{"the workspace itself", ".", false, `"." names the workspace itself`},
		{"empty", "", false, "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]protocol.VirtualFile{tt.path: {Content: []byte("must not be written")}}
			var job protocol.Job
			if tt.withRepo {
				job = h.job(store.Spec{RepositoryName: repoName, Commit: h.repo.Commits[3], Files: files})
			} else {
				job = protocol.Job{ID: 1, Version: 2, Files: files}
			}
			dir, _, err := h.prepare(job)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Prepare with file %q: err = %v, want one containing %q", tt.path, err, tt.want)
			}
			if !errors.Is(err, workspace.ErrInvalidPath) || !workspace.IsPermanent(err) {
				t.Errorf("Prepare with file %q: err = %v, want a permanent one matching ErrInvalidPath", tt.path, err)
			}
			if entries, _ := os.ReadDir(h.outside); len(entries) > 0 {
				t.Errorf("files were written outside the workspace: %v", entries)
			}
			if exists(filepath.Join(filepath.Dir(dir), "escape.txt")) || exists(filepath.Join(filepath.Dir(dir), "x.txt")) {
				t.Errorf("a file was written beside the workspace")
			}
		})
	}
}

// TestPrepare_Errors: each failure says its cause in words for the job's
// user, without the log key or the command line, and is permanent
// exactly when no retry can succeed. Real git, a real coordinator, real
// HTTP; the coordinator's failures are made by what the proxy forwards to.
func TestPrepare_Errors(t *testing.T) {
	h := newHarness(t)
	zeros := strings.Repeat("0", 39) + "1"
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "the database is down", http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	tests := []struct {
		name      string
		job       func() protocol.Job
		upstream  string // where the git proxy forwards to; empty: the coordinator
		opts      func(o *workspace.Options)
		want      []string
		permanent bool
	}{
		{
			name:      "commit not in the repository",
			job:       func() protocol.Job { return h.job(store.Spec{RepositoryName: repoName, Commit: zeros}) },
			want:      []string{"commit " + zeros + " does not exist in repository " + repoName, "not our ref"},
			permanent: true,
		},
		{
			name: "commit not in the repository, shallow",
			job: func() protocol.Job {
				return h.job(store.Spec{RepositoryName: repoName, Commit: zeros, ShallowClone: true})
			},
			want:      []string{"commit " + zeros + " does not exist in repository " + repoName},
			permanent: true,
		},
		{
			name:      "ref not in the repository",
			job:       func() protocol.Job { return h.job(store.Spec{RepositoryName: repoName, Commit: "no-such-branch"}) },
			want:      []string{`ref "no-such-branch" does not exist in repository ` + repoName, "couldn't find remote ref"},
			permanent: true,
		},
		{
			name: "repository not served",
			job: func() protocol.Job {
				return h.job(store.Spec{RepositoryName: "github.com/acme/nowhere", Commit: zeros})
			},
			want:      []string{"repository github.com/acme/nowhere is not served by the coordinator"},
			permanent: true,
		},
		{
			name:     "coordinator unreachable",
			job:      func() protocol.Job { return h.job(store.Spec{RepositoryName: repoName, Commit: h.repo.Commits[0]}) },
			upstream: "http://127.0.0.1:1",
			want:     []string{"the coordinator could not be reached to fetch repository " + repoName, "connection refused"},
		},
		{
			name:     "coordinator failing",
			job:      func() protocol.Job { return h.job(store.Spec{RepositoryName: repoName, Commit: h.repo.Commits[0]}) },
			upstream: failing.URL,
			want:     []string{"the coordinator failed to serve repository " + repoName, "HTTP 500: the database is down"},
		},
		{
			name:     "connection broken in the middle of the pack",
			job:      func() protocol.Job { return h.job(store.Spec{RepositoryName: repoName, Commit: h.repo.Commits[0]}) },
			upstream: cutPacks(t, h.url),
			want:     []string{"the connection to the coordinator broke while fetching repository " + repoName, "unexpected EOF"},
		},
		{
			name: "token of another repository",
			job: func() protocol.Job {
				j := h.job(store.Spec{RepositoryName: repoName, Commit: h.repo.Commits[0]})
				j.RepositoryName = "github.com/acme/other"
				return j
			},
			want: []string{"the coordinator refused access to repository github.com/acme/other", "HTTP 403"},
		},
		{
			name:      "no commit",
			job:       func() protocol.Job { return protocol.Job{RepositoryName: repoName} },
			want:      []string{"names repository " + repoName + " but no commit"},
			permanent: true,
		},
		{
			name: "blob not uploaded",
			job: func() protocol.Job {
				return h.job(store.Spec{Files: map[string]protocol.VirtualFile{"in/put": {Bucket: "inputs", Key: "never-uploaded"}}})
			},
			want:      []string{`job file "in/put"`, "the coordinator has no file inputs/never-uploaded"},
			permanent: true,
		},
		{
			name: "blob of an unreachable coordinator",
			job: func() protocol.Job {
				return h.job(store.Spec{Files: map[string]protocol.VirtualFile{"in/put": {Bucket: "inputs", Key: "k"}}})
			},
			opts: func(o *workspace.Options) {
				o.Files = queueFetcher{client: &queueclient.Client{BaseURL: "http://127.0.0.1:1"}}
			},
			want: []string{`job file "in/put"`, "download inputs/k", "connection refused"},
		},
		{
			name: "blob without a fetcher",
			job: func() protocol.Job {
				return protocol.Job{Files: map[string]protocol.VirtualFile{"f": {Bucket: "b", Key: "k"}}}
			},
			opts: func(o *workspace.Options) { o.Files = nil },
			want: []string{`job file "f"`, "FileFetcher"},
		},
		{
			name: "repository without a runner",
			job:  func() protocol.Job { return protocol.Job{RepositoryName: repoName, Commit: "HEAD"} },
			opts: func(o *workspace.Options) { o.Runner = nil },
			want: []string{"Runner"},
		},
		{
			name: "repository directory escaping",
			job: func() protocol.Job {
				return protocol.Job{RepositoryName: repoName, Commit: "HEAD", RepositoryDirectory: "../elsewhere"}
			},
			want:      []string{"repositoryDirectory", "escapes the workspace"},
			permanent: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job := tt.job()
			opts := workspace.Options{
				Dir:      t.TempDir(),
				Runner:   &execRunner{env: testutil.GitEnv(t)},
				Files:    queueFetcher{client: h.queue, job: job},
				CloneURL: "http://127.0.0.1:1",
			}
			if job.Token != "" && job.RepositoryName != "" {
				proxy, err := workspace.NewGitProxy(cmp.Or(tt.upstream, h.url), job, executor, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer proxy.Close()
				opts.GitProxy, opts.CloneURL = proxy, ""
			}
			if tt.opts != nil {
				tt.opts(&opts)
			}
			err := workspace.Prepare(t.Context(), job, opts)
			if err == nil {
				t.Fatalf("Prepare succeeded, want an error")
			}
			t.Logf("error: %v", err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Prepare: err = %v, want one containing %q", err, w)
				}
			}
			// The log key and the command line are in the job's log;
			// the message says why.
			for _, nw := range []string{"setup.git", "protocol.version", "exit status", "prepare workspace"} {
				if strings.Contains(err.Error(), nw) {
					t.Errorf("Prepare: err = %v, want one without %q", err, nw)
				}
			}
			if got := workspace.IsPermanent(err); got != tt.permanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, got, tt.permanent)
			}
		})
	}
}

// cutPacks serves as the coordinator at upstream, but breaks the
// connection after the first bytes of every pack it sends.
func cutPacks(t *testing.T, upstream string) string {
	t.Helper()
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = log.New(io.Discard, "", 0) // the breaks are on purpose
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if !bytes.Contains(body, []byte("command=fetch")) {
			rp.ServeHTTP(w, r)
			return
		}
		rp.ServeHTTP(&cutWriter{ResponseWriter: w, left: 64}, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// cutWriter passes on the first left bytes, then aborts the response.
type cutWriter struct {
	http.ResponseWriter
	left int
}

func (w *cutWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		w.ResponseWriter.Write(p[:w.left])
		w.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	w.left -= len(p)
	return w.ResponseWriter.Write(p)
}

func TestGitProxy(t *testing.T) {
	h := newHarness(t)
	job := h.job(store.Spec{RepositoryName: repoName, Commit: "HEAD"})
	proxy, err := workspace.NewGitProxy(h.url, job, executor, nil)
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string, header map[string]string) (int, string) {
		t.Helper()
		req, err := http.NewRequest("GET", proxy.URL()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	tests := []struct {
		name   string
		path   string
		header map[string]string
		want   int
	}{
		{"the job's repository", "/" + repoName + "/info/refs?service=git-upload-pack", nil, http.StatusOK},
		{"a credential of the client is replaced", "/" + repoName + "/info/refs?service=git-upload-pack", map[string]string{"Authorization": "Bearer wrong"}, http.StatusOK},
		{"another repository", "/github.com/acme/other/info/refs?service=git-upload-pack", nil, http.StatusNotFound},
		{"a prefix of the repository", "/github.com/acme/ap/info/refs?service=git-upload-pack", nil, http.StatusNotFound},
		{"the root", "/", nil, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, body := get(tt.path, tt.header); code != tt.want {
				t.Errorf("GET %s = %d %q, want %d", tt.path, code, body, tt.want)
			}
		})
	}
	if err := proxy.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	// An upstream written with a trailing slash works alike.
	slash, err := workspace.NewGitProxy(h.url+"/", job, executor, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slash.Close()
	if resp, err := http.Get(slash.URL() + "/" + repoName + "/info/refs?service=git-upload-pack"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("through a proxy to %s/: %v, %v; want 200", h.url, resp.Status, err)
	} else {
		resp.Body.Close()
	}
	if _, err := http.Get(proxy.URL() + "/" + repoName + "/info/refs?service=git-upload-pack"); err == nil {
		t.Errorf("GET after Close succeeded, want a connection error")
	}

	for _, upstream := range []string{"", "ftp://host", "127.0.0.1:3080", "http://"} {
		if p, err := workspace.NewGitProxy(upstream, job, executor, nil); err == nil {
			p.Close()
			t.Errorf("NewGitProxy(%q): got no error, want one", upstream)
		}
	}
	if p, err := workspace.NewGitProxy(h.url, protocol.Job{ID: 1}, executor, nil); err == nil {
		p.Close()
		t.Errorf("NewGitProxy for a job without a repository: got no error, want one")
	}
}
