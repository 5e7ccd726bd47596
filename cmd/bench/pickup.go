package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/execd/execd/internal/jobsapi"
	"github.com/execd/execd/internal/protocol"
)

// Pickup sizes: jobs per run with long-poll, and with 1 s polling (each
// waits half a second on average).
const (
	pickupLongPollJobs = 100
	pickupPollJobs     = 15
)

// pickup measures enqueue-to-step-start latency through the real executor
// (in this process, shell runtime): a job whose one step prints the time
// (date +%s%N) is submitted through the submission API while the executor
// waits for work; the latency runs from the start of the submit request
// to the time the step printed. The executor long-polls (the default), or
// polls every second as the reference does (EXECUTOR_LONG_POLL=0,
// EXECUTOR_QUEUE_POLL_INTERVAL=1s); 1 s polling submissions are
// phase-shifted across the interval. Jobs run one at a time, on SQLite.
func pickup(ctx context.Context, b *bench) ([]*figure, error) {
	figs, err := b.latencyModes(ctx, "pickup", []executorMode{
		{name: "longpoll", jobs: pickupLongPollJobs},
		{name: "poll1s", jobs: pickupPollJobs, env: map[string]string{"EXECUTOR_LONG_POLL": "0", "EXECUTOR_QUEUE_POLL_INTERVAL": "1s"}, phaseShift: true},
	}, pickupRun)
	for _, f := range figs {
		switch f.name {
		case "pickup/longpoll/sqlite/p50":
			f.goal = &goal{value: 20}
		case "pickup/longpoll/sqlite/p99":
			f.goal = &goal{value: 100}
		}
	}
	return figs, err
}

// pickupRun starts a coordinator and an executor and returns the latency
// of each of n jobs.
func pickupRun(ctx context.Context, b *bench, mode executorMode) ([]time.Duration, error) {
	dir, err := b.tempDir("pickup")
	if err != nil {
		return nil, err
	}
	co, err := startCoordinator(ctx, dir, "", siteConfig(""))
	if err != nil {
		return nil, err
	}
	defer co.stop()
	stopExec, err := b.startExecutor(ctx, executorEnv(co.url, "batches", dir+"/workspaces", mode.env))
	if err != nil {
		return nil, err
	}
	defer stopExec()
	// A first job, not measured, so the executor is up and waiting.
	if _, _, err := pickupJob(ctx, co.api); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	lat := make([]time.Duration, 0, mode.jobs)
	for i := range mode.jobs {
		if mode.phaseShift {
			time.Sleep(time.Duration(i*137%1000) * time.Millisecond)
		}
		submitted, started, err := pickupJob(ctx, co.api)
		if err != nil {
			return nil, err
		}
		lat = append(lat, started.Sub(submitted))
	}
	return lat, nil
}

// pickupJob submits a job whose step prints the time, waits for it to
// finish, and returns when it was submitted and when its step started.
func pickupJob(ctx context.Context, api *jobsapi.Client) (submitted, started time.Time, err error) {
	var req jobsapi.SubmitRequest
	req.DockerSteps = []protocol.DockerStep{{Key: "now", Image: "alpine:3", Commands: []string{"date +%s%N"}}}
	submitted = time.Now()
	j, err := api.Submit(ctx, "batches", req)
	if err != nil {
		return submitted, started, fmt.Errorf("submit: %w", err)
	}
	if j, err = pollJob(ctx, api, "batches", j.ID, 5*time.Millisecond, time.Minute, isFinished); err != nil {
		return submitted, started, err
	}
	if j, err = api.Get(ctx, "batches", j.ID); err != nil {
		return submitted, started, err
	}
	if j.State != "completed" {
		return submitted, started, fmt.Errorf("job %d %s: %s", j.ID, j.State, j.FailureMessage)
	}
	ns, ok := stepTimestamp(j.ExecutionLogs)
	if !ok {
		return submitted, started, fmt.Errorf("job %d: no timestamp in its log", j.ID)
	}
	return submitted, time.Unix(0, ns), nil
}

// stepTimestamp finds the first "stdout: <nanoseconds>" line of the logs.
func stepTimestamp(logs []protocol.ExecutionLogEntry) (int64, bool) {
	for _, e := range logs {
		for line := range strings.Lines(e.Out) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "stdout: "); ok {
				if ns, err := strconv.ParseInt(v, 10, 64); err == nil {
					return ns, true
				}
			}
		}
	}
	return 0, false
}
