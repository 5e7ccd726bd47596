package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/execd/execd/internal/job"
	"github.com/execd/execd/internal/jobsapi"
	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/redact"
	"github.com/execd/execd/internal/store"
)

// Log streaming sizes: the 1 GiB, end to end (under a per-step cap
// raised to keep all of it, with the line prefixes) and through the
// streamer alone.
const (
	logSecret       = "S3cr3t-b3nch-9f8e7d6c5b4a"
	logSecretEvery  = 97
	logMaxOutput    = "1300M"
	logLines        = 11_700_000 // about 1 GiB of 92-byte lines
	streamerBytes   = 1 << 30
	streamerLineLen = 92
)

// logLine is line i of the step's output (without the newline), as the awk
// program of logJob writes it.
func logLine(i int) string {
	s := "ok"
	if i%logSecretEvery == 0 {
		s = "token=" + logSecret
	}
	return fmt.Sprintf("%08d lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor %s", i, s)
}

// logs measures log streaming with redaction, two ways. End to end: a job
// (executor in this process, shell runtime, SQLite) whose step writes
// logLines lines with a secret on every 97th, with EXECUTOR_MAX_STEP_OUTPUT
// raised to logMaxOutput; MB/s from the step's start to the job marked complete (its
// last log update stored), then the stored log is checked for every line
// in order and no secret. And the streamer alone: 1 GiB of such lines
// written through job.Streamer (line prefixes, redaction, the output cap,
// the snapshot sent every second) into a client that keeps only the last
// update, with the cap at the default 4 MiB and at 2 GiB (all of it, with
// the line prefixes); the final entry
// is checked the same way.
func logs(ctx context.Context, b *bench) ([]*figure, error) {
	figs, err := b.repeat(ctx, func(int) ([]sample, error) {
		e2e, err := logsEndToEnd(ctx, b)
		if err != nil {
			return nil, fmt.Errorf("end to end: %w", err)
		}
		out := []sample{{name: "logs/e2e/sqlite", unit: "MB/s", value: e2e, note: fmt.Sprintf("%d lines, cap %s", logLines, logMaxOutput)}}
		for _, maxOut := range []int{4 << 20, 2 << 30} {
			rate, err := logsStreamer(ctx, maxOut)
			if err != nil {
				return nil, fmt.Errorf("streamer: %w", err)
			}
			out = append(out, sample{name: fmt.Sprintf("logs/streamer/cap=%dMiB", maxOut>>20), unit: "MB/s", value: rate, note: "1 GiB"})
		}
		return out, nil
	})
	for _, f := range figs {
		f.goal = &goal{atLeast: true, value: 50}
	}
	return figs, err
}

func logsEndToEnd(ctx context.Context, b *bench) (float64, error) {
	dir, err := b.tempDir("logs")
	if err != nil {
		return 0, err
	}
	co, err := startCoordinator(ctx, dir, "", siteConfig(""))
	if err != nil {
		return 0, err
	}
	defer co.stop()
	stopExec, err := b.startExecutor(ctx, executorEnv(co.url, "batches", dir+"/workspaces", map[string]string{"EXECUTOR_MAX_STEP_OUTPUT": logMaxOutput}))
	if err != nil {
		return 0, err
	}
	defer stopExec()

	awk := fmt.Sprintf(`awk 'BEGIN { for (i = 0; i < %d; i++) { s = "ok"; if (i %% %d == 0) s = "token=%s"; printf "%%08d lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor %%s\n", i, s } }'`, logLines, logSecretEvery, logSecret)
	var req jobsapi.SubmitRequest
	req.DockerSteps = []protocol.DockerStep{{Key: "spew", Image: "alpine:3", Commands: []string{awk}}}
	req.RedactedValues = map[string]string{logSecret: "REDACTED"}
	j, err := co.api.Submit(ctx, "batches", req)
	if err != nil {
		return 0, fmt.Errorf("submit: %w", err)
	}
	if j, err = pollJob(ctx, co.api, "batches", j.ID, 100*time.Millisecond, 2*time.Minute, isFinished); err != nil {
		return 0, err
	}
	if j.State != "completed" || j.FinishedAt == nil {
		return 0, fmt.Errorf("job %d %s: %s", j.ID, j.State, j.FailureMessage)
	}
	// The stored log is read from the store: through the API it would be
	// a gigabyte of JSON, encoded and decoded, for nothing more.
	entries, err := co.c.Store().LogEntries(ctx, "batches", j.ID, store.LogRange{})
	if err != nil {
		return 0, err
	}
	var step *protocol.ExecutionLogEntry
	for i := range entries {
		if strings.Contains(entries[i].Out, "stdout: 00000000 ") {
			step = &entries[i].ExecutionLogEntry
		}
	}
	if step == nil {
		return 0, fmt.Errorf("job %d: no entry holds the step's output", j.ID)
	}
	bytes, err := checkLog(step.Out, logLines)
	if err != nil {
		return 0, fmt.Errorf("stored log: %w", err)
	}
	return float64(bytes) / 1e6 / j.FinishedAt.Sub(step.StartTime).Seconds(), nil
}

// checkLog checks that out holds exactly lines 0..n-1 of logLine as
// stdout, redacted, and no secret. It returns the size of the lines as
// the step wrote them.
func checkLog(out string, n int) (int64, error) {
	if strings.Contains(out, logSecret) {
		return 0, fmt.Errorf("the secret is in the log")
	}
	var written int64
	i := 0
	for line := range strings.Lines(out) {
		line = strings.TrimSuffix(line, "\n")
		rest, ok := strings.CutPrefix(line, "stdout: ")
		if !ok {
			continue
		}
		want := logLine(i)
		written += int64(len(want) + 1)
		if i%logSecretEvery == 0 {
			want = strings.Replace(want, logSecret, "REDACTED", 1)
		}
		if rest != want {
			return 0, fmt.Errorf("line %d is %q, want %q", i, rest, want)
		}
		i++
	}
	if i != n {
		return 0, fmt.Errorf("%d lines, want %d", i, n)
	}
	return written, nil
}

// lastEntryClient is a job.LogClient that keeps only the last state of
// the one entry.
type lastEntryClient struct {
	mu       sync.Mutex
	last     protocol.ExecutionLogEntry
	appended *strings.Builder // the output so far, once appends began
}

func (c *lastEntryClient) AddLogEntry(_ context.Context, _ protocol.Job, e protocol.ExecutionLogEntry) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = e
	return 1, nil
}

func (c *lastEntryClient) UpdateLogEntry(_ context.Context, _ protocol.Job, _ int, e protocol.ExecutionLogEntry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = e
	return nil
}

// AppendLogEntry makes lastEntryClient a job.LogAppender: appended output
// is kept after the entry's out, as the coordinator stores it.
func (c *lastEntryClient) AppendLogEntry(_ context.Context, _ protocol.Job, _ int, offset int64, out []byte, exitCode, durationMs *int) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.appended == nil {
		c.appended = &strings.Builder{}
		c.appended.WriteString(c.last.Out)
	}
	if offset != int64(c.appended.Len()) {
		return 0, fmt.Errorf("offset %d, have %d", offset, c.appended.Len())
	}
	c.appended.Write(out)
	if exitCode != nil {
		c.last.ExitCode, c.last.DurationMs = exitCode, durationMs
	}
	return int64(c.appended.Len()), nil
}

// logsStreamer writes streamerBytes of lines through a job.Streamer with
// the output cap maxOut and returns MB/s.
func logsStreamer(ctx context.Context, maxOut int) (float64, error) {
	// 64 KiB chunks of whole lines, written as a step's pipe would.
	n := streamerBytes / (streamerLineLen + 1)
	client := &lastEntryClient{}
	s := job.NewStreamer(client, protocol.Job{ID: 1}, redact.New(map[string]string{logSecret: "REDACTED"}), job.StreamerOptions{MaxOutput: maxOut})
	var chunk []byte
	start := time.Now()
	e := s.Start(ctx, "step.shell.0", []string{"spew"})
	var written int64
	for i := range n {
		chunk = append(chunk, logLine(i)...)
		chunk = append(chunk, '\n')
		if len(chunk) >= 64<<10 || i == n-1 {
			if _, err := e.Stdout().Write(chunk); err != nil {
				return 0, err
			}
			written += int64(len(chunk))
			chunk = chunk[:0]
		}
	}
	e.Finish(0)
	if err := s.Wait(); err != nil {
		return 0, err
	}
	elapsed := time.Since(start)
	client.mu.Lock()
	out := client.last.Out
	if client.appended != nil {
		out = client.appended.String()
	}
	client.mu.Unlock()
	if maxOut > streamerBytes {
		if _, err := checkLog(out, n); err != nil {
			return 0, fmt.Errorf("final entry: %w", err)
		}
	} else if strings.Contains(out, logSecret) {
		return 0, fmt.Errorf("the secret is in the log")
	}
	return float64(written) / 1e6 / elapsed.Seconds(), nil
}
