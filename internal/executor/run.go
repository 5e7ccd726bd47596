package executor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/execd/execd/internal/job"
	"github.com/execd/execd/internal/phase"
	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/queueclient"
	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/diskimage"
	"github.com/execd/execd/internal/worker"
)

// Run wires the executor and runs it until drain ends or a job limit is
// reached (after its running jobs finish), or hard ends (running jobs are
// stopped and marked failed).
func Run(drain, hard context.Context, cfg Config, runtimes Runtimes, logger *slog.Logger) error {
	name := Name()
	cfg.Name = name
	logger = logger.With("executor", name)
	for _, warning := range cfg.FitHost(ThisHost()) {
		logger.Warn("job limits lowered to fit this machine: " + warning)
	}
	rt, why, err := selectRuntime(drain, cfg, runtimes(drain, cfg, logger))
	if err != nil {
		return err
	}
	logger.Info("sandbox runtime chosen", "runtime", rt.Name(), "why", why)
	network := sandbox.Network(cfg.JobNetwork)
	if network == "" {
		network = rt.Capabilities().DefaultNetwork()
	}

	httpClient := &http.Client{Timeout: cfg.LongPoll + time.Minute}
	client := &queueclient.Client{BaseURL: cfg.FrontendURL, Secret: cfg.FrontendPassword, ExecutorName: name, HTTP: httpClient}
	if err := client.TestAuth(drain); err != nil {
		var se *queueclient.StatusError
		if errors.As(err, &se) && (se.Code == http.StatusUnauthorized || se.Code == http.StatusForbidden) {
			return fmt.Errorf("the coordinator at %s refused EXECUTOR_FRONTEND_PASSWORD: set it to the executors.accessToken of its site config", cfg.FrontendURL)
		}
		logger.Warn("coordinator not reachable yet; will keep trying", "url", cfg.FrontendURL, "err", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	finished := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "execd_executor_jobs_finished_total", Help: "Jobs run, by outcome."}, []string{"outcome"})
	durations := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "execd_executor_job_duration_seconds", Help: "Job durations, by outcome.", Buckets: prometheus.ExponentialBuckets(0.1, 2, 16)}, []string{"outcome"})
	// Where jobs spend their time: buckets from 1 ms (a mark) to about a
	// minute (a step).
	phases := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "execd_executor_job_phase_seconds",
		Help:    "Time jobs spent in each phase (dequeue, workspace, prepare, network.create, pull, step, container.create|start|wait|remove, logs, mark, teardown...), per job.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14)}, []string{"phase"})
	reg.MustRegister(finished, durations, phases)
	// The chosen runtime and why, in the metrics the heartbeats carry.
	runtimeInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "execd_executor_runtime", Help: "The sandbox runtime in use (1), and why it was chosen."}, []string{"runtime", "reason"})
	runtimeInfo.WithLabelValues(rt.Name(), why).Set(1)
	reg.MustRegister(runtimeInfo)
	if cfg.MetricsAddr != "" {
		if err := serveMetrics(drain, cfg.MetricsAddr, reg, logger); err != nil {
			return err
		}
	}

	git, _ := GitVersion()
	var dockerVersion string
	if v, ok := rt.(interface {
		ServerVersion(context.Context) (string, error)
	}); ok {
		dockerVersion, _ = v.ServerVersion(drain)
	}
	// The micro-VM runtime's monitor and version, in the field the
	// reference fills with ignite's.
	var vmVersion string
	if v, ok := rt.(interface{ Monitor(context.Context) string }); ok {
		vmVersion = v.Monitor(drain)
	}
	root := filepath.Join(cfg.WorkspaceRoot, name)
	removed := cleanWorkspaces(cfg.WorkspaceRoot, logger)
	release, err := lockWorkspaceRoot(root)
	if err != nil {
		return err
	}
	defer release()
	if s, ok := rt.(sandbox.Starter); ok {
		if err := s.Start(drain); err != nil {
			return fmt.Errorf("start the %s runtime: %w", rt.Name(), err)
		}
		// After the last job's teardown (runner.Wait, below).
		defer s.Stop()
	}

	runner := &job.Runner{
		Client:         client,
		Runtime:        rt,
		Preparer:       &workspacePreparer{client: client, frontendURL: cfg.FrontendURL, executorName: name, http: httpClient},
		ExecutorName:   name,
		Secret:         cfg.FrontendPassword,
		WorkspaceRoot:  root,
		KeepWorkspaces: cfg.KeepWorkspaces,
		DiskBytes:      diskBytes(drain, cfg, logger),
		CPUs:           cfg.JobCPUs,
		MemoryBytes:    cfg.JobMemory,
		PIDs:           cfg.JobMaxProcesses,
		Network:        network,
		Streamer: job.StreamerOptions{
			MaxOutput:    int(cfg.MaxStepOutput),
			IsUnknownJob: func(err error) bool { return errors.Is(err, queueclient.ErrUnknownJob) || isAuthError(err) },
			Logger:       logger,
		},
		Logger: logger,
	}
	if j, ok := rt.(sandbox.Janitor); ok {
		ctx, stop := context.WithCancel(hard)
		defer stop()
		startJanitor(ctx, j, cfg.CleanupInterval, staleSandboxes(name, runner.Running, removed), logger)
	}
	w := worker.New(client, runner, worker.Options{
		Queues:        cfg.Queues,
		MaxJobs:       cfg.MaxJobs,
		PollInterval:  cfg.PollInterval,
		LongPoll:      cfg.LongPoll,
		MaxRuntime:    cfg.MaxRuntime,
		NumTotalJobs:  cfg.NumTotalJobs,
		MaxActiveTime: cfg.MaxActiveTime,
		Dequeue: queueclient.DequeueOptions{
			Version: cfg.Version, NumCPUs: cfg.JobCPUs, Memory: cfg.memoryText, DiskSpace: formatSize(cfg.DiskSpace),
		},
		Telemetry: protocol.HeartbeatRequest{
			OS: runtime.GOOS, Architecture: runtime.GOARCH, ExecutorVersion: cfg.Version, GitVersion: git, DockerVersion: dockerVersion,
			IgniteVersion: vmVersion, Runtime: rt.Name(),
		},
		Metrics: func() string { return gatherText(reg) },
		Logger:  logger,
		Observe: func(outcome string, d time.Duration) {
			finished.WithLabelValues(outcome).Inc()
			durations.WithLabelValues(outcome).Observe(d.Seconds())
		},
		ObservePhases: func(spans []phase.Span) {
			for _, s := range spans {
				phases.WithLabelValues(s.Name).Observe(s.Duration.Seconds())
			}
		},
	})
	logger.Info("executor started", "queues", strings.Join(cfg.Queues, ","), "coordinator", cfg.FrontendURL, "max_jobs", cfg.MaxJobs, "runtime", rt.Name(), "network", network)
	err = w.Run(drain, hard)
	// Jobs' sandboxes and workspaces are removed after their mark: none
	// is left behind by an executor that exits.
	runner.Wait()
	if j, ok := rt.(sandbox.Janitor); ok {
		// Every job is over: a stop leaves nothing of this executor behind.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(hard), time.Minute)
		defer cancel()
		if cerr := j.Clean(ctx, func(l sandbox.Leftover) bool { return l.Owner == name }); cerr != nil {
			logger.Warn("janitor: remove this executor's leftovers", "err", cerr)
		}
	}
	return err
}

// diskBytes is the bound of each workspace: EXECUTOR_FIRECRACKER_DISK_SPACE
// where bounded workspaces can be made, else none (with a warning).
func diskBytes(ctx context.Context, cfg Config, logger *slog.Logger) int64 {
	if err := diskimage.Check(ctx); err != nil {
		logger.Warn("workspaces are not bounded by EXECUTOR_FIRECRACKER_DISK_SPACE", "why", err)
		return 0
	}
	if cfg.KeepWorkspaces {
		// A kept workspace is looked into: a plain directory.
		logger.Warn("workspaces are plain directories, not bounded by EXECUTOR_FIRECRACKER_DISK_SPACE, as EXECUTOR_KEEP_WORKSPACES keeps them")
		return 0
	}
	return cfg.DiskSpace
}

// startJanitor removes the leftovers of sandboxes that stale reports, once
// now and then every interval until ctx ends.
func startJanitor(ctx context.Context, j sandbox.Janitor, interval time.Duration, stale func(sandbox.Leftover) bool, logger *slog.Logger) {
	clean := func() {
		cctx, cancel := context.WithTimeout(ctx, max(interval, time.Minute))
		defer cancel()
		if err := j.Clean(cctx, stale); err != nil && ctx.Err() == nil {
			logger.Warn("sandbox janitor", "err", err)
		}
	}
	clean()
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				clean()
			}
		}
	}()
}

// staleSandboxes reports which sandboxes belong to no running job: this
// executor's (self) whose job is not running, and those of executors that
// died. Every executor keeps its workspaces in <root>/<name>, holding the
// lock <root>/<name>/.lock while it runs (whatever its
// EXECUTOR_WORKSPACE_ROOT): a sandbox whose workspace is in such a
// directory whose lock is free, or in one of removed (the directories of
// dead executors this one removed at start-up), is an orphan. Other
// sandboxes are left alone, as their liveness cannot be told: among
// them those whose directory does not exist, which may be a live
// executor's under another root (the shell runtime's janitor knows only
// its own root).
func staleSandboxes(self string, running func(jobID string) bool, removed []string) func(sandbox.Leftover) bool {
	return func(l sandbox.Leftover) bool {
		switch {
		case l.Owner == "":
			return false
		case l.Owner == self:
			// A Leftover without a job is the owner's own: ours, in use.
			return l.JobID != "" && !running(l.JobID)
		}
		dir := filepath.Dir(l.Workspace)
		if l.JobID == "" {
			dir = l.Workspace
		}
		if !filepath.IsAbs(l.Workspace) || filepath.Base(dir) != l.Owner {
			return false
		}
		if slices.Contains(removed, dir) {
			return true
		}
		if _, err := os.Stat(dir); err != nil {
			return false
		}
		return !ownerAlive(filepath.Dir(dir), l.Owner)
	}
}

func isAuthError(err error) bool {
	var se *queueclient.StatusError
	return errors.As(err, &se) && (se.Code == http.StatusUnauthorized || se.Code == http.StatusForbidden)
}

// serveMetrics serves /metrics and /healthz until ctx ends.
func serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry, logger *slog.Logger) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("EXECUTOR_METRICS_ADDR=%q: %w (choose a free address, or \"off\")", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	logger.Info("serving metrics", "url", "http://"+l.Addr().String()+"/metrics")
	return nil
}

// gatherText renders the registry in the Prometheus text format, as the
// heartbeat carries it.
func gatherText(reg *prometheus.Registry) string {
	families, err := reg.Gather()
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, f := range families {
		_, _ = expfmt.MetricFamilyToText(&b, f)
	}
	return b.String()
}

func formatSize(n int64) string {
	if n%(1<<30) == 0 {
		return fmt.Sprintf("%dG", n>>30)
	}
	return fmt.Sprintf("%dM", n>>20)
}

// Name returns a new executor name, "<hostname>-<random id>", as the
// reference names them.
func Name() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "executor"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}

// GitVersion returns the version of the host's git, or an error saying how
// to install it.
func GitVersion() (string, error) {
	out, err := exec.Command("git", "version").Output()
	if err != nil {
		return "", errors.New("git is not installed or not on PATH: install it (apt-get install git)")
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "git version "), nil
}
