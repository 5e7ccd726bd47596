package e2e_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/execd/execd/internal/testutil"
)

const secret = "e2e-job-secret-value-987"

// TestE2E_WorkspaceOptions runs jobs that use every workspace option and
// every kind of file on two executors; each step checks the workspace
// itself and fails the job if it is wrong.
func TestE2E_WorkspaceOptions(t *testing.T) {
	s := newSystem(t, `{}`)
	s.startExecutor()
	s.startExecutor()
	if _, err := s.api.PutFile(context.Background(), "uploads", "data/blob.txt", bytes.NewReader([]byte("blob content\n"))); err != nil {
		t.Fatal(err)
	}
	c1, c2, c3 := s.repo.commits[0], s.repo.commits[1], s.repo.commits[2]
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name, spec string
		wantState  string
		wantInLog  []string
	}{
		{
			name: "full clone of an older commit, tags, repository directory, every file kind",
			spec: fmt.Sprintf(`{"repositoryName": %q, "commit": %q, "fetchTags": true, "repositoryDirectory": "src/repo",
				"files": {"inline.txt": {"content": %q}, "nested/dir/blob.txt": {"bucket": "uploads", "key": "data/blob.txt"}, "empty.txt": {}},
				"dockerSteps": [{"key": "check", "image": "alpine:3", "dir": "src/repo", "env": ["TOKEN=%s"], "commands": [
					"test \"$(cat README.md)\" = \"demo v1\"",
					"test \"$(git rev-parse HEAD)\" = %s",
					"git tag | grep -qx v1",
					"test \"$(cat ../../inline.txt)\" = \"inline content\"",
					"test \"$(cat ../../nested/dir/blob.txt)\" = \"blob content\"",
					"test -f ../../empty.txt && test ! -s ../../empty.txt",
					"echo token is $TOKEN"]}],
				"cliSteps": [{"key": "list", "command": ["ls", "src/repo"]}],
				"redactedValues": {%q: "[REDACTED]"}}`, repoName, c1, b64("inline content\n"), secret, c1, secret),
			wantState: "completed",
			wantInLog: []string{"token is [REDACTED]", "stdout: README.md"},
		},
		{
			name: "shallow clone without tags",
			spec: fmt.Sprintf(`{"repositoryName": %q, "commit": %q, "shallowClone": true,
				"dockerSteps": [{"image": "alpine:3", "commands": [
					"test \"$(git rev-list --count HEAD)\" = 1",
					"test -z \"$(git tag)\"",
					"test \"$(tail -1 README.md)\" = \"demo v2\""]}]}`, repoName, c2),
			wantState: "completed",
		},
		{
			name: "sparse checkout",
			spec: fmt.Sprintf(`{"repositoryName": %q, "commit": %q, "sparseCheckout": ["docs/*"],
				"dockerSteps": [{"image": "alpine:3", "commands": ["test -f docs/guide.md", "test ! -e src/main.sh"]}]}`, repoName, c2),
			wantState: "completed",
		},
		{
			name: "a file through a symbolic link out of the workspace",
			spec: fmt.Sprintf(`{"repositoryName": %q, "commit": %q, "files": {"evil/passwd": {"content": %q}},
				"dockerSteps": [{"image": "alpine:3", "commands": ["true"]}]}`, repoName, c3, b64("x")),
			wantState: "failed",
		},
		{
			name:      "a failing step",
			spec:      `{"dockerSteps": [{"key": "boom", "image": "alpine:3", "commands": ["echo about to fail", "exit 3"]}], "maxAttempts": 1}`,
			wantState: "failed",
			wantInLog: []string{"stdout: about to fail"},
		},
	}
	ids := make([]int, len(tests))
	for i, tt := range tests {
		ids[i] = s.submit(tt.spec)
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := s.waitState(ids[i], 60*time.Second, "completed", "failed", "errored", "canceled")
			logs := formatLogs(j)
			if j.State != tt.wantState {
				t.Fatalf("state %s, want %s; logs:\n%s", j.State, tt.wantState, logs)
			}
			if strings.Contains(logs, secret) || strings.Contains(logs, execSecret) {
				t.Errorf("a secret is in the stored logs:\n%s", logs)
			}
			for _, w := range tt.wantInLog {
				if !strings.Contains(logs, w) {
					t.Errorf("logs lack %q:\n%s", w, logs)
				}
			}
		})
	}
	// Each setup command is its own log entry.
	for _, id := range ids {
		if logs := formatLogs(s.job(id)); strings.Contains(logs, filepath.Join(s.dir, "workspaces")) {
			t.Errorf("job %d's log names the workspace's host path:\n%s", id, logs)
		}
	}
	if logs := formatLogs(s.job(ids[0])); !strings.Contains(logs, "Initialized empty Git repository in /workspace/src/repo/.git/") {
		t.Errorf("git init's line does not name the workspace as steps see it:\n%s", logs)
	}
	keys := map[string]bool{}
	for _, e := range s.job(ids[0]).ExecutionLogs {
		keys[e.Key] = true
		// git's progress meters keep their last state only.
		if e.Key == "setup.git.fetch" && (strings.Contains(e.Out, "\r") || !strings.Contains(e.Out, "done.")) {
			t.Errorf("the fetch's log holds carriage returns or no final progress line: %q", e.Out)
		}
	}
	for _, k := range []string{"setup.git.init", "setup.git.add-remote", "setup.git.fetch", "setup.git.checkout", "step.docker.check", "step.src.list"} {
		if !keys[k] {
			t.Errorf("job %d has no %s log entry (has %v)", ids[0], k, keys)
		}
	}
	if msg := s.job(ids[3]).FailureMessage; !strings.Contains(msg, "escapes the workspace") {
		t.Errorf("symlink escape failed with %q, want a message saying the path escapes the workspace", msg)
	}
	if msg := s.job(ids[4]).FailureMessage; !strings.Contains(msg, "step.docker.boom") || !strings.Contains(msg, "exit code 3") {
		t.Errorf("failing step: message %q, want it to name the step and exit code", msg)
	}
	if execs, err := s.api.Executors(context.Background()); err != nil || len(execs) != 2 {
		t.Errorf("executors: %v %v, want 2", execs, err)
	}
}

// TestE2E_ExecutorKilledMidStep: kill -9 of the executor running a job;
// its step's processes die with it, the coordinator resets the job, and
// the other executor completes it.
func TestE2E_ExecutorKilledMidStep(t *testing.T) {
	s := newSystem(t, `{"stalledAge": "8s"}`)
	first := s.startExecutor()
	id := s.submit(`{"dockerSteps": [{"image": "alpine:3", "commands": ["echo started", "sleep 6.321", "echo finished"]}]}`)
	s.waitState(id, 30*time.Second, "processing")
	waitProcesses(t, "sleep 6.321", 10*time.Second)
	s.startExecutor()
	first.kill()
	waitNoProcesses(t, "sleep 6.321", 3*time.Second)

	j := s.waitState(id, 60*time.Second, "completed", "failed", "errored")
	if j.State != "completed" || j.NumResets != 1 {
		t.Fatalf("job %s with %d resets, want completed after 1 reset; logs:\n%s", j.State, j.NumResets, formatLogs(j))
	}
	if logs := formatLogs(j); !strings.Contains(logs, "stdout: finished") {
		t.Errorf("logs of the second attempt lack its output:\n%s", logs)
	}
}

// TestE2E_CoordinatorRestartMidJob: the coordinator is killed and
// restarted while a job prints; the job completes and its log is whole.
func TestE2E_CoordinatorRestartMidJob(t *testing.T) {
	s := newSystem(t, `{}`)
	s.startExecutor()
	id := s.submit(`{"dockerSteps": [{"image": "alpine:3", "commands": ["for i in $(seq 1 40); do echo line $i; sleep 0.1; done"]}]}`)
	s.waitState(id, 30*time.Second, "processing")
	time.Sleep(time.Second)
	s.coord.kill()
	time.Sleep(1500 * time.Millisecond)
	s.startCoordinator()
	j := s.waitState(id, 60*time.Second, "completed", "failed", "errored")
	if j.State != "completed" {
		t.Fatalf("job %s, want completed; logs:\n%s", j.State, formatLogs(j))
	}
	out := j.ExecutionLogs[len(j.ExecutionLogs)-1].Out
	for i := 1; i <= 40; i++ {
		if !strings.Contains(out, fmt.Sprintf("stdout: line %d\n", i)) {
			t.Fatalf("log lacks line %d:\n%s", i, out)
		}
	}
}

// TestE2E_Cancel: cancelling a running job through the submission API
// kills its processes and the job is canceled within 10 s.
func TestE2E_Cancel(t *testing.T) {
	s := newSystem(t, `{}`)
	s.startExecutor()
	id := s.submit(`{"dockerSteps": [{"image": "alpine:3", "commands": ["sleep 1000.77"]}]}`)
	s.waitState(id, 30*time.Second, "processing")
	waitProcesses(t, "sleep 1000.77", 10*time.Second)
	start := time.Now()
	if _, err := s.api.Cancel(context.Background(), queue, id); err != nil {
		t.Fatal(err)
	}
	j := s.waitState(id, 10*time.Second, "canceled")
	waitNoProcesses(t, "sleep 1000.77", time.Until(start.Add(10*time.Second)))
	t.Logf("canceled after %v", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(formatLogs(j), "step stopped") {
		t.Errorf("the step's log does not say it was stopped:\n%s", formatLogs(j))
	}
}

// TestE2E_Validate: executor validate reports each check.
func TestE2E_Validate(t *testing.T) {
	s := newSystem(t, `{}`)
	run := func(secret string, env ...string) (string, error) {
		p := start(t, "validate", append([]string{
			"EXECUTOR_FRONTEND_URL=" + s.url(), "EXECUTOR_FRONTEND_PASSWORD=" + secret, "EXECUTOR_QUEUE_NAME=batches",
		}, env...), "executor", "validate")
		<-p.done
		if p.cmd.ProcessState.ExitCode() != 0 {
			return p.log.String(), fmt.Errorf("exit %d", p.cmd.ProcessState.ExitCode())
		}
		return p.log.String(), nil
	}
	out, err := run(execSecret)
	if err != nil || !strings.Contains(out, "ok    coordinator") || !strings.Contains(out, "ok    runtime shell") ||
		!strings.Contains(out, "ok    shell init     "+filepath.Join(binDir, "execd-sandbox-init")) {
		t.Errorf("validate with the right secret: %v\n%s", err, out)
	}
	out, err = run(execSecret, "EXECUTOR_SHELL_INIT=self")
	if err != nil || !strings.Contains(out, "-     shell init     the executor itself") {
		t.Errorf("validate with EXECUTOR_SHELL_INIT=self: %v\n%s", err, out)
	}
	out, err = run(execSecret, "EXECUTOR_JOB_NUM_CPUS=4096")
	if err != nil || !strings.Contains(out, "warn  job limits     EXECUTOR_JOB_NUM_CPUS=4096 exceeds the") {
		t.Errorf("validate with more CPUs than the host: %v\n%s", err, out)
	}
	out, err = run("wrong-secret-wrong-secret")
	if err == nil || !strings.Contains(out, "EXECUTOR_FRONTEND_PASSWORD") {
		t.Errorf("validate with a wrong secret: %v\n%s", err, out)
	}
}

func waitProcesses(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for hostProcesses(t, s) == 0 {
		if time.Now().After(deadline) {
			testutil.Missing(t, "namespaces", "no process running "+s+" appeared")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestE2E_Signals: the first SIGTERM drains (the running job completes, the
// executor exits 0 and takes no new job); a second SIGTERM stops the
// running job, which is marked failed saying the executor was stopped.
func TestE2E_Signals(t *testing.T) {
	s := newSystem(t, `{"maxAttempts": 1}`)
	e := s.startExecutor()
	id := s.submit(`{"dockerSteps": [{"image": "alpine:3", "commands": ["sleep 2", "echo done"]}]}`)
	s.waitState(id, 30*time.Second, "processing")
	next := s.submit(`{"dockerSteps": [{"image": "alpine:3", "commands": ["true"]}]}`)
	e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the executor did not exit after draining")
	}
	if code := e.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after draining, want 0", code)
	}
	if j := s.job(id); j.State != "completed" {
		t.Errorf("the running job is %s, want completed", j.State)
	}
	if j := s.job(next); j.State != "queued" {
		t.Errorf("the next job is %s, want queued: a draining executor takes none", j.State)
	}

	e = s.startExecutor()
	id = s.submit(`{"dockerSteps": [{"image": "alpine:3", "commands": ["sleep 1000.55"]}]}`)
	s.waitState(next, 30*time.Second, "completed")
	s.waitState(id, 30*time.Second, "processing")
	waitProcesses(t, "sleep 1000.55", 10*time.Second)
	e.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	e.cmd.Process.Signal(syscall.SIGTERM)
	j := s.waitState(id, 30*time.Second, "failed")
	if !strings.Contains(j.FailureMessage, "executor was stopped") {
		t.Errorf("failure message %q, want it to say the executor was stopped", j.FailureMessage)
	}
	waitNoProcesses(t, "sleep 1000.55", 10*time.Second)
	<-e.done
}

// TestE2E_BinaryFile: a job's inline file with every byte value reaches the
// step unchanged (our executor gets version 2 payloads, whose contents are
// bytes, though its version number is below Sourcegraph's 4.3.0).
func TestE2E_BinaryFile(t *testing.T) {
	s := newSystem(t, `{}`)
	s.startExecutor()
	content := make([]byte, 512)
	for i := range content {
		content[i] = byte(i)
	}
	sum := sha256.Sum256(content)
	id := s.submit(fmt.Sprintf(`{"maxAttempts": 1, "files": {"bin/all-bytes": {"content": %q}},
		"dockerSteps": [{"image": "alpine", "commands": ["sha256sum bin/all-bytes"]}]}`, base64.StdEncoding.EncodeToString(content)))
	j := s.waitState(id, time.Minute, "completed", "failed", "errored")
	if want := hex.EncodeToString(sum[:]); j.State != "completed" || !strings.Contains(formatLogs(j), "stdout: "+want) {
		t.Errorf("job %s; want completed with the file's sha256 %s:\n%s", j.State, want, formatLogs(j))
	}
}

// TestE2E_InheritedDescriptors: an executor started holding a descriptor
// of a root-only file passes it to no step.
func TestE2E_InheritedDescriptors(t *testing.T) {
	s := newSystem(t, `{}`)
	canary := filepath.Join(s.dir, "root-only")
	if err := os.WriteFile(canary, []byte("canary\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(canary, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s.startExecutorWith(func(cmd *exec.Cmd) {
		// fds 3..7 in the executor, as the escape test had 7.
		cmd.ExtraFiles = []*os.File{f, f, f, f, f}
	})
	id := s.submit(`{"maxAttempts": 1, "dockerSteps": [{"image": "alpine", "commands": [
		"ls /proc/self/fd | tr '\\n' ' '; echo",
		"for fd in 3 4 5 6 7 8 9; do (echo escaped >&$fd) 2>/dev/null && echo wrote to $fd; done; true"]}]}`)
	j := s.waitState(id, time.Minute, "completed", "failed", "errored")
	logs := formatLogs(j)
	if j.State != "completed" {
		t.Fatalf("job %s:\n%s", j.State, logs)
	}
	if strings.Contains(logs, "stdout: wrote to") {
		t.Errorf("a step wrote to a descriptor it inherited:\n%s", logs)
	}
	// ls itself opens one descriptor (3) for the directory it lists.
	if !strings.Contains(logs, "stdout: 0 1 2 3 \n") {
		t.Errorf("the step holds descriptors beyond stdin, stdout, stderr:\n%s", logs)
	}
	if b, _ := os.ReadFile(canary); string(b) != "canary\n" {
		t.Errorf("the root-only file was written to: %q", b)
	}
}

// cgroupsOf lists the cgroup directories of executor owner under the
// shell runtime's default parent, in every hierarchy.
func cgroupsOf(owner string) []string {
	v1, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", "execd", owner))
	v2, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "execd", owner))
	return append(v1, v2...)
}

func waitNoCgroups(t *testing.T, owner string, timeout time.Duration, why string) {
	t.Helper()
	for deadline := time.Now().Add(timeout); len(cgroupsOf(owner)) > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the cgroups of executor %s remain: %v", why, owner, cgroupsOf(owner))
		}
	}
}

// TestE2E_ShellCgroupsCleaned: the cgroups of a killed executor's jobs
// are removed by the next executor's janitor, and an executor that stops
// leaves no cgroup of its own.
func TestE2E_ShellCgroupsCleaned(t *testing.T) {
	s := newSystem(t, `{"stalledAge": "6s"}`)
	first := s.startExecutor()
	id := s.submit(`{"dockerSteps": [{"image": "alpine:3", "commands": ["echo started", "sleep 2.718"]}]}`)
	owner := s.waitState(id, 30*time.Second, "processing").WorkerHostname
	waitProcesses(t, "sleep 2.718", 10*time.Second)
	if len(cgroupsOf(owner)) == 0 {
		testutil.Missing(t, "cgroups", "the running job's cgroups are not under /sys/fs/cgroup/.../execd/"+owner)
	}
	first.kill()
	waitNoProcesses(t, "sleep 2.718", 3*time.Second)
	if len(cgroupsOf(owner)) == 0 {
		t.Fatal("the killed executor's cgroups vanished by themselves; the test shows nothing")
	}
	second := s.startExecutor()
	waitNoCgroups(t, owner, 15*time.Second, "after the next executor started")

	j := s.waitState(id, time.Minute, "completed", "failed", "errored")
	if j.State != "completed" {
		t.Fatalf("job %s:\n%s", j.State, formatLogs(j))
	}
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-second.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the executor did not stop within 30s of SIGTERM")
	}
	waitNoCgroups(t, j.WorkerHostname, time.Second, "after a clean stop")
}

// TestE2E_WorkspaceDiskLimit: a workspace holds at most
// EXECUTOR_FIRECRACKER_DISK_SPACE; a step that writes more fails the job
// at once, saying so, and the host's disk took no more than the limit.
func TestE2E_WorkspaceDiskLimit(t *testing.T) {
	if os.Geteuid() != 0 {
		testutil.Missing(t, "namespaces", "bounded workspaces need root")
	}
	s := newSystem(t, `{}`)
	s.startExecutor("EXECUTOR_FIRECRACKER_DISK_SPACE=32M")
	id := s.submit(`{"maxAttempts": 3, "dockerSteps": [{"image": "alpine", "commands": [
		"df -k /workspace | tail -1",
		"head -c $((64<<20)) /dev/zero > big",
		"echo wrote it all"]}]}`)
	j := s.waitState(id, time.Minute, "completed", "failed", "errored")
	logs := formatLogs(j)
	if j.State != "failed" || j.NumFailures != 1 || !strings.Contains(j.FailureMessage, "the workspace is full (at most 32M, EXECUTOR_FIRECRACKER_DISK_SPACE)") {
		t.Errorf("job %s after %d attempts, %q; want failed at once saying the workspace is full:\n%s", j.State, j.NumFailures, j.FailureMessage, logs)
	}
	if strings.Contains(logs, "stdout: wrote it all") || !strings.Contains(logs, "No space left on device") {
		t.Errorf("the step was not stopped by the full disk:\n%s", logs)
	}
	// Nothing of it is left on the host once the job is over.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []string
		filepath.WalkDir(filepath.Join(s.dir, "workspaces"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && filepath.Base(p) != ".lock" {
				left = append(left, p)
			}
			return nil
		})
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left on the host after the job: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
