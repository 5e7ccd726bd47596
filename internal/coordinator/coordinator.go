// Package coordinator assembles the coordinator: the job store, the site
// config, the executor queue API, the git proxy and its mirrors, the file
// blobs, the submission API, the resetter and the metrics, behind one HTTP
// handler.
package coordinator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/execd/execd/internal/autoscale"
	"github.com/execd/execd/internal/filesapi"
	"github.com/execd/execd/internal/gitproxy"
	"github.com/execd/execd/internal/jobsapi"
	"github.com/execd/execd/internal/queueapi"
	"github.com/execd/execd/internal/siteconfig"
	"github.com/execd/execd/internal/store"
	"github.com/execd/execd/internal/store/postgres"
	"github.com/execd/execd/internal/store/sqlite"
	"github.com/execd/execd/internal/ui"
)

// Options configure a [Coordinator].
type Options struct {
	// DataDir holds the SQLite database and, by default, the site config.
	DataDir string
	// SiteConfigPath is the site config file; empty means DataDir/site-config.json.
	SiteConfigPath string
	// Database is a postgres:// URL, or empty for SQLite in DataDir.
	Database string
	Logger   *slog.Logger
	// ResetInterval is how often the resetter runs; 0 means 5s.
	ResetInterval time.Duration
	// ReposDir holds git repositories served to executors by name (the
	// repository "github.com/x/y" is ReposDir/github.com/x/y); empty: none.
	ReposDir string
	// MirrorInterval is how often the mirrors of the site config's
	// repositories (in DataDir/mirrors) are fetched; 0 means a minute.
	MirrorInterval time.Duration
	// ExternalURL is the externalURL of a site config created with
	// fresh secrets; empty means http://127.0.0.1:3080.
	ExternalURL string
	// Version is the coordinator's version, shown by the admin UI and
	// compared with executors' versions there.
	Version string
	// MetricSinks, when any, are the cloud metric services to which the
	// coordinator publishes the autoscaling metric (package autoscale),
	// every 5 seconds; of several coordinators sharing a database, the
	// one holding the store's publisher lease does. None: no publishing.
	MetricSinks []autoscale.Sink
	// MetricAllocations split each queue's size between the sinks' clouds.
	MetricAllocations autoscale.Allocations
	// MetricInterval is the time between publications; 0 means
	// autoscale.DefaultInterval.
	MetricInterval time.Duration
}

// Coordinator is a running coordinator's state.
type Coordinator struct {
	opts     Options
	logger   *slog.Logger
	store    store.Store
	config   *siteconfig.Watcher
	queueAPI *queueapi.Server
	jobsAPI  *jobsapi.Server
	git      *gitproxy.Server
	files    *filesapi.Server
	ui       *ui.Server
	registry *prometheus.Registry
	handler  http.Handler
	metrics  *autoscale.Publisher // nil: no sink configured
}

// OpenStore opens the database named by url: a postgres:// URL, or a
// SQLite file path (empty means dataDir/execd.db).
func OpenStore(ctx context.Context, url, dataDir string) (store.Store, error) {
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return postgres.Open(ctx, url)
	case url == "":
		return sqlite.Open(ctx, filepath.Join(dataDir, "execd.db"))
	default:
		return sqlite.Open(ctx, strings.TrimPrefix(url, "sqlite://"))
	}
}

// New opens the store and the site config. If the site config file does
// not exist it is created with fresh secrets.
func New(ctx context.Context, opts Options) (*Coordinator, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ResetInterval == 0 {
		opts.ResetInterval = 5 * time.Second
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if opts.SiteConfigPath == "" {
		opts.SiteConfigPath = filepath.Join(opts.DataDir, "site-config.json")
	}
	if _, err := os.Stat(opts.SiteConfigPath); errors.Is(err, os.ErrNotExist) {
		if _, err := siteconfig.Save(opts.SiteConfigPath, siteconfig.Generate(cmp.Or(opts.ExternalURL, "http://127.0.0.1:3080"))); err != nil {
			return nil, err
		}
		opts.Logger.Info("wrote a new site config with generated secrets", "path", opts.SiteConfigPath)
	}
	cfg, err := siteconfig.NewWatcher(opts.SiteConfigPath, opts.Logger)
	if err != nil {
		return nil, err
	}
	st, err := OpenStore(ctx, opts.Database, opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	c := &Coordinator{opts: opts, logger: opts.Logger, store: st, config: cfg, registry: prometheus.NewRegistry()}
	c.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	fileStore, ok := st.(store.FileStore)
	if !ok {
		st.Close()
		return nil, fmt.Errorf("open database: the %T store cannot keep file blobs (store.FileStore)", st)
	}
	c.queueAPI = queueapi.New(queueapi.Options{Store: st, Config: cfg, Logger: opts.Logger, Registerer: c.registry, Uploads: fileStore})
	c.jobsAPI = jobsapi.New(jobsapi.Options{Store: st, Config: cfg, Logger: opts.Logger})
	c.git, err = gitproxy.New(gitproxy.Options{
		ReposDir:      opts.ReposDir,
		MirrorsDir:    filepath.Join(opts.DataDir, "mirrors"),
		Config:        cfg,
		Auth:          c.queueAPI,
		Logger:        opts.Logger,
		FetchInterval: opts.MirrorInterval,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	c.files = filesapi.New(filesapi.Options{Files: fileStore, Jobs: st, Config: cfg, Auth: c.queueAPI, Logger: opts.Logger})
	c.ui, err = ui.New(ui.Options{Store: st, Config: cfg, Logger: opts.Logger, Version: opts.Version})
	if err != nil {
		st.Close()
		return nil, err
	}
	c.registry.MustRegister(newStoreCollector(st, cfg))
	if len(opts.MetricSinks) > 0 {
		if c.metrics, err = c.newPublisher(); err != nil {
			st.Close()
			return nil, err
		}
	}
	c.handler = c.routes()
	return c, nil
}

// newPublisher makes the autoscaling metric's publisher, elected through
// the store's lease.
func (c *Coordinator) newPublisher() (*autoscale.Publisher, error) {
	leaser, ok := c.store.(store.Leaser)
	if !ok {
		return nil, fmt.Errorf("autoscale: the %T store cannot hold the publisher lease (store.Leaser)", c.store)
	}
	return autoscale.New(autoscale.Options{
		Sinks:       c.opts.MetricSinks,
		Allocations: c.opts.MetricAllocations,
		Source:      c.store,
		Queues:      func() []string { return c.config.Current().Queues },
		Leaser:      leaser,
		Interval:    c.opts.MetricInterval,
		Registerer:  c.registry,
		Logger:      c.logger,
	})
}

// Store is the coordinator's job store.
func (c *Coordinator) Store() store.Store { return c.store }

// Config is the coordinator's site config.
func (c *Coordinator) Config() *siteconfig.Watcher { return c.config }

// Handler serves every route of the coordinator.
func (c *Coordinator) Handler() http.Handler { return c.handler }

func (c *Coordinator) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(queueapi.Prefix+"/", c.queueAPI.Handler())
	mux.Handle(gitproxy.Prefix+"/", c.git.Handler())
	files := c.files.Handler()
	mux.Handle(queueapi.Prefix+"/files/", files)
	mux.Handle("/api/", c.jobsAPI.Handler())
	mux.Handle("/api/files/", files)
	mux.Handle("GET /metrics", promhttp.HandlerFor(c.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", c.handleHealthz)
	mux.Handle("/", c.ui.Handler()) // the admin UI: / and /ui/
	return instrument(c.registry, mux)
}

func (c *Coordinator) handleHealthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := c.store.CountByState(ctx); err != nil {
		http.Error(w, "database unavailable: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// Run runs the coordinator's background work until ctx ends: the config
// watcher, the resetter, the autoscaling metric's publisher when sinks
// are configured, and the mirrors of the site config's repositories. It
// returns once the mirrors' git processes have stopped and the publisher
// has released its lease.
func (c *Coordinator) Run(ctx context.Context) {
	go c.config.Run(ctx, time.Second)
	go c.runResetter(ctx)
	go c.ui.Run(ctx)
	var wg sync.WaitGroup
	if c.metrics != nil {
		wg.Go(func() { c.metrics.Run(ctx) })
	}
	c.git.Mirrors().Run(ctx)
	wg.Wait()
}

// Serve serves on l until ctx ends, running the background work (see
// [Coordinator.Run]) alongside. Long-polls in flight end at once on
// shutdown.
func (c *Coordinator) Serve(ctx context.Context, l net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	background := make(chan struct{})
	defer func() {
		cancel()
		<-background
	}()
	go func() {
		defer close(background)
		c.Run(ctx)
	}()
	srv := &http.Server{
		Handler:           c.handler,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancelShutdown := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelShutdown()
	if err := srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// Close closes the store.
func (c *Coordinator) Close() error { return c.store.Close() }

// runResetter requeues stalled jobs of every queue, every ResetInterval.
func (c *Coordinator) runResetter(ctx context.Context) {
	t := time.NewTicker(c.opts.ResetInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.ResetStalled(ctx)
		}
	}
}

// ResetStalled runs one resetter pass over every queue.
func (c *Coordinator) ResetStalled(ctx context.Context) {
	cfg := c.config.Current()
	now := time.Now()
	for _, q := range cfg.Queues {
		qs := cfg.Queue(q)
		reset, failed, err := c.store.ResetStalled(ctx, q, store.ResetOptions{
			StalledBefore: now.Add(-time.Duration(qs.StalledAge)),
			MaxResets:     qs.MaxResets,
		}, now)
		if err != nil {
			if ctx.Err() == nil {
				c.logger.Error("resetter failed", "queue", q, "err", err)
			}
			continue
		}
		if len(reset) > 0 {
			c.logger.Warn("requeued stalled jobs: their executor stopped heartbeating", "queue", q, "ids", reset)
			c.queueAPI.JobsFinished().WithLabelValues(q, "reset").Add(float64(len(reset)))
		}
		if len(failed) > 0 {
			c.logger.Warn("failed stalled jobs: reset too often or canceled", "queue", q, "ids", failed)
			c.queueAPI.JobsFinished().WithLabelValues(q, store.StateFailed).Add(float64(len(failed)))
		}
	}
}
