// Package ui is the coordinator's admin web UI: the executors with their
// green dots, the queues with charts of the last hour, the jobs with their
// logs streamed live, and the site config.
//
// Pages are rendered on the server from html/template files embedded in the
// binary; one small script (static/app.js, no build step) patches the live
// parts: the job page follows a server-sent event stream, the executors
// page refreshes its table. Every page is behind a sign-in with the site
// config's api.accessToken (see auth.go for the session and CSRF rules).
//
// Routes (all under /ui/ but the root, which redirects to the executors):
//
//	GET  /ui/sign-in, POST /ui/sign-in, POST /ui/sign-out
//	GET  /ui/executors?show=active&q=...
//	GET  /ui/queues
//	GET  /ui/jobs/{queue}?state=...&repository=...&before=...
//	GET  /ui/jobs/{queue}/{id}, GET /ui/jobs/{queue}/{id}/events (text/event-stream)
//	GET  /ui/jobs/{queue}/{id}/log/{entry} (an entry's whole output, as text)
//	POST /ui/jobs/{queue}/{id}/cancel, POST /ui/jobs/{queue}/{id}/retry
//	GET  /ui/site-config, POST /ui/site-config
//	GET  /ui/static/...
package ui

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/execd/execd/internal/siteconfig"
	"github.com/execd/execd/internal/store"
)

//go:embed templates/*.html static/*
var files embed.FS

// Options configure a [Server].
type Options struct {
	Store  store.Store
	Config *siteconfig.Watcher
	Logger *slog.Logger
	// Version is the coordinator's version, against which executors'
	// versions are compared; empty counts as a development build.
	Version string
	// SampleInterval is how often [Server.Run] records the queue sizes
	// charted on the queues page; 0 means 15s.
	SampleInterval time.Duration
	// PollInterval is how often a job's event stream reads the job from the
	// store; 0 means 500ms.
	PollInterval time.Duration
	// SessionTTL is how long a sign-in lasts; 0 means 12 hours.
	SessionTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server serves the admin UI. It is safe for concurrent use.
type Server struct {
	store   store.Store
	config  *siteconfig.Watcher
	logger  *slog.Logger
	version string
	now     func() time.Time
	sample  time.Duration
	poll    time.Duration
	// sessionTTL is how long a sign-in lasts.
	sessionTTL time.Duration
	history    *history
	pages      map[string]*template.Template
}

// New returns a Server; it fails only if the embedded templates do not parse.
func New(opts Options) (*Server, error) {
	s := &Server{
		store:   opts.Store,
		config:  opts.Config,
		logger:  opts.Logger,
		version: opts.Version,
		now:     opts.Now,
		sample:  opts.SampleInterval,
		poll:    opts.PollInterval,
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.sample <= 0 {
		s.sample = 15 * time.Second
	}
	if s.poll <= 0 {
		s.poll = 500 * time.Millisecond
	}
	s.sessionTTL = opts.SessionTTL
	if s.sessionTTL <= 0 {
		s.sessionTTL = 12 * time.Hour
	}
	s.history = newHistory(int(time.Hour/s.sample) + 1)
	pages, err := parsePages(s.funcs())
	if err != nil {
		return nil, err
	}
	s.pages = pages
	return s, nil
}

// parsePages parses each page template together with the layout.
func parsePages(funcs template.FuncMap) (map[string]*template.Template, error) {
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, name := range names {
		if name == "templates/layout.html" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", name)
		if err != nil {
			return nil, fmt.Errorf("ui: parse %s: %w", name, err)
		}
		pages[name[len("templates/"):]] = t
	}
	return pages, nil
}

// Handler returns the UI's routes. The coordinator mounts it at "/": it
// answers the root and everything under /ui/.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/executors", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /ui/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/executors", http.StatusSeeOther)
	})
	static, _ := fs.Sub(files, "static")
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", staticHandler(static)))
	mux.HandleFunc("GET /ui/sign-in", s.handleSignInPage)
	mux.HandleFunc("POST /ui/sign-in", s.handleSignIn)
	mux.Handle("POST /ui/sign-out", s.form(s.handleSignOut))
	mux.Handle("GET /ui/executors", s.view(s.handleExecutors))
	mux.Handle("GET /ui/queues", s.view(s.handleQueues))
	mux.Handle("GET /ui/jobs", s.view(s.handleJobsIndex))
	mux.Handle("GET /ui/jobs/{queue}", s.view(s.handleJobs))
	mux.Handle("GET /ui/jobs/{queue}/{id}", s.view(s.handleJob))
	mux.Handle("GET /ui/jobs/{queue}/{id}/events", s.stream(s.handleJobEvents))
	mux.Handle("GET /ui/jobs/{queue}/{id}/log/{entry}", s.view(s.handleWholeLog))
	mux.Handle("POST /ui/jobs/{queue}/{id}/cancel", s.form(s.handleCancel))
	mux.Handle("POST /ui/jobs/{queue}/{id}/retry", s.form(s.handleRetry))
	mux.Handle("GET /ui/site-config", s.view(s.handleSiteConfig))
	mux.Handle("POST /ui/site-config", s.form(s.handleSaveSiteConfig))
	mux.HandleFunc("/", s.handleNotFound)
	return securityHeaders(mux)
}

// Run records the queue sizes every SampleInterval until ctx ends, for the
// charts of the queues page.
func (s *Server) Run(ctx context.Context) {
	s.takeSample(ctx)
	t := time.NewTicker(s.sample)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.takeSample(ctx)
		}
	}
}

// staticHandler serves the embedded script with a short cache lifetime.
func staticHandler(fsys fs.FS) http.Handler {
	fileServer := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		fileServer.ServeHTTP(w, r)
	})
}

// securityHeaders forbids framing, inline scripts and content sniffing on
// every answer.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}
