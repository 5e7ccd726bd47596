package job_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/execd/execd/internal/job"
	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/store"
)

// fakeRuntime records what the runner asks of it; its sandboxes pull
// images (sandbox.Puller) unless noPull is set.
type fakeRuntime struct {
	noPull  bool
	pullErr map[string]error // image -> error of its pull
	// running, when set, is asked about the job during Prepare, Run and
	// Destroy.
	running func() bool
	// destroying, when set, is called by Destroy before it returns.
	destroying func()
	// prepareErr fails Prepare; steps script Run by step key: its
	// result, its error, or blocking until its context ends.
	prepareErr error
	steps      map[string]fakeStep

	mu      sync.Mutex
	calls   []string // "prepare", "pull <image>", "run <key>", "destroy"
	opts    sandbox.Options
	notRuns []string // calls during which running reported false
}

func (f *fakeRuntime) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	if f.running != nil && !f.running() {
		f.notRuns = append(f.notRuns, call)
	}
}

// recorded returns the calls so far.
func (f *fakeRuntime) recorded() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeRuntime) Name() string { return "fake" }
func (f *fakeRuntime) Capabilities() sandbox.Capabilities {
	return sandbox.Capabilities{Images: !f.noPull, Networks: []sandbox.Network{sandbox.NetworkNone}}
}
func (f *fakeRuntime) Check(context.Context) error { return nil }
func (f *fakeRuntime) Prepare(_ context.Context, opts sandbox.Options) (sandbox.Sandbox, error) {
	f.record("prepare")
	f.mu.Lock()
	f.opts = opts
	f.mu.Unlock()
	if f.prepareErr != nil {
		return plainSandbox{f}, f.prepareErr
	}
	// As every runtime, the sandbox makes its workspace.
	if err := os.Mkdir(opts.Workspace, 0o777); err != nil {
		return plainSandbox{f}, err
	}
	if f.noPull {
		return plainSandbox{f}, nil
	}
	return &pullingSandbox{plainSandbox{f}}, nil
}

type plainSandbox struct{ f *fakeRuntime }

// fakeWorkspace is a host directory.
type fakeWorkspace struct{ f *fakeRuntime }

func (w fakeWorkspace) HostDir() string {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	return w.f.opts.Workspace
}

func (w fakeWorkspace) Seal(context.Context) error {
	w.f.record("seal")
	return nil
}

func (s plainSandbox) Workspace() sandbox.Workspace { return fakeWorkspace(s) }

// fakeStep is what a fake sandbox's Run of a step does.
type fakeStep struct {
	res   sandbox.Result
	err   error
	block bool // until the step's context ends
}

func (s plainSandbox) Run(ctx context.Context, st sandbox.Step, out sandbox.Output) (sandbox.Result, error) {
	s.f.record("run " + st.Key)
	// As every runtime, it refuses a dir that is not in the workspace.
	if err := sandbox.CheckDir(s.f.opts.Workspace, st.Dir); err != nil {
		return sandbox.Result{}, fmt.Errorf("fake: step %q: %w", st.Key, err)
	}
	fmt.Fprintf(out.Stdout, "ran %s in %s\n", st.Key, st.Image)
	script := s.f.steps[st.Key]
	if script.block {
		<-ctx.Done()
		return sandbox.Result{}, ctx.Err()
	}
	return script.res, script.err
}

func (s plainSandbox) Destroy(context.Context) error {
	s.f.record("destroy")
	os.RemoveAll(s.f.opts.Workspace)
	if s.f.destroying != nil {
		s.f.destroying()
	}
	return nil
}

type pullingSandbox struct{ plainSandbox }

func (s *pullingSandbox) Pull(_ context.Context, image string, out io.Writer) error {
	s.f.record("pull " + image)
	if err := s.f.pullErr[image]; err != nil {
		return err
	}
	fmt.Fprintf(out, "pulled %s\n", image)
	return nil
}

func runJob(t *testing.T, rt *fakeRuntime, spec store.Spec) (*coord, protocol.Job, error) {
	t.Helper()
	c := startCoord(t)
	client, j := c.dequeued(spec)
	r := &job.Runner{Client: client, Runtime: rt, ExecutorName: "ex", WorkspaceRoot: t.TempDir(), Network: sandbox.NetworkNone,
		Streamer: job.StreamerOptions{IsUnknownJob: isGone}}
	rt.running = func() bool { return r.Running(j.UID()) }
	err := r.Run(context.Background(), j, context.Background())
	// The sandbox is destroyed after Run returns.
	r.Wait()
	if r.Running(j.UID()) {
		t.Errorf("Running(%q) after Run returned and its teardown ended", j.UID())
	}
	return c, j, err
}

// TestRunner_TeardownAfterRun: Run returns once the job's outcome and
// logs are in; the sandbox and the workspace are removed after, while the
// job still counts as running (the janitor leaves its sandbox alone), and
// Wait waits for them.
func TestRunner_TeardownAfterRun(t *testing.T) {
	release := make(chan struct{})
	destroying := make(chan struct{})
	rt := &fakeRuntime{destroying: func() {
		close(destroying)
		<-release
	}}
	c := startCoord(t)
	client, j := c.dequeued(store.Spec{DockerSteps: []protocol.DockerStep{{Key: "a", Image: "img-a", Commands: []string{"true"}}}})
	root := t.TempDir()
	r := &job.Runner{Client: client, Runtime: rt, ExecutorName: "ex", WorkspaceRoot: root, Network: sandbox.NetworkNone,
		Streamer: job.StreamerOptions{IsUnknownJob: isGone}}
	if err := r.Run(context.Background(), j, context.Background()); err != nil {
		t.Fatal(err)
	}
	<-destroying
	if !r.Running(j.UID()) {
		t.Errorf("Running(%q) = false while its sandbox is being destroyed", j.UID())
	}
	if rt.opts.Steps != 1 {
		t.Errorf("Options.Steps = %d, want 1", rt.opts.Steps)
	}
	waited := make(chan struct{})
	go func() {
		r.Wait()
		close(waited)
	}()
	select {
	case <-waited:
		t.Fatal("Wait returned while a sandbox was being destroyed")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-waited
	if r.Running(j.UID()) {
		t.Errorf("Running(%q) after the teardown", j.UID())
	}
	if left, _ := os.ReadDir(root); len(left) != 0 {
		t.Errorf("workspaces left after the teardown: %v", left)
	}
}

func TestRunner_PullsEachImageOnce(t *testing.T) {
	rt := &fakeRuntime{}
	spec := store.Spec{
		DockerSteps: []protocol.DockerStep{
			{Key: "a", Image: "img-a", Commands: []string{"true"}},
			{Key: "b", Image: "img-b", Commands: []string{"true"}},
			{Key: "c", Image: "img-a", Commands: []string{"true"}},
		},
		CliSteps: []protocol.CliStep{{Key: "cli", Commands: []string{"src", "version"}}},
		DockerAuthConfig: protocol.DockerAuthConfig{Auths: map[string]protocol.DockerAuth{
			"registry.example.com": {Auth: []byte("alice:s3cret")},
		}},
	}
	c, j, err := runJob(t, rt, spec)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []string{"prepare", "seal", "pull img-a", "pull img-b", "run a", "run b", "run c", "run cli", "destroy"}
	if !slices.Equal(rt.calls, want) {
		t.Errorf("calls = %q, want %q", rt.calls, want)
	}
	if len(rt.notRuns) > 0 {
		t.Errorf("Running reported false during %q", rt.notRuns)
	}
	if got, want := rt.opts.RegistryAuth["registry.example.com"], "YWxpY2U6czNjcmV0"; got != want {
		t.Errorf("Options.RegistryAuth = %v, want the job's credentials, base64 %q", rt.opts.RegistryAuth, want)
	}
	var keys []string
	for _, e := range c.entries(j.ID) {
		keys = append(keys, e.Key)
		if e.Key == "setup.docker.pull" {
			if got := strings.Join(e.Command, " "); got != "docker pull img-a img-b" {
				t.Errorf("pull entry command = %q", got)
			}
			if e.Out != "stdout: pulled img-a\nstdout: pulled img-b\n" || e.ExitCode == nil || *e.ExitCode != 0 {
				t.Errorf("pull entry: out %q, exit %v", e.Out, e.ExitCode)
			}
		}
	}
	// Entries are added concurrently: their order in the store may differ
	// from the order they started in.
	slices.Sort(keys)
	if want := []string{"setup.docker.pull", "step.docker.a", "step.docker.b", "step.docker.c", "step.src.cli"}; !slices.Equal(keys, want) {
		t.Errorf("log entries = %q, want %q", keys, want)
	}
}

func TestRunner_PullFails(t *testing.T) {
	rt := &fakeRuntime{pullErr: map[string]error{"img-b": errors.New("image img-b is not on this host and its registry cannot be reached")}}
	spec := store.Spec{DockerSteps: []protocol.DockerStep{
		{Key: "a", Image: "img-a", Commands: []string{"true"}},
		{Key: "b", Image: "img-b", Commands: []string{"true"}},
	}}
	c, j, err := runJob(t, rt, spec)
	var jerr *job.Error
	if !errors.As(err, &jerr) || !strings.HasPrefix(jerr.Msg, "pull images: image img-b") || !strings.Contains(jerr.Msg, "cannot be reached") {
		t.Fatalf("Run = %v, want a job error naming the pull and why", err)
	}
	if !jerr.Retryable {
		t.Errorf("Run = %+v, want a retryable error: the registry may be reachable later", jerr)
	}
	if want := []string{"prepare", "seal", "pull img-a", "pull img-b", "destroy"}; !slices.Equal(rt.calls, want) {
		t.Errorf("calls = %q, want %q (no step after a failed pull)", rt.calls, want)
	}
	es := c.entries(j.ID)
	if len(es) != 1 || es[0].Key != "setup.docker.pull" || es[0].ExitCode == nil || *es[0].ExitCode != 1 ||
		!strings.Contains(es[0].Out, "cannot be reached") {
		t.Errorf("entries = %+v, want one failed setup.docker.pull saying why", es)
	}
}

func TestRunner_NoPullWithoutPuller(t *testing.T) {
	rt := &fakeRuntime{noPull: true}
	c, j, err := runJob(t, rt, store.Spec{DockerSteps: []protocol.DockerStep{{Key: "a", Image: "img-a", Commands: []string{"true"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"prepare", "seal", "run a", "destroy"}; !slices.Equal(rt.calls, want) {
		t.Errorf("calls = %q, want %q", rt.calls, want)
	}
	if es := c.entries(j.ID); len(es) != 1 || es[0].Key != "step.docker.a" {
		t.Errorf("entries = %+v, want only the step's", es)
	}
}
