package store_test

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/execd/execd/internal/store"
)

func TestMigrations(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	ms, err := store.Migrations(fstest.MapFS{
		"m/0010_later.sql": file("B"), "m/0002_first.sql": file("A"), "m/README": file("x"),
	}, "m/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Version != 2 || ms[0].SQL != "A" || ms[1].Name != "0010_later.sql" {
		t.Errorf("Migrations = %+v, want 0002_first then 0010_later", ms)
	}
	for name, fsys := range map[string]fstest.MapFS{
		"no version":     {"m/first.sql": file("A")},
		"zero version":   {"m/0000_x.sql": file("A")},
		"shared version": {"m/0001_a.sql": file("A"), "m/01_b.sql": file("B")},
	} {
		if _, err := store.Migrations(fsys, "m/*.sql"); err == nil || !strings.Contains(err.Error(), "migration") {
			t.Errorf("%s: err = %v, want an error naming the migration", name, err)
		}
	}
}
