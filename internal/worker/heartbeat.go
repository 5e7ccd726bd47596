package worker

import (
	"context"
	"time"

	"github.com/execd/execd/internal/protocol"
)

// heartbeatLoop heartbeats every interval until ctx ends. A failed
// heartbeat is logged and retried at the next tick: it never cancels jobs
// (the coordinator's resetter decides when a silent executor's jobs go
// elsewhere, and the next successful heartbeat tells us).
func (w *Worker) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(w.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		w.heartbeat(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Worker) heartbeat(ctx context.Context) {
	w.mu.Lock()
	jobs := make([]protocol.Job, 0, len(w.running))
	for _, r := range w.running {
		jobs = append(jobs, r.job)
	}
	w.mu.Unlock()

	req := w.opts.Telemetry
	if w.opts.Metrics != nil {
		req.PrometheusMetrics = w.opts.Metrics()
	}
	hctx, cancel := context.WithTimeout(ctx, w.opts.HeartbeatInterval*2)
	defer cancel()
	resp, err := w.client.Heartbeat(hctx, w.opts.Queues, req, jobs)
	if err != nil {
		if ctx.Err() == nil {
			w.logger.Warn("heartbeat failed; retrying at the next interval", "err", err)
		}
		return
	}
	known := map[string]bool{}
	for _, id := range resp.KnownIDs {
		known[id] = true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, j := range jobs {
		r, ok := w.running[j.UID()]
		if ok && !known[j.UID()] {
			w.logger.Warn("the coordinator no longer assigns this job to us; dropping it", "job", j.UID())
			r.cancel(errDropped)
		}
	}
	for _, id := range resp.CancelIDs {
		if r, ok := w.running[id]; ok {
			w.logger.Info("job canceled by the coordinator", "job", id)
			r.cancel(errCanceled)
		}
	}
}
