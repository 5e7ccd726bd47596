package coordinator

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/execd/execd/internal/siteconfig"
	"github.com/execd/execd/internal/store"
)

// storeCollector reads queue sizes and active executors from the store at
// scrape time, so every coordinator sharing a database reports the truth.
type storeCollector struct {
	store  store.Store
	config *siteconfig.Watcher

	queueSize *prometheus.Desc
	jobs      *prometheus.Desc
	active    *prometheus.Desc
}

func newStoreCollector(st store.Store, cfg *siteconfig.Watcher) *storeCollector {
	return &storeCollector{
		store:     st,
		config:    cfg,
		queueSize: prometheus.NewDesc("src_executors_queue_size", "Jobs queued, errored awaiting a retry, or processing, by queue (the autoscaling metric).", []string{"queue"}, nil),
		jobs:      prometheus.NewDesc("execd_jobs", "Jobs by queue and state.", []string{"queue", "state"}, nil),
		active:    prometheus.NewDesc("execd_executors_active", "Executors seen within the active threshold.", nil, nil),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.queueSize
	ch <- c.jobs
	ch <- c.active
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cfg := c.config.Current()
	if counts, err := c.store.CountByState(ctx); err == nil {
		sizes := store.QueueSizes(counts)
		byQueue := map[string]map[string]int{}
		for _, q := range cfg.Queues {
			byQueue[q] = map[string]int{}
		}
		for _, n := range counts {
			if byQueue[n.Queue] == nil {
				byQueue[n.Queue] = map[string]int{}
			}
			byQueue[n.Queue][n.State] = n.Count
		}
		for q, states := range byQueue {
			for _, st := range store.States {
				ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(states[st]), q, st)
			}
			ch <- prometheus.MustNewConstMetric(c.queueSize, prometheus.GaugeValue, float64(sizes[q]), q)
		}
	}
	if execs, err := c.store.ListExecutors(ctx); err == nil {
		active := 0
		for _, e := range execs {
			if time.Since(e.LastSeenAt) <= cfg.Active() {
				active++
			}
		}
		ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(active))
	}
}

// instrument counts requests and their durations by route pattern and
// status code.
func instrument(reg prometheus.Registerer, next http.Handler) http.Handler {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "execd_http_requests_total",
		Help: "HTTP requests by route and status code.",
	}, []string{"route", "code"})
	durations := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "execd_http_request_duration_seconds",
		Help:    "HTTP request durations by route and status code (long-polls included).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"route", "code"})
	reg.MustRegister(requests, durations)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		route := r.Pattern // set by the innermost mux that matched
		if route == "" {
			route = "unmatched"
		}
		code := strconv.Itoa(rec.code)
		requests.WithLabelValues(route, code).Inc()
		durations.WithLabelValues(route, code).Observe(time.Since(start).Seconds())
	})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
