package job_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/execd/execd/internal/coordinator"
	"github.com/execd/execd/internal/job"
	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/queueclient"
	"github.com/execd/execd/internal/redact"
	"github.com/execd/execd/internal/store"
)

const (
	execSecret = "executor-secret-0123456789"
	apiToken   = "api-token-0123456789abcdef"
)

// coord is a real coordinator serving on a fixed loopback address, which
// tests can stop and start again.
type coord struct {
	t      *testing.T
	dir    string
	addr   string
	c      *coordinator.Coordinator
	cancel context.CancelFunc
	done   chan struct{}
}

func startCoord(t *testing.T) *coord {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`{"executors.accessToken": %q, "api.accessToken": %q}`, execSecret, apiToken)
	if err := os.WriteFile(filepath.Join(dir, "site-config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &coord{t: t, dir: dir, addr: l.Addr().String()}
	c.serve(l)
	t.Cleanup(c.stop)
	return c
}

func (c *coord) serve(l net.Listener) {
	co, err := coordinator.New(context.Background(), coordinator.Options{DataDir: c.dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.c, c.cancel, c.done = co, cancel, make(chan struct{})
	go func() {
		defer close(c.done)
		_ = co.Serve(ctx, l)
	}()
}

func (c *coord) stop() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	<-c.done
	c.c.Close()
	c.cancel = nil
}

func (c *coord) restart() {
	c.t.Helper()
	l, err := net.Listen("tcp", c.addr)
	if err != nil {
		c.t.Fatal(err)
	}
	c.serve(l)
}

func (c *coord) url() string { return "http://" + c.addr }

// dequeued enqueues a job and dequeues it as executor "ex".
func (c *coord) dequeued(spec store.Spec) (*queueclient.Client, protocol.Job) {
	c.t.Helper()
	if _, err := c.c.Store().Enqueue(context.Background(), "batches", spec, 1, time.Now()); err != nil {
		c.t.Fatal(err)
	}
	client := &queueclient.Client{BaseURL: c.url(), Secret: execSecret, ExecutorName: "ex"}
	j, ok, err := client.Dequeue(context.Background(), []string{"batches"}, queueclient.DequeueOptions{Version: "5.0.0"})
	if err != nil || !ok {
		c.t.Fatalf("dequeue: %v %v", ok, err)
	}
	return client, j
}

func (c *coord) entries(id int) []store.LogEntry {
	c.t.Helper()
	es, err := c.c.Store().LogEntries(context.Background(), "batches", id, store.LogRange{})
	if err != nil {
		c.t.Fatal(err)
	}
	return es
}

func isGone(err error) bool { return errors.Is(err, queueclient.ErrUnknownJob) }

func TestStreamer_RedactsAndPrefixes(t *testing.T) {
	c := startCoord(t)
	client, j := c.dequeued(store.Spec{})
	secret := "s3cr3t-value-42"
	s := job.NewStreamer(client, j, redact.New(map[string]string{secret: "[REDACTED]"}), job.StreamerOptions{Interval: 20 * time.Millisecond, IsUnknownJob: isGone})
	e := s.Start(context.Background(), "step.docker.0", []string{"echo", secret})
	fmt.Fprint(e.Stdout(), "hello s3cr")
	fmt.Fprint(e.Stdout(), "3t-value-42 world\npartial")
	fmt.Fprint(e.Stderr(), "warning: "+secret[:4])
	fmt.Fprint(e.Stderr(), secret[4:]+"\n")

	// The entry is live before it finishes.
	deadline := time.Now().Add(5 * time.Second)
	for {
		es := c.entries(j.ID)
		if len(es) == 1 && strings.Contains(es[0].Out, "world") {
			if es[0].ExitCode != nil {
				t.Fatal("entry has an exit code before Finish")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no live update of the entry; entries: %+v", es)
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.Finish(3)
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	got := c.entries(j.ID)[0]
	want := "stdout: hello [REDACTED] world\nstderr: warning: [REDACTED]\nstdout: partial\n"
	if got.Out != want {
		t.Errorf("out = %q, want %q", got.Out, want)
	}
	if got.ExitCode == nil || *got.ExitCode != 3 || got.DurationMs == nil {
		t.Errorf("exit code %v, duration %v; want 3 and a duration", got.ExitCode, got.DurationMs)
	}
	if strings.Join(got.Command, " ") != "echo [REDACTED]" {
		t.Errorf("command = %q, want the secret redacted", got.Command)
	}
}

func TestStreamer_OutputCap(t *testing.T) {
	c := startCoord(t)
	client, j := c.dequeued(store.Spec{})
	s := job.NewStreamer(client, j, redact.New(nil), job.StreamerOptions{MaxOutput: 100, IsUnknownJob: isGone})
	e := s.Start(context.Background(), "step.docker.0", []string{"yes"})
	for range 50 {
		fmt.Fprintln(e.Stdout(), "0123456789")
	}
	e.Finish(0)
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	out := c.entries(j.ID)[0].Out
	head, note, ok := strings.Cut(out, "execd: output truncated: ")
	if !ok || len(head) > 100 || !strings.HasPrefix(note, fmt.Sprintf("%d bytes dropped", 50*len("stdout: 0123456789\n")-len(head))) {
		t.Errorf("out = %q, want at most 100 bytes and a note counting what was dropped", out)
	}
}

func TestStreamer_CoordinatorDownDelaysNeverLoses(t *testing.T) {
	c := startCoord(t)
	client, j := c.dequeued(store.Spec{})
	s := job.NewStreamer(client, j, redact.New(nil), job.StreamerOptions{Interval: 20 * time.Millisecond, IsUnknownJob: isGone})
	first := s.Start(context.Background(), "step.docker.0", []string{"a"})
	fmt.Fprintln(first.Stdout(), "before the outage")
	time.Sleep(100 * time.Millisecond)
	c.stop()

	fmt.Fprintln(first.Stdout(), "during the outage")
	first.Finish(0)
	second := s.Start(context.Background(), "step.docker.1", []string{"b"})
	for i := range 100 {
		fmt.Fprintf(second.Stdout(), "line %d\n", i)
	}
	second.Finish(0)
	time.Sleep(500 * time.Millisecond) // a few failed attempts
	c.restart()
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	es := c.entries(j.ID)
	if len(es) != 2 {
		t.Fatalf("%d entries, want 2: %+v", len(es), es)
	}
	if es[0].Out != "stdout: before the outage\nstdout: during the outage\n" || es[0].ExitCode == nil {
		t.Errorf("first entry = %q (exit %v)", es[0].Out, es[0].ExitCode)
	}
	if n := strings.Count(es[1].Out, "\n"); n != 100 || !strings.Contains(es[1].Out, "stdout: line 99\n") || es[1].ExitCode == nil {
		t.Errorf("second entry has %d lines (exit %v), want all 100", n, es[1].ExitCode)
	}
}

func TestStreamer_EntriesKeepTheirOrder(t *testing.T) {
	c := startCoord(t)
	client, j := c.dequeued(store.Spec{})
	s := job.NewStreamer(client, j, redact.New(nil), job.StreamerOptions{IsUnknownJob: isGone})
	const n = 30
	for i := range n {
		e := s.Start(context.Background(), fmt.Sprintf("step.%02d", i), []string{"true"})
		e.Finish(0)
	}
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	es := c.entries(j.ID)
	if len(es) != n {
		t.Fatalf("%d entries, want %d", len(es), n)
	}
	for i, e := range es {
		if want := fmt.Sprintf("step.%02d", i); e.Key != want || e.ID != i+1 {
			t.Errorf("entry %d = id %d key %s, want id %d key %s", i, e.ID, e.Key, i+1, want)
		}
	}
}

// TestStreamer_AppendsBigOutput streams many MiB through the append form
// (several appends of at most maxAppend each) and finds it stored whole,
// in order, with the exit code.
func TestStreamer_AppendsBigOutput(t *testing.T) {
	c := startCoord(t)
	client, j := c.dequeued(store.Spec{})
	s := job.NewStreamer(client, j, redact.New(map[string]string{"hunter2": "REDACTED"}), job.StreamerOptions{Interval: 50 * time.Millisecond, MaxOutput: 64 << 20, IsUnknownJob: isGone})
	e := s.Start(t.Context(), "step.0", []string{"spew"})
	var want strings.Builder
	const lines = 200_000 // about 18 MiB with prefixes
	var chunk []byte
	for i := range lines {
		line := fmt.Sprintf("%08d lorem ipsum dolor sit amet, consectetur adipiscing elit, hunter2 ö\n", i)
		want.WriteString("stdout: " + strings.Replace(line, "hunter2", "REDACTED", 1))
		chunk = append(chunk, line...)
		if len(chunk) > 64<<10 || i == lines-1 {
			if _, err := e.Stdout().Write(chunk); err != nil {
				t.Fatal(err)
			}
			chunk = chunk[:0]
		}
	}
	e.Finish(3)
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	es := c.entries(j.ID)
	if len(es) != 1 {
		t.Fatalf("got %d entries, want 1", len(es))
	}
	if es[0].Out != want.String() {
		t.Fatalf("stored output: %d bytes, want %d (the same)", len(es[0].Out), want.Len())
	}
	if held := job.HeldBytes(e); held > 1<<20 {
		t.Errorf("the executor still holds %d bytes of the stored output, want at most its last MiB", held)
	}
	if es[0].ExitCode == nil || *es[0].ExitCode != 3 || es[0].DurationMs == nil {
		t.Errorf("exit code %v, duration %v: want 3 and a duration", es[0].ExitCode, es[0].DurationMs)
	}
}

// noAppendClient is a coordinator without the append route.
type noAppendClient struct{ *queueclient.Client }

func (c noAppendClient) AppendLogEntry(context.Context, protocol.Job, int, int64, []byte, *int, *int) (int64, error) {
	return 0, queueclient.ErrAppendUnsupported
}

func TestStreamer_FallsBackToWholeUpdates(t *testing.T) {
	c := startCoord(t)
	client, j := c.dequeued(store.Spec{})
	s := job.NewStreamer(noAppendClient{client}, j, redact.New(nil), job.StreamerOptions{Interval: 10 * time.Millisecond, IsUnknownJob: isGone})
	e := s.Start(t.Context(), "step.0", []string{"echo"})
	fmt.Fprintf(e.Stdout(), "one\n")
	time.Sleep(50 * time.Millisecond)
	fmt.Fprintf(e.Stdout(), "two\n")
	e.Finish(0)
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	if es := c.entries(j.ID); len(es) != 1 || es[0].Out != "stdout: one\nstdout: two\n" || es[0].ExitCode == nil {
		t.Fatalf("entries: %+v", es)
	}
}

func TestStreamer_OutputIsUTF8(t *testing.T) {
	long := strings.Repeat("é", 40_000) // 80,000 bytes: broken at 64 KiB, on a character
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"invalid bytes", []string{"a\xffb\xc3\n"}, "stdout: a\uFFFDb\uFFFD\n"},
		{"character split between writes", []string{"x\xc3", "\xb6y\n"}, "stdout: xöy\n"},
		{"character split at the end", []string{"z\xe2\x82"}, "stdout: z\uFFFD\n"},
		{"long line", []string{long[:65537], long[65537:] + "\n"}, "stdout: " + long[:65536] + "\nstdout: " + long[65536:] + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := startCoord(t)
			client, j := c.dequeued(store.Spec{})
			s := job.NewStreamer(client, j, redact.New(nil), job.StreamerOptions{Interval: 10 * time.Millisecond, IsUnknownJob: isGone})
			e := s.Start(t.Context(), "step.0", []string{"spew"})
			for _, w := range tt.writes {
				if _, err := e.Stdout().Write([]byte(w)); err != nil {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond) // let an append go between writes
			}
			e.Finish(0)
			if err := s.Wait(); err != nil {
				t.Fatal(err)
			}
			es := c.entries(j.ID)
			if len(es) != 1 {
				t.Fatalf("%d entries, want 1", len(es))
			}
			if got := es[0].Out; got != tt.want {
				if len(got) > 100 {
					t.Fatalf("output: %d bytes (%d lines), want %d (%d lines)", len(got), strings.Count(got, "\n"), len(tt.want), strings.Count(tt.want, "\n"))
				}
				t.Fatalf("output %q, want %q", got, tt.want)
			}
		})
	}
}

// losingClient is a coordinator, in memory, that loses the end of an
// entry's stored output once (as a database restored from a backup
// would), after it has stored lose bytes.
type losingClient struct {
	mu      sync.Mutex
	out     []byte
	lose    int
	lost    bool
	updates int
}

func (c *losingClient) AddLogEntry(_ context.Context, _ protocol.Job, e protocol.ExecutionLogEntry) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out = []byte(e.Out)
	return 1, nil
}

func (c *losingClient) UpdateLogEntry(_ context.Context, _ protocol.Job, _ int, e protocol.ExecutionLogEntry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out = []byte(e.Out)
	c.updates++
	return nil
}

func (c *losingClient) AppendLogEntry(_ context.Context, _ protocol.Job, _ int, offset int64, out []byte, _, _ *int) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.lost && len(c.out) >= c.lose {
		c.out, c.lost = c.out[:100], true
	}
	if offset != int64(len(c.out)) {
		return int64(len(c.out)), &queueclient.OffsetMismatchError{Length: int64(len(c.out))}
	}
	c.out = append(c.out, out...)
	return int64(len(c.out)), nil
}

// TestStreamer_CoordinatorLostStoredOutput: the executor lets go of output
// the coordinator has stored; if the coordinator then loses it, the entry
// says so and the rest of the output follows, none of it twice.
func TestStreamer_CoordinatorLostStoredOutput(t *testing.T) {
	client := &losingClient{lose: 3 << 20}
	s := job.NewStreamer(client, protocol.Job{ID: 1}, redact.New(nil), job.StreamerOptions{Interval: 5 * time.Millisecond, MaxOutput: 64 << 20})
	e := s.Start(t.Context(), "step.0", []string{"spew"})
	var all strings.Builder
	line := strings.Repeat("x", 99) + "\n"
	for i := range 80_000 { // 8 MB, in writes the streamer sends as they come
		fmt.Fprintf(&all, "stdout: %s", line)
		if _, err := e.Stdout().Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
		if i%10_000 == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	e.Finish(0)
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	got := string(client.out)
	note, rest, ok := strings.Cut(got, "\n")
	if !ok || !strings.HasPrefix(note, "execd: the coordinator lost the first ") || client.updates != 1 {
		t.Fatalf("stored output starts %q after %d updates; want a line saying the start was lost, sent once", got[:min(len(got), 120)], client.updates)
	}
	var lost int
	fmt.Sscanf(strings.TrimPrefix(note, "execd: the coordinator lost the first "), "%d", &lost)
	if lost <= 0 || lost%(1<<20) != 0 || rest != all.String()[lost:] {
		t.Errorf("after the note: %d bytes, want the output from byte %d (%d bytes), once", len(rest), lost, all.Len()-lost)
	}
}
