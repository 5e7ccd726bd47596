package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/execd/execd/internal/jobsapi"
	"github.com/execd/execd/internal/protocol"
)

// faultTunedStalledAge is the tuned stalled age (the site config's
// executors.queueSettings); the default is 25 s.
const faultTunedStalledAge = "6s"

// fault measures the cost of an executor dying: executor A (the executor
// command, shell runtime) runs a job whose step sleeps; executor B waits
// idle; A is killed with SIGKILL, and the time runs until the job is
// processing again on B (the submission API polled every 50 ms). The
// coordinator runs in this process on SQLite, its resetter every 5 s
// (the default), with the default stalled age and with a tuned one.
func fault(ctx context.Context, b *bench) ([]*figure, error) {
	execBin, err := b.binary(ctx, "executor")
	if err != nil {
		return nil, err
	}
	var all []*figure
	for _, c := range []struct{ name, settings string }{
		{"fault/stalled-age=25s-default", ""},
		{"fault/stalled-age=" + faultTunedStalledAge, `{"batches": {"stalledAge": "` + faultTunedStalledAge + `"}}`},
	} {
		figs, err := b.repeat(ctx, func(int) ([]sample, error) {
			d, err := faultRun(ctx, b, execBin, c.settings)
			if err != nil {
				return nil, err
			}
			return []sample{{name: c.name, unit: "s", value: d.Seconds()}}, nil
		})
		all = append(all, figs...)
		if err != nil {
			return all, err
		}
	}
	return all, nil
}

func faultRun(ctx context.Context, b *bench, execBin, settings string) (time.Duration, error) {
	dir, err := b.tempDir("fault")
	if err != nil {
		return 0, err
	}
	co, err := startCoordinator(ctx, dir, "", siteConfig(settings))
	if err != nil {
		return 0, err
	}
	defer co.stop()
	logs, err := os.Create(filepath.Join(dir, "executors.log"))
	if err != nil {
		return 0, err
	}
	defer logs.Close()

	a, err := startProcess(execBin, []string{"run"}, executorEnv(co.url, "batches", filepath.Join(dir, "ws-a"), nil), logs)
	if err != nil {
		return 0, err
	}
	defer func() { _ = a.Process.Kill(); _ = a.Wait() }()
	var req jobsapi.SubmitRequest
	req.DockerSteps = []protocol.DockerStep{{Key: "sleep", Image: "alpine:3", Commands: []string{"sleep 600"}}}
	j, err := co.api.Submit(ctx, "batches", req)
	if err != nil {
		return 0, fmt.Errorf("submit: %w", err)
	}
	first, err := waitProcessing(ctx, co.api, j.ID, "", 30*time.Second)
	if err != nil {
		return 0, fmt.Errorf("executor A (see %s): %w", logs.Name(), err)
	}

	bexec, err := startProcess(execBin, []string{"run"}, executorEnv(co.url, "batches", filepath.Join(dir, "ws-b"), nil), logs)
	if err != nil {
		return 0, err
	}
	defer func() {
		// Cancel the job first, so B stops at once.
		_, _ = co.api.Cancel(context.WithoutCancel(ctx), "batches", j.ID)
		stopProcess(bexec)
	}()
	// Let B start, and A's step run, for a second.
	time.Sleep(time.Second)

	if err := a.Process.Kill(); err != nil {
		return 0, err
	}
	killed := time.Now()
	if _, err := waitProcessing(ctx, co.api, j.ID, first, 2*time.Minute); err != nil {
		return 0, fmt.Errorf("executor B (see %s): %w", logs.Name(), err)
	}
	return time.Since(killed), nil
}

// waitProcessing polls job id every 50 ms until it is processing on an
// executor other than not, and returns that executor's name.
func waitProcessing(ctx context.Context, api *jobsapi.Client, id int, not string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		j, err := api.GetState(ctx, "batches", id)
		if err != nil {
			return "", err
		}
		if j.State == "processing" && j.WorkerHostname != "" && j.WorkerHostname != not {
			return j.WorkerHostname, nil
		}
		if finished(j.State) {
			return "", fmt.Errorf("job %d %s: %s", id, j.State, j.FailureMessage)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("job %d still %s on %q after %s", id, j.State, j.WorkerHostname, timeout)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}
