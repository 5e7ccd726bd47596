// Package filesapi serves the file blobs that jobs' files entries name by
// bucket and key, kept in the database ([store.FileStore]) so that every
// coordinator sharing it serves the same blobs:
//
//	PUT      /api/files/{bucket}/{key...}         producers upload (api.accessToken)
//	GET      /api/files/{bucket}/{key...}         ... and read back
//	GET,HEAD /.executors/files/{bucket}/{key...}  executors read
//
// Executors authenticate as on the queue's job routes. With a job's token
// they may read only the blobs their own job lists in its files (403
// otherwise: stricter than the reference, which admits any blob); with the
// executors' shared secret, any blob.
package filesapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/execd/execd/internal/jobsapi"
	"github.com/execd/execd/internal/queueapi"
	"github.com/execd/execd/internal/siteconfig"
	"github.com/execd/execd/internal/store"
)

// DefaultMaxSize is the largest file accepted by default: blobs are read
// into memory whole, on upload and download.
const DefaultMaxSize = 256 << 20

// Authorizer authenticates executors' job requests; [queueapi.Server] is
// one. When it returns false it has written the response.
type Authorizer interface {
	AuthorizeJob(w http.ResponseWriter, r *http.Request, scope queueapi.Scope) (queueapi.JobCaller, bool)
}

// Options configure a [Server].
type Options struct {
	Files store.FileStore
	// Jobs is read for the spec of a job whose token asks for a file.
	Jobs   store.Store
	Config *siteconfig.Watcher
	Auth   Authorizer
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxSize caps uploads; 0 means DefaultMaxSize.
	MaxSize int64
}

// Server serves file blobs. It is safe for concurrent use.
type Server struct {
	files   store.FileStore
	jobs    store.Store
	config  *siteconfig.Watcher
	auth    Authorizer
	logger  *slog.Logger
	now     func() time.Time
	maxSize int64
}

// New returns a Server.
func New(opts Options) *Server {
	s := &Server{files: opts.Files, jobs: opts.Jobs, config: opts.Config, auth: opts.Auth, logger: opts.Logger, now: opts.Now, maxSize: opts.MaxSize}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxSize <= 0 {
		s.maxSize = DefaultMaxSize
	}
	return s
}

// Handler returns the routes, to be mounted at the root of the server's
// mux (they carry their /api/files and /.executors/files prefixes).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("PUT /api/files/{bucket}/{key...}", s.apiAuth(http.HandlerFunc(s.handlePut)))
	mux.Handle("GET /api/files/{bucket}/{key...}", s.apiAuth(http.HandlerFunc(s.handleAPIGet)))
	mux.HandleFunc("GET "+queueapi.Prefix+"/files/{bucket}/{key...}", s.handleExecutorGet)
	return mux
}

// apiAuth admits requests with the submission API's token, answering as
// the rest of /api does.
func (s *Server) apiAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cfg := s.config.Current()
		if cfg.APIAccessToken == "" {
			writeError(w, http.StatusServiceUnavailable, "the submission API is not configured: set api.accessToken in the site config")
			return
		}
		if !jobsapi.Authorized(cfg, r) {
			writeError(w, http.StatusUnauthorized, `missing or wrong API token: send the header "Authorization: token <api.accessToken>"`)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, jobsapi.APIError{Error: msg})
}

func (s *Server) handlePut(w http.ResponseWriter, r *http.Request) {
	bucket, key := r.PathValue("bucket"), r.PathValue("key")
	if err := store.CheckFileName(bucket, key); err != nil {
		writeError(w, http.StatusBadRequest, "file name: "+err.Error())
		return
	}
	tooLarge := fmt.Sprintf("file too large: the limit is %d MiB", s.maxSize>>20)
	if r.ContentLength > s.maxSize {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("%s; this one is %d bytes", tooLarge, r.ContentLength))
		return
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.maxSize)); err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			writeError(w, http.StatusRequestEntityTooLarge, tooLarge)
			return
		}
		writeError(w, http.StatusBadRequest, "read the file from the request body: "+err.Error())
		return
	}
	now := s.now()
	if err := s.files.PutFile(r.Context(), bucket, key, buf.Bytes(), now); err != nil {
		s.logger.Error("file upload failed", "bucket", bucket, "key", key, "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Location", jobsapi.FilePath(bucket, key))
	writeJSON(w, http.StatusCreated, jobsapi.File{Bucket: bucket, Key: key, Size: int64(buf.Len()), ModifiedAt: now.UTC()})
}

func (s *Server) handleAPIGet(w http.ResponseWriter, r *http.Request) {
	bucket, key := r.PathValue("bucket"), r.PathValue("key")
	if err := store.CheckFileName(bucket, key); err != nil {
		writeError(w, http.StatusNotFound, "file not found: "+err.Error())
		return
	}
	err := s.serveFile(w, r, bucket, key)
	switch {
	case errors.Is(err, store.ErrFileNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("file %s/%s not found", bucket, key))
	case err != nil:
		s.logger.Error("file download failed", "bucket", bucket, "key", key, "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

// handleExecutorGet serves a blob to an executor: with a job token, only
// one its job names.
func (s *Server) handleExecutorGet(w http.ResponseWriter, r *http.Request) {
	caller, ok := s.auth.AuthorizeJob(w, r, queueapi.Scope{})
	if !ok {
		return
	}
	bucket, key := r.PathValue("bucket"), r.PathValue("key")
	if caller.JobID != 0 {
		job, err := s.jobs.GetJob(r.Context(), caller.Queue, caller.JobID)
		if err != nil {
			s.internal(w, r, fmt.Errorf("read the spec of job %d: %w", caller.JobID, err))
			return
		}
		if !lists(job.Spec, bucket, key) {
			http.Error(w, fmt.Sprintf("job %d does not list file %s/%s in its files: a job token reads only its own job's files", caller.JobID, bucket, key), http.StatusForbidden)
			return
		}
	}
	if err := store.CheckFileName(bucket, key); err != nil {
		http.Error(w, "file not found: "+err.Error(), http.StatusNotFound)
		return
	}
	err := s.serveFile(w, r, bucket, key)
	switch {
	case errors.Is(err, store.ErrFileNotFound):
		http.Error(w, fmt.Sprintf("file %s/%s not found: upload it with PUT /api/files/%s/%s", bucket, key, bucket, key), http.StatusNotFound)
	case err != nil:
		s.internal(w, r, err)
	}
}

// lists reports whether spec's files name bucket/key.
func lists(spec store.Spec, bucket, key string) bool {
	for _, f := range spec.Files {
		if f.Bucket == bucket && f.Key == key {
			return true
		}
	}
	return false
}

// serveFile answers GET with the blob (ranges and conditional requests
// included) and HEAD with its size and time, without reading its content.
// Nothing is written when it returns an error.
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, bucket, key string) error {
	w.Header().Set("Content-Type", "application/octet-stream")
	if r.Method == http.MethodHead {
		f, err := s.files.StatFile(r.Context(), bucket, key)
		if err != nil {
			w.Header().Del("Content-Type")
			return err
		}
		w.Header().Set("Content-Length", fmt.Sprint(f.Size))
		w.Header().Set("Last-Modified", f.ModifiedAt.UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusOK)
		return nil
	}
	f, content, err := s.files.GetFile(r.Context(), bucket, key)
	if err != nil {
		w.Header().Del("Content-Type")
		return err
	}
	http.ServeContent(w, r, "", f.ModifiedAt, bytes.NewReader(content))
	return nil
}

// internal answers 500 with {"error": ...}, as the executor queue API does.
func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	s.logger.Error("executor file request failed", "path", r.URL.Path, "err", err)
	writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
}
