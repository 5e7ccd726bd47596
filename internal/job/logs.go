package job

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/redact"
)

// LogClient is the part of the coordinator that stores log entries.
type LogClient interface {
	AddLogEntry(ctx context.Context, job protocol.Job, entry protocol.ExecutionLogEntry) (int, error)
	UpdateLogEntry(ctx context.Context, job protocol.Job, id int, entry protocol.ExecutionLogEntry) error
}

// Streamer streams a job's log entries to the coordinator: each entry is
// added when its command starts, updated about every Interval while its
// output changes, and updated a last time, with retries until it lands,
// when it finishes. A coordinator that is down delays the entries; it
// never loses them.
type Streamer struct {
	client   LogClient
	job      protocol.Job
	replacer *redact.Replacer
	logger   *slog.Logger
	// Interval between updates of a running entry.
	interval time.Duration
	// maxOut caps the output kept per entry; the rest is counted and dropped.
	maxOut int
	// isGone reports whether an error means the coordinator disowned the job.
	isGone func(error) bool

	wg      sync.WaitGroup
	mu      sync.Mutex
	gone    bool
	entries []*Entry
}

// StreamerOptions configure a Streamer.
type StreamerOptions struct {
	Interval     time.Duration // default 1s
	MaxOutput    int           // default 4 MiB
	IsUnknownJob func(error) bool
	Logger       *slog.Logger
}

// NewStreamer returns a Streamer for job whose output is redacted by r.
func NewStreamer(client LogClient, job protocol.Job, r *redact.Replacer, opts StreamerOptions) *Streamer {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.MaxOutput <= 0 {
		opts.MaxOutput = 4 << 20
	}
	if opts.IsUnknownJob == nil {
		opts.IsUnknownJob = func(error) bool { return false }
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Streamer{client: client, job: job, replacer: r, logger: opts.Logger, interval: opts.Interval, maxOut: opts.MaxOutput, isGone: opts.IsUnknownJob}
}

// Entry is one log entry being written.
type Entry struct {
	s        *Streamer
	key      string
	command  []string
	start    time.Time
	stdout   *streamWriter
	stderr   *streamWriter
	finished chan struct{}
	// added closes once the entry has its id (or never will); the next
	// entry waits for it, so entry ids follow the order commands started.
	added chan struct{}
	prev  *Entry

	mu       sync.Mutex
	out      bytes.Buffer
	dropped  int64
	exitCode *int
	duration *int
	version  int // bumped on every change
}

// Start begins an entry for a command. The command line is redacted too.
func (s *Streamer) Start(ctx context.Context, key string, command []string) *Entry {
	redacted := make([]string, len(command))
	for i, c := range command {
		redacted[i] = s.replacer.String(c)
	}
	e := &Entry{s: s, key: key, command: redacted, start: time.Now().UTC(), finished: make(chan struct{}), added: make(chan struct{})}
	e.stdout = newStreamWriter(e, "stdout: ")
	e.stderr = newStreamWriter(e, "stderr: ")
	s.mu.Lock()
	if n := len(s.entries); n > 0 {
		e.prev = s.entries[n-1]
	}
	s.entries = append(s.entries, e)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		e.sync(ctx)
	}()
	return e
}

// Stdout is where the command's standard output goes.
func (e *Entry) Stdout() io.Writer { return e.stdout }

// Stderr is where the command's standard error goes.
func (e *Entry) Stderr() io.Writer { return e.stderr }

// Printf adds a line of the executor's own to the entry's output.
func (e *Entry) Printf(format string, args ...any) {
	e.append([]byte(e.s.replacer.String(fmt.Sprintf(format, args...))))
}

// Finish ends the entry with the command's exit code. Output still held
// back (a partial line, a possible secret prefix) is released first.
func (e *Entry) Finish(exitCode int) {
	e.stdout.flush()
	e.stderr.flush()
	d := int(time.Since(e.start).Milliseconds())
	e.mu.Lock()
	if e.dropped > 0 {
		fmt.Fprintf(&e.out, "execd: output truncated: %d bytes dropped after the first %d (raise EXECUTOR_MAX_STEP_OUTPUT to keep more)\n", e.dropped, e.s.maxOut)
	}
	e.exitCode, e.duration = &exitCode, &d
	e.version++
	e.mu.Unlock()
	close(e.finished)
}

func (e *Entry) append(p []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	room := e.s.maxOut - e.out.Len()
	if room < len(p) {
		e.dropped += int64(len(p) - max(room, 0))
		p = p[:max(room, 0)]
	}
	if len(p) > 0 {
		e.out.Write(p)
		e.version++
	}
}

func (e *Entry) snapshot() (protocol.ExecutionLogEntry, int, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return protocol.ExecutionLogEntry{
		Key: e.key, Command: e.command, StartTime: e.start,
		ExitCode: e.exitCode, DurationMs: e.duration, Out: e.out.String(),
	}, e.version, e.exitCode != nil
}

// sync adds the entry, then updates it while it changes, and a last time
// after Finish, retrying failed calls with backoff until they land, the
// coordinator disowns the job, or ctx ends.
func (e *Entry) sync(ctx context.Context) {
	defer e.markAdded()
	if e.prev != nil {
		select {
		case <-e.prev.added:
		case <-ctx.Done():
			return
		}
	}
	id, synced := 0, -1
	backoff := 250 * time.Millisecond
	tick := time.NewTicker(e.s.interval)
	defer tick.Stop()
	for {
		entry, version, final := e.snapshot()
		if version != synced || id == 0 {
			var err error
			if id == 0 {
				id, err = e.s.client.AddLogEntry(ctx, e.s.job, entry)
			} else {
				err = e.s.client.UpdateLogEntry(ctx, e.s.job, id, entry)
			}
			switch {
			case err == nil:
				synced, backoff = version, 250*time.Millisecond
				e.markAdded()
			case e.s.isGone(err) || ctx.Err() != nil:
				e.s.markGone(err)
				return
			default:
				e.s.logger.Warn("log entry not sent yet; retrying", "key", e.key, "err", err, "retry_in", backoff)
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return
				}
				backoff = min(backoff*2, 5*time.Second)
				continue
			}
		}
		if final && synced == version {
			return
		}
		select {
		case <-tick.C:
		case <-e.finished:
		case <-ctx.Done():
			return
		}
	}
}

func (e *Entry) markAdded() {
	select {
	case <-e.added:
	default:
		close(e.added)
	}
}

func (s *Streamer) markGone(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.gone && err != nil {
		s.logger.Warn("the coordinator no longer knows this job; its log stops here", "job", s.job.UID(), "err", err)
	}
	s.gone = true
}

// Wait blocks until every finished entry has reached the coordinator (or
// the coordinator disowned the job, or ctx passed to Start ended). It
// returns an error if the entries could not all be delivered.
func (s *Streamer) Wait() error {
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return errors.New("log entries not delivered: the coordinator no longer knows the job")
	}
	return nil
}

// streamWriter turns one output stream into redacted, prefixed lines.
type streamWriter struct {
	redactor *redact.Writer
	lines    *lineWriter
	mu       sync.Mutex
}

func newStreamWriter(e *Entry, prefix string) *streamWriter {
	lw := &lineWriter{entry: e, prefix: []byte(prefix)}
	return &streamWriter{lines: lw, redactor: redact.NewWriter(lw, e.s.replacer)}
}

func (w *streamWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.redactor.Write(p)
}

func (w *streamWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.redactor.Flush()
	w.lines.flush()
}

// lineWriter prefixes each complete line; a partial line waits for its
// end (or Finish), up to maxLine bytes.
type lineWriter struct {
	entry   *Entry
	prefix  []byte
	partial []byte
}

const maxLine = 64 << 10

func (l *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	var out []byte
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.partial = append(l.partial, p...)
			if len(l.partial) >= maxLine {
				out = append(append(append(out, l.prefix...), l.partial...), '\n')
				l.partial = l.partial[:0]
			}
			break
		}
		out = append(append(append(out, l.prefix...), l.partial...), p[:i+1]...)
		l.partial = l.partial[:0]
		p = p[i+1:]
	}
	if len(out) > 0 {
		l.entry.append(out)
	}
	return n, nil
}

func (l *lineWriter) flush() {
	if len(l.partial) > 0 {
		l.entry.append(append(append(append([]byte{}, l.prefix...), l.partial...), '\n'))
		l.partial = l.partial[:0]
	}
}
