// Package gitproxy serves repositories to executors over git's smart HTTP
// protocol, read only, under /.executors/git/{repo}/: the info/refs
// advertisement and git-upload-pack, protocol v0 and v2, answered by the
// real `git upload-pack --stateless-rpc`. Pushing (receive-pack) and the
// dumb protocol are refused.
//
// Repositories come from two places: a directory of local repositories
// (the repository "github.com/gorilla/mux" is the git repository at
// <dir>/github.com/gorilla/mux, bare or not), and the site config key
// "repositories", whose upstreams are mirrored (git clone --mirror) into a
// directory of their own and fetched every FetchInterval, see [Mirrors].
// A repository in both is served from its mirror.
//
// Requests are authenticated by the executor queue API's job
// authentication, scoped to the repository: a job's token opens its own
// job's repository only; the executors' shared secret opens any.
package gitproxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/execd/execd/internal/queueapi"
	"github.com/execd/execd/internal/siteconfig"
)

// Prefix is where the git routes are mounted.
const Prefix = queueapi.Prefix + "/git"

// Authorizer authenticates job requests; [queueapi.Server] is one. When
// it returns false it has written the response.
type Authorizer interface {
	AuthorizeJob(w http.ResponseWriter, r *http.Request, scope queueapi.Scope) (queueapi.JobCaller, bool)
}

// Options configure a [Server].
type Options struct {
	// ReposDir holds local repositories by name; empty means none.
	ReposDir string
	// MirrorsDir is where the mirrors of the site config's repositories
	// live (created when needed).
	MirrorsDir string
	// Config is the site config, read for its "repositories".
	Config *siteconfig.Watcher
	// Auth authenticates requests.
	Auth Authorizer
	// Logger receives upstream failures and git errors; nil discards.
	Logger *slog.Logger
	// FetchInterval is how often mirrors are fetched; 0 means a minute.
	FetchInterval time.Duration
	// FreshFor: a mirror whose last fetch is older than this is fetched
	// again, on demand, before its refs are advertised to a job (waiting
	// at most OnDemandTimeout; on failure the mirror is served as it is).
	// 0 means 10s; negative disables fetching on demand.
	FreshFor time.Duration
	// Git is the git binary; empty means "git" from PATH.
	Git string
}

// Server serves repositories over git smart HTTP. It is safe for
// concurrent use.
type Server struct {
	reposDir string
	config   *siteconfig.Watcher
	auth     Authorizer
	logger   *slog.Logger
	git      string
	mirrors  *Mirrors
}

// New returns a Server. It fails if ReposDir is set but is not a directory.
func New(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Git == "" {
		opts.Git = "git"
	}
	if opts.ReposDir != "" {
		abs, err := filepath.Abs(opts.ReposDir)
		if err != nil {
			return nil, fmt.Errorf("repos dir: %w", err)
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return nil, fmt.Errorf("repos dir: %w (pass an existing directory of git repositories)", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("repos dir %s is not a directory", abs)
		}
		opts.ReposDir = abs
	}
	if opts.MirrorsDir != "" {
		abs, err := filepath.Abs(opts.MirrorsDir)
		if err != nil {
			return nil, fmt.Errorf("mirrors dir: %w", err)
		}
		opts.MirrorsDir = abs
	}
	s := &Server{
		reposDir: opts.ReposDir,
		config:   opts.Config,
		auth:     opts.Auth,
		logger:   opts.Logger,
		git:      opts.Git,
	}
	s.mirrors = newMirrors(opts)
	return s, nil
}

// Mirrors returns the server's mirrors of upstream repositories.
func (s *Server) Mirrors() *Mirrors { return s.mirrors }

// Handler returns the git routes, to be mounted at the root of the
// server's mux (they carry the /.executors/git prefix):
//
//	GET  /.executors/git/{repo...}/info/refs?service=git-upload-pack
//	POST /.executors/git/{repo...}/git-upload-pack
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Prefix+"/{path...}", s.handleInfoRefs)
	mux.HandleFunc("POST "+Prefix+"/{path...}", s.handleUploadPack)
	return mux
}

func (s *Server) handleInfoRefs(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(r.PathValue("path"), "/info/refs")
	if !ok {
		http.Error(w, "not found: only the smart HTTP routes {repo}/info/refs and {repo}/git-upload-pack are served", http.StatusNotFound)
		return
	}
	switch service := r.URL.Query().Get("service"); service {
	case "git-upload-pack":
	case "git-receive-pack":
		http.Error(w, "pushing is not allowed: repositories are served read-only", http.StatusForbidden)
		return
	default:
		http.Error(w, "only git's smart HTTP protocol is served (service=git-upload-pack)", http.StatusForbidden)
		return
	}
	dir, ok := s.authorize(w, r, name)
	if !ok {
		return
	}
	s.mirrors.refresh(r.Context(), name)
	s.uploadPack(w, r, dir, true)
}

func (s *Server) handleUploadPack(w http.ResponseWriter, r *http.Request) {
	path := r.PathValue("path")
	if strings.HasSuffix(path, "/git-receive-pack") {
		http.Error(w, "pushing is not allowed: repositories are served read-only", http.StatusForbidden)
		return
	}
	name, ok := strings.CutSuffix(path, "/git-upload-pack")
	if !ok {
		http.Error(w, "not found: only the smart HTTP routes {repo}/info/refs and {repo}/git-upload-pack are served", http.StatusNotFound)
		return
	}
	dir, ok := s.authorize(w, r, name)
	if !ok {
		return
	}
	s.uploadPack(w, r, dir, false)
}

// authorize checks the repository name and the caller, and returns the
// repository's git directory; false means the response was written.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, name string) (string, bool) {
	if err := siteconfig.CheckRepositoryName(name); err != nil {
		http.Error(w, "repository not found: name "+err.Error(), http.StatusNotFound)
		return "", false
	}
	if _, ok := s.auth.AuthorizeJob(w, r, queueapi.Scope{Repository: name}); !ok {
		return "", false
	}
	dir, err := s.gitDir(r, name)
	switch {
	case errors.Is(err, errNotConfigured):
		http.Error(w, fmt.Sprintf("repository %q not found: it is neither in the site config's \"repositories\" nor under the coordinator's --repos-dir", name), http.StatusNotFound)
		return "", false
	case err != nil:
		s.logger.Error("repository unavailable", "repository", name, "err", err)
		http.Error(w, fmt.Sprintf("repository %q is unavailable: %v", name, err), http.StatusBadGateway)
		return "", false
	}
	return dir, true
}

var errNotConfigured = errors.New("repository not configured")

// gitDir finds the git directory of repository name: its mirror if the
// site config lists it (cloned now if it is not yet), else the repository
// under the repos dir.
func (s *Server) gitDir(r *http.Request, name string) (string, error) {
	if repo, ok := s.config.Current().Repository(name); ok {
		return s.mirrors.ensure(r.Context(), repo)
	}
	if s.reposDir == "" {
		return "", errNotConfigured
	}
	dir := filepath.Join(s.reposDir, filepath.FromSlash(name))
	if isDir(filepath.Join(dir, ".git")) {
		return filepath.Join(dir, ".git"), nil
	}
	if isBare(dir) {
		return dir, nil
	}
	return "", errNotConfigured
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// isBare reports whether dir looks like a bare repository (git's own
// test: HEAD, objects/ and refs/).
func isBare(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, "HEAD"))
	return err == nil && fi.Mode().IsRegular() && isDir(filepath.Join(dir, "objects")) && isDir(filepath.Join(dir, "refs"))
}
