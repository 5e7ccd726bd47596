package ui

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/execd/execd/internal/store"
)

// executorRow is one row of the executors page.
type executorRow struct {
	store.Executor
	Hostname string
	Running  int
	Active   bool
	Compat   compat
}

type executorsData struct {
	Rows      []executorRow
	Total     int // executors known, before the filter
	NumActive int
	Show      string // "all" or "active"
	Query     string
	Threshold time.Duration
	Version   string
	Queues    []string
}

func (s *Server) handleExecutors(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx := r.Context()
	cfg := s.config.Current()
	execs, err := s.store.ListExecutors(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	running, err := s.runningByExecutor(ctx, cfg.Queues)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	data := executorsData{
		Show:      q.Get("show"),
		Query:     strings.TrimSpace(q.Get("q")),
		Total:     len(execs),
		Threshold: cfg.Active(),
		Version:   s.versionLabel(),
		Queues:    cfg.Queues,
	}
	if data.Show != "active" {
		data.Show = "all"
	}
	now := s.now()
	for _, e := range execs {
		row := executorRow{
			Executor: e,
			Hostname: hostname(e.Name),
			Running:  running[e.Name],
			Active:   now.Sub(e.LastSeenAt) <= cfg.Active(),
			Compat:   compareVersions(e.ExecutorVersion, s.version),
		}
		if row.Active {
			data.NumActive++
		}
		if (data.Show == "active" && !row.Active) || !matches(row, data.Query) {
			continue
		}
		data.Rows = append(data.Rows, row)
	}
	s.render(w, r, http.StatusOK, "executors.html", page{Title: "Executors", Nav: "executors", CSRF: sess.csrf, Data: data})
}

// runningByExecutor counts the processing jobs of every queue by the
// executor that holds them.
func (s *Server) runningByExecutor(ctx context.Context, queues []string) (map[string]int, error) {
	out := map[string]int{}
	for _, q := range queues {
		jobs, err := s.store.ListJobs(ctx, q, store.ListOptions{State: store.StateProcessing, Limit: 10000})
		if err != nil {
			return nil, fmt.Errorf("count running jobs: %w", err)
		}
		for _, j := range jobs {
			out[j.WorkerHostname]++
		}
	}
	return out, nil
}

// hostname is the part of an executor's name before its last '-': the
// executor names itself <hostname>-<random or index>.
func hostname(name string) string {
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		return name[:i]
	}
	return name
}

// matches reports whether the search query q (case-insensitive, every
// word) appears in the row's name, queues, OS, architecture or versions.
func matches(row executorRow, q string) bool {
	if q == "" {
		return true
	}
	hay := strings.ToLower(strings.Join([]string{
		row.Name, strings.Join(row.Queues, " "), row.OS, row.Architecture,
		row.ExecutorVersion, row.DockerVersion, row.GitVersion, row.IgniteVersion,
	}, " "))
	for _, word := range strings.Fields(strings.ToLower(q)) {
		if !strings.Contains(hay, word) {
			return false
		}
	}
	return true
}

func (s *Server) versionLabel() string {
	if s.version == "" {
		return "dev"
	}
	return s.version
}

// compat is an executor's compatibility badge.
type compat struct {
	Label string // "up to date", "outdated", "ahead", "dev", "unknown"
	Class string // CSS class of the badge
	Title string // the explanation shown on hover
}

// compareVersions compares an executor's version with the coordinator's
// by major.minor.patch. A development build on either side (no release
// number, a "dev" pre-release, 0.0.0) cannot be compared: "dev".
func compareVersions(executor, coordinator string) compat {
	if strings.TrimSpace(executor) == "" {
		return compat{"unknown", "muted", "the executor did not report its version"}
	}
	ev, eok := parseVersion(executor)
	cv, cok := parseVersion(coordinator)
	if !eok || !cok {
		return compat{"dev", "muted", fmt.Sprintf("a development build (executor %s, coordinator %s) cannot be compared", executor, dash(coordinator))}
	}
	switch c := cmpVersion(ev, cv); {
	case c < 0:
		return compat{"outdated", "bad", fmt.Sprintf("executor %s is older than the coordinator %s: upgrade it", executor, coordinator)}
	case c > 0:
		return compat{"ahead", "wait", fmt.Sprintf("executor %s is newer than the coordinator %s", executor, coordinator)}
	}
	return compat{"up to date", "ok", fmt.Sprintf("executor %s matches the coordinator", executor)}
}

// parseVersion reads a release version "[v]X.Y.Z[+build]"; development
// builds are not releases.
func parseVersion(v string) ([3]int, bool) {
	var out [3]int
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	core, build, _ := strings.Cut(v, "+")
	core, pre, _ := strings.Cut(core, "-")
	if strings.Contains(pre, "dev") || strings.Contains(build, "dev") {
		return out, false
	}
	parts := strings.Split(core, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return out, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return out, false
		}
		out[i] = n
	}
	return out, out != [3]int{}
}

func cmpVersion(a, b [3]int) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}
