package e2e_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/execd/execd/internal/sandbox/vm"
	"github.com/execd/execd/internal/sandbox/vm/vmnet"
	"github.com/execd/execd/internal/sandbox/vm/vmtest"
	"github.com/execd/execd/internal/testutil"
)

// TestE2E_VM: jobs in micro-VMs (QEMU microvm; software emulation where
// there is no KVM) through the real executor: the cloned repository in
// the workspace disk, steps in the test image's root file system, the
// second job on a machine of the warm pool, the monitor in the heartbeat,
// and nothing left once the executor stopped.
func TestE2E_VM(t *testing.T) {
	guest := vmtest.Need(t)
	if err := exec.Command("docker", "image", "inspect", testImage).Run(); err != nil {
		testutil.Missing(t, "docker", "test image "+testImage+": run deploy/images/build-test-images.sh")
	}
	s := newSystem(t, `{}`)
	ex := s.startExecutor("EXECUTOR_RUNTIME=firecracker", "EXECUTOR_VM_ALLOW_EMULATION=true",
		"EXECUTOR_VM_ASSETS="+guest.Dir, "EXECUTOR_VM_WARM_POOL=1", "EXECUTOR_FIRECRACKER_DISK_SPACE=1G",
		"EXECUTOR_JOB_NETWORK=none")
	spec := fmt.Sprintf(`{"repositoryName": %q, "commit": %q,
		"dockerSteps": [
			{"key": "build", "image": %q, "env": ["TOKEN=%s"], "commands": [
				"cat README.md", "ls", "sh src/main.sh", "echo token is $TOKEN",
				"echo built by step one > out.txt", "echo to stderr >&2"]},
			{"key": "check", "image": %q, "dir": "src", "commands": [
				"pwd", "cat ../out.txt", "cat /etc/execd-test-image", "uname -r"]}],
		"redactedValues": {%q: "[REDACTED]"}}`,
		repoName, s.repo.commits[1], testImage, secret, testImage, secret)
	for i := range 2 {
		start := time.Now()
		id := s.submit(spec)
		j := s.waitState(id, 3*time.Minute, "completed", "failed", "errored")
		logs := formatLogs(j)
		if j.State != "completed" {
			t.Fatalf("job %d %s, want completed; logs:\n%s\nexecutor:\n%s", i+1, j.State, logs, ex.log)
		}
		t.Logf("job %d completed in %v", i+1, time.Since(start).Round(time.Millisecond))
		for _, want := range []string{
			"== setup.docker.pull",
			"stdout: demo v1\nstdout: demo v2\n", "stdout: README.md\nstdout: docs\nstdout: src\n", "stdout: built from src",
			"stdout: token is [REDACTED]", "stderr: to stderr",
			"stdout: /workspace/src\nstdout: built by step one\nstdout: execd-test-image\nstdout: " + guest.KernelRelease + "\n",
		} {
			if !strings.Contains(logs, want) {
				t.Errorf("job %d: logs lack %q:\n%s", i+1, want, logs)
			}
		}
		if strings.Contains(logs, secret) {
			t.Errorf("the secret is in the logs:\n%s", logs)
		}
	}
	owner := s.job(1).WorkerHostname
	execs, err := s.api.Executors(context.Background())
	if err != nil || len(execs) == 0 || !strings.HasPrefix(execs[0].IgniteVersion, "qemu ") || execs[0].Runtime != "firecracker" {
		t.Errorf("executors = %+v, %v; want one of runtime firecracker whose igniteVersion names qemu", execs, err)
	}
	ex.stop()
	if left := vmProcesses(owner); len(left) > 0 {
		t.Errorf("machines left after the executor stopped: %v", left)
	}
}

// vmProcesses lists the monitors of owner's machines still running
// (other tests' may run beside).
func vmProcesses(owner string) []string {
	var left []string
	for pid, label := range vm.Monitors() {
		if strings.HasPrefix(label, "execd-vm:"+owner+":") {
			left = append(left, fmt.Sprintf("%d %s", pid, label))
		}
	}
	return left
}

// TestE2E_VMExecutorKilled: after kill -9 of an executor in the middle of
// a job in a VM with the internet, and a restart, nothing of it remains:
// no monitor process, no tap, no disk image; the job runs again.
func TestE2E_VMExecutorKilled(t *testing.T) {
	guest := vmtest.Need(t)
	if err := exec.Command("docker", "image", "inspect", testImage).Run(); err != nil {
		testutil.Missing(t, "docker", "test image "+testImage+": run deploy/images/build-test-images.sh")
	}
	if err := exec.Command("iptables", "-S").Run(); err != nil {
		testutil.Missing(t, "netns", "iptables: "+err.Error())
	}
	s := newSystem(t, `{"stalledAge": "6s"}`)
	env := []string{"EXECUTOR_RUNTIME=firecracker", "EXECUTOR_VM_ALLOW_EMULATION=true",
		"EXECUTOR_VM_ASSETS=" + guest.Dir, "EXECUTOR_VM_WARM_POOL=1", "EXECUTOR_FIRECRACKER_DISK_SPACE=1G",
		"EXECUTOR_JOB_NETWORK=internet"}
	first := s.startExecutor(env...)
	id := s.submit(fmt.Sprintf(`{"dockerSteps": [{"image": %q, "commands": ["echo started", "sleep 2.5"]}]}`, testImage))
	owner := s.waitState(id, time.Minute, "processing").WorkerHostname
	for deadline := time.Now().Add(time.Minute); !strings.Contains(formatLogs(s.job(id)), "stdout: started"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the step did not start:\n%s", formatLogs(s.job(id)))
		}
	}
	if len(vmProcesses(owner)) == 0 || len(taps(t, owner)) == 0 {
		t.Fatalf("the job's machine runs nowhere: monitors %v, taps %v", vmProcesses(owner), taps(t, owner))
	}
	first.kill()
	// The monitors die with their executor.
	for deadline := time.Now().Add(10 * time.Second); len(vmProcesses(owner)) > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("machines outlived their killed executor: %v", vmProcesses(owner))
		}
	}
	dir := filepath.Join(s.dir, "workspaces", owner)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the killed executor's directory is gone already (%v): the test shows nothing", err)
	}
	second := s.startExecutor(env...)
	j := s.waitState(id, 3*time.Minute, "completed", "failed", "errored")
	if j.State != "completed" {
		t.Fatalf("job %s after the restart:\n%s\nexecutor:\n%s", j.State, formatLogs(j), second.log)
	}
	if left := taps(t, owner); len(left) > 0 {
		t.Errorf("taps of the killed executor left: %v", left)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the killed executor's machines' files are left in %s (%v)", dir, err)
	}
	// And an executor that stops leaves nothing of its own either (its
	// pool's machine and tap).
	second.stop()
	if left := taps(t, j.WorkerHostname); len(left) > 0 || len(vmProcesses(j.WorkerHostname)) > 0 {
		t.Errorf("left by an executor that stopped: taps %v, machines %v", left, vmProcesses(j.WorkerHostname))
	}
}

// taps lists the tap devices of owner's machines.
func taps(t *testing.T, owner string) []string {
	t.Helper()
	all, err := vmnet.Taps(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for tap, l := range all {
		if l.Owner == owner {
			left = append(left, tap)
		}
	}
	return left
}

// TestE2E_VMCancelAndMaxRuntime: a job in a VM stops at once when
// canceled, and when it runs past EXECUTOR_MAXIMUM_RUNTIME_PER_JOB; its
// machine goes with it.
func TestE2E_VMCancelAndMaxRuntime(t *testing.T) {
	guest := vmtest.Need(t)
	if err := exec.Command("docker", "image", "inspect", testImage).Run(); err != nil {
		testutil.Missing(t, "docker", "test image "+testImage+": run deploy/images/build-test-images.sh")
	}
	s := newSystem(t, `{}`)
	s.startExecutor("EXECUTOR_RUNTIME=firecracker", "EXECUTOR_VM_ALLOW_EMULATION=true",
		"EXECUTOR_VM_ASSETS="+guest.Dir, "EXECUTOR_VM_WARM_POOL=0", "EXECUTOR_FIRECRACKER_DISK_SPACE=1G",
		"EXECUTOR_JOB_NETWORK=none", "EXECUTOR_MAXIMUM_RUNTIME_PER_JOB=8s")
	step := fmt.Sprintf(`{"dockerSteps": [{"image": %q, "commands": ["echo started", "sleep 1000"]}]}`, testImage)
	waitStarted := func(id int) {
		for deadline := time.Now().Add(time.Minute); !strings.Contains(formatLogs(s.job(id)), "stdout: started"); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("job %d's step did not start:\n%s", id, formatLogs(s.job(id)))
			}
		}
	}

	id := s.submit(step)
	waitStarted(id)
	owner := s.job(id).WorkerHostname
	start := time.Now()
	if _, err := s.api.Cancel(context.Background(), queue, id); err != nil {
		t.Fatal(err)
	}
	j := s.waitState(id, 10*time.Second, "canceled")
	t.Logf("canceled after %v", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(formatLogs(j), "step stopped") {
		t.Errorf("the step's log does not say it was stopped:\n%s", formatLogs(j))
	}
	for deadline := time.Now().Add(10 * time.Second); len(vmProcesses(owner)) > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the canceled job's machine still runs: %v", vmProcesses(owner))
		}
	}

	id = s.submit(step)
	j = s.waitState(id, time.Minute, "completed", "failed", "errored")
	if j.State != "errored" || !strings.Contains(j.FailureMessage, "maximum execution time") {
		t.Errorf("job past the maximum runtime: %s %q, want errored for exceeding the maximum execution time", j.State, j.FailureMessage)
	}
	for deadline := time.Now().Add(10 * time.Second); len(vmProcesses(owner)) > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the stopped job's machine still runs: %v", vmProcesses(owner))
		}
	}
}
