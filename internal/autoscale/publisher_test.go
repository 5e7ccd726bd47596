package autoscale_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/execd/execd/internal/autoscale"
	"github.com/execd/execd/internal/store"
	"github.com/execd/execd/internal/store/sqlite"
)

// sink is a [autoscale.Sink] that records what it is given and answers
// with the errors queued in fail.
type sink struct {
	name string
	mu   sync.Mutex
	got  [][]autoscale.Sample
	fail []error
}

func (s *sink) Name() string { return s.name }

func (s *sink) Publish(ctx context.Context, samples []autoscale.Sample) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.fail) > 0 {
		err := s.fail[0]
		s.fail = s.fail[1:]
		return err
	}
	s.got = append(s.got, samples)
	return nil
}

func (s *sink) calls() [][]autoscale.Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]autoscale.Sample(nil), s.got...)
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func openStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newPublisher(t *testing.T, st *sqlite.Store, logs *syncBuffer, holder string, sinks ...autoscale.Sink) *autoscale.Publisher {
	t.Helper()
	return newPublisherAt(t, st, logs, holder, time.Now, sinks...)
}

func newPublisherAt(t *testing.T, st *sqlite.Store, logs *syncBuffer, holder string, now func() time.Time, sinks ...autoscale.Sink) *autoscale.Publisher {
	t.Helper()
	p, err := autoscale.New(autoscale.Options{
		Now:         now,
		Sinks:       sinks,
		Allocations: autoscale.Allocations{"batches": {"aws": 0.5, "gcp": 0.5}},
		Source:      st,
		Queues:      func() []string { return []string{"batches", "codeintel"} },
		Leaser:      st,
		Holder:      holder,
		Interval:    time.Second,
		Logger:      slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPublisher_Tick(t *testing.T) {
	ctx := t.Context()
	st := openStore(t, filepath.Join(t.TempDir(), "execd.db"))
	now := time.Now()
	for range 3 {
		if _, err := st.Enqueue(ctx, "batches", store.Spec{}, 1, now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Enqueue(ctx, "codeintel", store.Spec{}, 1, now); err != nil {
		t.Fatal(err)
	}
	// A multi-queue executor takes one codeintel job: processing counts.
	if _, _, err := st.Heartbeat(ctx, store.Executor{Name: "multi", Queues: []string{"codeintel", "batches"}}, "", nil, now); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := st.Dequeue(ctx, "codeintel", store.DequeueOptions{ExecutorName: "multi", TokenHash: store.HashToken("t")}, now); err != nil || !ok {
		t.Fatalf("Dequeue = %v, %v", ok, err)
	}
	aws, gcp := &sink{name: "aws"}, &sink{name: "gcp"}
	logs := &syncBuffer{}
	newPublisher(t, st, logs, "a", aws, gcp).Tick(ctx)

	// batches: 3 jobs, half to each cloud, rounded up; codeintel: 1 whole.
	for _, tt := range []struct {
		sink *sink
		want []autoscale.Sample
	}{
		{aws, []autoscale.Sample{{"batches", 2}, {"batches_codeintel", 3}, {"codeintel", 1}}},
		{gcp, []autoscale.Sample{{"batches", 2}, {"batches_codeintel", 3}, {"codeintel", 1}}},
	} {
		if got := tt.sink.calls(); len(got) != 1 || !reflect.DeepEqual(got[0], tt.want) {
			t.Errorf("%s sink got %v, want one call with %v", tt.sink.name, got, tt.want)
		}
	}
}

// TestPublisher_FailingSink checks that a failing sink is logged with the
// reason, does not hold up the other sink, and is tried again at the next
// tick.
func TestPublisher_FailingSink(t *testing.T) {
	ctx := t.Context()
	st := openStore(t, filepath.Join(t.TempDir(), "execd.db"))
	aws := &sink{name: "aws", fail: []error{errors.New("operation error CloudWatch: PutMetricData, StatusCode: 500")}}
	gcp := &sink{name: "gcp"}
	logs := &syncBuffer{}
	p := newPublisher(t, st, logs, "a", aws, gcp)
	p.Tick(ctx)
	if got := len(aws.calls()); got != 0 {
		t.Errorf("failing sink recorded %d calls, want 0", got)
	}
	if got := len(gcp.calls()); got != 1 {
		t.Errorf("other sink got %d calls, want 1", got)
	}
	if !strings.Contains(logs.String(), "retrying at the next tick") || !strings.Contains(logs.String(), "sink=aws") || !strings.Contains(logs.String(), "StatusCode: 500") {
		t.Errorf("log lacks the failure, its sink and its reason:\n%s", logs)
	}
	p.Tick(ctx)
	if got := len(aws.calls()); got != 1 {
		t.Errorf("sink failing once got %d calls after the next tick, want 1", got)
	}
}

// TestPublisher_OneLeader runs two publishers on one database: one
// publishes; once it stops, the other takes over at its next tick.
func TestPublisher_OneLeader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "execd.db")
	first, second := &sink{name: "aws"}, &sink{name: "aws"}
	logs := &syncBuffer{}
	a := newPublisher(t, openStore(t, path), logs, "coord-a", first)
	b := newPublisher(t, openStore(t, path), logs, "coord-b", second)

	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	waitFor(t, func() bool { return len(first.calls()) > 0 }, "the first publisher to publish")
	for range 3 {
		b.Tick(t.Context())
	}
	if n := len(second.calls()); n != 0 {
		t.Fatalf("second publisher published %d times while the first held the lease", n)
	}
	stop()
	<-done // releases the lease
	b.Tick(t.Context())
	if n := len(second.calls()); n != 1 {
		t.Errorf("second publisher published %d times after the first stopped, want 1", n)
	}
	if !strings.Contains(logs.String(), "holder=coord-b") || !strings.Contains(logs.String(), "stands by") {
		t.Errorf("log does not say that coord-b stood by:\n%s", logs)
	}
}

// TestPublisher_TakeOverAfterExpiry: a publisher that dies without
// releasing the lease is replaced once the lease (three intervals) expires.
func TestPublisher_TakeOverAfterExpiry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "execd.db")
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := t0
	now := func() time.Time { return clock }
	first, second := &sink{name: "aws"}, &sink{name: "aws"}
	logs := &syncBuffer{}
	a := newPublisherAt(t, openStore(t, path), logs, "coord-a", now, first)
	b := newPublisherAt(t, openStore(t, path), logs, "coord-b", now, second)
	a.Tick(t.Context()) // a leads; then it dies (never ticks again)
	for _, d := range []time.Duration{time.Second, 2 * time.Second, 2999 * time.Millisecond} {
		clock = t0.Add(d)
		b.Tick(t.Context())
		if n := len(second.calls()); n != 0 {
			t.Fatalf("b published at t0+%v, before a's lease (3 s) expired", d)
		}
	}
	clock = t0.Add(3 * time.Second)
	b.Tick(t.Context())
	if n := len(first.calls()); n != 1 {
		t.Errorf("a published %d times, want 1", n)
	}
	if n := len(second.calls()); n != 1 {
		t.Errorf("b published %d times once a's lease expired, want 1", n)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNew_NoSink(t *testing.T) {
	if _, err := autoscale.New(autoscale.Options{}); err == nil {
		t.Error("New without sinks succeeded")
	}
}
