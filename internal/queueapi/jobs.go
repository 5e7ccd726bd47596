package queueapi

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/store"
)

func (s *Server) handleAddLogEntry(w http.ResponseWriter, r *http.Request) {
	var req protocol.AddExecutionLogEntryRequest
	if !decode(w, r, &req) || !checkJobOperation(w, r, req.JobID, req.ExecutorName) {
		return
	}
	if req.ExecutorName == "" {
		s.writeError(w, r, errEmptyExecutorName)
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
		s.writeError(w, r, errEmptyExecutorName)
		return
	}
	err := s.store.UpdateLogEntry(r.Context(), r.PathValue("queue"), req.JobID, req.ExecutorName, req.EntryID, req.ExecutionLogEntry)
	if err != nil {
		s.jobError(w, r, "updateExecutionLogEntry", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleAppendLogEntry appends to an entry's output (our extension): 200
// with the new length, 409 with the stored length when the offset is not
// it, 404 like the other job operations.
func (s *Server) handleAppendLogEntry(w http.ResponseWriter, r *http.Request) {
	var req protocol.AppendExecutionLogEntryRequest
	if !decode(w, r, &req) || !checkJobOperation(w, r, req.JobID, req.ExecutorName) {
		return
	}
	if req.ExecutorName == "" {
		s.writeError(w, r, errEmptyExecutorName)
		return
	}
	queue := r.PathValue("queue")
	n, err := s.store.AppendLogOutput(r.Context(), queue, req.JobID, req.ExecutorName, req.EntryID, req.Offset, req.Out)
	if errors.Is(err, store.ErrOffsetMismatch) {
		writeJSON(w, http.StatusConflict, protocol.AppendExecutionLogEntryResponse{Length: n})
		return
	}
	if err == nil && (req.ExitCode != nil || req.DurationMs != nil) {
		err = s.store.FinishLogEntry(r.Context(), queue, req.JobID, req.ExecutorName, req.EntryID, req.ExitCode, req.DurationMs)
	}
	if err != nil {
		s.jobError(w, r, "appendExecutionLogEntry", err)
		return
	}
	writeJSON(w, http.StatusOK, protocol.AppendExecutionLogEntryResponse{Length: n})
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
