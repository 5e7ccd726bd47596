// Package job runs one dequeued job: it prepares the workspace (clone and
// files), runs each step in a sandbox of the configured runtime, and streams
// every command's redacted output to the coordinator as log entries.
package job

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/execd/execd/internal/phase"
	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/redact"
	"github.com/execd/execd/internal/sandbox"
)

// Error is a job failure with the message the coordinator records.
// Retryable failures are marked errored (tried again up to the job's
// maximum attempts); the others are marked failed.
type Error struct {
	Msg       string
	Retryable bool
}

func (e *Error) Error() string { return e.Msg }

// Preparer fills a job's workspace (repository clone, files) before its
// steps run, running its commands through run so each is logged. Its
// error says what failed, in words for the job's user; it is an *Error
// with Retryable false when no retry can succeed, and the job then fails
// at once.
type Preparer interface {
	Prepare(ctx context.Context, job protocol.Job, dir string, run HostRunner) error
}

// HostRunner runs a setup command on the host as a logged entry. When
// the command exits non-zero the error is an *exec.ExitError whose Stderr
// holds the end of the command's standard error, for the caller to say
// why it failed; the error does not repeat the key or the command line.
type HostRunner interface {
	Run(ctx context.Context, key string, command []string, dir string, env []string) error
}

// Runner runs jobs. One Runner serves all of an executor's jobs; it is
// safe for concurrent use.
type Runner struct {
	Client       LogClient
	Runtime      sandbox.Runtime
	Preparer     Preparer
	ExecutorName string
	// Secret is the executors' shared secret: redacted from all output.
	Secret string
	// WorkspaceRoot holds the jobs' workspaces.
	WorkspaceRoot  string
	KeepWorkspaces bool
	// DiskBytes bounds each job's workspace, and what else its steps
	// write to the host's disk (EXECUTOR_FIRECRACKER_DISK_SPACE); 0: no
	// limit. See [sandbox.Options].
	DiskBytes int64
	// Limits of each job's sandbox.
	CPUs        int
	MemoryBytes int64
	PIDs        int
	Network     sandbox.Network
	// Streaming of log entries.
	Streamer StreamerOptions
	Logger   *slog.Logger

	mu      sync.Mutex
	running map[string]int // job UID -> runs in progress
	// teardowns counts the sandboxes and workspaces being removed after
	// their job's result was known; see [Runner.Wait].
	teardowns sync.WaitGroup
}

// Wait waits until the sandboxes and workspaces of the jobs Run returned
// are removed: Run returns as soon as a job's outcome and logs are in,
// and removes them in the background, as nothing of them changes the
// job's result. Call it before the executor exits.
func (r *Runner) Wait() { r.teardowns.Wait() }

// Running reports whether a job with this UID (protocol.Job.UID) is being
// run: from before its sandbox is prepared until after it is destroyed.
// A janitor must leave such a job's sandbox alone.
func (r *Runner) Running(jobUID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running[jobUID] > 0
}

// track counts a run of the job in progress until the returned function
// is called.
func (r *Runner) track(jobUID string) (done func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running == nil {
		r.running = map[string]int{}
	}
	r.running[jobUID]++
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.running[jobUID]--; r.running[jobUID] <= 0 {
			delete(r.running, jobUID)
		}
	}
}

// Run runs job. ctx bounds the whole run including the delivery of its
// logs; exec bounds the steps: when exec ends (cancellation, the maximum
// runtime, the executor stopping) the running step is killed and Run
// returns exec's error after the logs are delivered. Run returns nil when
// every step succeeded, an *Error when the job failed.
func (r *Runner) Run(ctx context.Context, job protocol.Job, exec context.Context) error {
	secrets := map[string]string{}
	for k, v := range job.RedactedValues {
		secrets[k] = v
	}
	if r.Secret != "" {
		secrets[r.Secret] = "[executor secret]"
	}
	if job.Token != "" {
		secrets[job.Token] = "[job token]"
	}
	// What commands on the host print (git init) names the workspace as
	// steps see it, never where it lives on the host.
	dir := r.workspacePath(job)
	secrets[dir] = "/workspace"
	rep := redact.New(secrets)
	logs := NewStreamer(r.Client, job, rep, r.Streamer)
	err := r.run(ctx, exec, job, dir, logs)
	endLogs := phase.Start(ctx, phase.Logs)
	if werr := logs.Wait(); werr != nil && err == nil {
		err = werr
	}
	endLogs()
	// A failure message quotes what commands wrote (git's last words):
	// it is redacted as their log is.
	var jerr *Error
	if errors.As(err, &jerr) {
		jerr.Msg = rep.String(jerr.Msg)
	}
	return err
}

func (r *Runner) run(ctx, exec context.Context, job protocol.Job, dir string, logs *Streamer) error {
	// Removing the sandbox and the workspace does not change the job's
	// result: it runs in the background, in reverse order of creation,
	// while the job is marked. The job counts as running until it ends,
	// so the janitor leaves its sandbox alone.
	untrack := r.track(job.UID())
	var teardown []func()
	defer func() { r.teardown(ctx, untrack, teardown) }()
	if err := os.MkdirAll(r.WorkspaceRoot, 0o700); err != nil {
		return &Error{Msg: "create workspace: " + err.Error(), Retryable: true}
	}
	jobSteps := steps(job)
	endPrepare := phase.Start(ctx, phase.Prepare)
	sb, err := r.Runtime.Prepare(exec, sandbox.Options{
		JobID: job.UID(), Owner: r.ExecutorName,
		Workspace: dir, DiskBytes: r.DiskBytes, KeepWorkspace: r.KeepWorkspaces,
		CPUs: r.CPUs, MemoryBytes: r.MemoryBytes, PIDs: r.PIDs, Network: r.Network,
		RegistryAuth: dockerAuth(job.DockerAuthConfig), Steps: len(jobSteps),
	})
	endPrepare()
	if sb != nil {
		// Destroy is owed even after a failed Prepare: it removes what
		// Prepare made before it failed, the workspace included.
		teardown = append(teardown, func() {
			// Teardown outlives a cancelled job: it must not be skipped.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if err := sb.Destroy(dctx); err != nil {
				r.logger().Warn("destroy sandbox", "job", job.UID(), "err", err)
			}
		})
	}
	if err != nil {
		if exec.Err() != nil {
			return exec.Err()
		}
		e := logs.Start(ctx, "setup.runtime", []string{r.Runtime.Name(), "prepare"})
		e.Printf("execd: the %s runtime could not prepare a sandbox: %v\n", r.Runtime.Name(), err)
		e.Finish(1)
		return &Error{Msg: fmt.Sprintf("prepare %s sandbox: %v", r.Runtime.Name(), err), Retryable: true}
	}
	endWorkspace := phase.Start(ctx, phase.Workspace)
	err = r.fillWorkspace(ctx, exec, job, sb.Workspace(), logs)
	endWorkspace()
	if err != nil {
		return err
	}
	endPull := phase.Start(ctx, phase.Pull)
	err = r.pullImages(ctx, exec, sb, logs, job)
	endPull()
	if err != nil {
		return err
	}
	for _, st := range jobSteps {
		end := phase.Start(ctx, phase.Step)
		err := r.runStep(ctx, exec, sb, logs, st)
		end()
		if err != nil {
			return err
		}
	}
	return nil
}

// fillWorkspace fills the sandbox's workspace with the job's repository
// and files, then seals it for the steps.
func (r *Runner) fillWorkspace(ctx, exec context.Context, job protocol.Job, ws sandbox.Workspace, logs *Streamer) error {
	if r.Preparer != nil {
		host := &hostRunner{ctx: ctx, logs: logs}
		if err := r.Preparer.Prepare(exec, job, ws.HostDir(), host); err != nil {
			if exec.Err() != nil {
				return exec.Err()
			}
			retryable := true
			var jerr *Error
			if errors.As(err, &jerr) {
				retryable = jerr.Retryable
			}
			return &Error{Msg: "prepare workspace: " + err.Error(), Retryable: retryable}
		}
	}
	if err := ws.Seal(exec); err != nil {
		if exec.Err() != nil {
			return exec.Err()
		}
		return &Error{Msg: "prepare workspace: " + err.Error(), Retryable: true}
	}
	return nil
}

// teardown runs fs in reverse order in the background, then untrack; the
// job's phase trace stays open until it is done.
func (r *Runner) teardown(ctx context.Context, untrack func(), fs []func()) {
	release := phase.FromContext(ctx).Hold()
	r.teardowns.Add(1)
	go func() {
		defer r.teardowns.Done()
		defer release()
		defer untrack()
		defer phase.Start(ctx, phase.Teardown)()
		for i := len(fs) - 1; i >= 0; i-- {
			fs[i]()
		}
	}()
}

// pullImages makes the images of the job's docker steps available, each
// once, before the first step, as the log entry setup.docker.pull, when
// the sandbox runs steps in images (a [sandbox.Puller]).
func (r *Runner) pullImages(ctx, exec context.Context, sb sandbox.Sandbox, logs *Streamer, job protocol.Job) error {
	p, ok := sb.(sandbox.Puller)
	if !ok {
		return nil
	}
	var images []string
	for _, s := range job.DockerSteps {
		if s.Image != "" && !slices.Contains(images, s.Image) {
			images = append(images, s.Image)
		}
	}
	if len(images) == 0 {
		return nil
	}
	e := logs.Start(ctx, "setup.docker.pull", append([]string{"docker", "pull"}, images...))
	for _, image := range images {
		err := p.Pull(exec, image, e.Stdout())
		switch {
		case exec.Err() != nil:
			e.Printf("execd: pull stopped: %v\n", context.Cause(exec))
			e.Finish(-1)
			return exec.Err()
		case err != nil:
			e.Printf("execd: %v\n", err)
			e.Finish(1)
			return &Error{Msg: "pull images: " + err.Error(), Retryable: !permanentPull(err)}
		}
	}
	e.Finish(0)
	return nil
}

// permanentPull reports whether err is a pull failure no retry can fix:
// the image does not exist, the registry refused the credentials, or the
// image is too large for the runtime.
func permanentPull(err error) bool {
	return errors.Is(err, sandbox.ErrImageNotFound) || errors.Is(err, sandbox.ErrRegistryDenied) || errors.Is(err, sandbox.ErrImageTooLarge)
}

// dockerAuth turns a job's registry credentials into sandbox.Options'.
func dockerAuth(c protocol.DockerAuthConfig) map[string]string {
	if len(c.Auths) == 0 {
		return nil
	}
	m := make(map[string]string, len(c.Auths))
	for registry, a := range c.Auths {
		m[registry] = base64.StdEncoding.EncodeToString(a.Auth)
	}
	return m
}

type namedStep struct {
	key     string
	display []string
	step    sandbox.Step
}

// steps lists the job's docker steps, then its cli steps, with the log keys
// of the reference (step.docker.<key or index>, step.src.<key or index>).
func steps(job protocol.Job) []namedStep {
	var out []namedStep
	for i, s := range job.DockerSteps {
		key := s.Key
		if key == "" {
			key = strconv.Itoa(i)
		}
		out = append(out, namedStep{
			key:     "step.docker." + key,
			display: s.Commands,
			step:    sandbox.Step{Key: key, Image: s.Image, Commands: s.Commands, Dir: s.Dir, Env: s.Env},
		})
	}
	for i, s := range job.CliSteps {
		key := s.Key
		if key == "" {
			key = strconv.Itoa(i)
		}
		out = append(out, namedStep{
			key:     "step.src." + key,
			display: s.Commands,
			step:    sandbox.Step{Key: key, Commands: []string{shellJoin(s.Commands)}, Dir: s.Dir, Env: s.Env},
		})
	}
	return out
}

func (r *Runner) runStep(ctx, exec context.Context, sb sandbox.Sandbox, logs *Streamer, st namedStep) error {
	e := logs.Start(ctx, st.key, st.display)
	if st.step.Image != "" && !r.Runtime.Capabilities().Images {
		e.Printf("execd: the %s runtime runs steps on the host's system files; image %q is not used\n", r.Runtime.Name(), st.step.Image)
	}
	res, err := sb.Run(exec, st.step, sandbox.Output{Stdout: e.Stdout(), Stderr: e.Stderr()})
	var dirErr *sandbox.DirError
	switch {
	case exec.Err() != nil:
		e.Printf("execd: step stopped: %v\n", context.Cause(exec))
		e.Finish(-1)
		return exec.Err()
	case errors.As(err, &dirErr):
		// Every runtime refuses a missing dir rather than make it (as
		// docker would): a typo fails at once, the same everywhere.
		e.Printf("execd: %v\n", dirErr)
		e.Finish(-1)
		return &Error{Msg: fmt.Sprintf("%s: %v", st.key, dirErr)}
	case err != nil:
		e.Printf("execd: step could not run: %v\n", err)
		e.Finish(-1)
		return &Error{Msg: fmt.Sprintf("%s could not run: %v", st.key, err), Retryable: !permanentPull(err)}
	case res.OOMKilled:
		e.Printf("execd: step killed: it exceeded the job's memory limit of %s\n", formatBytes(r.MemoryBytes))
		e.Finish(res.ExitCode)
		return &Error{Msg: fmt.Sprintf("%s was killed: it exceeded the job's memory limit of %s (EXECUTOR_JOB_MEMORY)", st.key, formatBytes(r.MemoryBytes)), Retryable: true}
	}
	if res.ExitCode != 0 && res.DiskFull {
		// No retry can write more than the limit allows.
		e.Printf("execd: the workspace is full: it holds at most %s (EXECUTOR_FIRECRACKER_DISK_SPACE)\n", formatBytes(r.DiskBytes))
		e.Finish(res.ExitCode)
		return &Error{Msg: fmt.Sprintf("%s failed with exit code %d: the workspace is full (at most %s, EXECUTOR_FIRECRACKER_DISK_SPACE)", st.key, res.ExitCode, formatBytes(r.DiskBytes))}
	}
	e.Finish(res.ExitCode)
	if res.ExitCode != 0 {
		return &Error{Msg: fmt.Sprintf("%s failed with exit code %d", st.key, res.ExitCode), Retryable: true}
	}
	return nil
}

// workspacePath is where a new workspace of job goes: a fresh name, as
// the same job may run again.
func (r *Runner) workspacePath(job protocol.Job) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return filepath.Join(r.WorkspaceRoot, fmt.Sprintf("%s-%s", job.UID(), hex.EncodeToString(b)))
}

func (r *Runner) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.Default()
	}
	return r.Logger
}

// hostRunner runs setup commands on the host (git), each as a log entry,
// with an environment of their own: never the executor's, which holds the
// secret.
type hostRunner struct {
	ctx  context.Context // for log delivery
	logs *Streamer
}

func (h *hostRunner) Run(ctx context.Context, key string, command []string, dir string, env []string) error {
	e := h.logs.Start(h.ctx, key, command)
	cmd := exec.CommandContext(ctx, command[0], command[1:]...)
	cmd.Dir = dir
	cmd.Env = append([]string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + dir,
		"GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1",
		// Quiet git's advice, which would fill every job's log.
		"GIT_CONFIG_COUNT=2",
		"GIT_CONFIG_KEY_0=init.defaultBranch", "GIT_CONFIG_VALUE_0=main",
		"GIT_CONFIG_KEY_1=advice.detachedHead", "GIT_CONFIG_VALUE_1=false",
	}, env...)
	tail := &tailWriter{max: 4 << 10}
	stderr := &progressWriter{w: io.MultiWriter(e.Stderr(), tail)}
	cmd.Stdout, cmd.Stderr = e.Stdout(), stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err := cmd.Run()
	_ = stderr.Flush()
	code := 0
	if err != nil {
		code = -1
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			code = exitErr.ExitCode()
		}
	}
	e.Finish(code)
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		exitErr.Stderr = tail.buf
	}
	return err
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	max int
	buf []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - w.max; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(p), nil
}

// shellJoin quotes argv for /bin/sh.
func shellJoin(argv []string) string {
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(quoted, " ")
}

func formatBytes(n int64) string {
	switch {
	case n <= 0:
		return "unlimited"
	case n%(1<<30) == 0:
		return fmt.Sprintf("%dG", n>>30)
	case n%(1<<20) == 0:
		return fmt.Sprintf("%dM", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
