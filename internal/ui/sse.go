package ui

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/store"
)

// The job page follows its job through GET /ui/jobs/{queue}/{id}/events, a
// text/event-stream. The handler reads the job and what its log entries
// gained every PollInterval (500 ms) and sends only what changed:
//
//	event: job     data: jobEvent, when the state, timestamps or failure change
//	event: entry   data: entryEvent, per new or changed log entry: the text
//	                     appended since the last event ("append"), or the
//	                     output to show instead of what the page shows
//	                     ("out"): the last MiB of it, with the bytes before
//	                     that not shown ("skipped") and the URL of the
//	                     whole output ("whole")
//	event: reset   data: {}, when the job's entries were cleared (the job
//	                     was handed out again): the page drops its entries
//	event: done    data: {}, once the job is finished; the stream then ends
//
// The first events after (re)connecting describe everything: the handler
// starts with no memory of what the page shows. A comment line every 15 s
// keeps proxies from closing an idle stream.

// jobEvent is the data of a "job" event.
type jobEvent struct {
	State           string `json:"state"`
	CancelRequested bool   `json:"cancelRequested"`
	FailureMessage  string `json:"failureMessage"`
	StartedAt       string `json:"startedAt"`
	FinishedAt      string `json:"finishedAt"`
	Heartbeat       string `json:"heartbeat"`
	Worker          string `json:"worker"`
	Duration        string `json:"duration"`
	Attempts        string `json:"attempts"`
	CanCancel       bool   `json:"canCancel"`
	CanRetry        bool   `json:"canRetry"`
	Finished        bool   `json:"finished"`
}

// entryEvent is the data of an "entry" event.
type entryEvent struct {
	ID        int     `json:"id"`
	Key       string  `json:"key"`
	Command   string  `json:"command"`
	StartTime string  `json:"startTime"`
	ExitCode  *int    `json:"exitCode"`
	Duration  string  `json:"duration"`
	Out       *string `json:"out,omitempty"`
	Append    string  `json:"append,omitempty"`
	Skipped   int64   `json:"skipped,omitempty"`
	Whole     string  `json:"whole,omitempty"`
}

// entryState is what the stream last sent of one entry.
type entryState struct {
	meta   string // key, command, exit code, duration
	length int64  // bytes of the output the page holds the end of
}

func (s *Server) handleJobEvents(w http.ResponseWriter, r *http.Request, sess *session) {
	job, ok := s.jobFromPath(w, r, sess)
	if !ok {
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		s.logger.Warn("ui: event stream cannot flush", "err", err)
		return
	}
	var (
		lastJob  string
		sent     []entryState
		poll     = time.NewTicker(s.poll)
		keep     = time.NewTicker(15 * time.Second)
		ctx      = r.Context()
		queue    = job.Queue
		masker   = newMasker(job.Spec.RedactedValues)
		writeErr error
	)
	defer poll.Stop()
	defer keep.Stop()
	send := func(event string, v any) {
		if writeErr != nil {
			return
		}
		data, err := json.Marshal(v)
		if err != nil {
			writeErr = err
			return
		}
		_, writeErr = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data)
	}
	for {
		from := make(map[int]int64, len(sent))
		for i, st := range sent {
			from[i+1] = st.length
		}
		entries, err := s.store.LogEntries(ctx, queue, job.ID, store.LogRange{From: from, Tail: logTail})
		if err != nil {
			if ctx.Err() == nil {
				s.logger.Warn("ui: event stream read failed", "queue", queue, "id", job.ID, "err", err)
			}
			return
		}
		if shrunk(entries, sent) {
			// Cleared (the job was handed out again) or rewritten: start
			// over with the next read.
			send("reset", struct{}{})
			sent = nil
			lastJob = ""
			continue
		}
		for i, e := range entries {
			var prev *entryState
			if i < len(sent) {
				prev = &sent[i]
			}
			ev, changed := entryChange(e, masker, prev, wholeLogURL(queue, job.ID, e.ID))
			if !changed {
				continue
			}
			send("entry", ev)
			st := entryState{meta: entryMeta(e), length: e.From + int64(len(e.Out))}
			if prev != nil {
				*prev = st
			} else {
				sent = append(sent, st)
			}
		}
		ev := toJobEvent(job)
		if b, _ := json.Marshal(ev); string(b) != lastJob {
			send("job", ev)
			lastJob = string(b)
		}
		if ev.Finished {
			send("done", struct{}{})
		}
		if writeErr == nil {
			writeErr = rc.Flush()
		}
		if writeErr != nil || ev.Finished {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-keep.C:
			_, writeErr = fmt.Fprint(w, ": keep-alive\n\n")
		case <-poll.C:
		}
		job, err = s.store.GetJob(ctx, queue, job.ID)
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
				s.logger.Warn("ui: event stream read failed", "queue", queue, "id", job.ID, "err", err)
			}
			return
		}
	}
}

// shrunk reports whether entries lost an entry, or output, that the page
// was sent.
func shrunk(entries []store.LogEntry, sent []entryState) bool {
	if len(entries) < len(sent) {
		return true
	}
	for i, st := range sent {
		if entries[i].Length < st.length {
			return true
		}
	}
	return false
}

// entryChange returns the event that brings an entry from what was sent
// of it (prev, nil for none) to e, whose Out was read from where prev
// ends, or from its last logTail bytes; and whether there is anything to
// send. whole is the URL of the entry's whole output.
func entryChange(e store.LogEntry, m masker, prev *entryState, whole string) (entryEvent, bool) {
	out := m.mask(e.Out)
	ev := entryEvent{
		ID:        e.ID,
		Key:       e.Key,
		Command:   strings.Join(protocol.CommandLines(e.Key, e.Command), "\n"),
		StartTime: e.StartTime.UTC().Format(time.RFC3339),
		ExitCode:  e.ExitCode,
		Duration:  durationMs(e.DurationMs),
	}
	switch {
	case prev == nil || e.From > prev.length:
		// New, or more was appended since than the page keeps: the end.
		ev.Out = &out
		if e.From > 0 {
			ev.Skipped, ev.Whole = e.From, whole
		}
	case out == "" && prev.meta == entryMeta(e):
		return ev, false
	default:
		ev.Append = out
	}
	return ev, true
}

// entryMeta is what of an entry is shown besides its output.
func entryMeta(e store.LogEntry) string {
	exit, dur := "-", "-"
	if e.ExitCode != nil {
		exit = strconv.Itoa(*e.ExitCode)
	}
	if e.DurationMs != nil {
		dur = strconv.Itoa(*e.DurationMs)
	}
	return strings.Join([]string{e.Key, strings.Join(e.Command, "\x00"), exit, dur}, "\x01")
}

func toJobEvent(j store.Job) jobEvent {
	return jobEvent{
		State:           j.State,
		CancelRequested: j.Cancel,
		FailureMessage:  j.FailureMessage,
		StartedAt:       stampPtr(j.StartedAt),
		FinishedAt:      stampPtr(j.FinishedAt),
		Heartbeat:       stampPtr(j.LastHeartbeatAt),
		Worker:          dash(j.WorkerHostname),
		Duration:        span(j.StartedAt, j.FinishedAt),
		Attempts:        attempts(j),
		CanCancel:       canCancel(j),
		CanRetry:        canRetry(j),
		Finished:        finished(j.State),
	}
}

// attempts describes a job's failures and resets.
func attempts(j store.Job) string {
	s := fmt.Sprintf("%d failed of %d allowed", j.NumFailures, j.MaxAttempts)
	if j.NumResets > 0 {
		s += fmt.Sprintf(", reset %d×", j.NumResets)
	}
	return s
}
