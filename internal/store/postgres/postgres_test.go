package postgres_test

import (
	"context"
	"io/fs"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/execd/execd/internal/store"
	"github.com/execd/execd/internal/store/postgres"
	"github.com/execd/execd/internal/store/postgres/pgtest"
	"github.com/execd/execd/internal/store/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func open(tb testing.TB, url string) *postgres.Store {
	tb.Helper()
	s, err := postgres.Open(context.Background(), url)
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
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, pgtest.URL(t)) })
}

func TestShared(t *testing.T) {
	openTwo := func(t *testing.T) (store.Store, store.Store) {
		url := pgtest.URL(t)
		return open(t, url), open(t, url)
	}
	storetest.RunShared(t, openTwo)
	storetest.RunCrossWake(t, openTwo)
}

func TestFiles(t *testing.T) {
	storetest.RunFiles(t, func(t *testing.T) store.FileStore { return open(t, pgtest.URL(t)) })
	storetest.RunFilesShared(t, func(t *testing.T) (store.FileStore, store.FileStore) {
		url := pgtest.URL(t)
		return open(t, url), open(t, url)
	})
}

func TestLeaser(t *testing.T) {
	storetest.RunLeaser(t, func(t *testing.T) (store.Leaser, store.Leaser) {
		url := pgtest.URL(t)
		return open(t, url), open(t, url)
	})
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store { return open(b, pgtest.URL(b)) })
}

// TestConcurrentOpen checks that coordinators starting at once on a new
// database migrate it once, without errors.
func TestConcurrentOpen(t *testing.T) {
	url := pgtest.URL(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := postgres.Open(t.Context(), url)
			if err != nil {
				errs <- err
				return
			}
			errs <- s.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Open: %v", err)
		}
	}
	// And once more, on the migrated database.
	s := open(t, url)
	if _, err := s.Enqueue(t.Context(), "q", store.Spec{}, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if want := len(mustReadMigrations(t)); n != want { // one row per migration
		t.Errorf("schema_migrations rows: got %d, want %d", n, want)
	}
}

// TestListenerReconnect kills the listeners' connections: waiters must be
// woken once the listener is back (notifications may have been missed),
// and wake-ups across stores must work again.
func TestListenerReconnect(t *testing.T) {
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	ch, stop := b.Wake([]string{"q"})
	defer stop()
	var killed int
	err = conn.QueryRow(t.Context(), `
		SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN execd_jobs'`).Scan(&killed)
	if err != nil {
		t.Fatal(err)
	}
	if killed != 2 {
		t.Fatalf("terminated %d listener connections, want 2", killed)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("waiter not woken after the listener reconnected")
	}

	ch, stop2 := b.Wake([]string{"q"})
	defer stop2()
	// The listener of b may still be reconnecting: enqueue until woken.
	deadline := time.After(10 * time.Second)
	for {
		if _, err := a.Enqueue(t.Context(), "q", store.Spec{}, 1, time.Now()); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ch:
			return
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatal("waiter of b not woken by enqueues through a after the reconnection")
		}
	}
}

func mustReadMigrations(t *testing.T) []fs.DirEntry {
	t.Helper()
	entries, err := fs.ReadDir(os.DirFS("migrations"), ".")
	if err != nil {
		t.Fatal(err)
	}
	return entries
}
