package sqlite_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/store"
	"github.com/execd/execd/internal/store/sqlite"
	"github.com/execd/execd/internal/store/storetest"
)

func open(tb testing.TB) store.Store {
	tb.Helper()
	return openPath(tb, filepath.Join(tb.TempDir(), "execd.db"))
}

func openPath(tb testing.TB, path string) store.Store {
	tb.Helper()
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

// TestShared runs the shared-database checks on two stores of one file,
// as a coordinator and a command-line tool would open it. (Wake-ups do not
// cross processes with SQLite: waiters re-check now and then.)
func TestShared(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
		path := filepath.Join(t.TempDir(), "execd.db")
		return openPath(t, path), openPath(t, path)
	})
}

func TestFiles(t *testing.T) {
	storetest.RunFiles(t, func(t *testing.T) store.FileStore { return open(t).(store.FileStore) })
	storetest.RunFilesShared(t, func(t *testing.T) (store.FileStore, store.FileStore) {
		path := filepath.Join(t.TempDir(), "execd.db")
		return openPath(t, path).(store.FileStore), openPath(t, path).(store.FileStore)
	})
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store { return open(b) })
}

// TestReopen checks that migrating is idempotent and that data survives.
func TestReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "execd.db")
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	id, err := s.Enqueue(ctx, "q", store.Spec{RepositoryName: "r"}, 2, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		s, err = sqlite.Open(ctx, path)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		j, err := s.GetJob(ctx, "q", id)
		if err != nil {
			t.Fatalf("GetJob after reopen: %v", err)
		}
		if j.Spec.RepositoryName != "r" || j.MaxAttempts != 2 || !j.QueuedAt.Equal(now) {
			t.Errorf("job after reopen: got %+v, want repository r, 2 attempts, queued at %v (nanoseconds kept)", j, now)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenInvalidPath(t *testing.T) {
	for _, path := range []string{"", "a?b", filepath.Join(t.TempDir(), "missing-dir", "x.db")} {
		if s, err := sqlite.Open(t.Context(), path); err == nil {
			s.Close()
			t.Errorf("Open(%q): got no error, want one", path)
		}
	}
}

// BenchmarkLogRange reads parts of a 256 MiB log stored as 4 MiB appends
// (what our executor sends): its last MiB (a job page), what follows its
// end (a live page's poll when nothing is new), and all of it.
func BenchmarkLogRange(b *testing.B) {
	ctx := b.Context()
	s := open(b)
	now := time.Now()
	id, err := s.Enqueue(ctx, "q", store.Spec{}, 1, now)
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := s.Dequeue(ctx, "q", store.DequeueOptions{ExecutorName: "ex"}, now); err != nil {
		b.Fatal(err)
	}
	entry, err := s.AddLogEntry(ctx, "q", id, "ex", protocol.ExecutionLogEntry{Key: "k", StartTime: now})
	if err != nil {
		b.Fatal(err)
	}
	chunk := strings.Repeat("stdout: ....................................................................\n", 4<<20/80)
	var n int64
	for range 64 {
		if n, err = s.AppendLogOutput(ctx, "q", id, "ex", entry, n, chunk); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name string
		r    store.LogRange
		want int64
	}{
		{"tail=1MiB", store.LogRange{Tail: 1 << 20}, 1 << 20},
		{"nothing-new", store.LogRange{From: map[int]int64{entry: n}}, 0},
		{"all", store.LogRange{}, n},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				es, err := s.LogEntries(ctx, "q", id, bc.r)
				if err != nil || len(es) != 1 || int64(len(es[0].Out)) != bc.want {
					b.Fatalf("LogEntries: %v, want one entry with %d bytes", err, bc.want)
				}
			}
		})
	}
}

func TestLeaser(t *testing.T) {
	storetest.RunLeaser(t, func(t *testing.T) (store.Leaser, store.Leaser) {
		path := filepath.Join(t.TempDir(), "execd.db")
		return openPath(t, path).(store.Leaser), openPath(t, path).(store.Leaser)
	})
}
