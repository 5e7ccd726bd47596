package phase_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/execd/execd/internal/phase"
)

func TestTrace(t *testing.T) {
	var got []phase.Span
	calls := 0
	trace, release := phase.Begin(func(tr *phase.Trace) {
		calls++
		got = tr.Spans()
	})
	ctx := phase.NewContext(context.Background(), trace)
	phase.Start(ctx, phase.Pull)()
	trace.Add(phase.ContainerCreate, 2*time.Millisecond)
	trace.Add(phase.ContainerCreate, 3*time.Millisecond)
	hold := trace.Hold()
	release()
	release() // a second call does nothing
	if calls != 0 {
		t.Fatal("done called while the trace was held")
	}
	trace.Add(phase.Teardown, time.Millisecond)
	hold()
	if calls != 1 {
		t.Fatalf("done called %d times, want once", calls)
	}
	want := []phase.Span{{Name: phase.Pull, Count: 1}, {Name: phase.ContainerCreate, Duration: 5 * time.Millisecond, Count: 2}, {Name: phase.Teardown, Duration: time.Millisecond, Count: 1}}
	if len(got) != len(want) {
		t.Fatalf("spans = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Name != want[i].Name || got[i].Count != want[i].Count || (want[i].Duration != 0 && got[i].Duration != want[i].Duration) {
			t.Errorf("span %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("job phases", "phases", trace)
	if line := b.String(); !strings.Contains(line, "phases.container.create=5ms") || !strings.Contains(line, "phases.total=") {
		t.Errorf("log line %q lacks the phases", line)
	}
}

// TestNoTrace: timing a phase without a trace in the context does
// nothing, and a nil trace's methods are safe.
func TestNoTrace(t *testing.T) {
	phase.Start(context.Background(), phase.Step)()
	var tr *phase.Trace
	tr.Add(phase.Step, time.Second)
	tr.Hold()()
	if tr.Spans() != nil || phase.FromContext(context.Background()) != nil {
		t.Error("a nil trace has spans")
	}
}
