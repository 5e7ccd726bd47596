package pgtest_test

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/execd/execd/internal/store/postgres/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestURL(t *testing.T) {
	a, b := pgtest.URL(t), pgtest.URL(t)
	if a == b {
		t.Fatalf("two URL calls returned the same database %q", a)
	}
	for _, u := range []string{a, b} {
		conn, err := pgx.Connect(t.Context(), u)
		if err != nil {
			t.Fatal(err)
		}
		var tables int
		if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&tables); err != nil {
			t.Fatal(err)
		}
		if tables != 0 {
			t.Errorf("new database %s: got %d tables, want none", u, tables)
		}
		var fsync string
		if err := conn.QueryRow(t.Context(), `SHOW fsync`).Scan(&fsync); err != nil {
			t.Fatal(err)
		}
		if fsync != "on" {
			t.Errorf("fsync: got %q, want on", fsync)
		}
		conn.Close(t.Context())
	}
}
