package executor

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/execd/execd/internal/sandbox"
)

func TestOwnerAlive(t *testing.T) {
	root := t.TempDir()
	release, err := lockWorkspaceRoot(filepath.Join(root, "live"))
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	// A dead executor's directory: its lock file is there, unlocked.
	if err := os.MkdirAll(filepath.Join(root, "dead"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "dead", lockName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"live": true, "dead": false, "gone": false} {
		if got := ownerAlive(root, name); got != want {
			t.Errorf("ownerAlive(%q) = %v, want %v", name, got, want)
		}
	}
	// Checking does not take the lock from its owner.
	if !ownerAlive(root, "live") {
		t.Error("ownerAlive(live) = false after a check")
	}
	release()
	if ownerAlive(root, "live") {
		t.Error("ownerAlive(live) = true after its lock was released")
	}
}

func TestStaleSandboxes(t *testing.T) {
	root := t.TempDir()
	release, err := lockWorkspaceRoot(filepath.Join(root, "other-live"))
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	running := func(job string) bool { return job == "1-batches" }
	// other-dead's directory was removed at start-up; dead-elsewhere's is
	// there, without its lock.
	stale := staleSandboxes("me", running, []string{filepath.Join(root, "other-dead")})
	otherRoot := t.TempDir()
	releaseOther, err := lockWorkspaceRoot(filepath.Join(otherRoot, "live-elsewhere"))
	if err != nil {
		t.Fatal(err)
	}
	defer releaseOther()
	ws := func(owner string) string { return filepath.Join(root, owner, "job-dir") }
	if err := os.MkdirAll(filepath.Join(otherRoot, "dead-elsewhere"), 0o700); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		l    sandbox.Leftover
		want bool
	}{
		{"mine, running", sandbox.Leftover{JobID: "1-batches", Owner: "me", Workspace: ws("me")}, false},
		{"mine, over", sandbox.Leftover{JobID: "2-batches", Owner: "me", Workspace: ws("me")}, true},
		{"a live executor's", sandbox.Leftover{JobID: "3-batches", Owner: "other-live", Workspace: ws("other-live")}, false},
		{"a dead executor's", sandbox.Leftover{JobID: "4-batches", Owner: "other-dead", Workspace: ws("other-dead")}, true},
		{"a live executor's of another root", sandbox.Leftover{JobID: "5-batches", Owner: "live-elsewhere", Workspace: filepath.Join(otherRoot, "live-elsewhere", "job-dir")}, false},
		{"a dead executor's of another root", sandbox.Leftover{JobID: "6-batches", Owner: "dead-elsewhere", Workspace: filepath.Join(otherRoot, "dead-elsewhere", "job-dir")}, true},
		{"an unknown executor's (no directory: maybe alive under another root)", sandbox.Leftover{JobID: "10-batches", Owner: "unknown", Workspace: ws("unknown")}, false},
		{"not in an executor's directory", sandbox.Leftover{JobID: "7-batches", Owner: "tool", Workspace: "/srv/jobs/job-dir"}, false},
		{"relative workspace", sandbox.Leftover{JobID: "8-batches", Owner: "x", Workspace: "x/job-dir"}, false},
		{"no owner", sandbox.Leftover{JobID: "9-batches"}, false},
		{"my own, as an owner", sandbox.Leftover{Owner: "me", Workspace: filepath.Join(root, "me")}, false},
		{"a live executor, as an owner", sandbox.Leftover{Owner: "other-live", Workspace: filepath.Join(root, "other-live")}, false},
		{"a dead executor, as an owner", sandbox.Leftover{Owner: "other-dead", Workspace: filepath.Join(root, "other-dead")}, true},
	}
	for _, tt := range tests {
		if got := stale(tt.l); got != tt.want {
			t.Errorf("%s: stale(%+v) = %v, want %v", tt.name, tt.l, got, tt.want)
		}
	}
}

// TestWorkspaceRoot_StartingTogether: executors starting at once in one
// workspace root, each cleaning it as it starts, never remove each
// other's directory (it is made and locked under another name first).
func TestWorkspaceRoot_StartingTogether(t *testing.T) {
	root := t.TempDir()
	logger := slog.New(slog.DiscardHandler)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 20 {
		wg.Go(func() {
			cleanWorkspaces(root, logger)
			dir := filepath.Join(root, fmt.Sprintf("ex-%d", i))
			release, err := lockWorkspaceRoot(dir)
			if err != nil {
				errs <- err
				return
			}
			cleanWorkspaces(root, logger)
			if _, err := os.Stat(filepath.Join(dir, lockName)); err != nil {
				errs <- fmt.Errorf("%s lost its lock file to another executor's janitor: %w", dir, err)
			}
			release()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// One that died while making its directory is cleaned once that is old.
	dead := filepath.Join(root, newPrefix+"dead")
	os.Mkdir(dead, 0o700)
	cleanWorkspaces(root, logger)
	if _, err := os.Stat(dead); err != nil {
		t.Errorf("a directory being made was removed: %v", err)
	}
	old := time.Now().Add(-2 * time.Minute)
	os.Chtimes(dead, old, old)
	cleanWorkspaces(root, logger)
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("the directory of an executor that died starting is still there: %v", err)
	}
}
