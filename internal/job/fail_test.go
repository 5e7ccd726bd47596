package job_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/execd/execd/internal/job"
	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/store"
)

// preparerFunc is a job.Preparer.
type preparerFunc func(ctx context.Context, j protocol.Job, dir string, run job.HostRunner) error

func (f preparerFunc) Prepare(ctx context.Context, j protocol.Job, dir string, run job.HostRunner) error {
	return f(ctx, j, dir, run)
}

// runPrepared runs a job of spec whose workspace prepare is p.
func runPrepared(t *testing.T, spec store.Spec, p job.Preparer) error {
	t.Helper()
	c := startCoord(t)
	client, j := c.dequeued(spec)
	r := &job.Runner{Client: client, Runtime: &fakeRuntime{}, Preparer: p, ExecutorName: "ex", WorkspaceRoot: t.TempDir(),
		Network: sandbox.NetworkNone, Streamer: job.StreamerOptions{IsUnknownJob: isGone}}
	return r.Run(context.Background(), j, context.Background())
}

// TestRunner_Failures: the job's failure message names the phase once and
// the cause, and the failure is retryable unless no retry can fix it.
func TestRunner_Failures(t *testing.T) {
	step := []protocol.DockerStep{{Key: "a", Image: "img-a", Commands: []string{"true"}}}
	tests := []struct {
		name      string
		prepare   error // returned by the preparer
		pull      error // returned by the pull of img-a
		spec      store.Spec
		want      string
		retryable bool
	}{
		{
			name:    "permanent prepare failure",
			prepare: &job.Error{Msg: "commit 01 does not exist in repository r"},
			want:    "prepare workspace: commit 01 does not exist in repository r",
		},
		{
			name:      "retryable prepare failure",
			prepare:   &job.Error{Msg: "the coordinator could not be reached", Retryable: true},
			want:      "prepare workspace: the coordinator could not be reached",
			retryable: true,
		},
		{
			name:      "unclassified prepare failure",
			prepare:   errors.New("disk full"),
			want:      "prepare workspace: disk full",
			retryable: true,
		},
		{
			name:    "redacted",
			prepare: &job.Error{Msg: "fatal: could not read hunter2"},
			spec:    store.Spec{RedactedValues: map[string]string{"hunter2": "[PASSWORD]"}},
			want:    "prepare workspace: fatal: could not read [PASSWORD]",
		},
		{
			name: "image not found",
			pull: fmt.Errorf("docker: image %q does not exist in registry r: %w", "img-a", sandbox.ErrImageNotFound),
			want: `pull images: docker: image "img-a" does not exist in registry r`,
		},
		{
			name: "credentials refused",
			pull: fmt.Errorf("docker: registry r refused the credentials: %w", sandbox.ErrRegistryDenied),
			want: "pull images: docker: registry r refused the credentials",
		},
		{
			name:      "registry unreachable",
			pull:      errors.New("docker: registry r cannot be reached"),
			want:      "pull images: docker: registry r cannot be reached",
			retryable: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			spec.DockerSteps = step
			c := startCoord(t)
			client, j := c.dequeued(spec)
			rt := &fakeRuntime{pullErr: map[string]error{"img-a": tt.pull}}
			r := &job.Runner{Client: client, Runtime: rt, ExecutorName: "ex", WorkspaceRoot: t.TempDir(),
				Network: sandbox.NetworkNone, Streamer: job.StreamerOptions{IsUnknownJob: isGone},
				Preparer: preparerFunc(func(context.Context, protocol.Job, string, job.HostRunner) error { return tt.prepare })}
			err := r.Run(context.Background(), j, context.Background())
			var jerr *job.Error
			if !errors.As(err, &jerr) {
				t.Fatalf("Run = %v, want a *job.Error", err)
			}
			if !strings.HasPrefix(jerr.Msg, tt.want) || jerr.Retryable != tt.retryable {
				t.Errorf("Run = %+v, want a message starting %q, retryable %v", jerr, tt.want, tt.retryable)
			}
		})
	}
}

// TestHostRunner_Error: a failed setup command's error carries the end
// of its stderr, for the preparer to say why, and not the log key or the
// command line, which are in the log.
func TestHostRunner_Error(t *testing.T) {
	var runErr error
	err := runPrepared(t, store.Spec{}, preparerFunc(func(ctx context.Context, _ protocol.Job, dir string, run job.HostRunner) error {
		runErr = run.Run(ctx, "setup.thing", []string{"sh", "-c", "echo working; printf 'progress\\r50%%\\rfatal: the reason\\n' >&2; exit 3"}, dir, nil)
		return runErr
	}))
	var ee *exec.ExitError
	if !errors.As(runErr, &ee) || ee.ExitCode() != 3 || !strings.HasSuffix(string(ee.Stderr), "fatal: the reason\n") {
		t.Fatalf("HostRunner.Run = %#v, want an *exec.ExitError of exit code 3 with the stderr", runErr)
	}
	for _, nw := range []string{"setup.thing", "echo working"} {
		if strings.Contains(runErr.Error(), nw) {
			t.Errorf("HostRunner.Run = %v, want an error without %q", runErr, nw)
		}
	}
	if err == nil {
		t.Errorf("Run succeeded, want the preparer's failure")
	}
}

// TestRunner_StepDir: a step whose dir is not a directory of the workspace
// fails the job at once, naming the dir: the runtime refuses to run it
// (docker would create it) with a sandbox.DirError.
func TestRunner_StepDir(t *testing.T) {
	prepare := preparerFunc(func(_ context.Context, _ protocol.Job, dir string, _ job.HostRunner) error {
		os.MkdirAll(filepath.Join(dir, "src", "pkg"), 0o755)
		os.WriteFile(filepath.Join(dir, "file.txt"), nil, 0o644)
		return os.Symlink("/etc", filepath.Join(dir, "etc-link"))
	})
	tests := []struct {
		dir  string
		want string // in the failure message; "" means the step ran
	}{
		{"", ""},
		{".", ""},
		{"src/pkg", ""},
		{"src/", ""},
		{"srcc", `step.docker.s: the step's dir "srcc" does not exist in the workspace`},
		{"file.txt", `the step's dir "file.txt" is not a directory`},
		{"etc-link", `the step's dir "etc-link" is not a directory within the workspace`},
	}
	for _, tt := range tests {
		t.Run("dir_"+strings.ReplaceAll(tt.dir, "/", "_"), func(t *testing.T) {
			c := startCoord(t)
			client, j := c.dequeued(store.Spec{DockerSteps: []protocol.DockerStep{{Key: "s", Image: "img", Commands: []string{"true"}, Dir: tt.dir}}})
			rt := &fakeRuntime{noPull: true}
			r := &job.Runner{Client: client, Runtime: rt, Preparer: prepare, ExecutorName: "ex", WorkspaceRoot: t.TempDir(),
				Network: sandbox.NetworkNone, Streamer: job.StreamerOptions{IsUnknownJob: isGone}}
			err := r.Run(context.Background(), j, context.Background())
			if tt.want == "" {
				if err != nil {
					t.Errorf("dir %q: err %v; want the step run", tt.dir, err)
				}
				return
			}
			var jerr *job.Error
			if !errors.As(err, &jerr) || jerr.Retryable || !strings.Contains(jerr.Msg, tt.want) {
				t.Errorf("dir %q: err %#v, want a permanent failure containing %q", tt.dir, err, tt.want)
			}
		})
	}
}

// TestRunner_Outcomes: how each way a sandbox ends a job becomes the job's
// outcome, with a scripted fake runtime: exit codes, memory kills, steps
// that cannot run, sandboxes that cannot be prepared, cancellation.
func TestRunner_Outcomes(t *testing.T) {
	twoSteps := store.Spec{DockerSteps: []protocol.DockerStep{
		{Key: "a", Image: "img", Commands: []string{"a"}}, {Key: "b", Image: "img", Commands: []string{"b"}},
	}}
	canceled := errors.New("the job was canceled")
	tests := []struct {
		name      string
		rt        *fakeRuntime
		cancel    bool     // the job's execution context ends while step a runs
		wantMsg   string   // "" means success
		retryable bool     // of the failure
		wantErr   error    // instead of a *job.Error
		wantRuns  []string // the steps run
	}{
		{"success", &fakeRuntime{}, false, "", false, nil, []string{"a", "b"}},
		{"exit code", &fakeRuntime{steps: map[string]fakeStep{"a": {res: sandbox.Result{ExitCode: 3}}}}, false,
			"step.docker.a failed with exit code 3", true, nil, []string{"a"}},
		{"memory", &fakeRuntime{steps: map[string]fakeStep{"b": {res: sandbox.Result{ExitCode: 137, OOMKilled: true}}}}, false,
			"step.docker.b was killed: it exceeded the job's memory limit of 64M (EXECUTOR_JOB_MEMORY)", true, nil, []string{"a", "b"}},
		{"cannot run", &fakeRuntime{steps: map[string]fakeStep{"a": {err: errors.New("daemon gone")}}}, false,
			"step.docker.a could not run: daemon gone", true, nil, []string{"a"}},
		{"image not found", &fakeRuntime{steps: map[string]fakeStep{"a": {err: fmt.Errorf("pull: %w", sandbox.ErrImageNotFound)}}}, false,
			"step.docker.a could not run", false, nil, []string{"a"}},
		{"image too large", &fakeRuntime{steps: map[string]fakeStep{"a": {err: fmt.Errorf("root file system: %w", sandbox.ErrImageTooLarge)}}}, false,
			"step.docker.a could not run", false, nil, []string{"a"}},
		{"disk full", &fakeRuntime{steps: map[string]fakeStep{"a": {res: sandbox.Result{ExitCode: 1, DiskFull: true}}}}, false,
			"step.docker.a failed with exit code 1: the workspace is full (at most 1G, EXECUTOR_FIRECRACKER_DISK_SPACE)", false, nil, []string{"a"}},
		{"prepare fails", &fakeRuntime{prepareErr: errors.New("no cgroup")}, false,
			"prepare fake sandbox: no cgroup", true, nil, nil},
		{"canceled", &fakeRuntime{steps: map[string]fakeStep{"a": {block: true}}}, true,
			"", false, canceled, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := startCoord(t)
			client, j := c.dequeued(twoSteps)
			r := &job.Runner{Client: client, Runtime: tt.rt, ExecutorName: "ex", WorkspaceRoot: t.TempDir(), MemoryBytes: 64 << 20, DiskBytes: 1 << 30,
				Network: sandbox.NetworkNone, Streamer: job.StreamerOptions{IsUnknownJob: isGone}}
			exec, stop := context.WithCancelCause(context.Background())
			defer stop(nil)
			if tt.cancel {
				go func() {
					for !slices.Contains(tt.rt.recorded(), "run a") {
						time.Sleep(5 * time.Millisecond)
					}
					stop(canceled)
				}()
			}
			err := r.Run(context.Background(), j, exec)
			var runs []string
			for _, c := range tt.rt.recorded() {
				if k, ok := strings.CutPrefix(c, "run "); ok {
					runs = append(runs, k)
				}
			}
			if !slices.Equal(runs, tt.wantRuns) {
				t.Errorf("steps run %q, want %q", runs, tt.wantRuns)
			}
			var jerr *job.Error
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, context.Canceled) || context.Cause(exec) != tt.wantErr {
					t.Errorf("Run = %v (cause %v), want the execution context's end", err, context.Cause(exec))
				}
			case tt.wantMsg == "":
				if err != nil {
					t.Errorf("Run = %v, want success", err)
				}
			case !errors.As(err, &jerr) || !strings.Contains(jerr.Msg, tt.wantMsg) || jerr.Retryable != tt.retryable:
				t.Errorf("Run = %#v, want a failure containing %q, retryable %v", err, tt.wantMsg, tt.retryable)
			}
			r.Wait()
			if !slices.Contains(tt.rt.recorded(), "destroy") {
				t.Error("the sandbox was not destroyed")
			}
		})
	}
}
