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
	running, err := pollJob(ctx, co.api, "batches", j.ID, 50*time.Millisecond, 30*time.Second, processingOn(""))
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
	if _, err := pollJob(ctx, co.api, "batches", j.ID, 50*time.Millisecond, 2*time.Minute, processingOn(running.WorkerHostname)); err != nil {
		return 0, fmt.Errorf("executor B (see %s): %w", logs.Name(), err)
	}
	return time.Since(killed), nil
}

// processingOn is a condition for pollJob: the job is processing on an
// executor other than not.
func processingOn(not string) func(jobsapi.Job) bool {
	return func(j jobsapi.Job) bool {
		return j.State == "processing" && j.WorkerHostname != "" && j.WorkerHostname != not
	}
}
