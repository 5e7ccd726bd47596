// Package testutil holds helpers shared by tests: declaring the real parts
// a test needs (PostgreSQL, git, dockerd, chromium...), which skip a test on
// a laptop that lacks them but fail it in CI, where .ci/run declares the
// parts it provides in EXECD_CI_PARTS (space- or comma-separated).
package testutil

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// Provided reports whether CI declared part as present.
func Provided(part string) bool {
	fields := strings.FieldsFunc(os.Getenv("EXECD_CI_PARTS"), func(r rune) bool { return r == ',' || r == ' ' })
	return slices.Contains(fields, part)
}

// Missing ends the test because part is unavailable: a skip, unless CI
// declared the part, in which case the test fails with why.
func Missing(t testing.TB, part, why string) {
	t.Helper()
	if Provided(part) {
		t.Fatalf("%s is declared present by EXECD_CI_PARTS but unavailable: %s", part, why)
	}
	t.Skipf("skipping: %s unavailable (%s); CI provides it", part, why)
}
