package queueapi

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

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
		badRequest(w, errEmptyExecutorName)
		return
	}
	if !s.config.Current().HasQueue(queue) {
		badRequest(w, fmt.Errorf("unknown queue %q", queue))
		return
	}
	ids, err := parseIDs(req.JobIDs)
	if err != nil {
		badRequest(w, err)
		return
	}
	wait, ok := waitOf(w, r)
	if !ok {
		return
	}
	e := executorOf(req, []string{queue})
	resp, err := s.waitForCancel(r.Context(), wait, refs(queue, ids), func(ctx context.Context) (protocol.HeartbeatResponse, error) {
		known, cancel, err := s.store.Heartbeat(ctx, e, queue, ids, s.now())
		return protocol.HeartbeatResponse{KnownIDs: itoas(known, ""), CancelIDs: itoas(cancel, "")}, err
	})
	if err != nil {
		s.writeError(w, r, fmt.Errorf("heartbeat: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// waitForCancel runs beat, the heartbeat's store work, and answers its
// response; when the response cancels nothing, knows of jobs, and the
// executor asked to wait, it waits until one of jobs is canceled (and
// then beats again), or the wait ends, or the executor leaves. So an
// executor that heartbeats again as soon as one returns hears of a
// cancellation at once, for the same number of requests.
func (s *Server) waitForCancel(ctx context.Context, wait time.Duration, jobs []store.JobRef, beat func(context.Context) (protocol.HeartbeatResponse, error)) (protocol.HeartbeatResponse, error) {
	if wait <= 0 || len(jobs) == 0 {
		return beat(ctx)
	}
	// Subscribed before the heartbeat reads the cancel flags, so that a
	// cancellation in between is not missed.
	canceled, stop := s.store.WakeOnCancel(jobs)
	defer stop()
	resp, err := beat(ctx)
	if err != nil || len(resp.CancelIDs) > 0 || len(resp.KnownIDs) == 0 {
		return resp, err
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-canceled:
		return beat(ctx)
	case <-timer.C:
	case <-ctx.Done():
	}
	return resp, nil
}

// refs names ids of queue.
func refs(queue string, ids []int) []store.JobRef {
	out := make([]store.JobRef, len(ids))
	for i, id := range ids {
		out[i] = store.JobRef{Queue: queue, ID: id}
	}
	return out
}

func (s *Server) handleHeartbeatMulti(w http.ResponseWriter, r *http.Request) {
	var req protocol.HeartbeatRequest
	if !decode(w, r, &req) {
		return
	}
	if req.ExecutorName == "" {
		badRequest(w, errEmptyExecutorName)
		return
	}
	if len(req.QueueNames) == 0 {
		badRequest(w, fmt.Errorf("queueNames must be set for multi-queue heartbeats"))
		return
	}
	var invalid []string
	for _, q := range req.JobIDsByQueue {
		if !slices.Contains(req.QueueNames, q.QueueName) {
			invalid = append(invalid, q.QueueName)
		}
	}
	if len(invalid) > 0 {
		badRequest(w, fmt.Errorf("unsupported queue name(s) '%s' submitted in queueJobIds, executor is configured for queues '%s'",
			strings.Join(invalid, ", "), strings.Join(req.QueueNames, ", ")))
		return
	}
	wait, ok := waitOf(w, r)
	if !ok {
		return
	}
	var jobs []store.JobRef
	for _, q := range req.JobIDsByQueue {
		ids, err := parseIDs(q.JobIDs)
		if err != nil {
			badRequest(w, err)
			return
		}
		jobs = append(jobs, refs(q.QueueName, ids)...)
	}
	resp, err := s.waitForCancel(r.Context(), wait, jobs, func(ctx context.Context) (protocol.HeartbeatResponse, error) {
		return s.heartbeatMulti(ctx, req)
	})
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
