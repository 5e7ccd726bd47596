// Package phase records how long each phase of a job took (dequeue,
// workspace, network, image check, container create, start, wait and
// remove, teardown, mark), so that an executor can say where a job's time
// went: in its log, one line per job, and in its metrics.
//
// The worker begins a [Trace] for each job and puts it in the job's
// context; the job runner and the sandbox runtimes time their phases with
// [Start] on that context. Code that runs without a trace (tests, the
// bench command's direct use of a runtime) pays a context lookup.
//
//	end := phase.Start(ctx, phase.ContainerCreate)
//	created, err := cli.ContainerCreate(...)
//	end()
package phase

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// The phases of a job, in the order they happen. A phase that happens
// more than once in a job (one container per step) adds up.
const (
	Dequeue          = "dequeue"           // the dequeue request that returned the job, long-poll wait included
	Workspace        = "workspace"         // the workspace made and filled (clone, files)
	Prepare          = "prepare"           // the sandbox prepared (network included)
	NetworkCreate    = "network.create"    // the job's network created
	NetworkFirewall  = "network.firewall"  // the network policy applied to it
	Pull             = "pull"              // images checked, pulled when missing
	Step             = "step"              // the steps, whole
	ImageCheck       = "image.check"       // a step's image looked up
	ContainerCreate  = "container.create"  // step containers created
	ContainerStart   = "container.start"   // attached and started
	ContainerWait    = "container.wait"    // from started to exited, output drained
	ContainerInspect = "container.inspect" // exit code and OOM kill read
	ContainerRemove  = "container.remove"  // step containers removed
	Logs             = "logs"              // the last log updates delivered
	Mark             = "mark"              // the outcome reported
	Teardown         = "teardown"          // sandbox and workspace removed (after the mark)
	NetworkRemove    = "network.remove"    // the job's network and its rules removed
)

// Span is the time spent in one phase.
type Span struct {
	Name     string
	Duration time.Duration
	Count    int // how many times the phase ran
}

// Trace collects the spans of one job. Its methods are safe for
// concurrent use and do nothing on a nil *Trace.
type Trace struct {
	start time.Time
	done  func(*Trace)

	mu    sync.Mutex
	spans []Span
	holds int
	end   time.Time
}

// Begin starts a trace, held once: done is called, once, when the
// returned release and every release of [Trace.Hold] have been called.
func Begin(done func(*Trace)) (t *Trace, release func()) {
	t = &Trace{start: time.Now(), done: done, holds: 1}
	return t, t.releaser()
}

// Hold keeps the trace open for work that ends later (a teardown after
// the job was marked) until release is called.
func (t *Trace) Hold() (release func()) {
	if t == nil {
		return func() {}
	}
	t.mu.Lock()
	t.holds++
	t.mu.Unlock()
	return t.releaser()
}

func (t *Trace) releaser() func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			t.holds--
			last := t.holds == 0
			if last {
				t.end = time.Now()
			}
			t.mu.Unlock()
			if last && t.done != nil {
				t.done(t)
			}
		})
	}
}

// Add adds d to phase name.
func (t *Trace) Add(name string, d time.Duration) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.spans {
		if t.spans[i].Name == name {
			t.spans[i].Duration += d
			t.spans[i].Count++
			return
		}
	}
	t.spans = append(t.spans, Span{Name: name, Duration: d, Count: 1})
}

// Spans returns the phases in the order each first ended.
func (t *Trace) Spans() []Span {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Span(nil), t.spans...)
}

// Total is the time from Begin to the last release (or until now).
func (t *Trace) Total() time.Duration {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.end.IsZero() {
		return time.Since(t.start)
	}
	return t.end.Sub(t.start)
}

// LogValue shows the spans as attributes name=duration, in milliseconds
// rounded to a tenth, for one log line per job.
func (t *Trace) LogValue() slog.Value {
	spans := t.Spans()
	attrs := make([]slog.Attr, 0, len(spans)+1)
	attrs = append(attrs, slog.Duration("total", t.Total().Round(100*time.Microsecond)))
	for _, s := range spans {
		attrs = append(attrs, slog.Duration(s.Name, s.Duration.Round(100*time.Microsecond)))
	}
	return slog.GroupValue(attrs...)
}

type traceKey struct{}

// NewContext returns ctx carrying t.
func NewContext(ctx context.Context, t *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

// FromContext returns ctx's trace, or nil.
func FromContext(ctx context.Context) *Trace {
	t, _ := ctx.Value(traceKey{}).(*Trace)
	return t
}

// Start times phase name in ctx's trace, until end is called.
func Start(ctx context.Context, name string) (end func()) {
	t := FromContext(ctx)
	if t == nil {
		return func() {}
	}
	start := time.Now()
	return func() { t.Add(name, time.Since(start)) }
}
