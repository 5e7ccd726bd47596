package queueapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/siteconfig"
	"github.com/execd/execd/internal/store"
)

// WaitHeader asks a dequeue to wait for work (long-poll), e.g. "30s", and
// a heartbeat to wait for the cancellation of one of its jobs. The query
// parameter "wait" does the same. Stock executors send neither and get
// the reference's immediate answer.
const WaitHeader = protocol.WaitHeader

func (s *Server) handleDequeue(w http.ResponseWriter, r *http.Request) {
	var req protocol.DequeueRequest
	if !decode(w, r, &req) {
		return
	}
	queue := r.PathValue("queue")
	if !s.config.Current().HasQueue(queue) {
		badRequest(w, fmt.Errorf("unknown queue %q: configured queues are %s", queue, strings.Join(s.config.Current().Queues, ", ")))
		return
	}
	s.serveDequeue(w, r, req, []string{queue}, false)
}

func (s *Server) handleDequeueMulti(w http.ResponseWriter, r *http.Request) {
	var req protocol.DequeueRequest
	if !decode(w, r, &req) {
		return
	}
	if len(req.Queues) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	cfg := s.config.Current()
	var invalid []string
	for _, q := range req.Queues {
		if !cfg.HasQueue(q) {
			invalid = append(invalid, q)
		}
	}
	if len(invalid) > 0 {
		badRequest(w, fmt.Errorf("Invalid queue name(s) '%s' found. Supported queue names are '%s'.", strings.Join(invalid, ", "), strings.Join(cfg.Queues, ", ")))
		return
	}
	s.serveDequeue(w, r, req, req.Queues, true)
}

func (s *Server) serveDequeue(w http.ResponseWriter, r *http.Request, req protocol.DequeueRequest, queues []string, multi bool) {
	if req.ExecutorName == "" {
		badRequest(w, errEmptyExecutorName)
		return
	}
	wait, ok := waitOf(w, r)
	if !ok {
		return
	}
	job, ok, err := s.dequeueWaiting(r.Context(), req, queues, wait)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !ok {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Context().Err() != nil {
		// The executor left (it is draining, or the connection broke) while
		// the job was being taken: put it back rather than let it stall
		// until the resetter notices.
		if err := s.store.Release(context.WithoutCancel(r.Context()), job.Queue, job.ID, req.ExecutorName); err != nil {
			s.logger.Error("release of a job whose executor left", "job", job.UID(), "err", err)
		}
		return
	}
	if !multi {
		// Single-queue executors learn the queue from the route; the
		// reference leaves it out of their payload.
		job.Queue = ""
	}
	if r.Header.Get(protocol.JobVersionHeader) == "2" {
		job.Version = 2
	}
	writeJSON(w, http.StatusOK, job)
}

// waitOf reads how long a request asks to wait (WaitHeader; 0: not at
// all): a dequeue for work, a heartbeat for a cancellation of one of its
// jobs. false means a 400 was written.
func waitOf(w http.ResponseWriter, r *http.Request) (time.Duration, bool) {
	v := r.Header.Get(WaitHeader)
	if q := r.URL.Query().Get("wait"); q != "" {
		v = q
	}
	if v == "" {
		return 0, true
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		http.Error(w, fmt.Sprintf("%s (or ?wait=) must be a duration such as \"30s\", got %q", WaitHeader, v), http.StatusBadRequest)
		return 0, false
	}
	return min(d, MaxWait), true
}

// dequeueWaiting tries to dequeue, and while nothing is there and the
// client asked to wait, waits for a wake-up from an enqueue (or a periodic
// re-check) until the wait ends or the client leaves.
func (s *Server) dequeueWaiting(ctx context.Context, req protocol.DequeueRequest, queues []string, wait time.Duration) (protocol.Job, bool, error) {
	if wait <= 0 {
		return s.dequeueOnce(ctx, req, queues)
	}
	deadline := time.Now().Add(wait)
	for {
		// Subscribe before looking, so an enqueue between the look and the
		// wait is not missed.
		woken, stop := s.store.Wake(queues)
		job, ok, err := s.dequeueOnce(ctx, req, queues)
		if err != nil || ok {
			stop()
			return job, ok, err
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			stop()
			return protocol.Job{}, false, nil
		}
		timer := time.NewTimer(min(remaining, recheck))
		select {
		case <-woken:
			timer.Stop()
		case <-timer.C:
			stop()
		case <-ctx.Done():
			timer.Stop()
			stop()
			return protocol.Job{}, false, nil
		}
	}
}

// dequeueOnce picks a queue among those with work (weighted, as the
// reference does) and dequeues from it; if another executor won the race,
// it tries the other queues with work.
func (s *Server) dequeueOnce(ctx context.Context, req protocol.DequeueRequest, queues []string) (protocol.Job, bool, error) {
	cfg := s.config.Current()
	candidates := queues
	if len(queues) > 1 {
		var err error
		candidates, err = s.nonEmpty(ctx, queues)
		if err != nil || len(candidates) == 0 {
			return protocol.Job{}, false, err
		}
	}
	for len(candidates) > 0 {
		i := s.pick(cfg, candidates)
		queue := candidates[i]
		job, ok, err := s.dequeueFrom(ctx, req, queue)
		if err != nil || ok {
			return job, ok, err
		}
		candidates = slices.Delete(slices.Clone(candidates), i, i+1)
	}
	return protocol.Job{}, false, nil
}

func (s *Server) nonEmpty(ctx context.Context, queues []string) ([]string, error) {
	var out []string
	now := s.now()
	for _, q := range queues {
		n, err := s.store.QueuedCount(ctx, q, now)
		if err != nil {
			return nil, fmt.Errorf("count queue %q: %w", q, err)
		}
		if n > 0 {
			out = append(out, q)
		}
	}
	return out, nil
}

// pick chooses an index of queues with probability proportional to its
// weight.
func (s *Server) pick(cfg *siteconfig.Config, queues []string) int {
	if len(queues) == 1 {
		return 0
	}
	total := 0
	weights := make([]int, len(queues))
	for i, q := range queues {
		weights[i] = cfg.Queue(q).Weight
		total += weights[i]
	}
	s.mu.Lock()
	n := s.random.IntN(total)
	s.mu.Unlock()
	for i, wgt := range weights {
		if n < wgt {
			return i
		}
		n -= wgt
	}
	return len(queues) - 1
}

func (s *Server) dequeueFrom(ctx context.Context, req protocol.DequeueRequest, queue string) (protocol.Job, bool, error) {
	token := newToken()
	rec, ok, err := s.store.Dequeue(ctx, queue, store.DequeueOptions{
		ExecutorName: req.ExecutorName,
		TokenHash:    store.HashToken(token),
	}, s.now())
	if err != nil {
		return protocol.Job{}, false, fmt.Errorf("dequeue from %q: %w", queue, err)
	}
	if !ok {
		return protocol.Job{}, false, nil
	}
	s.mu.Lock()
	s.known[req.ExecutorName] = s.now() // Dequeue upserted it
	s.mu.Unlock()
	spec := rec.Spec
	return protocol.Job{
		Version:             protocol.JobVersionFor(req.Version),
		ID:                  rec.ID,
		Queue:               queue,
		Token:               token,
		RepositoryName:      spec.RepositoryName,
		RepositoryDirectory: spec.RepositoryDirectory,
		Commit:              spec.Commit,
		FetchTags:           spec.FetchTags,
		ShallowClone:        spec.ShallowClone,
		SparseCheckout:      spec.SparseCheckout,
		Files:               spec.Files,
		DockerSteps:         spec.DockerSteps,
		CliSteps:            spec.CliSteps,
		RedactedValues:      spec.RedactedValues,
		DockerAuthConfig:    spec.DockerAuthConfig,
	}, true, nil
}

// newToken returns a per-job token: 20 random bytes, hex.
func newToken() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b) // never fails on Linux
	return hex.EncodeToString(b)
}
