package gitproxy_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/execd/execd/internal/gitproxy"
	"github.com/execd/execd/internal/queueapi"
	"github.com/execd/execd/internal/siteconfig"
	"github.com/execd/execd/internal/store/sqlite"
)

// TestServer_Fetch fetches from repositories under the repos dir, bare
// and not, with real git over both protocol versions, authenticated by
// the token of a job of that repository.
func TestServer_Fetch(t *testing.T) {
	needGit(t)
	reposDir := t.TempDir()
	repos := map[string]*repo{
		"github.com/acme/app":  newRepo(t, filepath.Join(reposDir, "github.com/acme/app"), false),
		"example.com/bare.git": newRepo(t, filepath.Join(reposDir, "example.com/bare.git"), true),
	}
	e := newEnv(t, envOptions{reposDir: reposDir})
	tests := []struct {
		name    string
		version string
		ref     func(r *repo) string
		opts    []string
		want    func(r *repo) string
	}{
		{"v2 head", "2", func(*repo) string { return "HEAD" }, nil, func(r *repo) string { return r.Commits[2] }},
		{"v2 old commit shallow", "2", func(r *repo) string { return r.Commits[0] }, []string{"--depth=1"}, func(r *repo) string { return r.Commits[0] }},
		{"v2 old commit partial", "2", func(r *repo) string { return r.Commits[1] }, []string{"--filter=blob:none"}, func(r *repo) string { return r.Commits[1] }},
		{"v2 tags", "2", func(*repo) string { return "main" }, []string{"--tags"}, func(r *repo) string { return r.Commits[2] }},
		{"v2 annotated tag", "2", func(*repo) string { return "v1" }, nil, func(r *repo) string { return r.Commits[0] }},
		{"v0 branch", "0", func(*repo) string { return "refs/heads/main" }, nil, func(r *repo) string { return r.Commits[2] }},
		{"v0 old commit shallow", "0", func(r *repo) string { return r.Commits[1] }, []string{"--depth=1"}, func(r *repo) string { return r.Commits[1] }},
	}
	for name, r := range repos {
		job := e.job(name, "ex-fetch")
		headers := jobHeaders(job, "ex-fetch")
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				opts := append([]string{"--progress", "--no-recurse-submodules"}, tt.opts...)
				got, err := e.fetchWith(name, headers, []string{"-c", "protocol.version=" + tt.version}, tt.ref(r), opts...)
				if err != nil {
					t.Fatalf("git fetch %s %v: %v", tt.ref(r), tt.opts, err)
				}
				if want := tt.want(r); got != want {
					t.Errorf("fetched %s, want %s", got, want)
				}
			})
		}
	}
}

// TestServer_Auth checks who may read which repository, and the routes
// that are refused.
func TestServer_Auth(t *testing.T) {
	needGit(t)
	reposDir := t.TempDir()
	newRepo(t, filepath.Join(reposDir, "github.com/acme/app"), false)
	newRepo(t, filepath.Join(reposDir, "github.com/acme/lib"), false)
	if err := os.MkdirAll(filepath.Join(reposDir, "github.com/acme/notrepo"), 0o755); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{reposDir: reposDir})
	app := e.job("github.com/acme/app", "ex-1")
	lib := e.job("github.com/acme/lib", "ex-2")
	missing := e.job("github.com/acme/missing", "ex-3")

	withID := func(h map[string]string, id int) map[string]string {
		h["X-Sourcegraph-Job-ID"] = fmt.Sprint(id)
		return h
	}
	refs := func(repo string) string { return "/.executors/git/" + repo + "/info/refs?service=git-upload-pack" }
	tests := []struct {
		name    string
		method  string
		path    string
		headers map[string]string
		want    int
	}{
		{"own repository", "GET", refs("github.com/acme/app"), jobHeaders(app, "ex-1"), http.StatusOK},
		{"shared secret, any repository", "GET", refs("github.com/acme/lib"), secretHeaders(), http.StatusOK},
		{"no credentials", "GET", refs("github.com/acme/app"), nil, http.StatusUnauthorized},
		{"wrong token", "GET", refs("github.com/acme/app"), map[string]string{"Authorization": "Bearer 0000", "X-Sourcegraph-Job-ID": fmt.Sprint(app.ID), "X-Sourcegraph-Executor-Name": "ex-1"}, http.StatusUnauthorized},
		{"token of another repository", "GET", refs("github.com/acme/lib"), jobHeaders(app, "ex-1"), http.StatusForbidden},
		{"token of another job", "GET", refs("github.com/acme/app"), withID(jobHeaders(app, "ex-1"), lib.ID), http.StatusForbidden},
		{"unknown executor", "GET", refs("github.com/acme/app"), jobHeaders(app, "ex-unknown"), http.StatusForbidden},
		{"wrong shared secret", "GET", refs("github.com/acme/app"), map[string]string{"Authorization": "token-executor wrong-secret-0123456789"}, http.StatusForbidden},
		{"job token, repository not configured", "GET", refs("github.com/acme/missing"), jobHeaders(missing, "ex-3"), http.StatusNotFound},
		{"not configured", "GET", refs("github.com/acme/nope"), secretHeaders(), http.StatusNotFound},
		{"directory that is no repository", "GET", refs("github.com/acme/notrepo"), secretHeaders(), http.StatusNotFound},
		{"parent of repositories", "GET", refs("github.com/acme"), secretHeaders(), http.StatusNotFound},
		{"bad name", "GET", refs("github.com/acme/a%20b"), secretHeaders(), http.StatusNotFound},
		{"dot-dot name", "GET", refs("github.com/acme/app/%2e%2e/lib"), secretHeaders(), http.StatusNotFound},
		{"git dir", "GET", refs("github.com/acme/app/.git"), secretHeaders(), http.StatusNotFound},
		{"receive-pack advertisement", "GET", "/.executors/git/github.com/acme/app/info/refs?service=git-receive-pack", secretHeaders(), http.StatusForbidden},
		{"receive-pack", "POST", "/.executors/git/github.com/acme/app/git-receive-pack", secretHeaders(), http.StatusForbidden},
		{"dumb protocol", "GET", "/.executors/git/github.com/acme/app/info/refs", secretHeaders(), http.StatusForbidden},
		{"dumb protocol object", "GET", "/.executors/git/github.com/acme/app/HEAD", secretHeaders(), http.StatusNotFound},
		{"other method", "PUT", refs("github.com/acme/app"), secretHeaders(), http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, tt.method, e.url+tt.path, tt.headers, "")
			if code != tt.want {
				t.Errorf("%s %s = %d %q, want %d", tt.method, tt.path, code, body, tt.want)
			}
		})
	}

	// The same refusals as git reports them.
	if _, err := e.fetch("github.com/acme/lib", jobHeaders(app, "ex-1"), "HEAD"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("git fetch with the token of another repository's job: err = %v, want a 403", err)
	}
	if _, err := e.fetch("github.com/acme/app", nil, "HEAD"); err == nil {
		t.Errorf("git fetch without credentials: err = nil, want a failure")
	}
	if _, err := e.fetch("github.com/acme/app", jobHeaders(app, "ex-1"), "HEAD"); err != nil {
		t.Errorf("git fetch with the job's token: %v", err)
	}
}

// TestServer_Push checks that git push is refused.
func TestServer_Push(t *testing.T) {
	needGit(t)
	reposDir := t.TempDir()
	r := newRepo(t, filepath.Join(reposDir, "github.com/acme/app"), false)
	e := newEnv(t, envOptions{reposDir: reposDir})
	args := append(gitConfigArgs(secretHeaders()), "push", e.url+"/.executors/git/github.com/acme/app", "HEAD:refs/heads/pushed")
	if _, err := tryGit(t, r.Dir, args...); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("git push: err = %v, want a 403", err)
	}
	if _, err := tryGit(t, r.Dir, "rev-parse", "--verify", "refs/heads/pushed"); err == nil {
		t.Errorf("the push created refs/heads/pushed")
	}
}

// TestMirrors mirrors upstreams named by a local path and a file:// URL,
// serves them, picks up new upstream commits by the periodic fetch, and
// survives an upstream that does not exist until it does.
func TestMirrors(t *testing.T) {
	needGit(t)
	up := t.TempDir()
	plain := newRepo(t, filepath.Join(up, "plain"), false)
	viaURL := newRepo(t, filepath.Join(up, "url"), false)
	brokenPath := filepath.Join(up, "later")
	e := newEnv(t, envOptions{
		repositories: fmt.Sprintf(`[
			{"name": "github.com/up/plain", "url": %q},
			{"name": "github.com/up/url", "url": %q},
			{"name": "github.com/up/later", "url": %q},
		]`, plain.Dir, "file://"+viaURL.Dir, brokenPath),
		interval:   100 * time.Millisecond,
		background: true,
	})
	for _, tt := range []struct {
		name string
		r    *repo
	}{{"github.com/up/plain", plain}, {"github.com/up/url", viaURL}} {
		t.Run(tt.name, func(t *testing.T) {
			job := e.job(tt.name, "ex-mirror")
			headers := jobHeaders(job, "ex-mirror")
			got, err := e.fetch(tt.name, headers, tt.r.Commits[0], "--depth=1")
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.r.Commits[0] {
				t.Errorf("fetched %s, want %s", got, tt.r.Commits[0])
			}
			if dir := filepath.Join(e.dataDir, "mirrors", tt.name); runGit(t, dir, "rev-parse", "--is-bare-repository") != "true" {
				t.Errorf("%s is not a bare repository", dir)
			}
			// A new upstream commit is served after a fetch cycle.
			next := tt.r.Commit(t, map[string]string{"new.txt": "new\n"})
			eventually(t, 10*time.Second, func() error {
				refs, err := e.lsRemote(tt.name, headers)
				if err != nil {
					return err
				}
				if !strings.Contains(refs, next+"\trefs/heads/main") {
					return fmt.Errorf("ls-remote:\n%s\nwant refs/heads/main at %s", refs, next)
				}
				return nil
			})
			if got, err := e.fetch(tt.name, headers, next); err != nil || got != next {
				t.Errorf("fetch of the new commit = %s, %v; want %s", got, err, next)
			}
		})
	}

	// An upstream that fails is logged and retried; the coordinator serves
	// the others meanwhile, and the failing one once its upstream is back.
	code, body := call(t, "GET", e.url+"/.executors/git/github.com/up/later/info/refs?service=git-upload-pack", secretHeaders(), "")
	if code != http.StatusBadGateway || !strings.Contains(body, "github.com/up/later") {
		t.Errorf("refs of a repository whose upstream fails = %d %q, want 502 naming it", code, body)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "mirror sync failed") || !strings.Contains(logs, "github.com/up/later") {
		t.Errorf("logs do not report the failing upstream:\n%s", logs)
	}
	later := newRepo(t, brokenPath, false)
	eventually(t, 10*time.Second, func() error {
		refs, err := e.lsRemote("github.com/up/later", secretHeaders())
		if err != nil {
			return err
		}
		if !strings.Contains(refs, later.Commits[2]) {
			return fmt.Errorf("ls-remote:\n%s\nwant %s", refs, later.Commits[2])
		}
		return nil
	})
}

// TestMirrors_ConfigReload adds a repository to the site config of a
// running coordinator, then removes it.
func TestMirrors_ConfigReload(t *testing.T) {
	needGit(t)
	r := newRepo(t, filepath.Join(t.TempDir(), "upstream"), false)
	e := newEnv(t, envOptions{interval: time.Hour, background: true})
	const name = "github.com/up/added"
	refs := e.url + "/.executors/git/" + name + "/info/refs?service=git-upload-pack"
	if code, body := call(t, "GET", refs, secretHeaders(), ""); code != http.StatusNotFound {
		t.Fatalf("before the config names it: %d %q, want 404", code, body)
	}
	e.writeConfig(fmt.Sprintf(`[{"name": %q, "url": %q}]`, name, r.Dir))
	if !e.c.Config().Reload() {
		t.Fatal("config not reloaded")
	}
	// The mirror is cloned in the background, without a request.
	mirror := filepath.Join(e.dataDir, "mirrors", name)
	eventually(t, 10*time.Second, func() error {
		if _, err := tryGit(t, mirror, "rev-parse", r.Commits[2]); err != nil {
			return fmt.Errorf("mirror not cloned: %w", err)
		}
		return nil
	})
	if got, err := e.fetch(name, secretHeaders(), "HEAD"); err != nil || got != r.Commits[2] {
		t.Errorf("fetch = %s, %v; want %s", got, err, r.Commits[2])
	}
	e.writeConfig(`[]`)
	if !e.c.Config().Reload() {
		t.Fatal("config not reloaded")
	}
	if code, body := call(t, "GET", refs, secretHeaders(), ""); code != http.StatusNotFound {
		t.Errorf("after the config dropped it: %d %q, want 404", code, body)
	}
}

// TestMirrors_OnDemand serves mirrors without the background loop: the
// first request clones, and a request after FreshFor fetches.
func TestMirrors_OnDemand(t *testing.T) {
	needGit(t)
	tests := []struct {
		name      string
		freshFor  time.Duration
		wantFresh bool
	}{
		{"fetch on demand", time.Nanosecond, true},
		{"no fetch on demand", -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRepo(t, filepath.Join(t.TempDir(), "upstream"), false)
			url := serveMirrors(t, `[{"name": "a/b", "url": "`+r.Dir+`"}]`, tt.freshFor)
			e := &env{t: t, url: url}
			if got, err := e.fetch("a/b", secretHeaders(), "HEAD"); err != nil || got != r.Commits[2] {
				t.Fatalf("first fetch = %s, %v; want %s (cloned on demand)", got, err, r.Commits[2])
			}
			next := r.Commit(t, map[string]string{"x.txt": "x\n"})
			got, err := e.fetch("a/b", secretHeaders(), "main")
			if err != nil {
				t.Fatal(err)
			}
			if fresh := got == next; fresh != tt.wantFresh {
				t.Errorf("fetched %s after a new upstream commit %s: fresh = %v, want %v", got, next, fresh, tt.wantFresh)
			}
		})
	}
}

// serveMirrors serves a gitproxy.Server alone (no coordinator, no
// background loop) with the given repositories, authenticated by
// queueapi with an SQLite store.
func serveMirrors(t *testing.T, repositories string, freshFor time.Duration) string {
	t.Helper()
	dir := t.TempDir()
	cfg, err := siteconfig.Parse("test", []byte(fmt.Sprintf(`{"executors.accessToken": %q, "repositories": %s}`, execSecret, repositories)))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "execd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	watcher := siteconfig.Static(cfg)
	s, err := gitproxy.New(gitproxy.Options{
		MirrorsDir: filepath.Join(dir, "mirrors"),
		Config:     watcher,
		Auth:       queueapi.New(queueapi.Options{Store: st, Config: watcher}),
		FreshFor:   freshFor,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestNew_BadReposDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{filepath.Join(t.TempDir(), "missing"), file} {
		if _, err := gitproxy.New(gitproxy.Options{ReposDir: dir}); err == nil {
			t.Errorf("New with ReposDir %s: got no error, want one", dir)
		}
	}
}
