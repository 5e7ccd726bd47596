// Package e2e tests the system as a user runs it: real coordinator and
// executor binaries, real git repositories, real HTTP between processes,
// and the shell sandbox.
package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/execd/execd/internal/jobsapi"
	"github.com/execd/execd/internal/sandbox/diskimage"
	"github.com/execd/execd/internal/testutil"
)

const (
	execSecret = "e2e-executor-secret-0123456789"
	apiToken   = "e2e-api-token-0123456789abcdef"
	queue      = "batches"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "execd-e2e-bin-")
	if err != nil {
		panic(err)
	}
	// Installed as a release installs them: execd-sandbox-init next to
	// the executor, which then uses it for its shell sandboxes.
	build := exec.Command("go", "build", "-o", dir, "github.com/execd/execd/cmd/coordinator", "github.com/execd/execd/cmd/executor", "github.com/execd/execd/cmd/execd-sandbox-init")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build binaries:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running binary.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan struct{}
}

func start(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	return startWith(t, name, env, nil, args...)
}

// startWith is start with setup, if not nil, applied to the command first.
func startWith(t *testing.T, name string, env []string, setup func(*exec.Cmd), args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, log: &bytes.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(binDir, args[0]), args[1:]...)
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if setup != nil {
		setup(p.cmd)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s log:\n%s", p.name, p.log.String())
		}
	})
	return p
}

// stop sends SIGTERM, as systemd would, and waits a minute at most for
// the process to exit.
func (p *proc) stop() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		p.t.Fatalf("%s did not stop within a minute of SIGTERM", p.name)
	}
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// system is a coordinator with a repository and executors.
type system struct {
	t       *testing.T
	dir     string
	addr    string
	coord   *proc
	api     *jobsapi.Client
	repo    *repo
	execNum int
}

func newSystem(t *testing.T, queueSettings string) *system {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		testutil.Missing(t, "git", err.Error())
	}
	dir := tempDir(t)
	cfg := fmt.Sprintf(`{"executors.accessToken": %q, "api.accessToken": %q, "executors.queueSettings": {"batches": %s}}`, execSecret, apiToken, queueSettings)
	if err := os.WriteFile(filepath.Join(dir, "site-config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &system{t: t, dir: dir, addr: addr, repo: newRepo(t, filepath.Join(dir, "repos"))}
	s.api = &jobsapi.Client{BaseURL: s.url(), Token: apiToken}
	s.startCoordinator()
	return s
}

// tempDir is t.TempDir whose mounts are undone before it is removed: an
// executor run as root mounts its workspace directory nosuid, and one
// that is killed leaves the mount for the next executor's janitor.
func tempDir(t *testing.T) string {
	dir := t.TempDir()
	t.Cleanup(func() { _ = diskimage.UnmountUnder(dir) })
	return dir
}

func (s *system) url() string { return "http://" + s.addr }

func (s *system) startCoordinator() {
	s.t.Helper()
	s.coord = start(s.t, "coordinator", nil, "coordinator", "serve", "--addr", s.addr, "--data-dir", filepath.Join(s.dir, "data"),
		"--site-config", filepath.Join(s.dir, "site-config.json"), "--repos-dir", filepath.Join(s.dir, "repos"))
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(s.url() + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("coordinator not healthy:\n%s", s.coord.log)
}

func (s *system) startExecutor(extra ...string) *proc {
	s.t.Helper()
	return s.startExecutorWith(nil, extra...)
}

// startExecutorWith is startExecutor with setup applied to the command.
func (s *system) startExecutorWith(setup func(*exec.Cmd), extra ...string) *proc {
	s.t.Helper()
	s.execNum++
	env := append([]string{
		"EXECUTOR_FRONTEND_URL=" + s.url(),
		"EXECUTOR_FRONTEND_PASSWORD=" + execSecret,
		"EXECUTOR_QUEUE_NAME=" + queue,
		"EXECUTOR_METRICS_ADDR=off",
		"EXECUTOR_JOB_MEMORY=512M",
		"EXECUTOR_JOB_NUM_CPUS=1",
		"EXECUTOR_WORKSPACE_ROOT=" + filepath.Join(s.dir, "workspaces"),
		"EXECUTOR_LONG_POLL=5s",
		// The jobs of these tests run the host's tools; docker_test.go
		// overrides it.
		"EXECUTOR_RUNTIME=shell",
	}, extra...)
	return startWith(s.t, fmt.Sprintf("executor-%d", s.execNum), env, setup, "executor", "run")
}

func (s *system) submit(spec string) int {
	s.t.Helper()
	var req jobsapi.SubmitRequest
	if err := jsonUnmarshal(spec, &req); err != nil {
		s.t.Fatalf("spec: %v", err)
	}
	j, err := s.api.Submit(context.Background(), queue, req)
	if err != nil {
		s.t.Fatal(err)
	}
	return j.ID
}

func (s *system) job(id int) jobsapi.Job {
	s.t.Helper()
	j, err := s.api.Get(context.Background(), queue, id)
	if err != nil {
		s.t.Fatal(err)
	}
	return j
}

// waitState waits until job id is in one of states.
func (s *system) waitState(id int, timeout time.Duration, states ...string) jobsapi.Job {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j, err := s.api.Get(context.Background(), queue, id)
		if err == nil {
			for _, st := range states {
				if j.State == st {
					return j
				}
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("job %d is %s after %v, want %v; logs:\n%s", id, j.State, timeout, states, formatLogs(j))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func formatLogs(j jobsapi.Job) string {
	var b strings.Builder
	fmt.Fprintf(&b, "failure: %s\n", j.FailureMessage)
	for _, e := range j.ExecutionLogs {
		code := "-"
		if e.ExitCode != nil {
			code = fmt.Sprint(*e.ExitCode)
		}
		fmt.Fprintf(&b, "== %s %q exit %s\n%s", e.Key, e.Command, code, e.Out)
	}
	return b.String()
}

// hostProcesses counts processes of the host whose command line contains s.
func hostProcesses(t *testing.T, s string) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(strings.ReplaceAll(string(cmdline), "\x00", " "), s) {
			n++
		}
	}
	return n
}

func waitNoProcesses(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for hostProcesses(t, s) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("processes running %q still exist after %v", s, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
