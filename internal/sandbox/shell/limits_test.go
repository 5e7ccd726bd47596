package shell_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/sandboxtest"
)

func readCgroupFile(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestPrepare_Limits(t *testing.T) {
	rt := needSandbox(t)
	_, opts := prepare(t, rt, sandbox.Options{CPUs: 2, MemoryBytes: 96 << 20, PIDs: 77})
	cg := jobCgroup(t, rt, opts)
	want := map[[2]string]string{
		{cg.PIDs, "pids.max"}: "77",
	}
	if cg.V2 {
		want[[2]string{cg.Memory, "memory.max"}] = strconv.Itoa(96 << 20)
		want[[2]string{cg.CPU, "cpu.max"}] = "200000 100000"
		if _, err := os.Stat(filepath.Join(cg.Memory, "memory.swap.max")); err == nil {
			want[[2]string{cg.Memory, "memory.swap.max"}] = "0"
		}
	} else {
		want[[2]string{cg.Memory, "memory.limit_in_bytes"}] = strconv.Itoa(96 << 20)
		want[[2]string{cg.CPU, "cpu.cfs_quota_us"}] = "200000"
		want[[2]string{cg.CPU, "cpu.cfs_period_us"}] = "100000"
		if _, err := os.Stat(filepath.Join(cg.Memory, "memory.memsw.limit_in_bytes")); err == nil {
			want[[2]string{cg.Memory, "memory.memsw.limit_in_bytes"}] = strconv.Itoa(96 << 20)
		}
	}
	for f, w := range want {
		if got := readCgroupFile(t, f[0], f[1]); got != w {
			t.Errorf("%s = %q, want %q", filepath.Join(f[0], f[1]), got, w)
		}
	}
}

func TestRun_InCgroup(t *testing.T) {
	rt := needSandbox(t)
	sb, opts := prepare(t, rt, sandbox.Options{})
	cg := jobCgroup(t, rt, opts)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &startedWriter{started: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := sb.Run(ctx, sandbox.Step{Commands: []string{"echo started", "sleep 999"}}, sandbox.Output{Stdout: w})
		done <- err
	}()
	select {
	case <-w.started:
	case err := <-done:
		t.Fatalf("step ended early: %v", err)
	}
	// Every hierarchy (one on v2) has the init and the step's sleep
	// (which the shell execs after echo: wait a little for it).
	for _, d := range cg.Dirs {
		var pids []string
		sleeping := false
		for deadline := time.Now().Add(2 * time.Second); !sleeping && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			pids = strings.Fields(readCgroupFile(t, d, "cgroup.procs"))
			sleeping = slices.ContainsFunc(pids, func(pid string) bool {
				cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
				return string(cmdline) == "sleep\x00999\x00"
			})
		}
		if len(pids) < 2 || !sleeping {
			t.Errorf("%s/cgroup.procs = %q, want the init and the step's sleep", d, pids)
		}
	}
	cancel()
	<-done
	if current := readCgroupFile(t, cg.PIDs, "pids.current"); current != "0" {
		t.Errorf("pids.current = %s after the step, want 0", current)
	}
	// The cgroup namespace hides the host's cgroup paths.
	for _, l := range strings.Split(strings.TrimSpace(runOK(t, sb, "cat /proc/self/cgroup")), "\n") {
		if !strings.HasSuffix(l, ":/") {
			t.Errorf("/proc/self/cgroup line %q shows a host path", l)
		}
	}
}

func TestSandbox_Destroy(t *testing.T) {
	rt := needSandbox(t)
	ctx := context.Background()
	opts := sandbox.Options{JobID: "destroy-test", Owner: testOwner, Workspace: sandboxtest.WorkspacePath(t), MemoryBytes: 64 << 20, PIDs: 64, CPUs: 1}
	sb, err := rt.Prepare(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	runOK(t, sb, "true")
	cg := jobCgroup(t, rt, opts)

	// A process that got into the cgroup otherwise than through Run: as
	// if a step's had escaped its PID namespace.
	stray := exec.Command("sleep", "1000")
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	strayDone := make(chan error, 1)
	go func() { strayDone <- stray.Wait() }()
	for _, d := range cg.Dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(stray.Process.Pid)), 0); err != nil {
			stray.Process.Kill()
			t.Fatal(err)
		}
	}

	for i := range 3 {
		if err := sb.Destroy(ctx); err != nil {
			t.Fatalf("Destroy #%d: %v", i+1, err)
		}
	}
	select {
	case <-strayDone:
	case <-time.After(5 * time.Second):
		stray.Process.Kill()
		t.Error("Destroy left a process of the cgroup running")
	}
	for _, d := range cg.Dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("cgroup %s exists after Destroy (%v)", d, err)
		}
	}
	if _, err := sb.Run(ctx, sandbox.Step{Commands: []string{"true"}}, sandbox.Output{}); err == nil {
		t.Error("Run after Destroy: no error")
	}
}

func TestPrepare_Workspace(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, []byte("shared\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var ws string
	linked := false
	sb, _ := prepare(t, needSandbox(t), sandbox.Options{}, func(dir string) {
		ws = dir
		if err := os.WriteFile(filepath.Join(dir, "file"), []byte("old\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		// As root, the workspace is a mount of its own: no hard link
		// can reach outside it.
		linked = os.Link(outside, filepath.Join(dir, "hardlink")) == nil
		if err := os.Symlink("/etc/passwd", filepath.Join(dir, "symlink")); err != nil {
			t.Fatal(err)
		}
	})
	// The executor's files are the step's to change.
	runOK(t, sb, "echo new > file")
	if b, _ := os.ReadFile(filepath.Join(ws, "file")); string(b) != "new\n" {
		t.Errorf("file = %q after the step rewrote it", b)
	}
	if os.Geteuid() != 0 {
		return
	}
	// But not a file shared with the outside, nor what a link points to.
	if _, _, res := run(t, sb, sandbox.Step{Commands: []string{"echo changed > hardlink"}}); linked && res.ExitCode == 0 {
		t.Error("the step could write a file hard-linked outside the workspace")
	}
	for _, name := range []string{outside, "/etc/passwd"} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if uid := fileUID(fi); uid != 0 {
			t.Errorf("%s is owned by %d after Prepare, want 0", name, uid)
		}
	}
}

func TestRuntime_Check(t *testing.T) {
	rt := needSandbox(t)
	if err := rt.Check(context.Background()); err != nil {
		t.Errorf("Check: %v", err)
	}
	if got := rt.Name(); got != "shell" {
		t.Errorf("Name = %q, want shell", got)
	}
}

// TestRuntime_Clean: the janitor removes the cgroups of the jobs stale
// reports, then their owner's once stale reports it and it is empty; a
// job cgroup of another owner that still has processes stays unless its
// owner is stale too.
func TestRuntime_Clean(t *testing.T) {
	rt := needSandbox(t)
	ctx := context.Background()
	owner, live := testOwner+"-stale", testOwner+"-live"
	var cgs []string
	for _, job := range []string{"1-a", "2-b"} {
		opts := sandbox.Options{JobID: job, Owner: owner, Workspace: sandboxtest.WorkspacePath(t), PIDs: 10}
		if _, err := rt.Prepare(ctx, opts); err != nil {
			t.Fatal(err)
		}
		cgs = append(cgs, jobCgroup(t, rt, opts).Dirs...)
	}
	// A job of a live owner, with a process in its cgroup.
	liveOpts := sandbox.Options{JobID: "3-c", Owner: live, Workspace: sandboxtest.WorkspacePath(t), PIDs: 10}
	sb, err := rt.Prepare(ctx, liveOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	started := make(chan struct{})
	stepCtx, stop := context.WithCancel(ctx)
	defer stop()
	go sb.Run(stepCtx, sandbox.Step{Commands: []string{"echo up", "sleep 60"}}, sandbox.Output{Stdout: signalWriter(started), Stderr: io.Discard})
	<-started
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		procs, err := jobCgroup(t, rt, liveOpts).Procs()
		if err == nil && len(procs) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the live job's step has no process in its cgroup: %v %v", procs, err)
		}
	}

	var seen []sandbox.Leftover
	stale := func(l sandbox.Leftover) bool {
		seen = append(seen, l)
		// Every job is over, but only owner is gone.
		return l.JobID != "" || l.Owner == owner
	}
	if err := rt.Clean(ctx, stale); err != nil {
		t.Fatal(err)
	}
	for _, d := range append(cgs, filepath.Dir(cgs[0])) {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s exists after Clean (%v)", d, err)
		}
	}
	if procs, err := jobCgroup(t, rt, liveOpts).Procs(); err != nil || len(procs) == 0 {
		t.Errorf("the live owner's running job lost its cgroup or processes: %v %v", procs, err)
	}
	if !slices.ContainsFunc(seen, func(l sandbox.Leftover) bool {
		return l.JobID == "1-a" && l.Owner == owner && l.Workspace == filepath.Join(testWorkspaceRoot, owner, "1-a")
	}) {
		t.Errorf("Clean asked about %+v; want job 1-a of %s with its workspace under the workspace root", seen, owner)
	}
	if err := rt.Clean(ctx, stale); err != nil {
		t.Errorf("Clean with nothing to remove: %v", err)
	}
}

// signalWriter closes ch at its first write.
func signalWriter(ch chan struct{}) io.Writer {
	var once sync.Once
	return writerFunc(func(p []byte) (int, error) {
		once.Do(func() { close(ch) })
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func fileUID(fi os.FileInfo) int {
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}
