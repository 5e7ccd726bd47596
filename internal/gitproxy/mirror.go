package gitproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/execd/execd/internal/siteconfig"
)

const (
	// defaultFetchInterval is how often mirrors are fetched by default.
	defaultFetchInterval = time.Minute
	// defaultFreshFor is how old a mirror's last fetch may be before a job
	// asking for its refs triggers another.
	defaultFreshFor = 10 * time.Second
	// OnDemandTimeout bounds how long a job's request waits for an on-demand
	// fetch of a mirror that is already cloned.
	OnDemandTimeout = 30 * time.Second
	// syncTimeout bounds one clone or fetch.
	syncTimeout = 30 * time.Minute
	// maxConcurrentSyncs bounds the clones and fetches running at once.
	maxConcurrentSyncs = 4
)

// Mirrors keeps mirrors of the site config's "repositories": each is
// cloned with `git clone --mirror` into <MirrorsDir>/<name> (through a
// temporary directory, so a half-done clone is never served), then fetched
// (`git fetch --prune`) every FetchInterval by [Mirrors.Run], and on demand
// when a job asks for its refs and the last fetch is older than FreshFor.
// A repository that is not cloned yet when a job asks for it is cloned
// there and then. Upstream failures are logged and retried at the next
// interval; a mirror that cannot be fetched is served as it is.
//
// Repositories removed from the site config are no longer served or
// fetched; their mirrors stay on disk. Mirrors is safe for concurrent use.
type Mirrors struct {
	dir      string
	git      string
	config   *siteconfig.Watcher
	logger   *slog.Logger
	interval time.Duration
	freshFor time.Duration
	sem      chan struct{} // bounds concurrent clones and fetches

	mu    sync.Mutex
	repos map[string]*mirror
}

// mirror is the state of one mirrored repository.
type mirror struct {
	name string
	dir  string
	lock chan struct{} // 1-buffered: held while cloning or fetching

	mu          sync.Mutex
	url         string             // the configured upstream
	applied     string             // the upstream the mirror's origin was last set to
	lastAttempt time.Time          // last clone or fetch, successful or not
	lastErr     error              // of the last attempt
	lastOp      string             // clone or fetch: the last attempt
	stop        context.CancelFunc // stops the fetch loop; nil when none runs
}

func newMirrors(opts Options) *Mirrors {
	m := &Mirrors{
		dir:      opts.MirrorsDir,
		git:      opts.Git,
		config:   opts.Config,
		logger:   opts.Logger,
		interval: opts.FetchInterval,
		freshFor: opts.FreshFor,
		sem:      make(chan struct{}, maxConcurrentSyncs),
		repos:    map[string]*mirror{},
	}
	if m.interval <= 0 {
		m.interval = defaultFetchInterval
	}
	if m.freshFor == 0 {
		m.freshFor = defaultFreshFor
	}
	return m
}

// Run clones and fetches the mirrors of the site config's repositories
// until ctx ends, following config reloads (checked every second). It
// returns once every clone and fetch it started has stopped.
func (m *Mirrors) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var seen *siteconfig.Config
	for {
		if cfg := m.config.Current(); cfg != seen {
			seen = cfg
			m.reconcile(ctx, cfg, &wg)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// reconcile starts a fetch loop for each configured repository that has
// none (restarting it when its URL changed), and stops those of
// repositories no longer configured.
func (m *Mirrors) reconcile(ctx context.Context, cfg *siteconfig.Config, wg *sync.WaitGroup) {
	m.mu.Lock()
	defer m.mu.Unlock()
	configured := map[string]bool{}
	for _, repo := range cfg.Repositories {
		configured[repo.Name] = true
		mr := m.lookupLocked(repo)
		mr.mu.Lock()
		if mr.stop != nil && mr.url == repo.URL {
			mr.mu.Unlock()
			continue
		}
		if mr.stop != nil {
			mr.stop()
		}
		mr.url = repo.URL
		loopCtx, stop := context.WithCancel(ctx)
		mr.stop = stop
		mr.mu.Unlock()
		wg.Go(func() { m.loop(loopCtx, mr) })
	}
	for name, mr := range m.repos {
		if configured[name] {
			continue
		}
		mr.mu.Lock()
		if mr.stop != nil {
			mr.stop()
		}
		mr.mu.Unlock()
		delete(m.repos, name)
		m.logger.Info("repository removed from the site config: no longer mirrored or served (its mirror stays on disk)", "repository", name, "dir", mr.dir)
	}
}

// lookupLocked returns the mirror of repo, creating its state if needed.
// m.mu must be held.
func (m *Mirrors) lookupLocked(repo siteconfig.Repository) *mirror {
	mr, ok := m.repos[repo.Name]
	if !ok {
		mr = &mirror{
			name: repo.Name,
			dir:  filepath.Join(m.dir, filepath.FromSlash(repo.Name)),
			lock: make(chan struct{}, 1),
			url:  repo.URL,
		}
		m.repos[repo.Name] = mr
	}
	return mr
}

// loop syncs mr now and then every interval until ctx ends.
func (m *Mirrors) loop(ctx context.Context, mr *mirror) {
	for {
		_ = m.sync(ctx, mr, 0) // logged by sync
		t := time.NewTimer(m.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// ensure returns the git directory of repo's mirror, cloning it first if
// it is not cloned yet (waiting for a clone in progress).
func (m *Mirrors) ensure(ctx context.Context, repo siteconfig.Repository) (string, error) {
	if m.dir == "" {
		return "", errors.New("no directory for mirrors is configured")
	}
	m.mu.Lock()
	mr := m.lookupLocked(repo)
	m.mu.Unlock()
	if isBare(mr.dir) {
		return mr.dir, nil
	}
	// Jobs asking for a repository whose upstream just failed get that
	// failure, rather than each waiting for another attempt.
	if err := mr.recentError(defaultFreshFor); err != nil {
		return "", err
	}
	if err := m.sync(ctx, mr, -1); err != nil {
		return "", err
	}
	return mr.dir, nil
}

// refresh fetches the mirror of repository name if it is one and its last
// fetch is older than FreshFor, waiting at most OnDemandTimeout. A failure
// is logged; the mirror is then served as it is.
func (m *Mirrors) refresh(ctx context.Context, name string) {
	if m.freshFor < 0 {
		return
	}
	m.mu.Lock()
	mr, ok := m.repos[name]
	m.mu.Unlock()
	if !ok || mr.fresh(m.freshFor) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, OnDemandTimeout)
	defer cancel()
	_ = m.sync(ctx, mr, m.freshFor)
}

// recentError returns the error of the last attempt if it failed within d.
func (mr *mirror) recentError(d time.Duration) error {
	mr.mu.Lock()
	defer mr.mu.Unlock()
	if mr.lastErr != nil && time.Since(mr.lastAttempt) < d {
		return fmt.Errorf("%s mirror of %q from %s failed %s ago (retried at the next interval): %w",
			mr.lastOp, mr.name, redactURL(mr.url), time.Since(mr.lastAttempt).Round(time.Second), mr.lastErr)
	}
	return nil
}

// fresh reports whether mr was cloned or fetched (or tried to be) within d.
func (mr *mirror) fresh(d time.Duration) bool {
	mr.mu.Lock()
	defer mr.mu.Unlock()
	return !mr.lastAttempt.IsZero() && time.Since(mr.lastAttempt) < d
}

// sync clones mr if it is not cloned, else fetches it, unless, once its
// turn comes, it is cloned and either freshFor < 0 or it was synced within
// freshFor (freshFor 0: always fetch). Errors are logged and returned.
func (m *Mirrors) sync(ctx context.Context, mr *mirror, freshFor time.Duration) error {
	select {
	case mr.lock <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-mr.lock }()
	cloned := isBare(mr.dir)
	if cloned && (freshFor < 0 || freshFor > 0 && mr.fresh(freshFor)) {
		return nil
	}
	select {
	case m.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-m.sem }()

	mr.mu.Lock()
	upstream, applied, prevErr := mr.url, mr.applied, mr.lastErr
	mr.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	start := time.Now()
	var err error
	op := "fetch"
	if cloned {
		err = m.fetch(ctx, mr.dir, upstream, applied)
	} else {
		op = "clone"
		err = m.clone(ctx, mr.dir, upstream)
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return err // shutting down, or the job's request went away
	}
	mr.mu.Lock()
	mr.lastAttempt, mr.lastErr, mr.lastOp = time.Now(), err, op
	if err == nil {
		mr.applied = upstream
	}
	mr.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("%s mirror of %q from %s: %w", op, mr.name, redactURL(upstream), err)
		m.logger.Error("mirror sync failed; retrying at the next interval", "repository", mr.name, "op", op, "err", err, "retry_in", m.interval)
		return err
	}
	if prevErr != nil {
		m.logger.Info("mirror sync recovered", "repository", mr.name, "op", op)
	}
	m.logger.Debug("mirror synced", "repository", mr.name, "op", op, "duration", time.Since(start))
	return nil
}

// clone mirrors upstream into dir through a temporary directory beside it.
func (m *Mirrors) clone(ctx context.Context, dir, upstream string) error {
	parent, base := filepath.Split(dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return err
	}
	// Leftovers of clones interrupted by a crash.
	leftovers, _ := filepath.Glob(filepath.Join(parent, "."+base+".clone-*"))
	for _, l := range leftovers {
		_ = os.RemoveAll(l)
	}
	tmp, err := os.MkdirTemp(parent, "."+base+".clone-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if err := m.run(ctx, "", upstream, "clone", "--mirror", "--quiet", "--", upstream, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// fetch points the mirror in dir at upstream if it changed, and fetches.
func (m *Mirrors) fetch(ctx context.Context, dir, upstream, applied string) error {
	if applied != upstream {
		if err := m.run(ctx, dir, upstream, "remote", "set-url", "origin", upstream); err != nil {
			return err
		}
	}
	return m.run(ctx, dir, upstream, "fetch", "--prune", "--quiet", "origin")
}

// run runs git (in dir, if set), returning its stderr in the error with
// upstream's password, if any, masked.
func (m *Mirrors) run(ctx context.Context, dir, upstream string, args ...string) error {
	if dir != "" {
		args = append([]string{"-C", dir}, args...)
	}
	cmd := exec.CommandContext(ctx, m.git, args...)
	cmd.Env = gitEnv()
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 16 << 10}
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("git %s: %w", args[0], ctx.Err())
		}
		msg := strings.TrimSpace(stderr.String())
		if u, perr := url.Parse(upstream); perr == nil && u.User != nil {
			if pw, ok := u.User.Password(); ok && pw != "" {
				msg = strings.ReplaceAll(msg, pw, "xxxxx")
			}
		}
		command := strings.ReplaceAll(strings.Join(args, " "), upstream, redactURL(upstream))
		return fmt.Errorf("git %s: %w: %s", command, err, msg)
	}
	return nil
}

// redactURL masks the password of a URL, for logs and errors.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}
