package sandboxtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/diskimage"
)

// Harness tells the conformance suite how to use the runtime under test.
type Harness struct {
	// Runtime returns the runtime, ending the test (a skip, or a failure
	// in CI) when it cannot run on this host.
	Runtime func(t *testing.T) sandbox.Runtime
	// Image is the image of the suite's steps, for runtimes whose
	// Capabilities say Images: one with a POSIX shell, cat, ls, head,
	// tail, sleep and sh's usual builtins (busybox).
	Image string
	// Owner labels the sandboxes the suite prepares.
	Owner string
	// Running lists what of the sandbox's steps still runs on the host
	// (processes, containers); empty once no step runs. The suite checks
	// it after steps end, are cancelled, or leave processes behind.
	Running func(t *testing.T, sb sandbox.Sandbox, opts sandbox.Options) []string
	// Left lists what of the sandbox is left after Destroy; the suite
	// checks that nothing is.
	Left func(sb sandbox.Sandbox, opts sandbox.Options) []string
	// PrepareErrors are the runtime's own invalid options, besides those
	// every runtime refuses.
	PrepareErrors []PrepareError
	// Leftovers lists what a sandbox prepared with opts left on the host
	// (processes, cgroups, containers, networks), found from opts alone.
	// The suite uses it after killing a stand-in executor that runs a
	// step (see [StartHelper]), and again after the runtime's janitor
	// ran. Nil skips that case: the runtime leaves nothing behind.
	Leftovers func(t *testing.T, opts sandbox.Options) []string
	// Settings are the runtime's settings for the stand-in executor
	// (RunHelper's newRuntime).
	Settings any
}

// PrepareError is an invalid change to valid Options, and what Prepare's
// error must mention.
type PrepareError struct {
	Name   string
	Modify func(*sandbox.Options)
	Want   string
}

// Run runs the conformance suite: what every runtime must do, whatever
// it runs steps in. Each runtime's package calls it from a test, next to
// tests of what is its own.
func Run(t *testing.T, h Harness) {
	s := &suite{h: h}
	t.Run("PrepareErrors", s.prepareErrors)
	t.Run("Output", s.output)
	t.Run("ExitCode", s.exitCode)
	t.Run("Env", s.env)
	t.Run("Dir", s.dir)
	t.Run("Workspace", s.workspace)
	t.Run("HostHidden", s.hostHidden)
	t.Run("InheritedDescriptors", s.descriptors)
	t.Run("Background", s.background)
	t.Run("Cancel", s.cancel)
	t.Run("CancelEarly", s.cancelEarly)
	t.Run("MemoryLimit", s.memoryLimit)
	t.Run("ProcessLimit", s.processLimit)
	t.Run("CPULimit", s.cpuLimit)
	t.Run("DiskLimit", s.diskLimit)
	t.Run("SetuidInert", s.setuidInert)
	t.Run("JanitorAfterCrash", s.janitorAfterCrash)
	t.Run("Concurrent", s.concurrent)
	t.Run("DestroyIdempotent", s.destroyIdempotent)
}

type suite struct{ h Harness }

// prepare prepares a sandbox with opts, defaults filled in, destroyed
// when the test ends.
func (s *suite) prepare(t *testing.T, opts sandbox.Options) (sandbox.Sandbox, sandbox.Options) {
	t.Helper()
	return Prepare(t, s.h.Runtime(t), opts, s.h.Owner, s.h.Left)
}

func (s *suite) step(commands ...string) sandbox.Step {
	return sandbox.Step{Image: s.h.Image, Commands: commands}
}

// run runs st to its end and returns its output and result.
func (s *suite) run(t *testing.T, sb sandbox.Sandbox, st sandbox.Step) (stdout, stderr string, res sandbox.Result) {
	t.Helper()
	if st.Image == "" {
		st.Image = s.h.Image
	}
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := sb.Run(ctx, st, sandbox.Output{Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("Run(%q): %v\nstderr:\n%s", st.Commands, err, errb.String())
	}
	return out.String(), errb.String(), res
}

func (s *suite) runOK(t *testing.T, sb sandbox.Sandbox, commands ...string) string {
	t.Helper()
	out, errs, res := s.run(t, sb, s.step(commands...))
	if res.ExitCode != 0 {
		t.Fatalf("Run(%q) = exit %d, want 0\nstdout:\n%s\nstderr:\n%s", commands, res.ExitCode, out, errs)
	}
	return out
}

// waitNothingRuns waits until nothing of the sandbox's steps runs.
func (s *suite) waitNothingRuns(t *testing.T, sb sandbox.Sandbox, opts sandbox.Options) {
	t.Helper()
	if s.h.Running == nil {
		return
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		left := s.h.Running(t, sb, opts)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still running 15s after the step ended: %v", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// prepareErrors: invalid options get an error naming what is wrong, and
// Destroy is safe after it.
func (s *suite) prepareErrors(t *testing.T) {
	rt := s.h.Runtime(t)
	base := sandbox.Options{JobID: "1-q", Owner: s.h.Owner, Workspace: WorkspacePath(t), Network: sandbox.NetworkNone}
	tests := append([]PrepareError{
		{"unknown network", func(o *sandbox.Options) { o.Network = "bridge" }, "network"},
		{"no job ID", func(o *sandbox.Options) { o.JobID = "" }, "job ID"},
		{"no owner", func(o *sandbox.Options) { o.Owner = "" }, "owner"},
		{"relative workspace", func(o *sandbox.Options) { o.Workspace = "ws" }, "absolute"},
		{"missing workspace", func(o *sandbox.Options) { o.Workspace = "/nonexistent/ws" }, "workspace"},
		{"negative memory", func(o *sandbox.Options) { o.MemoryBytes = -1 }, "negative"},
	}, s.h.PrepareErrors...)
	for _, tt := range tests {
		t.Run(tt.Name, func(t *testing.T) {
			opts := base
			tt.Modify(&opts)
			sb, err := rt.Prepare(context.Background(), opts)
			if err == nil || !strings.Contains(err.Error(), tt.Want) {
				t.Errorf("Prepare error = %v, want one mentioning %q", err, tt.Want)
			}
			if err := sb.Destroy(context.Background()); err != nil {
				t.Errorf("Destroy after a failed Prepare: %v", err)
			}
		})
	}
}

func (s *suite) output(t *testing.T) {
	sb, _ := s.prepare(t, sandbox.Options{})
	out, errs, res := s.run(t, sb, s.step("echo to-stdout", "echo to-stderr >&2", "printf 'a\\nb\\n'"))
	if res.ExitCode != 0 || out != "to-stdout\na\nb\n" || errs != "to-stderr\n" {
		t.Errorf("exit %d, stdout %q, stderr %q; want 0, %q, %q", res.ExitCode, out, errs, "to-stdout\na\nb\n", "to-stderr\n")
	}
}

func (s *suite) exitCode(t *testing.T) {
	sb, _ := s.prepare(t, sandbox.Options{})
	tests := []struct {
		commands []string
		want     int
		stdout   string
	}{
		{[]string{"true"}, 0, ""},
		{[]string{"false"}, 1, ""},
		{[]string{"exit 3"}, 3, ""},
		{[]string{"echo one", "exit 7", "echo two"}, 7, "one\n"},
		{[]string{"for i in 1 2; do\n  echo $i\ndone"}, 0, "1\n2\n"},
		{[]string{"no-such-command-anywhere"}, 127, ""},
	}
	for _, tt := range tests {
		out, errs, res := s.run(t, sb, s.step(tt.commands...))
		if res.ExitCode != tt.want || out != tt.stdout || res.OOMKilled {
			t.Errorf("%q: exit %d, stdout %q, OOMKilled %v (stderr %q); want exit %d, stdout %q", tt.commands, res.ExitCode, out, res.OOMKilled, errs, tt.want, tt.stdout)
		}
	}
}

// env: the step's env is set; nothing of the executor's reaches it.
func (s *suite) env(t *testing.T) {
	t.Setenv("EXECD_SUITE_EXECUTOR_SECRET", "executor-only")
	sb, _ := s.prepare(t, sandbox.Options{})
	st := s.step("echo \"$GREETING $WHO\"", "env")
	st.Env = []string{"GREETING=hello", "WHO=a b=c"}
	out, _, res := s.run(t, sb, st)
	if res.ExitCode != 0 || !strings.HasPrefix(out, "hello a b=c\n") {
		t.Errorf("exit %d, output %q: want the step's env", res.ExitCode, out)
	}
	if strings.Contains(out, "executor-only") {
		t.Errorf("the executor's environment reached the step:\n%s", out)
	}
}

// dir: a step runs in its dir, relative to the workspace; a dir that does
// not exist is an error (never made silently), the same everywhere.
func (s *suite) dir(t *testing.T) {
	sb, _ := Prepare(t, s.h.Runtime(t), sandbox.Options{}, s.h.Owner, s.h.Left, func(ws string) {
		if err := os.MkdirAll(filepath.Join(ws, "sub", "dir"), 0o777); err != nil {
			t.Fatal(err)
		}
	})
	for dir, want := range map[string]string{"": "/workspace\n", ".": "/workspace\n", "sub/dir": "/workspace/sub/dir\n", "sub/../sub": "/workspace/sub\n"} {
		st := s.step("pwd")
		st.Dir = dir
		if out, _, res := s.run(t, sb, st); res.ExitCode != 0 || out != want {
			t.Errorf("Dir %q: exit %d, pwd %q; want %q", dir, res.ExitCode, out, want)
		}
	}
	for _, dir := range []string{"no/such/dir", "../outside", "/etc", "sub/../../x"} {
		st := s.step("echo should not run")
		st.Dir = dir
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var out bytes.Buffer
		res, err := sb.Run(ctx, st, sandbox.Output{Stdout: &out, Stderr: &out})
		cancel()
		var dirErr *sandbox.DirError
		if !errors.As(err, &dirErr) || !strings.Contains(err.Error(), dir) || strings.Contains(out.String(), "should not run") {
			t.Errorf("Run in dir %q = %+v, %v, output %q; want a sandbox.DirError naming it, and nothing run", dir, res, err, out.String())
		}
	}
	if out := s.runOK(t, sb, "test -e no && echo created || true"); out != "" {
		t.Error("the missing dir was created")
	}
}

// workspace: what the job runner put in the workspace is the step's at
// /workspace, and what a step writes there the next step's; in a host
// directory, the host sees it as the step runs.
func (s *suite) workspace(t *testing.T) {
	rt := s.h.Runtime(t)
	sb, opts := Prepare(t, rt, sandbox.Options{}, s.h.Owner, s.h.Left, func(dir string) {
		if err := os.WriteFile(filepath.Join(dir, "from-host"), []byte("host\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	if out := s.runOK(t, sb, "cat /workspace/from-host", "echo step > from-step", "mkdir -p d/e && echo deep > d/e/f"); out != "host\n" {
		t.Errorf("the step read %q from the workspace, want host", out)
	}
	if out := s.runOK(t, sb, "cat from-step d/e/f"); out != "step\ndeep\n" {
		t.Errorf("the next step read %q, want what the first wrote", out)
	}
	if rt.Capabilities().Workspace != sandbox.WorkspaceHostDir {
		return
	}
	for name, want := range map[string]string{"from-step": "step\n", "d/e/f": "deep\n"} {
		if b, err := os.ReadFile(filepath.Join(opts.Workspace, name)); err != nil || string(b) != want {
			t.Errorf("%s on the host = %q, %v; want %q", name, b, err, want)
		}
	}
}

// hostHidden: a host file outside the workspace cannot be read.
func (s *suite) hostHidden(t *testing.T) {
	dir := t.TempDir()
	canary := filepath.Join(dir, "canary")
	if err := os.WriteFile(canary, []byte("host secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sb, _ := s.prepare(t, sandbox.Options{})
	out, _, _ := s.run(t, sb, s.step("cat "+canary+" 2>/dev/null; ls "+dir+" 2>/dev/null; true"))
	if strings.Contains(out, "host secret") || strings.Contains(out, "canary") {
		t.Errorf("the step saw the host's %s: %q", canary, out)
	}
}

// descriptors: a step holds no descriptor but its standard streams,
// whatever this process holds (one of them open on a file it writes).
func (s *suite) descriptors(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "held")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// As a descriptor inherited from the executor's parent would be.
	if _, err := unix.FcntlInt(f.Fd(), unix.F_SETFD, 0); err != nil {
		t.Fatal(err)
	}
	sb, _ := s.prepare(t, sandbox.Options{})
	// ls opens one descriptor (3) for the directory it lists.
	if out := s.runOK(t, sb, "ls /proc/self/fd | tr '\\n' ' '"); out != "0 1 2 3 " {
		t.Errorf("the step's descriptors are %q, want 0 1 2 (and ls's 3)", out)
	}
}

// background: processes a step leaves behind are killed when it ends.
func (s *suite) background(t *testing.T) {
	sb, opts := s.prepare(t, sandbox.Options{})
	s.runOK(t, sb, "sleep 1000 > /dev/null 2>&1 &", "echo started")
	s.waitNothingRuns(t, sb, opts)
}

type result struct {
	res sandbox.Result
	err error
}

// startedWriter closes started once "started" was written.
type startedWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	started chan struct{}
	once    sync.Once
}

func (w *startedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), "started") {
		w.once.Do(func() { close(w.started) })
	}
	return len(p), nil
}

// cancel: a cancelled step stops at once, its processes with it, even
// those ignoring SIGTERM; the sandbox still runs the next step.
func (s *suite) cancel(t *testing.T) {
	sb, opts := s.prepare(t, sandbox.Options{})
	tests := []struct {
		name     string
		commands []string
	}{
		{"sleep", []string{"echo started", "sleep 1000"}},
		{"background", []string{"sleep 1000 &", "echo started", "wait"}},
		{"ignores SIGTERM", []string{"trap '' TERM", "echo started", "while :; do sleep 1; done"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w := &startedWriter{started: make(chan struct{})}
			done := make(chan result, 1)
			go func() {
				res, err := sb.Run(ctx, s.step(tt.commands...), sandbox.Output{Stdout: w, Stderr: w})
				done <- result{res, err}
			}()
			select {
			case <-w.started:
			case r := <-done:
				t.Fatalf("the step ended before it was cancelled: %+v", r)
			case <-time.After(30 * time.Second):
				t.Fatal("the step did not start")
			}
			cancel()
			var r result
			select {
			case r = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return 30s after its context was cancelled")
			}
			if !errors.Is(r.err, context.Canceled) {
				t.Errorf("Run error = %v, want context.Canceled", r.err)
			}
			s.waitNothingRuns(t, sb, opts)
		})
	}
	s.runOK(t, sb, "true")
}

// cancelEarly: a context that ends as a step starts stops it, whenever.
func (s *suite) cancelEarly(t *testing.T) {
	sb, opts := s.prepare(t, sandbox.Options{})
	for _, delay := range []time.Duration{0, 2 * time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond, 200 * time.Millisecond} {
		ctx, cancel := context.WithTimeout(context.Background(), delay)
		_, err := sb.Run(ctx, s.step("sleep 1000"), sandbox.Output{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("cancelled after %v: Run error = %v, want context.DeadlineExceeded", delay, err)
		}
		s.waitNothingRuns(t, sb, opts)
	}
	s.runOK(t, sb, "true")
}

// memoryLimit: a step over the memory limit is killed and says so; one
// that fails otherwise does not.
func (s *suite) memoryLimit(t *testing.T) {
	sb, _ := s.prepare(t, sandbox.Options{MemoryBytes: 64 << 20})
	tests := []struct {
		name     string
		commands []string
		oom      bool
	}{
		{"within", []string{"head -c $((16<<20)) /dev/zero | tail > /dev/null"}, false},
		{"pipe", []string{"head -c $((300<<20)) /dev/zero | tail > /dev/null"}, true},
		{"shell string", []string{`s=xxxxxxxxxxxxxxxx; while :; do s="$s$s"; done`}, true},
		{"failure without OOM", []string{"exit 9"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs, res := s.run(t, sb, s.step(tt.commands...))
			if res.OOMKilled != tt.oom || tt.oom && res.ExitCode == 0 {
				t.Errorf("OOMKilled %v, exit %d (stderr %q); want OOMKilled %v and a failure if so", res.OOMKilled, res.ExitCode, errs, tt.oom)
			}
		})
	}
}

// concurrent: sandboxes of different jobs run at once, each in its own
// workspace.
func (s *suite) concurrent(t *testing.T) {
	hostDir := s.h.Runtime(t).Capabilities().Workspace == sandbox.WorkspaceHostDir
	var wg sync.WaitGroup
	for i := range 3 {
		sb, opts := s.prepare(t, sandbox.Options{})
		wg.Go(func() {
			var out strings.Builder
			res, err := sb.Run(context.Background(), s.step(fmt.Sprintf("echo %d > f", i), "cat f", "ls /workspace"), sandbox.Output{Stdout: &out, Stderr: &out})
			if err != nil || res.ExitCode != 0 || out.String() != fmt.Sprintf("%d\nf\n", i) {
				t.Errorf("sandbox %d: %+v, %v, output %q", i, res, err, out.String())
			}
			if !hostDir {
				return
			}
			if b, _ := os.ReadFile(filepath.Join(opts.Workspace, "f")); string(b) != fmt.Sprintf("%d\n", i) {
				t.Errorf("sandbox %d wrote %q", i, b)
			}
		})
	}
	wg.Wait()
}

// destroyIdempotent: Destroy may be called again, and after a step.
func (s *suite) destroyIdempotent(t *testing.T) {
	sb, _ := s.prepare(t, sandbox.Options{})
	s.runOK(t, sb, "true")
	for i := range 2 {
		if err := sb.Destroy(context.Background()); err != nil {
			t.Errorf("Destroy %d: %v", i+1, err)
		}
	}
}

// processLimit: a fork bomb meets the process limit: the step ends by
// itself, nothing of it is left, and the host and the sandbox go on.
func (s *suite) processLimit(t *testing.T) {
	if !s.h.Runtime(t).Capabilities().Limits.Processes {
		t.Skip("the runtime does not limit processes")
	}
	sb, opts := s.prepare(t, sandbox.Options{PIDs: 64})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	res, err := sb.Run(ctx, s.step("bomb() { bomb | bomb & }", "bomb", "sleep 2"), sandbox.Output{Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatalf("Run: %v (a fork bomb must not keep the step from ending)", err)
	}
	t.Logf("fork bomb: %+v", res)
	s.waitNothingRuns(t, sb, opts)
	if err := exec.Command("true").Run(); err != nil {
		t.Errorf("the host cannot start a process: %v", err)
	}
	s.runOK(t, sb, "true")
}

// cpuLimit: limited to one CPU, two busy processes take about twice as
// long as one does. (CPU times measured inside the sandbox cannot tell:
// gVisor counts a throttled task's time as used.) The fastest of three
// runs of one is the measure least slowed by a busy host.
func (s *suite) cpuLimit(t *testing.T) {
	if !s.h.Runtime(t).Capabilities().Limits.CPU {
		t.Skip("the runtime does not limit CPU")
	}
	if runtime.NumCPU() < 2 {
		t.Skip("one CPU: a limit of one cannot be told from none")
	}
	sb, _ := s.prepare(t, sandbox.Options{CPUs: 1})
	out := s.runOK(t, sb,
		// Hundredths of a second since boot, from "12.34" or "0.08".
		`now() { read u _ < /proc/uptime; echo $(( ${u%.*} * 100 + 1${u#*.} - 100 )); }`,
		`work() { i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; }`,
		"one=1000000; for r in 1 2 3; do t0=$(now); work; t1=$(now); [ $((t1-t0)) -lt $one ] && one=$((t1-t0)); done",
		"t1=$(now); work & work & wait; t2=$(now)",
		"echo $one $((t2-t1))")
	var one, two float64
	if _, err := fmt.Sscanf(out, "%g %g", &one, &two); err != nil || one <= 0 {
		t.Fatalf("the step printed %q: %v", out, err)
	}
	if two/one < 1.5 {
		t.Errorf("one busy process took %vs, two took %vs: want about twice as long on one CPU", one/100, two/100)
	}
	t.Logf("one busy process: %vs; two: %vs", one/100, two/100)
}

// diskLimit: a step cannot write more than the disk limit to its
// workspace, and fails saying the workspace is full, in every runtime;
// nor, where the runtime's Limits say Disk, can it fill the host's disk
// anywhere else (a container's writable layer, /tmp).
func (s *suite) diskLimit(t *testing.T) {
	if err := diskimage.Check(context.Background()); err != nil {
		t.Skipf("no bounded workspaces here: %v", err)
	}
	rt := s.h.Runtime(t)
	sb, _ := s.prepare(t, sandbox.Options{DiskBytes: 64 << 20, MemoryBytes: 128 << 20})
	t.Run("workspace", func(t *testing.T) {
		_, errs, res := s.run(t, sb, s.step("head -c $((100<<20)) /dev/zero > big"))
		if res.ExitCode == 0 || !res.DiskFull {
			t.Errorf("writing 100M to a workspace of 64M: %+v (stderr %q), want a failure with DiskFull", res, errs)
		}
		s.runOK(t, sb, "rm big", "echo fits > small")
	})
	t.Run("elsewhere", func(t *testing.T) {
		if !rt.Capabilities().Limits.Disk {
			t.Skip("the runtime bounds only the workspace here")
		}
		for _, dir := range []string{"/tmp", "/"} {
			_, errs, res := s.run(t, sb, s.step(fmt.Sprintf("head -c $((400<<20)) /dev/zero > %s/big-outside", strings.TrimSuffix(dir, "/"))))
			if res.ExitCode == 0 {
				t.Errorf("writing 400M to %s with 64M of disk and 128M of memory succeeded (stderr %q)", dir, errs)
			}
		}
	})
}

// setuidInert: a set-user-ID binary a step makes in its workspace is
// inert on the host: the workspace is mounted nosuid and nodev there.
func (s *suite) setuidInert(t *testing.T) {
	rt := s.h.Runtime(t)
	if rt.Capabilities().Workspace != sandbox.WorkspaceHostDir {
		t.Skip("the host never mounts the workspace while steps run")
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: a step cannot make a file of host root's")
	}
	for _, bounded := range []bool{false, true} {
		t.Run(fmt.Sprintf("bounded=%v", bounded), func(t *testing.T) {
			opts := sandbox.Options{}
			if bounded {
				if err := diskimage.Check(context.Background()); err != nil {
					t.Skipf("no bounded workspaces here: %v", err)
				}
				opts.DiskBytes = 64 << 20
			}
			sb, opts := s.prepare(t, opts)
			s.runOK(t, sb, "cp /bin/sh suid && chmod 4755 suid || true", "mknod dev c 1 3 2>/dev/null || true")
			var st unix.Statfs_t
			if err := unix.Statfs(opts.Workspace, &st); err != nil {
				t.Fatal(err)
			}
			if st.Flags&unix.ST_NOSUID == 0 || st.Flags&unix.ST_NODEV == 0 {
				t.Errorf("the workspace %s is mounted with flags %#x on the host, want nosuid and nodev", opts.Workspace, st.Flags)
			}
		})
	}
}

// janitorAfterCrash: what a killed executor's sandbox left running is
// removed by the runtime's janitor, told that the owner is dead; a live
// owner's sandbox is left alone.
func (s *suite) janitorAfterCrash(t *testing.T) {
	if s.h.Leftovers == nil {
		t.Skip("the runtime leaves nothing behind")
	}
	rt := s.h.Runtime(t)
	j, ok := rt.(sandbox.Janitor)
	if !ok {
		t.Fatal("the runtime leaves things behind but is no sandbox.Janitor")
	}
	dead := fmt.Sprintf("%s-dead-%d", s.h.Owner, Seq())
	network := rt.Capabilities().DefaultNetwork()
	opts := Options(t, sandbox.Options{Owner: dead, Network: network}, dead)
	StartHelper(t, s.h.Settings, s.h.Image, opts)()
	if left := s.h.Leftovers(t, opts); len(left) == 0 {
		t.Fatal("a killed executor's running step left nothing: the test cannot tell a janitor's work")
	}
	live, _ := s.prepare(t, sandbox.Options{Network: network})
	if err := j.Clean(context.Background(), func(l sandbox.Leftover) bool { return l.Owner == dead }); err != nil {
		t.Fatalf("Clean: %v", err)
	}
	if left := s.h.Leftovers(t, opts); len(left) > 0 {
		t.Errorf("left after Clean: %v", left)
	}
	s.runOK(t, live, "true")
	if err := j.Clean(context.Background(), func(l sandbox.Leftover) bool { return l.Owner == dead }); err != nil {
		t.Errorf("Clean with nothing to do: %v", err)
	}
}
