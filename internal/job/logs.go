package job

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/redact"
)

// LogClient is the part of the coordinator that stores log entries.
type LogClient interface {
	AddLogEntry(ctx context.Context, job protocol.Job, entry protocol.ExecutionLogEntry) (int, error)
	UpdateLogEntry(ctx context.Context, job protocol.Job, id int, entry protocol.ExecutionLogEntry) error
}

// LogAppender is a LogClient that can also append to an entry's output
// (our coordinator's appendExecutionLogEntry): offset is the output's
// length the coordinator last acknowledged; the answer is the new length.
// An error with a ServerLength() int64 method means the offset was not the
// stored length; one with AppendUnsupported() bool true means the
// coordinator lacks the route (stock Sourcegraph).
type LogAppender interface {
	AppendLogEntry(ctx context.Context, job protocol.Job, id int, offset int64, out []byte, exitCode, durationMs *int) (int64, error)
}

// maxAppend bounds the output one append carries.
const maxAppend = 4 << 20

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
	// noAppend is set once the coordinator is known to lack appends; the
	// rest of the job sends whole outputs.
	noAppend atomic.Bool
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
	out      output // valid UTF-8, always
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
		e.out.Write(fmt.Appendf(nil, "execd: output truncated: %d bytes dropped after the first %d (raise EXECUTOR_MAX_STEP_OUTPUT to keep more)\n", e.dropped, e.s.maxOut))
	}
	e.exitCode, e.duration = &exitCode, &d
	e.version++
	e.mu.Unlock()
	close(e.finished)
}

// append adds p, which ends on a character boundary, to the output.
// Bytes that are not UTF-8 become U+FFFD here, as JSON and the databases
// would store them, so that the executor's offsets are the coordinator's.
func (e *Entry) append(p []byte) {
	if !utf8.Valid(p) {
		p = bytes.ToValidUTF8(p, []byte("\uFFFD"))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	room := e.s.maxOut - e.out.Len()
	if room < len(p) {
		cut := max(room, 0)
		for cut > 0 && !utf8.RuneStart(p[cut]) {
			cut--
		}
		e.dropped += int64(len(p) - cut)
		p = p[:cut]
	}
	if len(p) > 0 {
		e.out.Write(p)
		e.version++
	}
}

// snapshot returns the entry as a whole update sends it, and shift, the
// coordinator's offset of a byte of the output minus ours once it stores
// that update. Its Out is the whole output, or, when the output's start
// was released (the coordinator had stored it, then lost it), a line
// saying so and the rest.
func (e *Entry) snapshot() (entry protocol.ExecutionLogEntry, version int, final bool, shift int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.out.Held()
	if base := e.out.Base(); base > 0 {
		note := fmt.Sprintf("execd: the coordinator lost the first %d bytes of this output after it had stored them; they cannot be sent again\n", base)
		out = note + out
		shift = int64(len(note) - base)
	}
	return protocol.ExecutionLogEntry{
		Key: e.key, Command: e.command, StartTime: e.start,
		ExitCode: e.exitCode, DurationMs: e.duration, Out: out,
	}, e.version, e.exitCode != nil, shift
}

// release lets go of output before offset, which the coordinator stored.
func (e *Entry) release(offset int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.out.Release(int(offset))
}

// sync adds the entry, then updates it while it changes, and a last time
// after Finish, retrying failed calls with backoff until they land, the
// coordinator disowns the job, or ctx ends. When the client can append,
// updates carry only the output since the acknowledged length.
func (e *Entry) sync(ctx context.Context) {
	defer e.markAdded()
	if e.prev != nil {
		select {
		case <-e.prev.added:
		case <-ctx.Done():
			return
		}
	}
	appender, _ := e.s.client.(LogAppender)
	// whole: this entry sends its whole output (the coordinator cannot
	// append).
	whole := appender == nil
	id, synced := 0, -1
	var (
		acked int64 // output length the coordinator holds (append form)
		shift int64 // the coordinator's offsets minus ours (see snapshot)
	)
	backoff := 250 * time.Millisecond
	tick := time.NewTicker(e.s.interval)
	defer tick.Stop()
	for {
		if !whole && e.s.noAppend.Load() {
			whole = true
		}
		var (
			err  error
			done bool // nothing left to send for now
			fin  bool // the entry is finished and all of it sent
		)
		if id == 0 || whole {
			entry, version, final, sh := e.snapshot()
			if version == synced && id != 0 {
				done, fin = true, final
			} else {
				if id == 0 {
					id, err = e.s.client.AddLogEntry(ctx, e.s.job, entry)
				} else {
					err = e.s.client.UpdateLogEntry(ctx, e.s.job, id, entry)
				}
				if err == nil {
					synced, acked, shift = version, int64(len(entry.Out)), sh
					e.markAdded()
					done, fin = true, final
				}
			}
		} else {
			chunk, exitCode, duration, last, pending := e.nextChunk(acked - shift)
			switch {
			case !pending:
				done, fin = true, exitCode != nil
			default:
				var n int64
				n, err = appender.AppendLogEntry(ctx, e.s.job, id, acked, chunk, exitCode, duration)
				var mismatch interface{ ServerLength() int64 }
				var unsupported interface{ AppendUnsupported() bool }
				switch {
				case err == nil:
					acked = n
					done, fin = last, last
					// Stored: appends never need it again.
					e.release(acked - shift)
				case errors.As(err, &unsupported) && unsupported.AppendUnsupported():
					e.s.noAppend.Store(true)
					whole, synced = true, -1
					continue
				case errors.As(err, &mismatch):
					// Resync: go on from the coordinator's length if we
					// hold the output from there, else send what we hold
					// as a whole update once.
					if l := mismatch.ServerLength(); e.holds(l - shift) {
						acked = l
					} else {
						synced = -1
						entry, version, final, sh := e.snapshot()
						if err = e.s.client.UpdateLogEntry(ctx, e.s.job, id, entry); err == nil {
							synced, acked, shift = version, int64(len(entry.Out)), sh
							done, fin = final, final
						}
					}
					if err == nil {
						backoff = 250 * time.Millisecond
						if fin {
							return
						}
						continue
					}
				}
			}
		}
		switch {
		case err == nil:
			backoff = 250 * time.Millisecond
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
		if fin {
			return
		}
		if !done {
			continue // more output is ready to append
		}
		select {
		case <-tick.C:
		case <-e.finished:
		case <-ctx.Done():
			return
		}
	}
}

// nextChunk returns the output after offset, up to maxAppend bytes ending
// on a character boundary, and, when that is the rest of a finished
// entry, its exit code and duration (last). pending is false when there
// is nothing to send: no new output, and the entry is not finished.
func (e *Entry) nextChunk(offset int64) (chunk []byte, exitCode, duration *int, last, pending bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.out.Len()
	from := max(int(min(offset, int64(n))), e.out.Base()) // never below Base: only stored output is released
	to := n
	if to-from > maxAppend {
		to = from + maxAppend
		// Do not split a character between appends.
		for to > from && !utf8.RuneStart(e.out.At(to)) {
			to--
		}
	}
	last = e.exitCode != nil && to == n
	if last {
		exitCode, duration = e.exitCode, e.duration
	}
	if to == from && !last {
		return nil, e.exitCode, nil, false, false
	}
	return e.out.AppendRange(nil, from, to), exitCode, duration, last, true
}

// holds reports whether the output from offset on is held.
func (e *Entry) holds(offset int64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return offset >= int64(e.out.Base()) && offset <= int64(e.out.Len())
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
				// Break the long line on a character boundary; the start of
				// a character cut off here waits for its rest.
				cut := len(l.partial)
				if k := lastRuneStart(l.partial); !utf8.FullRune(l.partial[k:]) {
					cut = k
				}
				out = append(append(append(out, l.prefix...), l.partial[:cut]...), '\n')
				l.partial = append(l.partial[:0], l.partial[cut:]...)
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

// lastRuneStart is the index of the last byte of p that starts a
// character, looking back at most UTFMax-1 bytes.
func lastRuneStart(p []byte) int {
	i := len(p) - 1
	for i > 0 && i > len(p)-utf8.UTFMax && !utf8.RuneStart(p[i]) {
		i--
	}
	return max(i, 0)
}

func (l *lineWriter) flush() {
	if len(l.partial) > 0 {
		l.entry.append(append(append(append([]byte{}, l.prefix...), l.partial...), '\n'))
		l.partial = l.partial[:0]
	}
}
