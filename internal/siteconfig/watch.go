package siteconfig

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Watcher holds the config in force and reloads it when the file changes.
// A bad edit is logged and refused: the previous config stays in force.
// It is safe for concurrent use.
type Watcher struct {
	path    string
	logger  *slog.Logger
	current atomic.Pointer[Config]
	raw     atomic.Pointer[[]byte] // text of the config in force

	mu       sync.Mutex
	lastSeen []byte // text last read, good or bad, so one bad edit is logged once
}

// NewWatcher loads path; an invalid file is an error. A nil logger
// discards.
func NewWatcher(path string, logger *slog.Logger) (*Watcher, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	w := &Watcher{path: path, logger: logger}
	w.current.Store(c)
	w.raw.Store(&data)
	return w, nil
}

// Static returns a Watcher that always holds c (for tests and embedding).
func Static(c *Config) *Watcher {
	w := &Watcher{logger: slog.New(slog.DiscardHandler)}
	w.current.Store(c)
	empty := []byte{}
	w.raw.Store(&empty)
	return w
}

// Current returns the config in force. Callers must not modify it.
func (w *Watcher) Current() *Config { return w.current.Load() }

// Path is the file watched.
func (w *Watcher) Path() string { return w.path }

// Raw returns the file's text as last loaded successfully.
func (w *Watcher) Raw() []byte { return *w.raw.Load() }

// Save validates data, writes it atomically and puts it in force.
func (w *Watcher) Save(data []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, err := Save(w.path, data)
	if err != nil {
		return err
	}
	w.current.Store(c)
	w.raw.Store(&data)
	w.logger.Info("site config saved", "path", w.path)
	return nil
}

// Run checks the file every interval until ctx ends, reloading it when its
// content changed.
func (w *Watcher) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.Reload()
		}
	}
}

// Reload re-reads the file now; it reports whether a new config took force.
func (w *Watcher) Reload() bool {
	data, err := os.ReadFile(w.path)
	if err != nil {
		w.logger.Error("site config not reloaded; the previous config stays in force", "path", w.path, "err", err)
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if bytes.Equal(data, w.lastSeen) || bytes.Equal(data, w.Raw()) {
		return false
	}
	w.lastSeen = data
	c, err := Parse(w.path, data)
	if err != nil {
		w.logger.Error("site config edit refused; the previous config stays in force", "err", err)
		return false
	}
	w.current.Store(c)
	w.raw.Store(&data)
	w.logger.Info("site config reloaded", "path", w.path)
	return true
}
