package ui

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/store"
)

// page is what every template gets: the layout's fields and the page's own
// data.
type page struct {
	Title string // the <title>, before " · execd"
	Nav   string // the navigation entry to highlight
	CSRF  string // the session's CSRF token, for forms; empty when signed out
	Flash string // a notice shown above the content
	Error string // an error shown above the content
	Data  any
}

// render executes the page template name with p and writes it with code.
// It renders into a buffer first, so a template error becomes a clean 500.
func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name string, p page) {
	t, ok := s.pages[name]
	if !ok {
		s.fail(w, r, fmt.Errorf("no template %q", name))
		return
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, p); err != nil {
		s.fail(w, r, fmt.Errorf("render %s: %w", name, err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// fail logs err and answers 500 with a plain page.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	s.logger.Error("ui request failed", "path", r.URL.Path, "err", err)
	http.Error(w, "Internal error: "+err.Error(), http.StatusInternalServerError)
}

// errorPage answers code with a page saying msg, inside the layout.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, sess *session, code int, msg string) {
	p := page{Title: http.StatusText(code), Error: msg}
	if sess != nil {
		p.CSRF = sess.csrf
	}
	s.render(w, r, code, "error.html", p)
}

func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	sess, _ := s.session(r)
	s.errorPage(w, r, sess, http.StatusNotFound, fmt.Sprintf("There is no page at %s.", r.URL.Path))
}

// funcs are the template functions; those that tell the time use the
// server's clock.
func (s *Server) funcs() template.FuncMap {
	return template.FuncMap{
		"ago":      func(t time.Time) string { return ago(s.now().Sub(t)) },
		"agoPtr":   func(t *time.Time) string { return agoPtr(s.now(), t) },
		"stamp":    stamp,
		"stampPtr": stampPtr,
		"iso":      func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"isoPtr":   isoPtr,
		"ms":       durationMs,
		"span":     span,
		"join":     strings.Join,
		"commandText": func(key string, command []string) string {
			return strings.Join(protocol.CommandLines(key, command), "\n")
		},
		"stateOf":   stateClass,
		"dash":      dash,
		"short":     shortCommit,
		"derefInt":  derefInt,
		"states":    func() []string { return store.States },
		"hasPrefix": strings.HasPrefix,
	}
}

// ago formats an elapsed duration as the executors page shows it: "12 s
// ago", "3 min ago", "2 h ago", "4 d ago".
func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%d d ago", int(d/(24*time.Hour)))
}

func agoPtr(now time.Time, t *time.Time) string {
	if t == nil {
		return "—"
	}
	return ago(now.Sub(*t))
}

// stamp formats a time for tables: UTC, to the second.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func stampPtr(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return stamp(*t)
}

func isoPtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// durationMs formats a log entry's duration; empty while it runs.
func durationMs(ms *int) string {
	if ms == nil {
		return ""
	}
	return roundDuration(time.Duration(*ms) * time.Millisecond)
}

// span formats the time between two instants, or "—" when one is missing.
func span(from, to *time.Time) string {
	if from == nil || to == nil {
		return "—"
	}
	return roundDuration(to.Sub(*from))
}

// roundDuration keeps a duration short: "850ms", "12.3s", "4m10s".
func roundDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// stateClass is the CSS class of a job state's badge.
func stateClass(state string) string {
	switch state {
	case store.StateCompleted:
		return "ok"
	case store.StateErrored, store.StateFailed:
		return "bad"
	case store.StateProcessing:
		return "run"
	case store.StateCanceled:
		return "muted"
	}
	return "wait"
}

// dash shows "—" for an empty value.
func dash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "—"
	}
	return s
}

func shortCommit(s string) string {
	if len(s) == 40 {
		return s[:10]
	}
	return s
}

func derefInt(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}
