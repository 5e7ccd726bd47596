package ui

import (
	"context"
	"sync"
	"time"

	"github.com/execd/execd/internal/store"
)

// The queues page charts three things over the last hour:
//
//   - queue size (queued, errored and processing jobs: store.QueueSizes,
//     as src_executors_queue_size):
//     the store keeps no history of it, so Run samples CountByState every
//     SampleInterval (15 s) into a ring of an hour of samples, in memory.
//     A restarted coordinator starts a fresh chart; with several
//     coordinators each charts its own samples of the shared database.
//   - throughput and duration: computed when the page is rendered from the
//     jobs themselves (FinishedAt, StartedAt) among the newest
//     recentJobsLimit jobs of the queue (ListJobs, newest first), bucketed
//     by five minutes. Jobs that finished in the last hour but are older
//     than that many newer jobs are not counted: the limit keeps the page
//     within its render budget (docs/benchmarks.md).

// sample is the size of every queue at one instant.
type sample struct {
	at   time.Time
	size map[string]int
}

// history is a ring of the latest samples. It is safe for concurrent use.
type history struct {
	mu      sync.Mutex
	samples []sample // ring buffer; next is the slot to write
	next    int
	full    bool
}

func newHistory(n int) *history { return &history{samples: make([]sample, n)} }

func (h *history) add(s sample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.samples[h.next] = s
	h.next = (h.next + 1) % len(h.samples)
	if h.next == 0 {
		h.full = true
	}
}

// since returns the samples taken at or after t, oldest first.
func (h *history) since(t time.Time) []sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []sample
	start, n := 0, h.next
	if h.full {
		start, n = h.next, len(h.samples)
	}
	for i := range n {
		s := h.samples[(start+i)%len(h.samples)]
		if !s.at.Before(t) {
			out = append(out, s)
		}
	}
	return out
}

// takeSample records the queue sizes now; errors are logged, the sample
// skipped.
func (s *Server) takeSample(ctx context.Context) {
	counts, err := s.store.CountByState(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("ui: queue size sample failed", "err", err)
		}
		return
	}
	s.history.add(sample{at: s.now(), size: store.QueueSizes(counts)})
}
