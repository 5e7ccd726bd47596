package queueapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/store"
)

func (s *Server) handleAddLogEntry(w http.ResponseWriter, r *http.Request) {
	var req protocol.AddExecutionLogEntryRequest
	if !decode(w, r, &req) || !checkJobOperation(w, r, req.JobID, req.ExecutorName) {
		return
	}
	if req.ExecutorName == "" {
		badRequest(w, errEmptyExecutorName)
		return
	}
	id, err := s.store.AddLogEntry(r.Context(), r.PathValue("queue"), req.JobID, req.ExecutorName, req.ExecutionLogEntry)
	if err != nil {
		s.jobError(w, r, "addExecutionLogEntry", err)
		return
	}
	writeJSON(w, http.StatusOK, id)
}

func (s *Server) handleUpdateLogEntry(w http.ResponseWriter, r *http.Request) {
	var req protocol.UpdateExecutionLogEntryRequest
	if !decode(w, r, &req) || !checkJobOperation(w, r, req.JobID, req.ExecutorName) {
		return
	}
	if req.ExecutorName == "" {
		badRequest(w, errEmptyExecutorName)
		return
	}
	err := s.store.UpdateLogEntry(r.Context(), r.PathValue("queue"), req.JobID, req.ExecutorName, req.EntryID, req.ExecutionLogEntry)
	if err != nil {
		s.jobError(w, r, "updateExecutionLogEntry", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleAppendLogEntry appends to an entry's output (our extension): the
// body is the output, raw; the query names the entry. 200 with the new
// length, 409 with the stored length when the offset is not it, 404 like
// the other job operations.
func (s *Server) handleAppendLogEntry(w http.ResponseWriter, r *http.Request) {
	req, err := parseAppend(r.URL.Query())
	if err != nil {
		http.Error(w, "appendExecutionLogEntry: "+err.Error(), http.StatusBadRequest)
		return
	}
	if !checkJobOperation(w, r, req.jobID, req.executorName) {
		return
	}
	out, ok := readBody(w, r)
	if !ok {
		return
	}
	if !utf8.Valid(out) {
		http.Error(w, "appendExecutionLogEntry: the body is not valid UTF-8: send output as UTF-8, with invalid bytes replaced by U+FFFD", http.StatusBadRequest)
		return
	}
	queue := r.PathValue("queue")
	n, err := s.store.AppendLogOutput(r.Context(), queue, req.jobID, req.executorName, req.entryID, req.offset, string(out))
	if errors.Is(err, store.ErrOffsetMismatch) {
		writeJSON(w, http.StatusConflict, protocol.AppendExecutionLogEntryResponse{Length: n})
		return
	}
	if err == nil && (req.exitCode != nil || req.durationMs != nil) {
		err = s.store.FinishLogEntry(r.Context(), queue, req.jobID, req.executorName, req.entryID, req.exitCode, req.durationMs)
	}
	if err != nil {
		s.jobError(w, r, "appendExecutionLogEntry", err)
		return
	}
	writeJSON(w, http.StatusOK, protocol.AppendExecutionLogEntryResponse{Length: n})
}

// appendRequest is appendExecutionLogEntry's query.
type appendRequest struct {
	executorName         string
	jobID, entryID       int
	offset               int64
	exitCode, durationMs *int
}

func parseAppend(q url.Values) (appendRequest, error) {
	req := appendRequest{executorName: q.Get("executorName")}
	if req.executorName == "" {
		return req, errors.New("query parameter executorName is missing")
	}
	var err error
	// integer parses parameter name; a missing one is nil unless required.
	integer := func(name string, required, negative bool) *int {
		v := q.Get(name)
		if err != nil || (v == "" && !required) {
			return nil
		}
		if v == "" {
			err = fmt.Errorf("query parameter %s is missing", name)
			return nil
		}
		n, perr := strconv.Atoi(v)
		if perr != nil || (n < 0 && !negative) {
			err = fmt.Errorf("query parameter %s is %q: want a whole number of at least 0", name, v)
			if negative {
				err = fmt.Errorf("query parameter %s is %q: want a whole number", name, v)
			}
			return nil
		}
		return &n
	}
	jobID, entryID, offset := integer("jobId", true, false), integer("entryId", true, false), integer("offset", true, false)
	req.exitCode, req.durationMs = integer("exitCode", false, true), integer("durationMs", false, false)
	if err != nil {
		return req, err
	}
	req.jobID, req.entryID, req.offset = *jobID, *entryID, int64(*offset)
	return req, nil
}

func (s *Server) handleMarkComplete(w http.ResponseWriter, r *http.Request) {
	var req protocol.MarkCompleteRequest
	if !decode(w, r, &req) || !checkJobOperation(w, r, req.JobID, req.ExecutorName) {
		return
	}
	queue := r.PathValue("queue")
	if err := s.store.MarkComplete(r.Context(), queue, req.JobID, req.ExecutorName, s.now()); err != nil {
		s.jobError(w, r, "markComplete", err)
		return
	}
	s.jobsFinished.WithLabelValues(queue, store.StateCompleted).Inc()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleMarkErrored(w http.ResponseWriter, r *http.Request) {
	var req protocol.MarkErroredRequest
	if !decode(w, r, &req) || !checkJobOperation(w, r, req.JobID, req.ExecutorName) {
		return
	}
	queue := r.PathValue("queue")
	delay := time.Duration(s.config.Current().Queue(queue).RetryDelay)
	if err := s.store.MarkErrored(r.Context(), queue, req.JobID, req.ExecutorName, req.ErrorMessage, delay, s.now()); err != nil {
		s.jobError(w, r, "markErrored", err)
		return
	}
	s.countFinal(r, queue, req.JobID, store.StateErrored)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleMarkFailed(w http.ResponseWriter, r *http.Request) {
	var req protocol.MarkErroredRequest
	if !decode(w, r, &req) || !checkJobOperation(w, r, req.JobID, req.ExecutorName) {
		return
	}
	queue := r.PathValue("queue")
	if err := s.store.MarkFailed(r.Context(), queue, req.JobID, req.ExecutorName, req.ErrorMessage, s.now()); err != nil {
		s.jobError(w, r, "markFailed", err)
		return
	}
	s.countFinal(r, queue, req.JobID, store.StateFailed)
	w.WriteHeader(http.StatusNoContent)
}

// countFinal counts a finished attempt by the state the job landed in
// (markErrored may have made it failed or canceled).
func (s *Server) countFinal(r *http.Request, queue string, id int, fallback string) {
	state := fallback
	if job, err := s.store.GetJob(r.Context(), queue, id); err == nil {
		state = job.State
	}
	s.jobsFinished.WithLabelValues(queue, state).Inc()
}

// jobError answers a failed job operation: 404 when the job is not
// processing or not owned by the executor, else 500.
func (s *Server) jobError(w http.ResponseWriter, r *http.Request, op string, err error) {
	if errors.Is(err, store.ErrNotFound) {
		http.Error(w, fmt.Sprintf("%s: unknown job: it is not processing, or another executor owns it", op), http.StatusNotFound)
		return
	}
	s.writeError(w, r, fmt.Errorf("%s: %w", op, err))
}
