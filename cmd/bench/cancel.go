package main

import (
	"context"
	"fmt"
	"time"

	"github.com/execd/execd/internal/jobsapi"
	"github.com/execd/execd/internal/protocol"
)

// Cancel sizes: jobs per run with waiting heartbeats, and with the
// reference's heartbeat every 5 s (each waits 2.5 s on average).
const (
	cancelJobs     = 20
	cancelPollJobs = 6
)

// cancel measures the time from a cancel request (submission API) to the
// job canceled, its step killed and the job marked, through the real
// executor (in this process, shell runtime, SQLite). The executor hears of
// it in a heartbeat that waits for cancellations (the default), or at its
// next heartbeat, every 5 s, as the reference's does (EXECUTOR_LONG_POLL=0).
// Each job's step is `sleep 600`; the cancel comes 0.3 s after the job is
// processing, plus a phase shift across the heartbeat interval for the
// 5 s heartbeats.
func cancel(ctx context.Context, b *bench) ([]*figure, error) {
	return b.latencyModes(ctx, "cancel", []executorMode{
		{name: "waiting-heartbeat", jobs: cancelJobs},
		{name: "heartbeat5s", jobs: cancelPollJobs, env: map[string]string{"EXECUTOR_LONG_POLL": "0"}, phaseShift: true},
	}, cancelRun)
}

// cancelRun starts a coordinator and an executor and returns the time
// each of n jobs took to be canceled.
func cancelRun(ctx context.Context, b *bench, mode executorMode) ([]time.Duration, error) {
	dir, err := b.tempDir("cancel")
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
	lat := make([]time.Duration, 0, mode.jobs)
	for i := range mode.jobs {
		var req jobsapi.SubmitRequest
		req.DockerSteps = []protocol.DockerStep{{Key: "sleep", Image: "alpine:3", Commands: []string{"sleep 600"}}}
		j, err := co.api.Submit(ctx, "batches", req)
		if err != nil {
			return nil, fmt.Errorf("submit: %w", err)
		}
		if _, err := pollJob(ctx, co.api, "batches", j.ID, 5*time.Millisecond, time.Minute, inState("processing")); err != nil {
			return nil, err
		}
		delay := 300 * time.Millisecond
		if mode.phaseShift {
			delay += time.Duration(i) * 5 * time.Second / time.Duration(mode.jobs)
		}
		time.Sleep(delay)
		start := time.Now()
		if _, err := co.api.Cancel(ctx, "batches", j.ID); err != nil {
			return nil, fmt.Errorf("cancel: %w", err)
		}
		if _, err := pollJob(ctx, co.api, "batches", j.ID, 5*time.Millisecond, time.Minute, inState("canceled")); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(start))
	}
	return lat, nil
}
