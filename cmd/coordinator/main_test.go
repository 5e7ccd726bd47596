package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/execd/execd/internal/sandbox/shell"

	"github.com/execd/execd/internal/jobsapi"
	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/queueclient"
	"github.com/execd/execd/internal/store/postgres/pgtest"
)

// TestMain re-runs this test binary as the coordinator when asked, so the
// integration tests drive real coordinator processes without a build step.
func TestMain(m *testing.M) {
	shell.MaybeRunInit()
	if os.Getenv("EXECD_TEST_RUN_COORDINATOR") == "1" {
		main()
		return
	}
	pgtest.Main(m)
}

const (
	testExecSecret = "executor-secret-0123456789"
	testAPIToken   = "api-token-0123456789abcdef"
)

// process is a coordinator process serving on a fixed address.
type process struct {
	t       *testing.T
	addr    string
	dataDir string
	db      string
	env     []string // added to this process's environment
	cmd     *exec.Cmd
	logs    *os.File
}

func startCoordinator(t *testing.T, db string) *process {
	t.Helper()
	return startCoordinatorEnv(t, db)
}

// startCoordinatorEnv is startCoordinator with env added to the
// process's environment.
func startCoordinatorEnv(t *testing.T, db string, env ...string) *process {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`{"executors.accessToken": %q, "api.accessToken": %q,
  "executors.queueSettings": {"batches": {"stalledAge": "2s", "maxResets": 100}}}`, testExecSecret, testAPIToken)
	if err := os.WriteFile(filepath.Join(dir, "site-config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := &process{t: t, addr: addr, dataDir: dir, db: db, env: env}
	p.start()
	t.Cleanup(func() {
		if p.cmd.Process != nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	return p
}

func (p *process) start() {
	p.t.Helper()
	logs, err := os.OpenFile(filepath.Join(p.dataDir, "coordinator.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	p.cmd = exec.Command(os.Args[0], "serve", "--addr", p.addr, "--data-dir", p.dataDir, "--database", p.db)
	p.cmd.Env = append(append(os.Environ(), "EXECD_TEST_RUN_COORDINATOR=1"), p.env...)
	p.cmd.Stdout, p.cmd.Stderr = logs, logs
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + p.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	data, _ := os.ReadFile(logs.Name())
	p.t.Fatalf("coordinator did not become healthy; log:\n%s", data)
}

func (p *process) kill() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		p.t.Fatal(err)
	}
	_ = p.cmd.Wait()
}

func TestIntegration_ConcurrentDequeuersExactlyOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		kill bool
	}{{"steady", false}, {"coordinator killed and restarted", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("sqlite", func(t *testing.T) { exactlyOnce(t, "", tc.kill) })
			t.Run("postgres", func(t *testing.T) { exactlyOnce(t, pgtest.URL(t), tc.kill) })
		})
	}
}

// exactlyOnce runs 2,000 jobs through 32 concurrent HTTP clients doing the
// whole protocol cycle, optionally SIGKILLing and restarting the
// coordinator midway, and checks that every job completed exactly once.
func exactlyOnce(t *testing.T, db string, kill bool) {
	const numJobs, numClients = 2000, 32
	p := startCoordinator(t, db)
	base := "http://" + p.addr
	api := &jobsapi.Client{BaseURL: base, Token: testAPIToken}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	spec := jobsapi.SubmitRequest{}
	spec.DockerSteps = []protocol.DockerStep{{Image: "alpine", Commands: []string{"true"}}}
	ids := map[int]bool{}
	for range numJobs {
		j, err := api.Submit(ctx, "batches", spec)
		if err != nil {
			t.Fatal(err)
		}
		ids[j.ID] = true
	}

	var (
		mu        sync.Mutex
		completes = map[int]int{} // successful markComplete answers per job
		done      atomic.Int64
		wg        sync.WaitGroup
	)
	for i := range numClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &queueclient.Client{BaseURL: base, Secret: testExecSecret, ExecutorName: fmt.Sprintf("client-%d", i),
				HTTP: &http.Client{Timeout: 10 * time.Second}}
			for ctx.Err() == nil && done.Load() < numJobs {
				job, ok, err := c.Dequeue(ctx, []string{"batches"}, queueclient.DequeueOptions{Version: "5.0.0", Wait: time.Second})
				if err != nil || !ok {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				if err := runJob(ctx, c, job); err != nil {
					continue // lost to a restart: the resetter hands it out again
				}
				mu.Lock()
				completes[job.ID]++
				mu.Unlock()
				done.Add(1)
			}
		}()
	}
	if kill {
		for done.Load() < numJobs/3 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		p.kill()
		t.Logf("killed the coordinator after %d completions", done.Load())
		p.start()
	}
	// Jobs whose markComplete landed but whose answer was lost in the kill
	// are complete without a counted answer: wait on the store's view.
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if completedCount(ctx, t, api) == numJobs {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	wg.Wait()

	for id, n := range completes {
		if n > 1 {
			t.Errorf("job %d completed %d times", id, n)
		}
	}
	if got := completedCount(context.Background(), t, api); got != numJobs {
		t.Fatalf("%d of %d jobs completed", got, numJobs)
	}
	lost := 0
	for id := range ids {
		if completes[id] == 0 {
			lost++
		}
	}
	if !kill && lost > 0 {
		t.Errorf("%d jobs completed without a successful markComplete answer", lost)
	}
	t.Logf("%d jobs completed; %d answers lost to the kill", numJobs, lost)
}

// runJob does the protocol cycle of one job, retrying across a coordinator
// restart.
func runJob(ctx context.Context, c *queueclient.Client, job protocol.Job) error {
	retry := func(f func() error) error {
		for range 100 {
			err := f()
			if err == nil || errors.Is(err, queueclient.ErrUnknownJob) || ctx.Err() != nil {
				return err
			}
			var se *queueclient.StatusError
			if errors.As(err, &se) {
				return err
			}
			time.Sleep(20 * time.Millisecond) // connection refused: the coordinator is restarting
		}
		return errors.New("gave up")
	}
	var entry int
	start := time.Now()
	if err := retry(func() (err error) {
		entry, err = c.AddLogEntry(ctx, job, protocol.ExecutionLogEntry{Key: "step.docker.0", Command: []string{"true"}, StartTime: start})
		return err
	}); err != nil {
		return err
	}
	code, dur := 0, 1
	if err := retry(func() error {
		return c.UpdateLogEntry(ctx, job, entry, protocol.ExecutionLogEntry{Key: "step.docker.0", Command: []string{"true"}, StartTime: start, ExitCode: &code, DurationMs: &dur, Out: "stdout: ok\n"})
	}); err != nil {
		return err
	}
	return retry(func() error { return c.MarkComplete(ctx, job) })
}

func completedCount(ctx context.Context, t *testing.T, api *jobsapi.Client) int {
	n, before := 0, 0
	for {
		l, err := api.List(ctx, "batches", "completed", "", before, 1000)
		if err != nil {
			return -1
		}
		n += len(l.Jobs)
		if l.Next == "" {
			return n
		}
		fmt.Sscan(l.Next, &before)
	}
}

func TestCLI_BadSiteConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "site-config.json")
	os.WriteFile(cfg, []byte(`{"executors.accessToken": "short"}`), 0o600)
	cmd := exec.Command(os.Args[0], "serve", "--addr", "127.0.0.1:0", "--data-dir", dir)
	cmd.Env = append(os.Environ(), "EXECD_TEST_RUN_COORDINATOR=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("serve started with a 5-character executors.accessToken")
	}
	for _, want := range []string{cfg, "executors.accessToken", "at least 20"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output %q does not contain %q", out, want)
		}
	}
}

func TestCLI_Jobs(t *testing.T) {
	p := startCoordinator(t, "")
	t.Setenv("EXECD_URL", "http://"+p.addr)
	t.Setenv("EXECD_API_TOKEN", testAPIToken)
	specFile := filepath.Join(t.TempDir(), "spec.json")
	os.WriteFile(specFile, []byte(`{"dockerSteps": [{"image": "alpine", "commands": ["cat hello.txt"]}]}`), 0o600)
	local := filepath.Join(t.TempDir(), "hello.txt")
	os.WriteFile(local, []byte("hello\n"), 0o600)

	cli := func(args ...string) (string, error) {
		var out, errOut strings.Builder
		err := run(t.Context(), args, &out, &errOut)
		return out.String() + errOut.String(), err
	}
	out, err := cli("jobs", "submit", "-queue", "batches", "-files", "hello.txt="+local, specFile)
	if err != nil || !strings.Contains(out, `"state": "queued"`) || !strings.Contains(out, `"hello.txt"`) {
		t.Fatalf("jobs submit: %v\n%s", err, out)
	}
	// An executor runs it.
	c := &queueclient.Client{BaseURL: "http://" + p.addr, Secret: testExecSecret, ExecutorName: "cli-ex"}
	job, ok, err := c.Dequeue(t.Context(), []string{"batches"}, queueclient.DequeueOptions{Version: "5.0.0"})
	if err != nil || !ok {
		t.Fatalf("dequeue: %v %v", ok, err)
	}
	if string(job.Files["hello.txt"].Content) != "hello\n" {
		t.Errorf("file content = %q, want hello", job.Files["hello.txt"].Content)
	}
	code := 0
	id, _ := c.AddLogEntry(t.Context(), job, protocol.ExecutionLogEntry{Key: "step.docker.0", Command: []string{"cat", "hello.txt"}, StartTime: time.Now()})
	c.UpdateLogEntry(t.Context(), job, id, protocol.ExecutionLogEntry{Key: "step.docker.0", Command: []string{"cat", "hello.txt"}, StartTime: time.Now(), Out: "stdout: hello\n", ExitCode: &code})
	c.MarkComplete(t.Context(), job)

	want := fmt.Sprint(job.ID)
	if out, err := cli("jobs", "list", "-queue", "batches"); err != nil || !strings.Contains(out, want) || !strings.Contains(out, "completed") {
		t.Errorf("jobs list: %v\n%s", err, out)
	}
	if out, err := cli("jobs", "logs", "-queue", "batches", want); err != nil || !strings.Contains(out, "stdout: hello") || !strings.Contains(out, "completed") {
		t.Errorf("jobs logs: %v\n%s", err, out)
	}
	if out, err := cli("jobs", "cancel", "-queue", "batches", want); err == nil || !strings.Contains(err.Error(), "completed") {
		t.Errorf("jobs cancel of a completed job: %v\n%s", err, out)
	}
	if out, err := cli("executors"); err != nil || !strings.Contains(out, "cli-ex") {
		t.Errorf("executors: %v\n%s", err, out)
	}
	t.Setenv("EXECD_API_TOKEN", "")
	if _, err := cli("jobs", "get", "-queue", "batches", want); err == nil || !strings.Contains(err.Error(), "EXECD_API_TOKEN") {
		t.Errorf("jobs get without a token: %v, want an error naming EXECD_API_TOKEN", err)
	}
}

func TestQuickstart(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for i := range 2 { // the second run reuses the data dir
		ctx, cancel := context.WithCancel(t.Context())
		out := &syncBuffer{}
		done := make(chan error, 1)
		go func() { done <- run(ctx, []string{"quickstart", "--data-dir", dir, "--addr", addr}, out, out) }()
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(out.String(), "keeps serving") && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("run %d: quickstart: %v\n%s", i, err, out)
		}
		got := out.String()
		for _, want := range []string{fmt.Sprintf("job %d: completed", i+1), "checked out v1.0.0", "build ok", "[REDACTED]", "API token:"} {
			if !strings.Contains(got, want) {
				t.Errorf("run %d: output lacks %q:\n%s", i, want, got)
			}
		}
		if strings.Contains(got, "demo-secret-value-1234") {
			t.Errorf("run %d: the demo secret was printed:\n%s", i, got)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCLI_JobsLogsFollow: jobs logs -follow prints each entry's output as
// it is appended, once, and -tail the end of it.
func TestCLI_JobsLogsFollow(t *testing.T) {
	p := startCoordinator(t, "")
	t.Setenv("EXECD_URL", "http://"+p.addr)
	t.Setenv("EXECD_API_TOKEN", testAPIToken)
	var out syncBuffer
	if err := run(t.Context(), []string{"jobs", "submit", "-queue", "batches", writeSpec(t, `{"dockerSteps": [{"image": "alpine", "commands": ["make"]}]}`)}, &out, &out); err != nil {
		t.Fatalf("submit: %v\n%s", err, out.String())
	}
	c := &queueclient.Client{BaseURL: "http://" + p.addr, Secret: testExecSecret, ExecutorName: "cli-ex"}
	job, ok, err := c.Dequeue(t.Context(), []string{"batches"}, queueclient.DequeueOptions{Version: "5.0.0"})
	if err != nil || !ok {
		t.Fatalf("dequeue: %v %v", ok, err)
	}
	id, err := c.AddLogEntry(t.Context(), job, protocol.ExecutionLogEntry{Key: "step.docker.0", Command: []string{"make"}, StartTime: time.Now(), Out: "stdout: building\n"})
	if err != nil {
		t.Fatal(err)
	}
	var follow syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(t.Context(), []string{"jobs", "logs", "-queue", "batches", "-follow", fmt.Sprint(job.ID)}, &follow, &follow)
	}()
	waitOutput := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(follow.String(), want); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("jobs logs -follow printed %q, want %q in it", follow.String(), want)
			}
		}
	}
	waitOutput("stdout: building\n")
	n := int64(len("stdout: building\n"))
	for _, chunk := range []string{"stdout: compiling ö\n", "stdout: linking\n"} {
		if n, err = c.AppendLogEntry(t.Context(), job, id, n, []byte(chunk), nil, nil); err != nil {
			t.Fatal(err)
		}
		waitOutput(chunk)
	}
	code, dur := 0, 42
	if _, err := c.AppendLogEntry(t.Context(), job, id, n, []byte("stdout: done\n"), &code, &dur); err != nil {
		t.Fatal(err)
	}
	if err := c.MarkComplete(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := "== step.docker.0: make\nstdout: building\nstdout: compiling ö\nstdout: linking\nstdout: done\n== step.docker.0: exit 0 after 42ms\njob " + fmt.Sprint(job.ID) + ": completed \n"
	if got := follow.String(); got != want {
		t.Errorf("jobs logs -follow printed:\n%s\nwant:\n%s", got, want)
	}
	var tail syncBuffer
	if err := run(t.Context(), []string{"jobs", "logs", "-queue", "batches", "-tail", "13", fmt.Sprint(job.ID)}, &tail, &tail); err != nil ||
		!strings.Contains(tail.String(), "== (54 earlier bytes not shown)\nstdout: done\n==") {
		t.Errorf("jobs logs -tail 13: %v\n%s", err, tail.String())
	}
}

func writeSpec(t *testing.T, spec string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "spec.json")
	if err := os.WriteFile(f, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestExternalURL(t *testing.T) {
	host, _ := os.Hostname()
	tests := []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3080}, "http://127.0.0.1:3080"},
		{&net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 8080}, "http://10.1.2.3:8080"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 3080}, "http://[::1]:3080"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 3080}, "http://" + net.JoinHostPort(host, "3080")},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 3080}, "http://" + net.JoinHostPort(host, "3080")},
	}
	for _, tt := range tests {
		if got := externalURL(tt.addr); got != tt.want {
			t.Errorf("externalURL(%v) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

// TestNoContainerRuntimeLinked: the coordinator (and its quickstart's
// executor) links no container runtime: no docker client.
func TestNoContainerRuntimeLinked(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skipf("skipping: no go command: %v", err)
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "github.com/docker/docker/client" || pkg == "github.com/execd/execd/internal/sandbox/docker" {
			t.Errorf("cmd/coordinator links %s", pkg)
		}
	}
}
