package shell_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/execd/execd/internal/sandbox/sandboxtest"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/shell"
	"github.com/execd/execd/internal/testutil"
)

// testCgroupParent holds the tests' cgroups; TestMain removes them.
// EXECD_SHELL_TEST_CGROUP_PARENT overrides it, to run the tests as a user
// that was delegated another cgroup.
var testCgroupParent = cmp.Or(os.Getenv("EXECD_SHELL_TEST_CGROUP_PARENT"), "execd-test")

var testOwner = fmt.Sprintf("shell-test-%d", os.Getpid())

func TestMain(m *testing.M) {
	shell.MaybeRunInit()
	sandboxtest.RunHelper(func(json.RawMessage) (sandbox.Runtime, error) { return newRuntime(), nil })
	code := m.Run()
	rt := newRuntime()
	if err := rt.Clean(context.Background(), func(l sandbox.Leftover) bool { return strings.HasPrefix(l.Owner, testOwner) }); err != nil {
		fmt.Fprintln(os.Stderr, "remove test cgroups:", err)
	}
	shell.RemoveCgroupParent(rt) // fails if another test binary still uses it
	os.Exit(code)
}

// testWorkspaceRoot is the runtime's Config.WorkspaceRoot in tests.
const testWorkspaceRoot = "/execd-test-workspaces"

func newRuntime() *shell.Runtime {
	return shell.New(shell.Config{CgroupParent: testCgroupParent, WorkspaceRoot: testWorkspaceRoot})
}

// needSandbox returns a runtime, or ends the test when this host cannot
// run shell sandboxes (a failure in CI, which declares them).
func needSandbox(t testing.TB) *shell.Runtime {
	t.Helper()
	rt := newRuntime()
	if err := shell.CheckNamespaces(context.Background()); err != nil {
		testutil.Missing(t, "namespaces", err.Error())
	}
	if err := shell.CheckCgroups(rt); err != nil {
		testutil.Missing(t, "cgroups", err.Error())
	}
	return rt
}

// prepare prepares a sandbox with opts, defaults filled in: a new job of
// testOwner, a temporary workspace and generous limits. The sandbox is
// destroyed, and its removal checked, when the test ends.
func prepare(t testing.TB, rt *shell.Runtime, opts sandbox.Options, fill ...func(dir string)) (sandbox.Sandbox, sandbox.Options) {
	t.Helper()
	return sandboxtest.Prepare(t, rt, opts, testOwner, cgroupsLeft(t), fill...)
}

// cgroupsLeft lists the cgroup directories of a sandbox that exist.
func cgroupsLeft(t testing.TB) func(sandbox.Sandbox, sandbox.Options) []string {
	return func(_ sandbox.Sandbox, opts sandbox.Options) []string {
		var left []string
		for _, d := range jobCgroup(t, newRuntime(), opts).Dirs {
			if _, err := os.Stat(d); !os.IsNotExist(err) {
				left = append(left, "cgroup "+d)
			}
		}
		return left
	}
}

func jobCgroup(t testing.TB, rt *shell.Runtime, opts sandbox.Options) shell.TestCgroup {
	t.Helper()
	cg, err := shell.JobCgroup(rt, opts.Owner, opts.JobID)
	if err != nil {
		t.Fatal(err)
	}
	return cg
}

// run runs a step of commands and returns its output.
func run(t testing.TB, sb sandbox.Sandbox, step sandbox.Step) (stdout, stderr string, res sandbox.Result) {
	t.Helper()
	var out, errb bytes.Buffer
	res, err := sb.Run(context.Background(), step, sandbox.Output{Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("Run(%q): %v\nstderr:\n%s", step.Commands, err, errb.String())
	}
	return out.String(), errb.String(), res
}

// runOK runs commands and fails the test unless they succeed.
func runOK(t testing.TB, sb sandbox.Sandbox, commands ...string) string {
	t.Helper()
	out, errs, res := run(t, sb, sandbox.Step{Commands: commands})
	if res.ExitCode != 0 {
		t.Fatalf("Run(%q) = exit %d, want 0\nstdout:\n%s\nstderr:\n%s", commands, res.ExitCode, out, errs)
	}
	return out
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')') // the state follows the command name
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// waitGone waits until the cgroup has no process and none of pids is
// alive, or fails the test after timeout.
func waitGone(t *testing.T, cg shell.TestCgroup, pids []int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left, err := cg.Procs()
		if os.IsNotExist(err) {
			left, err = nil, nil
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, pid := range pids {
			if alive(pid) && !slices.Contains(left, pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes %v still alive after %v:\n%s", left, timeout, psOf(left))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func psOf(pids []int) string {
	var b strings.Builder
	for _, pid := range pids {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		fmt.Fprintf(&b, "%d %s\n", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
	}
	return b.String()
}

// TestConformance runs the sandbox conformance suite against the shell
// runtime.
func TestConformance(t *testing.T) {
	sandboxtest.Run(t, sandboxtest.Harness{
		Runtime: func(t *testing.T) sandbox.Runtime { return needSandbox(t) },
		Owner:   testOwner,
		Left:    cgroupsLeft(t),
		PrepareErrors: []sandboxtest.PrepareError{
			{Name: "internet", Modify: func(o *sandbox.Options) { o.Network = sandbox.NetworkInternet }, Want: "EXECUTOR_JOB_NETWORK=none"},
			{Name: "dot-dot job ID", Modify: func(o *sandbox.Options) { o.JobID = ".." }, Want: "job ID"},
		},
		Running: func(t *testing.T, _ sandbox.Sandbox, opts sandbox.Options) []string {
			return processesOf(t, opts)
		},
		Leftovers: func(t *testing.T, opts sandbox.Options) []string {
			return append(processesOf(t, opts), cgroupsLeft(t)(nil, opts)...)
		},
	})
}

// processesOf lists the processes in a job's cgroup.
func processesOf(t *testing.T, opts sandbox.Options) []string {
	pids, err := jobCgroup(t, newRuntime(), opts).Procs()
	if err != nil {
		return nil // the cgroup is gone
	}
	var left []string
	for _, pid := range pids {
		left = append(left, fmt.Sprintf("process %d", pid))
	}
	return left
}
