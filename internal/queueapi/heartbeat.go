package queueapi

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/store"
)

func (s *Server) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	var req protocol.HeartbeatRequest
	if !decode(w, r, &req) {
		return
	}
	queue := r.PathValue("queue")
	if req.ExecutorName == "" {
		s.writeError(w, r, errEmptyExecutorName)
		return
	}
	if !s.config.Current().HasQueue(queue) {
		s.writeError(w, r, fmt.Errorf("unknown queue %q", queue))
		return
	}
	ids, err := parseIDs(req.JobIDs)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	known, cancel, err := s.store.Heartbeat(r.Context(), executorOf(req, []string{queue}), queue, ids, s.now())
	if err != nil {
		s.writeError(w, r, fmt.Errorf("heartbeat: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, protocol.HeartbeatResponse{KnownIDs: itoas(known, ""), CancelIDs: itoas(cancel, "")})
}

func (s *Server) handleHeartbeatMulti(w http.ResponseWriter, r *http.Request) {
	var req protocol.HeartbeatRequest
	if !decode(w, r, &req) {
		return
	}
	if req.ExecutorName == "" {
		s.writeError(w, r, errEmptyExecutorName)
		return
	}
	if len(req.QueueNames) == 0 {
		s.writeError(w, r, fmt.Errorf("queueNames must be set for multi-queue heartbeats"))
		return
	}
	var invalid []string
	for _, q := range req.JobIDsByQueue {
		if !slices.Contains(req.QueueNames, q.QueueName) {
			invalid = append(invalid, q.QueueName)
		}
	}
	if len(invalid) > 0 {
		s.writeError(w, r, fmt.Errorf("unsupported queue name(s) '%s' submitted in queueJobIds, executor is configured for queues '%s'",
			strings.Join(invalid, ", "), strings.Join(req.QueueNames, ", ")))
		return
	}
	resp, err := s.heartbeatMulti(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) heartbeatMulti(ctx context.Context, req protocol.HeartbeatRequest) (protocol.HeartbeatResponse, error) {
	resp := protocol.HeartbeatResponse{KnownIDs: []string{}, CancelIDs: []string{}}
	e := executorOf(req, req.QueueNames)
	now := s.now()
	if len(req.JobIDsByQueue) == 0 {
		_, _, err := s.store.Heartbeat(ctx, e, "", nil, now)
		return resp, err
	}
	for _, q := range req.JobIDsByQueue {
		ids, err := parseIDs(q.JobIDs)
		if err != nil {
			return resp, err
		}
		known, cancel, err := s.store.Heartbeat(ctx, e, q.QueueName, ids, now)
		if err != nil {
			return resp, fmt.Errorf("heartbeat for queue %q: %w", q.QueueName, err)
		}
		resp.KnownIDs = append(resp.KnownIDs, itoas(known, q.QueueName)...)
		resp.CancelIDs = append(resp.CancelIDs, itoas(cancel, q.QueueName)...)
	}
	return resp, nil
}

func executorOf(req protocol.HeartbeatRequest, queues []string) store.Executor {
	return store.Executor{
		Name:            req.ExecutorName,
		Queues:          queues,
		OS:              req.OS,
		Architecture:    req.Architecture,
		DockerVersion:   req.DockerVersion,
		ExecutorVersion: req.ExecutorVersion,
		GitVersion:      req.GitVersion,
		IgniteVersion:   req.IgniteVersion,
		SrcCliVersion:   req.SrcCliVersion,
		Runtime:         req.Runtime,
	}
}

// parseIDs reads heartbeat job ids: "12" or, from multi-queue executors
// that send uids, "12-batches".
func parseIDs(raw []string) ([]int, error) {
	ids := make([]int, 0, len(raw))
	for _, r := range raw {
		id, _, err := protocol.ParseJobUID(r)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// itoas formats ids, as "<id>-<queue>" when queue is set.
func itoas(ids []int, queue string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		if queue == "" {
			out[i] = strconv.Itoa(id)
		} else {
			out[i] = protocol.JobUID(id, queue)
		}
	}
	return out
}
