package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/execd/execd/internal/jobsapi"
	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/queueclient"
)

// Scale sizes.
const (
	scaleExecutors = 1000
	scaleJobs      = 100
	scaleCancels   = 20
	scaleHeartbeat = 5 * time.Second
	scaleWarmUp    = 6 * time.Second  // every executor polling and one heartbeat round
	scaleWindow    = 12 * time.Second // CPU is measured over this, jobs included
	idleAfter      = 10 * time.Second // executor idle RSS is read this long after its start
)

// scale runs the coordinator command as a separate process (SQLite) with
// 1,000 simulated executors in this process, each a queueclient of its own
// (sharing one Transport) that long-polls (30 s) and heartbeats every 5 s,
// spread evenly over the interval. After a warm-up, jobs are submitted one
// at a time through the submission API, and the latency from the start of
// the submit request to the dequeue answer is measured; the coordinator's
// CPU is measured over a fixed window that holds the jobs, and its VmRSS
// read at the end. Alongside, the executor command runs idle (shell
// runtime, a queue of its own); its VmRSS is read 10 s after its start.
// Then 1,000 more simulated executors each run a job (see scaleBusy).
func scale(ctx context.Context, b *bench) ([]*figure, error) {
	if err := raiseNoFile(8 * scaleExecutors); err != nil {
		return nil, err
	}
	coordBin, err := b.binary(ctx, "coordinator")
	if err != nil {
		return nil, err
	}
	execBin, err := b.binary(ctx, "executor")
	if err != nil {
		return nil, err
	}
	figs, err := b.repeat(ctx, func(int) ([]sample, error) {
		return scaleRun(ctx, b, coordBin, execBin)
	})
	for _, f := range figs {
		switch f.name {
		case "scale/coordinator/rss":
			f.goal = &goal{value: 200}
		case "scale/pickup/p99":
			f.goal = &goal{value: 100}
		case "scale/executor-idle/rss":
			f.goal = &goal{value: 25}
		}
	}
	return figs, err
}

func scaleRun(ctx context.Context, b *bench, coordBin, execBin string) ([]sample, error) {
	dir, err := b.tempDir("scale")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "site-config.json"), []byte(siteConfig("")), 0o600); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	logs, err := os.Create(filepath.Join(dir, "processes.log"))
	if err != nil {
		return nil, err
	}
	defer logs.Close()
	coord, err := startProcess(coordBin, []string{"serve", "--addr", addr, "--data-dir", dir}, nil, logs)
	if err != nil {
		return nil, err
	}
	defer stopProcess(coord)
	url := "http://" + addr
	if err := waitHTTP(ctx, url+"/healthz", 30*time.Second); err != nil {
		return nil, err
	}

	execStart := time.Now()
	idle, err := startProcess(execBin, []string{"run"}, executorEnv(url, "idle", filepath.Join(dir, "workspaces"), nil), logs)
	if err != nil {
		return nil, err
	}
	defer stopProcess(idle)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	transport := &http.Transport{MaxIdleConns: 2 * scaleExecutors, MaxIdleConnsPerHost: 2 * scaleExecutors, IdleConnTimeout: time.Minute}
	defer transport.CloseIdleConnections()
	httpClient := &http.Client{Transport: transport, Timeout: time.Minute}
	got := make(chan int, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range scaleExecutors {
		c := &queueclient.Client{BaseURL: url, Secret: execSecret, ExecutorName: "sim-" + strconv.Itoa(i), HTTP: httpClient}
		wg.Go(func() { simulatePoll(ctx, c, got) })
		offset := time.Duration(i) * scaleHeartbeat / scaleExecutors
		wg.Go(func() { simulateHeartbeat(ctx, c, offset) })
	}
	select {
	case <-time.After(scaleWarmUp):
	case <-ctx.Done():
		return nil, ctx.Err()
	}

	api := &jobsapi.Client{BaseURL: url, Token: apiToken}
	var req jobsapi.SubmitRequest
	req.DockerSteps = []protocol.DockerStep{{Key: "noop", Image: "alpine:3", Commands: []string{"true"}}}
	lat := make([]time.Duration, 0, scaleJobs)
	use, err := measureWindow(coord.Process.Pid, func() error {
		for range scaleJobs {
			start := time.Now()
			j, err := api.Submit(ctx, "batches", req)
			if err != nil {
				return fmt.Errorf("submit: %w", err)
			}
			select {
			case id := <-got:
				if id != j.ID {
					return fmt.Errorf("dequeued job %d, want %d", id, j.ID)
				}
			case <-time.After(30 * time.Second):
				return fmt.Errorf("job %d not dequeued within 30s", j.ID)
			}
			lat = append(lat, time.Since(start))
			time.Sleep(20 * time.Millisecond)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if wait := idleAfter - time.Since(execStart); wait > 0 {
		time.Sleep(wait)
	}
	idleRSS, err := rssMB(idle.Process.Pid)
	if err != nil {
		return nil, fmt.Errorf("idle executor (see %s): %w", logs.Name(), err)
	}
	out := latencies("scale/pickup", lat)
	out = append(out,
		sample{name: "scale/coordinator/rss", unit: "MB", value: use.rss, note: fmt.Sprintf("%d executors", scaleExecutors)},
		sample{name: "scale/coordinator/cpu", unit: "% of a core", value: use.cpu, note: fmt.Sprintf("over %s", use.window.Round(time.Second))},
		sample{name: "scale/executor-idle/rss", unit: "MB", value: idleRSS},
	)
	busy, err := scaleBusy(ctx, &wg, url, httpClient, coord.Process.Pid)
	if err != nil {
		return nil, fmt.Errorf("busy executors: %w", err)
	}
	return append(out, busy...), nil
}

// scaleBusy adds scaleExecutors more simulated executors, each running a
// job of queue busy and heartbeating for it as ours does: back to back,
// each heartbeat waiting up to 5 s for a cancellation. It measures the
// coordinator's CPU over a window, during which scaleCancels jobs are
// canceled one at a time (the latency runs from the start of the cancel
// request to the executor's heartbeat answer naming the job), and its RSS
// at the end.
func scaleBusy(ctx context.Context, wg *sync.WaitGroup, url string, httpClient *http.Client, pid int) ([]sample, error) {
	api := &jobsapi.Client{BaseURL: url, Token: apiToken}
	var req jobsapi.SubmitRequest
	req.DockerSteps = []protocol.DockerStep{{Key: "long", Image: "alpine:3", Commands: []string{"sleep 600"}}}
	for range scaleExecutors {
		if _, err := api.Submit(ctx, "busy", req); err != nil {
			return nil, fmt.Errorf("submit: %w", err)
		}
	}
	var running sync.WaitGroup
	running.Add(scaleExecutors)
	canceled := make(chan int, scaleExecutors)
	for i := range scaleExecutors {
		c := &queueclient.Client{BaseURL: url, Secret: execSecret, ExecutorName: "busy-" + strconv.Itoa(i), HTTP: httpClient}
		wg.Go(func() { simulateBusy(ctx, c, &running, canceled) })
	}
	running.Wait()
	select {
	case <-time.After(scaleWarmUp): // every executor's heartbeat is waiting
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	list, err := api.List(ctx, "busy", "processing", "", 0, scaleCancels)
	if err != nil {
		return nil, err
	}
	lat := make([]time.Duration, 0, scaleCancels)
	use, err := measureWindow(pid, func() error {
		for _, j := range list.Jobs {
			start := time.Now()
			if _, err := api.Cancel(ctx, "busy", j.ID); err != nil {
				return fmt.Errorf("cancel: %w", err)
			}
			select {
			case id := <-canceled:
				if id != j.ID {
					return fmt.Errorf("executor heard of the cancel of job %d, want %d", id, j.ID)
				}
			case <-time.After(30 * time.Second):
				return fmt.Errorf("no executor heard of the cancel of job %d within 30s", j.ID)
			}
			lat = append(lat, time.Since(start))
			time.Sleep(200 * time.Millisecond)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := latencies("scale/busy/cancel", lat)
	return append(out,
		sample{name: "scale/busy/coordinator/rss", unit: "MB", value: use.rss, note: fmt.Sprintf("%d more executors, each running a job", scaleExecutors)},
		sample{name: "scale/busy/coordinator/cpu", unit: "% of a core", value: use.cpu, note: fmt.Sprintf("over %s", use.window.Round(time.Second))},
	), nil
}

// coordinatorUse is what measureWindow measures of the coordinator.
type coordinatorUse struct {
	cpu    float64 // % of a core over the window
	window time.Duration
	rss    float64 // MB at the window's end
}

// measureWindow runs work and then waits out scaleWindow from its start,
// and returns process pid's CPU use over that window and its RSS at the
// end.
func measureWindow(pid int, work func() error) (coordinatorUse, error) {
	cpu0, err := cpuTime(pid)
	if err != nil {
		return coordinatorUse{}, err
	}
	start := time.Now()
	if err := work(); err != nil {
		return coordinatorUse{}, err
	}
	if rest := scaleWindow - time.Since(start); rest > 0 {
		time.Sleep(rest)
	}
	cpu1, err := cpuTime(pid)
	if err != nil {
		return coordinatorUse{}, err
	}
	window := time.Since(start)
	rss, err := rssMB(pid)
	if err != nil {
		return coordinatorUse{}, err
	}
	return coordinatorUse{cpu: 100 * (cpu1 - cpu0).Seconds() / window.Seconds(), window: window, rss: rss}, nil
}

// simulateBusy takes a job of queue busy, then heartbeats for it back to
// back, each heartbeat waiting up to scaleHeartbeat for its cancellation,
// until the job is canceled (its id goes to canceled) or ctx ends.
func simulateBusy(ctx context.Context, c *queueclient.Client, running *sync.WaitGroup, canceled chan<- int) {
	var job protocol.Job
	for {
		j, ok, err := c.Dequeue(ctx, []string{"busy"}, queueclient.DequeueOptions{Version: "5.0.0"})
		if ctx.Err() != nil {
			running.Done()
			return
		}
		if err == nil && ok {
			job = j
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	running.Done()
	for ctx.Err() == nil {
		resp, err := c.Heartbeat(ctx, []string{"busy"}, protocol.HeartbeatRequest{ExecutorName: c.ExecutorName, OS: "linux", Architecture: "amd64", ExecutorVersion: "bench"}, []protocol.Job{job}, scaleHeartbeat)
		if err != nil {
			time.Sleep(time.Second)
			continue
		}
		if len(resp.CancelIDs) > 0 {
			canceled <- job.ID
			_ = c.MarkFailed(ctx, job, "canceled")
			return
		}
	}
}

// simulatePoll long-polls like an executor and sends the ids of the jobs
// it gets to got, then marks them complete.
func simulatePoll(ctx context.Context, c *queueclient.Client, got chan<- int) {
	for ctx.Err() == nil {
		j, ok, err := c.Dequeue(ctx, []string{"batches"}, queueclient.DequeueOptions{Version: "5.0.0", Wait: 30 * time.Second})
		if err != nil {
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
			continue
		}
		if !ok {
			continue
		}
		select {
		case got <- j.ID:
		case <-ctx.Done():
			return
		}
		_ = c.MarkComplete(ctx, j)
	}
}

// simulateHeartbeat heartbeats every scaleHeartbeat, starting after offset.
func simulateHeartbeat(ctx context.Context, c *queueclient.Client, offset time.Duration) {
	select {
	case <-time.After(offset):
	case <-ctx.Done():
		return
	}
	tick := time.NewTicker(scaleHeartbeat)
	defer tick.Stop()
	for {
		_, _ = c.Heartbeat(ctx, []string{"batches"}, protocol.HeartbeatRequest{ExecutorName: c.ExecutorName, OS: "linux", Architecture: "amd64", ExecutorVersion: "bench"}, nil, 0)
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// stopProcess sends SIGTERM, and SIGKILL if the process has not exited
// after 10 s, then waits for it.
func stopProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}
