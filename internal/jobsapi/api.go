// Package jobsapi is the submission API for producers: submit jobs to a
// queue, read their state and logs, cancel and retry them, and list the
// executors. It lives under /api/ and takes "Authorization: token <api.accessToken>".
package jobsapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/siteconfig"
	"github.com/execd/execd/internal/store"
)

// Options configure a [Server].
type Options struct {
	Store  store.Store
	Config *siteconfig.Watcher
	Logger *slog.Logger
	Now    func() time.Time
}

// Server serves the submission API. It is safe for concurrent use.
type Server struct {
	store  store.Store
	config *siteconfig.Watcher
	logger *slog.Logger
	now    func() time.Time
}

// New returns a Server.
func New(opts Options) *Server {
	s := &Server{store: opts.Store, config: opts.Config, logger: opts.Logger, now: opts.Now}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Handler returns the /api/ routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/queues/{queue}/jobs", s.handleSubmit)
	mux.HandleFunc("GET /api/queues/{queue}/jobs", s.handleList)
	mux.HandleFunc("GET /api/queues/{queue}/jobs/{id}", s.handleGet)
	mux.HandleFunc("GET /api/queues/{queue}/jobs/{id}/logs", s.handleLogs)
	mux.HandleFunc("POST /api/queues/{queue}/jobs/{id}/cancel", s.handleCancel)
	mux.HandleFunc("POST /api/queues/{queue}/jobs/{id}/retry", s.handleRetry)
	mux.HandleFunc("GET /api/executors", s.handleExecutors)
	return s.auth(mux)
}

// Authorized reports whether r carries the API token; the UI uses it too.
func Authorized(cfg *siteconfig.Config, r *http.Request) bool {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "token ")
	return ok && cfg.APIAccessToken != "" &&
		subtle.ConstantTimeCompare([]byte(token), []byte(cfg.APIAccessToken)) == 1
}

func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cfg := s.config.Current()
		if cfg.APIAccessToken == "" {
			writeError(w, http.StatusServiceUnavailable, "the submission API is not configured: set api.accessToken in the site config")
			return
		}
		if !Authorized(cfg, r) {
			writeError(w, http.StatusUnauthorized, `missing or wrong API token: send the header "Authorization: token <api.accessToken>"`)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// SubmitRequest is the body of POST /api/queues/{queue}/jobs.
type SubmitRequest struct {
	store.Spec
	// MaxAttempts overrides the queue's maxAttempts for this job.
	MaxAttempts int `json:"maxAttempts,omitempty"`
}

// Job is a job as the API shows it.
type Job struct {
	ID              int                          `json:"id"`
	Queue           string                       `json:"queue"`
	State           string                       `json:"state"`
	FailureMessage  string                       `json:"failureMessage"`
	NumFailures     int                          `json:"numFailures"`
	NumResets       int                          `json:"numResets"`
	MaxAttempts     int                          `json:"maxAttempts"`
	CancelRequested bool                         `json:"cancelRequested"`
	QueuedAt        time.Time                    `json:"queuedAt"`
	StartedAt       *time.Time                   `json:"startedAt"`
	FinishedAt      *time.Time                   `json:"finishedAt"`
	WorkerHostname  string                       `json:"workerHostname"`
	Spec            store.Spec                   `json:"spec"`
	ExecutionLogs   []protocol.ExecutionLogEntry `json:"executionLogs,omitempty"`
}

// Logs is a job's state and part of its log, for following it: each
// entry's Out is its output from byte OutFrom (on a character boundary),
// and OutLength the whole output's length.
type Logs struct {
	State          string     `json:"state"`
	FailureMessage string     `json:"failureMessage"`
	Entries        []LogEntry `json:"entries"`
}

// LogEntry is a log entry of [Logs].
type LogEntry struct {
	ID int `json:"id"`
	protocol.ExecutionLogEntry
	OutFrom   int64 `json:"outFrom"`
	OutLength int64 `json:"outLength"`
}

// JobList is a page of jobs; Next, when set, is the "before" of the next page.
type JobList struct {
	Jobs []Job  `json:"jobs"`
	Next string `json:"next,omitempty"`
}

// Executor is an executor as the API shows it.
type Executor struct {
	Name            string    `json:"name"`
	Queues          []string  `json:"queues"`
	OS              string    `json:"os"`
	Architecture    string    `json:"architecture"`
	DockerVersion   string    `json:"dockerVersion"`
	ExecutorVersion string    `json:"executorVersion"`
	GitVersion      string    `json:"gitVersion"`
	IgniteVersion   string    `json:"igniteVersion"`
	SrcCliVersion   string    `json:"srcCliVersion"`
	Runtime         string    `json:"runtime"`
	FirstSeenAt     time.Time `json:"firstSeenAt"`
	LastSeenAt      time.Time `json:"lastSeenAt"`
	Active          bool      `json:"active"`
}

// APIError is the body of every error response.
type APIError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, APIError{Error: msg})
}

func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	s.logger.Error("submission API request failed", "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, err.Error())
}

// queue returns the route's queue, answering 404 for one not configured.
func (s *Server) queue(w http.ResponseWriter, r *http.Request) (string, bool) {
	q := r.PathValue("queue")
	cfg := s.config.Current()
	if !cfg.HasQueue(q) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("queue %q is not configured; configured queues: %s (site config key executors.queues)", q, strings.Join(cfg.Queues, ", ")))
		return "", false
	}
	return q, true
}

func (s *Server) handleSubmit(w http.ResponseWriter, r *http.Request) {
	q := r.PathValue("queue")
	cfg := s.config.Current()
	if !cfg.HasQueue(q) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("queue: %q is not configured; configured queues: %s (site config key executors.queues)", q, strings.Join(cfg.Queues, ", ")))
		return
	}
	var req SubmitRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid job spec: "+describeDecodeError(err))
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "invalid job spec: unexpected data after the JSON object")
		return
	}
	if err := Validate(req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid job spec: "+err.Error())
		return
	}
	attempts := req.MaxAttempts
	if attempts == 0 {
		attempts = cfg.Queue(q).MaxAttempts
	}
	id, err := s.store.Enqueue(r.Context(), q, req.Spec, attempts, s.now())
	if err != nil {
		s.internal(w, r, fmt.Errorf("enqueue: %w", err))
		return
	}
	job, err := s.store.GetJob(r.Context(), q, id)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	w.Header().Set("Location", fmt.Sprintf("/api/queues/%s/jobs/%d", q, id))
	writeJSON(w, http.StatusCreated, toJob(job))
}

func describeDecodeError(err error) string {
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Sprintf("field %q has a %s value, want %s", typ.Field, typ.Value, typ.Type)
	}
	if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return "unknown field " + msg + " (see the job spec in the README)"
	}
	return err.Error()
}

func (s *Server) jobID(w http.ResponseWriter, r *http.Request) (string, int, bool) {
	q, ok := s.queue(w, r)
	if !ok {
		return "", 0, false
	}
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("job id %q: want a positive integer", r.PathValue("id")))
		return "", 0, false
	}
	return q, id, true
}

// handleGet answers a job with its logs, or without them when the query
// says logs=false: pollers of a job's state need not fetch a log that may
// run to gigabytes.
func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	q, id, ok := s.jobID(w, r)
	if !ok {
		return
	}
	switch v := r.URL.Query().Get("logs"); v {
	case "", "true":
		s.writeJob(w, r, q, id, http.StatusOK)
	case "false":
		s.writeJobState(w, r, q, id)
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("logs %q: want true or false", v))
	}
}

// writeJobState answers a job without its logs.
func (s *Server) writeJobState(w http.ResponseWriter, r *http.Request, q string, id int) {
	job, ok := s.getJob(w, r, q, id)
	if ok {
		writeJSON(w, http.StatusOK, toJob(job))
	}
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request, q string, id int) (store.Job, bool) {
	job, err := s.store.GetJob(r.Context(), q, id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("job %d not found in queue %q", id, q))
		return job, false
	}
	if err != nil {
		s.internal(w, r, err)
		return job, false
	}
	return job, true
}

// handleLogs answers a job's state and part of its log: with
// from=ENTRY:OFFSET,... each entry's output from OFFSET (what the caller
// holds), and with tail=N at most the last N bytes of each.
func (s *Server) handleLogs(w http.ResponseWriter, r *http.Request) {
	q, id, ok := s.jobID(w, r)
	if !ok {
		return
	}
	lr, err := parseLogRange(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	// The state first: when it says finished, the log read after is whole.
	job, ok := s.getJob(w, r, q, id)
	if !ok {
		return
	}
	entries, err := s.store.LogEntries(r.Context(), q, id, lr)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := Logs{State: job.State, FailureMessage: job.FailureMessage, Entries: make([]LogEntry, len(entries))}
	for i, e := range entries {
		out.Entries[i] = LogEntry{ID: e.ID, ExecutionLogEntry: e.ExecutionLogEntry, OutFrom: e.From, OutLength: e.Length}
	}
	writeJSON(w, http.StatusOK, out)
}

// parseLogRange reads the from and tail parameters of the logs route.
func parseLogRange(q url.Values) (store.LogRange, error) {
	var lr store.LogRange
	if v := q.Get("tail"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return lr, fmt.Errorf("tail %q: want a positive number of bytes", v)
		}
		lr.Tail = n
	}
	if v := q.Get("from"); v != "" {
		lr.From = map[int]int64{}
		for _, pair := range strings.Split(v, ",") {
			entry, offset, ok := strings.Cut(pair, ":")
			id, err1 := strconv.Atoi(entry)
			n, err2 := strconv.ParseInt(offset, 10, 64)
			if !ok || err1 != nil || err2 != nil || id <= 0 || n < 0 {
				return lr, fmt.Errorf("from %q: want ENTRY:OFFSET pairs separated by commas, such as 1:4096,2:0", v)
			}
			lr.From[id] = n
		}
	}
	return lr, nil
}

func (s *Server) writeJob(w http.ResponseWriter, r *http.Request, q string, id, code int) {
	job, ok := s.getJob(w, r, q, id)
	if !ok {
		return
	}
	entries, err := s.store.LogEntries(r.Context(), q, id, store.LogRange{})
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := toJob(job)
	out.ExecutionLogs = make([]protocol.ExecutionLogEntry, len(entries))
	for i, e := range entries {
		out.ExecutionLogs[i] = e.ExecutionLogEntry
	}
	writeJSON(w, code, out)
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	q, ok := s.queue(w, r)
	if !ok {
		return
	}
	query := r.URL.Query()
	opts := store.ListOptions{State: query.Get("state"), RepositoryName: query.Get("repository"), Limit: 100}
	if opts.State != "" && !isState(opts.State) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("state %q: want one of %s", opts.State, strings.Join(store.States, ", ")))
		return
	}
	for name, dst := range map[string]*int{"before": &opts.BeforeID, "limit": &opts.Limit} {
		if v := query.Get(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("%s %q: want a positive integer", name, v))
				return
			}
			*dst = n
		}
	}
	opts.Limit = min(opts.Limit, 1000)
	jobs, err := s.store.ListJobs(r.Context(), q, opts)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := JobList{Jobs: make([]Job, len(jobs))}
	for i, j := range jobs {
		out.Jobs[i] = toJob(j)
	}
	if len(jobs) == opts.Limit {
		out.Next = strconv.Itoa(jobs[len(jobs)-1].ID)
	}
	writeJSON(w, http.StatusOK, out)
}

func isState(s string) bool {
	for _, st := range store.States {
		if s == st {
			return true
		}
	}
	return false
}

func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request) {
	s.transition(w, r, "cancel", s.store.Cancel)
}

func (s *Server) handleRetry(w http.ResponseWriter, r *http.Request) {
	s.transition(w, r, "retry", s.store.Retry)
}

func (s *Server) transition(w http.ResponseWriter, r *http.Request, op string, f func(ctx context.Context, queue string, id int, now time.Time) error) {
	q, id, ok := s.jobID(w, r)
	if !ok {
		return
	}
	err := f(r.Context(), q, id, s.now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("job %d not found in queue %q", id, q))
	case errors.Is(err, store.ErrInvalidState):
		job, _ := s.store.GetJob(r.Context(), q, id)
		writeError(w, http.StatusConflict, fmt.Sprintf("cannot %s job %d: it is %s", op, id, job.State))
	case err != nil:
		s.internal(w, r, err)
	default:
		s.writeJob(w, r, q, id, http.StatusOK)
	}
}

func (s *Server) handleExecutors(w http.ResponseWriter, r *http.Request) {
	execs, err := s.store.ListExecutors(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	threshold := s.config.Current().Active()
	now := s.now()
	out := make([]Executor, len(execs))
	for i, e := range execs {
		out[i] = Executor{
			Name: e.Name, Queues: e.Queues, OS: e.OS, Architecture: e.Architecture,
			DockerVersion: e.DockerVersion, ExecutorVersion: e.ExecutorVersion,
			GitVersion: e.GitVersion, IgniteVersion: e.IgniteVersion, SrcCliVersion: e.SrcCliVersion, Runtime: e.Runtime,
			FirstSeenAt: e.FirstSeenAt, LastSeenAt: e.LastSeenAt,
			Active: now.Sub(e.LastSeenAt) <= threshold,
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func toJob(j store.Job) Job {
	return Job{
		ID: j.ID, Queue: j.Queue, State: j.State, FailureMessage: j.FailureMessage,
		NumFailures: j.NumFailures, NumResets: j.NumResets, MaxAttempts: j.MaxAttempts,
		CancelRequested: j.Cancel, QueuedAt: j.QueuedAt, StartedAt: j.StartedAt,
		FinishedAt: j.FinishedAt, WorkerHostname: j.WorkerHostname, Spec: MaskSecrets(j.Spec),
	}
}

// MaskSecrets returns spec with its secrets hidden: the values to redact
// (the keys of redactedValues) and registry credentials. Secrets go to
// executors only, never back out of the API.
func MaskSecrets(spec store.Spec) store.Spec {
	if len(spec.RedactedValues) > 0 {
		masked := make(map[string]string, len(spec.RedactedValues))
		i := 0
		for _, replacement := range spec.RedactedValues {
			i++
			masked[fmt.Sprintf("[secret %d]", i)] = replacement
		}
		spec.RedactedValues = masked
	}
	if len(spec.DockerAuthConfig.Auths) > 0 {
		auths := make(map[string]protocol.DockerAuth, len(spec.DockerAuthConfig.Auths))
		for registry := range spec.DockerAuthConfig.Auths {
			auths[registry] = protocol.DockerAuth{Auth: []byte("[redacted]")}
		}
		spec.DockerAuthConfig = protocol.DockerAuthConfig{Auths: auths}
	}
	return spec
}
