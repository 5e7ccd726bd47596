package worker

import (
	"context"
	"errors"
	"time"

	"github.com/execd/execd/internal/protocol"
)

// minHeartbeatGap spaces heartbeats however often jobs start and end.
const minHeartbeatGap = 250 * time.Millisecond

// heartbeatLoop heartbeats every interval until ctx ends. While jobs run
// and long-polling is on, each heartbeat asks the coordinator to wait up
// to the interval for a cancellation of one of them, and the next one
// starts when it returns: ours then answers a cancellation at once, for
// the same number of requests; others answer at once, and the loop waits
// out the interval. With long-polling on, when a job starts or ends, a
// heartbeat with the new set of jobs goes at once (one that waits is
// ended for it), at most one every minHeartbeatGap: a canceled job that is
// still being stopped makes heartbeats answer at once, and must not keep
// the others' from waiting for long. A failed heartbeat is logged and
// retried at the next tick: it never cancels jobs (the coordinator's
// resetter decides when a silent executor's jobs go elsewhere, and the
// next successful heartbeat tells us).
func (w *Worker) heartbeatLoop(ctx context.Context) {
	for {
		start := time.Now()
		next := w.opts.HeartbeatInterval
		if w.heartbeat(ctx) {
			next = 0 // a cancellation came, or the jobs changed
		}
		select {
		case <-ctx.Done():
			return
		case <-w.changed:
		case <-time.After(next - time.Since(start)):
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(minHeartbeatGap - time.Since(start)):
		}
	}
}

// heartbeat sends one heartbeat and acts on its answer; it reports
// whether to send the next at once: it canceled or dropped a job not
// canceled before, or a job started or ended while it waited.
func (w *Worker) heartbeat(ctx context.Context) (again bool) {
	// This heartbeat carries the jobs as they are now: changes told
	// before are in it.
	select {
	case <-w.changed:
	default:
	}
	w.mu.Lock()
	jobs := make([]protocol.Job, 0, len(w.running))
	for _, r := range w.running {
		jobs = append(jobs, r.job)
	}
	w.mu.Unlock()
	var wait time.Duration
	if w.heartbeatsWait() && len(jobs) > 0 {
		wait = w.opts.HeartbeatInterval
	}

	req := w.opts.Telemetry
	if w.opts.Metrics != nil {
		req.PrometheusMetrics = w.opts.Metrics()
	}
	hctx, cancel := context.WithTimeout(ctx, wait+w.opts.HeartbeatInterval*2)
	defer cancel()
	if wait > 0 {
		// A job that starts or ends while this heartbeat waits ends the
		// wait: the next heartbeat, sent at once, carries the new set.
		kicked := false
		stop, stopped := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(stopped)
			select {
			case <-w.changed:
				kicked = true
				cancel()
			case <-stop:
			}
		}()
		defer func() {
			close(stop)
			<-stopped
			again = again || kicked
		}()
	}
	resp, err := w.client.Heartbeat(hctx, w.opts.Queues, req, jobs, wait)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(hctx.Err(), context.Canceled) {
			w.logger.Warn("heartbeat failed; retrying at the next interval", "err", err)
		}
		return false
	}
	known := map[string]bool{}
	for _, id := range resp.KnownIDs {
		known[id] = true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	acted := false
	for _, j := range jobs {
		r, ok := w.running[j.UID()]
		if ok && !known[j.UID()] && !r.stopped {
			w.logger.Warn("the coordinator no longer assigns this job to us; dropping it", "job", j.UID())
			r.cancel(errDropped)
			r.stopped, acted = true, true
		}
	}
	for _, id := range resp.CancelIDs {
		if r, ok := w.running[id]; ok && !r.stopped {
			w.logger.Info("job canceled by the coordinator", "job", id)
			r.cancel(errCanceled)
			r.stopped, acted = true, true
		}
	}
	return acted
}
