// Package queueapi serves the executor queue API under /.executors/: the
// routes of Sourcegraph's executor protocol (shared/protocol.md), with the
// same status codes, plus an opt-in long-poll on dequeue.
package queueapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/siteconfig"
	"github.com/execd/execd/internal/store"
)

// Prefix is where the API is mounted.
const Prefix = "/.executors"

// MaxWait caps a long-poll dequeue.
const MaxWait = 60 * time.Second

// recheck is how often a long-polling dequeue looks for work without a
// wake-up: errored jobs become eligible by the clock, not by an event.
const recheck = time.Second

// maxBody caps request bodies; log entries carry step output.
const maxBody = 64 << 20

// Options configure a [Server].
type Options struct {
	Store  store.Store
	Config *siteconfig.Watcher
	Logger *slog.Logger
	// Registerer receives the API's metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Uploads keeps code-intel index uploads (POST /scip/upload); nil
	// answers 501.
	Uploads Uploads
}

// Server handles the executor queue API. It is safe for concurrent use.
type Server struct {
	store   store.Store
	uploads Uploads
	config  *siteconfig.Watcher
	logger  *slog.Logger
	now     func() time.Time

	jobsFinished *prometheus.CounterVec

	mu     sync.Mutex
	known  map[string]time.Time // executor names known to exist, and when checked
	random *rand.Rand
}

// New returns a Server.
func New(opts Options) *Server {
	s := &Server{
		store:   opts.Store,
		uploads: opts.Uploads,
		config:  opts.Config,
		logger:  opts.Logger,
		now:     opts.Now,
		known:   map[string]time.Time{},
		random:  rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0)),
		jobsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "execd_jobs_finished_total",
			Help: "Jobs finished, by queue and outcome (completed, errored, failed, canceled, reset).",
		}, []string{"queue", "outcome"}),
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(s.jobsFinished)
	}
	return s
}

// JobsFinished counts finished jobs by queue and outcome; the resetter
// adds to it too.
func (s *Server) JobsFinished() *prometheus.CounterVec { return s.jobsFinished }

// Handler returns the routes, to be mounted at the root of the server's mux
// (they carry the /.executors prefix).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	exec := s.executorAuth
	job := s.jobAuth
	mux.Handle("GET "+Prefix+"/test/auth", exec(http.HandlerFunc(s.handleTestAuth)))
	mux.Handle("POST "+Prefix+"/queue/dequeue", exec(http.HandlerFunc(s.handleDequeueMulti)))
	mux.Handle("POST "+Prefix+"/queue/heartbeat", exec(http.HandlerFunc(s.handleHeartbeatMulti)))
	mux.Handle("POST "+Prefix+"/queue/{queue}/dequeue", exec(http.HandlerFunc(s.handleDequeue)))
	mux.Handle("POST "+Prefix+"/queue/{queue}/heartbeat", exec(http.HandlerFunc(s.handleHeartbeat)))
	mux.Handle("POST "+Prefix+"/queue/{queue}/addExecutionLogEntry", job(http.HandlerFunc(s.handleAddLogEntry)))
	mux.Handle("POST "+Prefix+"/queue/{queue}/updateExecutionLogEntry", job(http.HandlerFunc(s.handleUpdateLogEntry)))
	mux.Handle("POST "+Prefix+"/queue/{queue}/appendExecutionLogEntry", job(http.HandlerFunc(s.handleAppendLogEntry)))
	mux.Handle("POST "+Prefix+"/queue/{queue}/markComplete", job(http.HandlerFunc(s.handleMarkComplete)))
	mux.Handle("POST "+Prefix+"/queue/{queue}/markErrored", job(http.HandlerFunc(s.handleMarkErrored)))
	mux.Handle("POST "+Prefix+"/queue/{queue}/markFailed", job(http.HandlerFunc(s.handleMarkFailed)))
	mux.Handle("POST "+Prefix+"/scip/upload", exec(http.HandlerFunc(s.handleUpload)))
	mux.Handle("HEAD "+Prefix+"/scip/upload", exec(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	extensions := strings.Join(protocol.Extensions, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(protocol.ExtensionsHeader, extensions)
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) handleTestAuth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok")
}

// readBody reads a request body of at most maxBody bytes; false means a
// 400 was written.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, fmt.Sprintf("failed to read payload: %v", err), http.StatusBadRequest)
		return nil, false
	}
	return data, true
}

// decode reads a JSON body into v; false means a 400 was written.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	data, ok := readBody(w, r)
	if !ok {
		return false
	}
	// Every request body of the protocol is an object; JSON's null
	// would decode into the zero request and fail later, as if our fault.
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		http.Error(w, "failed to unmarshal payload: the body must be a JSON object", http.StatusBadRequest)
		return false
	}
	if err := json.Unmarshal(data, v); err != nil {
		http.Error(w, fmt.Sprintf("failed to unmarshal payload: %v", err), http.StatusBadRequest)
		return false
	}
	return true
}

// writeJSON writes v with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// badRequest answers 400 with {"error": ...} for a request that decoded
// but that no server could serve (an empty executorName, an unknown
// queue). The reference answers 500 to some of these; every client treats
// both as a failed request, and 500 stays for our own faults.
func badRequest(w http.ResponseWriter, err error) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
}

// writeError answers 500 with {"error": ...}, as the reference's handlers
// do for every failure that is not the client's request encoding.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	s.logger.Error("executor queue API request failed", "path", r.URL.Path, "err", err)
	writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
}

var errEmptyExecutorName = errors.New("worker hostname cannot be empty")
