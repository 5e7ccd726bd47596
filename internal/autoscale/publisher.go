package autoscale

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/execd/execd/internal/store"
)

// DefaultInterval is how often a [Publisher] publishes: the reference's
// 5 seconds, the finest resolution Cloud Monitoring accepts for a time
// series.
const DefaultInterval = 5 * time.Second

// LeaseName is the [store.Leaser] lease held by the coordinator that
// publishes.
const LeaseName = "autoscale-publisher"

// Source is what a [Publisher] reads from the job store.
type Source interface {
	// CountByState counts jobs per queue and state.
	CountByState(ctx context.Context) ([]store.QueueCount, error)
	// ListExecutors lists the executors that ever heartbeated, with the
	// queues they pull from.
	ListExecutors(ctx context.Context) ([]store.Executor, error)
}

// Options configure a [Publisher].
type Options struct {
	// Sinks are the clouds to publish to; at least one.
	Sinks []Sink
	// Allocations split queues between the sinks' clouds.
	Allocations Allocations
	// Source is the job store.
	Source Source
	// Queues returns the configured queues (the site config's), each
	// published even when empty; queues with jobs are published too.
	Queues func() []string
	// Leaser, when set, elects one publisher among the coordinators
	// sharing the database: only the holder of the lease [LeaseName]
	// publishes. Nil publishes always.
	Leaser store.Leaser
	// Holder names this publisher in the lease; empty means the host
	// name, the process id and the start time.
	Holder string
	// Interval is the time between publications; 0 means
	// [DefaultInterval]. The lease lasts three intervals.
	Interval time.Duration
	// Registerer, when set, gets the publisher's counters.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Publisher publishes the queue sizes every interval. A sink that fails
// is logged with the reason and tried again at the next tick; the
// publisher runs in its own goroutine and never holds up the
// coordinator. It is not safe for concurrent use: one goroutine runs
// [Publisher.Run] (or calls [Publisher.Tick]).
type Publisher struct {
	opts      Options
	holding   bool // holds the lease
	asked     bool // has asked for it once
	published *prometheus.CounterVec
	failures  *prometheus.CounterVec
}

// New checks opts and returns a publisher.
func New(opts Options) (*Publisher, error) {
	if len(opts.Sinks) == 0 {
		return nil, fmt.Errorf("autoscale: no metric sink configured")
	}
	if opts.Source == nil || opts.Queues == nil {
		return nil, fmt.Errorf("autoscale: Source and Queues are required")
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Holder == "" {
		host, _ := os.Hostname()
		opts.Holder = fmt.Sprintf("%s/%d/%d", host, os.Getpid(), time.Now().UnixNano())
	}
	p := &Publisher{
		opts: opts,
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "execd_autoscale_publishes_total",
			Help: "Publications of the autoscaling metric accepted, by sink.",
		}, []string{"sink"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "execd_autoscale_publish_failures_total",
			Help: "Publications of the autoscaling metric that failed, by sink (retried at the next tick).",
		}, []string{"sink"}),
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(p.published); err != nil {
			return nil, err
		}
		if err := opts.Registerer.Register(p.failures); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Run publishes at once, then every interval, until ctx ends; then it
// releases the lease so that another coordinator takes over at once.
func (p *Publisher) Run(ctx context.Context) {
	names := make([]string, len(p.opts.Sinks))
	for i, s := range p.opts.Sinks {
		names[i] = s.Name()
	}
	p.opts.Logger.Info("autoscale: publishing the queue sizes", "sinks", names, "interval", p.opts.Interval)
	t := time.NewTicker(p.opts.Interval)
	defer t.Stop()
	for {
		p.Tick(ctx)
		select {
		case <-ctx.Done():
			p.release()
			return
		case <-t.C:
		}
	}
}

// Tick publishes once, if this publisher holds the lease, to every sink at
// once, waiting at most an interval for them.
func (p *Publisher) Tick(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Interval)
	defer cancel()
	if !p.lead(ctx) {
		return
	}
	groups, sizes, err := p.read(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.opts.Logger.Error("autoscale: reading the queue sizes failed; retrying at the next tick", "err", err)
		}
		return
	}
	var wg sync.WaitGroup
	for _, sink := range p.opts.Sinks {
		samples := Samples(groups, sizes, p.opts.Allocations, sink.Name())
		wg.Go(func() { p.publish(ctx, sink, samples) })
	}
	wg.Wait()
}

func (p *Publisher) publish(ctx context.Context, sink Sink, samples []Sample) {
	if err := sink.Publish(ctx, samples); err != nil {
		p.failures.WithLabelValues(sink.Name()).Inc()
		p.opts.Logger.Error("autoscale: publishing the queue sizes failed; retrying at the next tick", "sink", sink.Name(), "err", err)
		return
	}
	p.published.WithLabelValues(sink.Name()).Inc()
	p.opts.Logger.Debug("autoscale: published", "sink", sink.Name(), "samples", samples)
}

// read returns the groups to publish and the queues' sizes.
func (p *Publisher) read(ctx context.Context) (map[string][]string, map[string]int, error) {
	counts, err := p.opts.Source.CountByState(ctx)
	if err != nil {
		return nil, nil, err
	}
	execs, err := p.opts.Source.ListExecutors(ctx)
	if err != nil {
		return nil, nil, err
	}
	sizes := store.QueueSizes(counts)
	queues := slices.Clone(p.opts.Queues())
	for q := range sizes {
		if !slices.Contains(queues, q) {
			queues = append(queues, q)
		}
	}
	sets := make([][]string, 0, len(execs))
	for _, e := range execs {
		sets = append(sets, e.Queues)
	}
	return Groups(queues, sets), sizes, nil
}

// lead takes or renews the lease, and reports whether this publisher
// publishes now. Without a leaser it always does.
func (p *Publisher) lead(ctx context.Context) bool {
	if p.opts.Leaser == nil {
		return true
	}
	held, err := p.opts.Leaser.AcquireLease(ctx, LeaseName, p.opts.Holder, 3*p.opts.Interval, p.opts.Now())
	if err != nil {
		if ctx.Err() == nil {
			p.opts.Logger.Error("autoscale: renewing the publisher lease failed; retrying at the next tick", "err", err)
		}
		return false
	}
	switch {
	case held && !p.holding:
		p.opts.Logger.Info("autoscale: this coordinator publishes the queue sizes (it holds the publisher lease)", "holder", p.opts.Holder)
	case !held && (p.holding || !p.asked):
		p.opts.Logger.Info("autoscale: another coordinator sharing the database publishes the queue sizes; this one stands by", "holder", p.opts.Holder)
	}
	p.holding, p.asked = held, true
	return held
}

// release frees the lease if this publisher holds it.
func (p *Publisher) release() {
	if p.opts.Leaser == nil || !p.holding {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := p.opts.Leaser.ReleaseLease(ctx, LeaseName, p.opts.Holder); err != nil {
		p.opts.Logger.Warn("autoscale: releasing the publisher lease failed; another coordinator takes over when it expires", "err", err)
	}
	p.holding = false
}
