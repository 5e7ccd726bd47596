// Package worker is the executor's main loop: it dequeues jobs (long-poll
// when the coordinator offers it, polling otherwise), runs up to a number
// of them at once, heartbeats, obeys cancellation, time limits and job
// count limits, and drains gracefully.
package worker

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/execd/execd/internal/job"
	"github.com/execd/execd/internal/phase"
	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/queueclient"
)

// Client is the coordinator as the worker uses it.
type Client interface {
	Dequeue(ctx context.Context, queues []string, opts queueclient.DequeueOptions) (protocol.Job, bool, error)
	Heartbeat(ctx context.Context, queues []string, req protocol.HeartbeatRequest, jobs []protocol.Job, wait time.Duration) (protocol.HeartbeatResponse, error)
	MarkComplete(ctx context.Context, job protocol.Job) error
	MarkErrored(ctx context.Context, job protocol.Job, message string) error
	MarkFailed(ctx context.Context, job protocol.Job, message string) error
	// Supports reports whether the coordinator offers an extension of the
	// protocol (protocol.ExtLongPoll, ...).
	Supports(extension string) bool
}

// JobRunner runs one job; see [job.Runner.Run].
type JobRunner interface {
	Run(ctx context.Context, job protocol.Job, exec context.Context) error
}

// Options configure a [Worker].
type Options struct {
	Queues []string
	// MaxJobs is how many jobs run at once (EXECUTOR_MAXIMUM_NUM_JOBS).
	MaxJobs int
	// PollInterval separates empty dequeues against coordinators without
	// long-poll (EXECUTOR_QUEUE_POLL_INTERVAL).
	PollInterval time.Duration
	// LongPoll is how long a dequeue asks to wait for work; 0 disables.
	LongPoll time.Duration
	// MaxRuntime bounds one job (EXECUTOR_MAXIMUM_RUNTIME_PER_JOB).
	MaxRuntime time.Duration
	// NumTotalJobs stops dequeuing after this many jobs; 0: no limit.
	NumTotalJobs int
	// MaxActiveTime stops dequeuing after this long; 0: no limit.
	MaxActiveTime time.Duration
	// HeartbeatInterval between heartbeats (the reference: 5s).
	HeartbeatInterval time.Duration
	// Dequeue carries the executor's version and resources.
	Dequeue queueclient.DequeueOptions
	// Telemetry is sent with each heartbeat.
	Telemetry protocol.HeartbeatRequest
	// Metrics returns the executor's metrics in Prometheus text format, for
	// the heartbeat.
	Metrics func() string
	// StopGrace is how long logs and marks may still take after a hard
	// stop before they are abandoned.
	StopGrace time.Duration
	Logger    *slog.Logger
	// Observe, if set, is told how each job ended (for metrics).
	Observe func(outcome string, d time.Duration)
	// ObservePhases, if set, is given each job's phases (for metrics)
	// once the job is over, its teardown included.
	ObservePhases func(spans []phase.Span)
}

// Why a job's execution context ended.
var (
	errCanceled        = errors.New("the job was canceled")
	errDropped         = errors.New("the coordinator no longer assigns this job to this executor")
	errMaxRuntime      = errors.New("job exceeded maximum execution time")
	errExecutorStopped = errors.New("the executor was stopped while the job ran")
)

// Worker runs the loop. Create it with [New].
type Worker struct {
	client Client
	runner JobRunner
	opts   Options
	logger *slog.Logger

	mu      sync.Mutex
	running map[string]*runningJob
	// changed tells the heartbeat loop that a job started or ended, so
	// that the next heartbeat, carrying the new set of jobs, goes now,
	// not at the end of the interval.
	changed chan struct{}
}

type runningJob struct {
	job    protocol.Job
	cancel context.CancelCauseFunc
	// stopped is set (under Worker.mu) once a heartbeat canceled or
	// dropped the job.
	stopped bool
}

// New returns a Worker.
func New(client Client, runner JobRunner, opts Options) *Worker {
	if opts.MaxJobs <= 0 {
		opts.MaxJobs = 1
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = 5 * time.Second
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 15 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Worker{client: client, runner: runner, opts: opts, logger: opts.Logger, running: map[string]*runningJob{}, changed: make(chan struct{}, 1)}
}

// Run dequeues and runs jobs until drain ends or a job limit is reached,
// then waits for the running jobs and returns nil. When hard ends, running
// jobs are stopped and marked failed, saying the executor was stopped.
func (w *Worker) Run(drain, hard context.Context) error {
	// final outlives hard by StopGrace, so a hard stop still delivers the
	// last logs and marks.
	final, cancelFinal := context.WithCancel(context.WithoutCancel(hard))
	defer cancelFinal()
	go func() {
		select {
		case <-hard.Done():
			time.Sleep(w.opts.StopGrace)
			cancelFinal()
		case <-final.Done():
		}
	}()

	hbCtx, stopHB := context.WithCancel(final)
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		w.heartbeatLoop(hbCtx)
	}()

	var wg sync.WaitGroup
	slots := make(chan struct{}, w.opts.MaxJobs)
	started := time.Now()
	dequeued := 0
	backoff := time.Duration(0)
	for {
		if w.limitReached(dequeued, started) || drain.Err() != nil {
			break
		}
		select {
		case slots <- struct{}{}:
		case <-drain.Done():
			continue
		}
		pollCtx, cancelPoll := w.pollContext(drain, started)
		t0 := time.Now()
		j, ok, err := w.client.Dequeue(pollCtx, w.opts.Queues, w.dequeueOptions())
		// Read before cancelPoll, which ends pollCtx: a failure that is
		// not the poll's own end backs off (else the loop spins).
		pollEnded := pollCtx.Err() != nil
		cancelPoll()
		if err != nil || !ok {
			<-slots
			if err != nil && drain.Err() == nil && !pollEnded {
				backoff = nextBackoff(backoff)
				w.logger.Error("dequeue failed; retrying", "err", err, "retry_in", backoff)
				sleep(drain, backoff)
			} else if err == nil {
				backoff = 0
				// A coordinator without long-poll answers at once: poll.
				// (The first answer of ours says it has long-poll.)
				if rest := w.opts.PollInterval - time.Since(t0); rest > 0 && !w.longPolls() {
					sleep(drain, rest)
				}
			}
			continue
		}
		backoff = 0
		dequeued++
		dequeueTime := time.Since(t0)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			w.runJob(final, hard, j, dequeueTime)
		}()
	}
	w.logger.Info("not taking new jobs; waiting for running jobs", "running", w.numRunning())
	wg.Wait()
	stopHB()
	<-hbDone
	return nil
}

// pollContext bounds a dequeue by drain and by the end of the active time.
func (w *Worker) pollContext(drain context.Context, started time.Time) (context.Context, context.CancelFunc) {
	if w.opts.MaxActiveTime > 0 {
		return context.WithDeadline(drain, started.Add(w.opts.MaxActiveTime))
	}
	return context.WithCancel(drain)
}

func (w *Worker) dequeueOptions() queueclient.DequeueOptions {
	o := w.opts.Dequeue
	o.Wait = w.opts.LongPoll
	return o
}

// longPolls reports whether dequeues wait for work.
func (w *Worker) longPolls() bool {
	return w.opts.LongPoll > 0 && w.client.Supports(protocol.ExtLongPoll)
}

// heartbeatsWait reports whether heartbeats wait for cancellations.
func (w *Worker) heartbeatsWait() bool {
	return w.opts.LongPoll > 0 && w.client.Supports(protocol.ExtHeartbeatWait)
}

func (w *Worker) limitReached(dequeued int, started time.Time) bool {
	if w.opts.NumTotalJobs > 0 && dequeued >= w.opts.NumTotalJobs {
		w.logger.Info("reached EXECUTOR_NUM_TOTAL_JOBS", "jobs", dequeued)
		return true
	}
	if w.opts.MaxActiveTime > 0 && time.Since(started) >= w.opts.MaxActiveTime {
		w.logger.Info("reached EXECUTOR_MAX_ACTIVE_TIME", "active", time.Since(started).Round(time.Second))
		return true
	}
	return false
}

// jobsChanged tells the heartbeat loop that the running jobs changed,
// when its heartbeats wait for cancellations.
func (w *Worker) jobsChanged() {
	if !w.heartbeatsWait() {
		return
	}
	select {
	case w.changed <- struct{}{}:
	default: // the loop is told already
	}
}

// runJob runs one job and marks it as its outcome says; dequeueTime is
// how long the dequeue that returned it took.
func (w *Worker) runJob(final, hard context.Context, j protocol.Job, dequeueTime time.Duration) {
	start := time.Now()
	uid := j.UID()
	logger := w.logger.With("job", uid)
	logger.Info("running job", "repository", j.RepositoryName, "commit", j.Commit)

	// Where the job's time went: one log line once it is over (its
	// teardown may end after the mark), and the metrics.
	trace, endTrace := phase.Begin(func(t *phase.Trace) {
		logger.Info("job phases", "phases", t)
		if w.opts.ObservePhases != nil {
			w.opts.ObservePhases(t.Spans())
		}
	})
	defer endTrace()
	trace.Add(phase.Dequeue, dequeueTime)
	final = phase.NewContext(final, trace)

	exec, cancel := context.WithCancelCause(final)
	defer cancel(nil)
	if w.opts.MaxRuntime > 0 {
		var stop context.CancelFunc
		exec, stop = context.WithTimeoutCause(exec, w.opts.MaxRuntime, errMaxRuntime)
		defer stop()
	}
	self := &runningJob{job: j, cancel: cancel}
	w.mu.Lock()
	if old, ok := w.running[uid]; ok {
		// The coordinator reset the job and handed it to us again: the old
		// attempt is no longer ours.
		old.cancel(errDropped)
	}
	w.running[uid] = self
	w.mu.Unlock()
	w.jobsChanged()
	defer func() {
		w.mu.Lock()
		if w.running[uid] == self {
			delete(w.running, uid)
		}
		w.mu.Unlock()
		w.jobsChanged()
	}()
	stopOnHard := context.AfterFunc(hard, func() { cancel(errExecutorStopped) })
	defer stopOnHard()

	err := w.runner.Run(final, j, exec)
	endMark := phase.Start(final, phase.Mark)
	outcome, markErr := w.mark(final, j, err, context.Cause(exec))
	endMark()
	if markErr != nil {
		logger.Error("could not mark the job; the coordinator will reset it", "outcome", outcome, "err", markErr)
	} else {
		logger.Info("job finished", "outcome", outcome, "duration", time.Since(start).Round(time.Millisecond), "err", err)
	}
	if w.opts.Observe != nil {
		w.opts.Observe(outcome, time.Since(start))
	}
}

// mark reports a job's outcome to the coordinator, retrying until it lands
// or the coordinator disowns the job.
func (w *Worker) mark(ctx context.Context, j protocol.Job, runErr, cause error) (string, error) {
	var jobErr *job.Error
	switch {
	case runErr == nil:
		return "completed", retry(ctx, func() error { return w.client.MarkComplete(ctx, j) })
	case errors.Is(cause, errDropped):
		return "dropped", nil
	case errors.Is(cause, errCanceled):
		return "canceled", retry(ctx, func() error { return w.client.MarkFailed(ctx, j, "job was canceled") })
	case errors.Is(cause, errMaxRuntime):
		return "errored", retry(ctx, func() error { return w.client.MarkErrored(ctx, j, errMaxRuntime.Error()) })
	case errors.Is(cause, errExecutorStopped):
		return "failed", retry(ctx, func() error {
			return w.client.MarkFailed(ctx, j, "job was stopped: the executor was stopped while the job ran")
		})
	case errors.As(runErr, &jobErr) && !jobErr.Retryable:
		return "failed", retry(ctx, func() error { return w.client.MarkFailed(ctx, j, jobErr.Msg) })
	default:
		return "errored", retry(ctx, func() error { return w.client.MarkErrored(ctx, j, runErr.Error()) })
	}
}

// retry calls f until it succeeds, the job is unknown, or ctx ends.
func retry(ctx context.Context, f func() error) error {
	backoff := time.Duration(0)
	for {
		err := f()
		if err == nil || errors.Is(err, queueclient.ErrUnknownJob) || ctx.Err() != nil {
			return err
		}
		var se *queueclient.StatusError
		if errors.As(err, &se) && se.Code < 500 {
			return err
		}
		backoff = nextBackoff(backoff)
		if !sleep(ctx, backoff) {
			return err
		}
	}
}

func (w *Worker) numRunning() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.running)
}

// nextBackoff doubles up to 30s, with jitter so a fleet does not retry in
// step.
func nextBackoff(d time.Duration) time.Duration {
	d = min(max(2*d, 250*time.Millisecond), 30*time.Second)
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
