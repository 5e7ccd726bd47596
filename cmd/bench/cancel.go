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
	var all []*figure
	for _, mode := range []struct {
		name string
		jobs int
		env  map[string]string
	}{
		{"waiting-heartbeat", cancelJobs, nil},
		{"heartbeat5s", cancelPollJobs, map[string]string{"EXECUTOR_LONG_POLL": "0"}},
	} {
		figs, err := b.repeat(ctx, func(int) ([]sample, error) {
			lat, err := cancelRun(ctx, b, mode.jobs, mode.env, mode.name == "heartbeat5s")
			if err != nil {
				return nil, err
			}
			return latencies("cancel/"+mode.name+"/sqlite", lat), nil
		})
		all = append(all, figs...)
		if err != nil {
			return all, err
		}
	}
	return all, nil
}

// cancelRun starts a coordinator and an executor and returns the time
// each of n jobs took to be canceled.
func cancelRun(ctx context.Context, b *bench, n int, env map[string]string, phaseShift bool) ([]time.Duration, error) {
	dir, err := b.tempDir("cancel")
	if err != nil {
		return nil, err
	}
	co, err := startCoordinator(ctx, dir, "", siteConfig(""))
	if err != nil {
		return nil, err
	}
	defer co.stop()
	stopExec, err := b.startExecutor(ctx, executorEnv(co.url, "batches", dir+"/workspaces", env))
	if err != nil {
		return nil, err
	}
	defer stopExec()
	lat := make([]time.Duration, 0, n)
	for i := range n {
		var req jobsapi.SubmitRequest
		req.DockerSteps = []protocol.DockerStep{{Key: "sleep", Image: "alpine:3", Commands: []string{"sleep 600"}}}
		j, err := co.api.Submit(ctx, "batches", req)
		if err != nil {
			return nil, fmt.Errorf("submit: %w", err)
		}
		if err := waitState(ctx, co.api, j.ID, "processing", time.Minute); err != nil {
			return nil, err
		}
		delay := 300 * time.Millisecond
		if phaseShift {
			delay += time.Duration(i) * 5 * time.Second / time.Duration(n)
		}
		time.Sleep(delay)
		start := time.Now()
		if _, err := co.api.Cancel(ctx, "batches", j.ID); err != nil {
			return nil, fmt.Errorf("cancel: %w", err)
		}
		if err := waitState(ctx, co.api, j.ID, "canceled", time.Minute); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(start))
	}
	return lat, nil
}

// waitState polls job id's state every 5 ms until it is state.
func waitState(ctx context.Context, api *jobsapi.Client, id int, state string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		j, err := api.GetState(ctx, "batches", id)
		if err != nil {
			return fmt.Errorf("job %d: %w", id, err)
		}
		if j.State == state {
			return nil
		}
		if finished(j.State) || time.Now().After(deadline) {
			return fmt.Errorf("job %d is %s, want %s", id, j.State, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
