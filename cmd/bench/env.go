package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"github.com/execd/execd/internal/coordinator"
	"github.com/execd/execd/internal/executor"
	"github.com/execd/execd/internal/jobsapi"
	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/shell"
	"github.com/execd/execd/internal/store/postgres/pgtest"
)

// Fixed secrets of every coordinator the scenarios start.
const (
	execSecret = "bench-executor-secret-0123456789"
	apiToken   = "bench-api-token-0123456789abcdef"
)

// bench is the state one invocation shares between scenarios.
type bench struct {
	runs   int
	dir    string // temporary; removed by close
	logger *slog.Logger

	bins    string // directory of the built commands; empty until built
	pgAdmin string // admin URL of the temporary PostgreSQL; empty until started
	pgStop  func()
}

func newBench(runs int, logger *slog.Logger) (*bench, error) {
	dir, err := os.MkdirTemp("", "execd-bench-")
	if err != nil {
		return nil, err
	}
	return &bench{runs: runs, dir: dir, logger: logger}, nil
}

func (b *bench) close() {
	if b.pgStop != nil {
		b.pgStop()
	}
	os.RemoveAll(b.dir)
}

// tempDir returns a new directory under the bench's temporary directory.
func (b *bench) tempDir(name string) (string, error) {
	return os.MkdirTemp(b.dir, name+"-")
}

// repeat calls f for each run and groups the samples into figures.
func (b *bench) repeat(ctx context.Context, f func(run int) ([]sample, error)) ([]*figure, error) {
	var runs [][]sample
	for i := range b.runs {
		if err := ctx.Err(); err != nil {
			return collect(runs), err
		}
		s, err := f(i)
		if err != nil {
			return collect(runs), fmt.Errorf("run %d: %w", i+1, err)
		}
		runs = append(runs, s)
	}
	return collect(runs), nil
}

// machine describes this machine for the output's header.
func (b *bench) machine() string {
	mem := "?"
	if kb, err := meminfo("MemTotal"); err == nil {
		mem = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
	}
	kernel := "?"
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(data))
	}
	return fmt.Sprintf("%d CPUs (%s), %s RAM, Linux %s, %s, %d runs per scenario", goruntime.NumCPU(), b.cpu(), mem, kernel, goruntime.Version(), b.runs)
}

// cpu is the CPU's model name.
func (b *bench) cpu() string {
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				return strings.TrimSpace(v)
			}
		}
	}
	return "unknown CPU"
}

func meminfo(key string) (int64, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s not in /proc/meminfo", key)
}

// postgres returns the URL of a new, empty database on a temporary
// PostgreSQL server, started on first use.
func (b *bench) postgres(ctx context.Context) (string, error) {
	if b.pgAdmin == "" {
		admin, stop, err := pgtest.Start()
		if err != nil {
			return "", fmt.Errorf("start postgres: %w", err)
		}
		b.pgAdmin, b.pgStop = admin, stop
	}
	url, _, err := pgtest.CreateDatabase(ctx, b.pgAdmin)
	return url, err
}

// binary returns the path of the coordinator or executor command, built
// on first use.
func (b *bench) binary(ctx context.Context, name string) (string, error) {
	if b.bins == "" {
		dir := filepath.Join(b.dir, "bin")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+"/", "github.com/execd/execd/cmd/coordinator", "github.com/execd/execd/cmd/executor", "github.com/execd/execd/cmd/execd-sandbox-init")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build the coordinator, the executor and execd-sandbox-init (run bench from within the module): %w: %s", err, out)
		}
		b.bins = dir
	}
	return filepath.Join(b.bins, name), nil
}

// siteConfig is a site config with the fixed secrets, the queues batches,
// idle and busy, and the given executors.queueSettings JSON (or none).
func siteConfig(queueSettings string) string {
	cfg := fmt.Sprintf(`{
  "executors.accessToken": %q,
  "api.accessToken": %q,
  "executors.queues": ["batches", "idle", "busy"]`, execSecret, apiToken)
	if queueSettings != "" {
		cfg += `,
  "executors.queueSettings": ` + queueSettings
	}
	return cfg + "\n}\n"
}

// coord is a coordinator served on loopback by this process.
type coord struct {
	c    *coordinator.Coordinator
	url  string
	api  *jobsapi.Client
	stop func()
}

// startCoordinator starts a coordinator in this process, on SQLite in dir
// (database empty) or on the postgres:// database, with the site config.
func startCoordinator(ctx context.Context, dir, database, config string) (*coord, error) {
	cfgPath := filepath.Join(dir, "site-config.json")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		return nil, err
	}
	c, err := coordinator.New(ctx, coordinator.Options{DataDir: dir, SiteConfigPath: cfgPath, Database: database, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, fmt.Errorf("start coordinator: %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.Close()
		return nil, err
	}
	serveCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan error, 1)
	go func() { served <- c.Serve(serveCtx, l) }()
	url := "http://" + l.Addr().String()
	stop := func() {
		cancel()
		<-served
		c.Close()
	}
	return &coord{c: c, url: url, api: &jobsapi.Client{BaseURL: url, Token: apiToken}, stop: stop}, nil
}

// executorEnv is the environment of a shell-runtime executor of queue
// against the coordinator at url, with overrides.
func executorEnv(url, queue, workspaces string, overrides map[string]string) map[string]string {
	env := map[string]string{
		"EXECUTOR_RUNTIME":           "shell",
		"EXECUTOR_FRONTEND_URL":      url,
		"EXECUTOR_FRONTEND_PASSWORD": execSecret,
		"EXECUTOR_QUEUE_NAME":        queue,
		"EXECUTOR_METRICS_ADDR":      "off",
		"EXECUTOR_WORKSPACE_ROOT":    workspaces,
		"EXECUTOR_JOB_MEMORY":        "2G",
		"EXECUTOR_JOB_NUM_CPUS":      "2",
	}
	for k, v := range overrides {
		env[k] = v
	}
	return env
}

// startExecutor runs an executor in this process, with execd-sandbox-init
// as an installed executor has it; stop stops it (running jobs are
// stopped) and waits for it.
func (b *bench) startExecutor(ctx context.Context, env map[string]string) (stop func() error, err error) {
	initBin, err := b.binary(ctx, "execd-sandbox-init")
	if err != nil {
		return nil, err
	}
	env["EXECUTOR_SHELL_INIT"] = initBin
	cfg, err := executor.LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		return nil, err
	}
	cfg.Version = "bench"
	drain, stopDrain := context.WithCancel(context.Background())
	hard, stopHard := context.WithCancel(context.Background())
	done := make(chan error, 1)
	shellOnly := func(_ context.Context, cfg executor.Config, logger *slog.Logger) []sandbox.Runtime {
		return []sandbox.Runtime{shell.New(shell.Config{Init: cfg.ShellInit, WorkspaceRoot: cfg.WorkspaceRoot, Logger: logger})}
	}
	go func() { done <- executor.Run(drain, hard, cfg, shellOnly, b.logger) }()
	return func() error {
		stopDrain()
		stopHard()
		err := <-done
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		return err
	}, nil
}

// startProcess starts bin with args and the environment env (added to
// this process's), its output to logs.
func startProcess(bin string, args []string, env map[string]string, logs io.Writer) (*exec.Cmd, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// waitHTTP waits until url answers, or timeout passes.
func waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s did not answer within %s: %w", url, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// finished reports whether a job's state is final.
func finished(state string) bool {
	switch state {
	case "completed", "failed", "errored", "canceled":
		return true
	}
	return false
}

// executorMode is a way to run the in-process executor for a latency
// scenario: n jobs, the executor's environment overrides, and whether
// the jobs are phase-shifted across the executor's polling interval.
type executorMode struct {
	name       string
	jobs       int
	env        map[string]string
	phaseShift bool
}

// latencyModes runs each mode b.runs times, and gives the p50 and p99 of
// the latencies each run returns as figures named prefix/<mode>/sqlite.
func (b *bench) latencyModes(ctx context.Context, prefix string, modes []executorMode, run func(context.Context, *bench, executorMode) ([]time.Duration, error)) ([]*figure, error) {
	var all []*figure
	for _, mode := range modes {
		figs, err := b.repeat(ctx, func(int) ([]sample, error) {
			lat, err := run(ctx, b, mode)
			if err != nil {
				return nil, err
			}
			return latencies(prefix+"/"+mode.name+"/sqlite", lat), nil
		})
		all = append(all, figs...)
		if err != nil {
			return all, err
		}
	}
	return all, nil
}

// pollJob polls job id of queue every interval, without its logs (at a
// gigabyte, fetching them every interval would cost more than what is
// measured), until done holds for it, and returns it. It fails when the job
// finished without done holding, or after timeout.
func pollJob(ctx context.Context, api *jobsapi.Client, queue string, id int, interval, timeout time.Duration, done func(jobsapi.Job) bool) (jobsapi.Job, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		j, err := api.GetState(ctx, queue, id)
		if err != nil {
			return j, fmt.Errorf("job %d: %w", id, err)
		}
		if done(j) {
			return j, nil
		}
		if finished(j.State) {
			return j, fmt.Errorf("job %d %s: %s", id, j.State, j.FailureMessage)
		}
		select {
		case <-time.After(interval):
		case <-ctx.Done():
			return j, fmt.Errorf("job %d still %s on %q after %s", id, j.State, j.WorkerHostname, timeout)
		}
	}
}

// isFinished and inState are conditions for pollJob.
func isFinished(j jobsapi.Job) bool { return finished(j.State) }

func inState(state string) func(jobsapi.Job) bool {
	return func(j jobsapi.Job) bool { return j.State == state }
}
