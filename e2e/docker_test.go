package e2e_test

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"golang.org/x/sys/unix"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/docker"
	"github.com/execd/execd/internal/sandbox/netpolicy"
	"github.com/execd/execd/internal/testutil"
)

// testImage is built without a registry by deploy/images/build-test-images.sh.
var testImage = cmp.Or(os.Getenv("EXECD_DOCKER_TEST_IMAGE"), "execd-test/busybox:latest")

// forEachContainerRuntime runs f for the docker and the gvisor runtime,
// each skipped (failed in CI) when this host cannot run it.
func forEachContainerRuntime(t *testing.T, f func(t *testing.T, name string, cli *client.Client)) {
	for _, r := range []struct {
		name   string
		gvisor bool
	}{{"docker", false}, {"gvisor", true}} {
		t.Run(r.name, func(t *testing.T) {
			ctx := context.Background()
			if err := docker.New(docker.Config{GVisor: r.gvisor}).Check(ctx); err != nil {
				testutil.Missing(t, r.name, err.Error())
			}
			cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cli.Close() })
			if _, err := cli.ImageInspect(ctx, testImage); err != nil {
				testutil.Missing(t, r.name, fmt.Sprintf("test image %s: %v: run deploy/images/build-test-images.sh", testImage, err))
			}
			f(t, r.name, cli)
		})
	}
}

// containers lists the step containers of system s labelled label=value
// (running or not): those whose workspace is in s's directory, but the
// containers that hold jobs' networks.
func containers(t *testing.T, s *system, cli *client.Client, label, value string) []container.Summary {
	t.Helper()
	list, err := cli.ContainerList(context.Background(), container.ListOptions{
		All: true, Filters: filters.NewArgs(filters.Arg("label", label+"="+value)),
	})
	if err != nil {
		t.Fatal(err)
	}
	var ours []container.Summary
	for _, c := range list {
		if strings.HasPrefix(c.Labels["execd.workspace"], s.dir+"/") && c.Labels["execd.role"] == "" {
			ours = append(ours, c)
		}
	}
	return ours
}

// waitContainers waits until s has n containers labelled label=value.
func waitContainers(t *testing.T, s *system, cli *client.Client, label, value string, n int, timeout time.Duration) []container.Summary {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := containers(t, s, cli, label, value)
		if len(got) == n {
			return got
		}
		if time.Now().After(deadline) {
			var ids []string
			for _, c := range got {
				ids = append(ids, c.ID[:12]+" "+c.State)
			}
			t.Fatalf("containers labelled %s=%s: %v after %v, want %d", label, value, ids, timeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newContainerSystem is newSystem whose leftover containers and networks
// are removed when the test ends (a failed test may leave them), with
// their firewall rules.
func newContainerSystem(t *testing.T, name, queueSettings string) *system {
	s := newSystem(t, queueSettings)
	t.Cleanup(func() {
		rt := docker.New(docker.Config{GVisor: name == "gvisor", Firewall: &netpolicy.Firewall{}})
		// A killed executor's last removals may still be under way in
		// dockerd: try again for a while, as the janitor would.
		var err error
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			err = rt.Clean(context.Background(), func(l sandbox.Leftover) bool { return strings.HasPrefix(l.Workspace, s.dir+"/") })
			if err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Errorf("remove the test's containers: %v", err)
		}
	})
	return s
}

// waitRunning waits until job id's step container runs.
func waitRunning(t *testing.T, s *system, cli *client.Client, id int) container.Summary {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, c := range containers(t, s, cli, "execd.job", jobUID(id)) {
			if c.State == "running" {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d has no running container after 30s", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func jobUID(id int) string { return fmt.Sprintf("%d-%s", id, queue) }

// TestE2E_Containers: a multi-step job over the cloned repository in the
// test image completes with the right log, on each container runtime.
func TestE2E_Containers(t *testing.T) {
	forEachContainerRuntime(t, func(t *testing.T, name string, cli *client.Client) {
		s := newContainerSystem(t, name, `{}`)
		s.startExecutor("EXECUTOR_RUNTIME=" + name)
		id := s.submit(fmt.Sprintf(`{"repositoryName": %q, "commit": %q,
			"dockerSteps": [
				{"key": "build", "image": %q, "env": ["TOKEN=%s"], "commands": [
					"cat README.md", "ls", "sh src/main.sh", "echo token is $TOKEN",
					"echo built by step one > out.txt", "echo to stderr >&2"]},
				{"key": "check", "image": %q, "dir": "src", "commands": [
					"pwd", "cat ../out.txt", "cat /etc/execd-test-image", "id -u"]}],
			"redactedValues": {%q: "[REDACTED]"}}`,
			repoName, s.repo.commits[1], testImage, secret, testImage, secret))
		j := s.waitState(id, 2*time.Minute, "completed", "failed", "errored")
		logs := formatLogs(j)
		if j.State != "completed" {
			t.Fatalf("job %s, want completed; logs:\n%s", j.State, logs)
		}
		for _, want := range []string{
			"== setup.docker.pull", "image " + testImage + " is present",
			"stdout: demo v1\nstdout: demo v2\n", "stdout: README.md\nstdout: docs\nstdout: src\n", "stdout: built from src",
			"stdout: token is [REDACTED]", "stderr: to stderr",
			"stdout: /workspace/src\nstdout: built by step one\nstdout: execd-test-image\nstdout: 0\n",
		} {
			if !strings.Contains(logs, want) {
				t.Errorf("logs lack %q:\n%s", want, logs)
			}
		}
		if strings.Contains(logs, secret) {
			t.Errorf("the secret is in the logs:\n%s", logs)
		}
		waitContainers(t, s, cli, "execd.job", jobUID(id), 0, 10*time.Second)
	})
}

// TestE2E_ContainerLimitsAboveHost: CPU and memory limits beyond the
// machine (the reference's default of 4 CPUs on a 2-CPU host) are lowered
// to it with a warning; the job runs.
func TestE2E_ContainerLimitsAboveHost(t *testing.T) {
	forEachContainerRuntime(t, func(t *testing.T, name string, cli *client.Client) {
		s := newContainerSystem(t, name, `{}`)
		cpus := fmt.Sprint(goruntime.NumCPU() + 3)
		ex := s.startExecutor("EXECUTOR_RUNTIME="+name, "EXECUTOR_JOB_NUM_CPUS="+cpus, "EXECUTOR_JOB_MEMORY=64T")
		id := s.submit(fmt.Sprintf(`{"maxAttempts": 1, "dockerSteps": [{"image": %q, "commands": ["echo ran"]}]}`, testImage))
		j := s.waitState(id, 2*time.Minute, "completed", "failed", "errored")
		if j.State != "completed" || !strings.Contains(formatLogs(j), "stdout: ran") {
			t.Errorf("job %s with EXECUTOR_JOB_NUM_CPUS=%s, want completed; logs:\n%s", j.State, cpus, formatLogs(j))
		}
		if log := ex.log.String(); !strings.Contains(log, "EXECUTOR_JOB_NUM_CPUS="+cpus+" exceeds") || !strings.Contains(log, "EXECUTOR_JOB_MEMORY=65536G exceeds") {
			t.Errorf("the executor's log does not warn of the lowered limits:\n%s", log)
		}
	})
}

// TestE2E_ContainerMemoryLimit: a step over the job's memory limit is
// killed, and the job fails saying so.
func TestE2E_ContainerMemoryLimit(t *testing.T) {
	forEachContainerRuntime(t, func(t *testing.T, name string, cli *client.Client) {
		s := newContainerSystem(t, name, `{}`)
		s.startExecutor("EXECUTOR_RUNTIME="+name, "EXECUTOR_JOB_MEMORY=128M")
		id := s.submit(fmt.Sprintf(`{"maxAttempts": 1, "dockerSteps": [{"key": "hog", "image": %q, "commands": [
			"echo allocating", "head -c $((1024<<20)) /dev/zero | tail > /dev/null", "echo survived"]}]}`, testImage))
		j := s.waitState(id, 2*time.Minute, "completed", "failed", "errored")
		logs := formatLogs(j)
		if j.State != "failed" || !strings.Contains(j.FailureMessage, "exceeded the job's memory limit of 128M") {
			t.Errorf("job %s with %q, want failed saying it exceeded the memory limit; logs:\n%s", j.State, j.FailureMessage, logs)
		}
		if strings.Contains(logs, "stdout: survived") {
			t.Errorf("the step went on after the allocation:\n%s", logs)
		}
	})
}

// TestE2E_ContainerCancel: cancelling a running job kills its container
// within 10 s.
func TestE2E_ContainerCancel(t *testing.T) {
	forEachContainerRuntime(t, func(t *testing.T, name string, cli *client.Client) {
		s := newContainerSystem(t, name, `{}`)
		s.startExecutor("EXECUTOR_RUNTIME=" + name)
		id := s.submit(fmt.Sprintf(`{"dockerSteps": [{"image": %q, "commands": ["echo started", "sleep 1000"]}]}`, testImage))
		s.waitState(id, time.Minute, "processing")
		waitRunning(t, s, cli, id)
		start := time.Now()
		if _, err := s.api.Cancel(context.Background(), queue, id); err != nil {
			t.Fatal(err)
		}
		j := s.waitState(id, 10*time.Second, "canceled")
		waitContainers(t, s, cli, "execd.job", jobUID(id), 0, time.Until(start.Add(10*time.Second)))
		t.Logf("canceled, container gone, after %v", time.Since(start).Round(time.Millisecond))
		if !strings.Contains(formatLogs(j), "step stopped") {
			t.Errorf("the step's log does not say it was stopped:\n%s", formatLogs(j))
		}
	})
}

// TestE2E_ContainerExecutorKilled: kill -9 of the executor leaves its
// step's container running (dockerd runs it); the next executor's janitor
// removes it when it starts, and runs the job again once it is reset.
func TestE2E_ContainerExecutorKilled(t *testing.T) {
	forEachContainerRuntime(t, func(t *testing.T, name string, cli *client.Client) {
		s := newContainerSystem(t, name, `{"stalledAge": "8s"}`)
		first := s.startExecutor("EXECUTOR_RUNTIME=" + name)
		id := s.submit(fmt.Sprintf(`{"dockerSteps": [{"image": %q, "commands": ["echo started", "sleep 1000"]}]}`, testImage))
		s.waitState(id, time.Minute, "processing")
		owner := waitRunning(t, s, cli, id).Labels["execd.owner"]
		first.kill()
		time.Sleep(time.Second)
		if got := containers(t, s, cli, "execd.owner", owner); len(got) != 1 || got[0].State != "running" {
			t.Fatalf("after kill -9 of the executor, its containers are %+v; want its step's, still running", got)
		}
		start := time.Now()
		s.startExecutor("EXECUTOR_RUNTIME=" + name)
		waitContainers(t, s, cli, "execd.owner", owner, 0, 20*time.Second)
		t.Logf("the new executor's janitor removed the killed one's container after %v", time.Since(start).Round(time.Millisecond))
		// The job is reset and runs on the new executor.
		second := waitContainers(t, s, cli, "execd.job", jobUID(id), 1, time.Minute)[0].Labels["execd.owner"]
		if second == owner {
			t.Errorf("the job's new container belongs to the killed executor %s", owner)
		}
		if _, err := s.api.Cancel(context.Background(), queue, id); err != nil {
			t.Fatal(err)
		}
		s.waitState(id, 15*time.Second, "canceled")
		waitContainers(t, s, cli, "execd.job", jobUID(id), 0, 10*time.Second)
	})
}

// TestE2E_ContainerSetuidInert: a step that makes a binary setuid-root in
// its workspace gains nothing on the host: no other user can reach the
// workspace, and it lies on a nosuid mount. The binary prints its
// effective uid (busybox would drop privileges by itself).
func TestE2E_ContainerSetuidInert(t *testing.T) {
	euid := buildEUIDProgram(t)
	forEachContainerRuntime(t, func(t *testing.T, name string, cli *client.Client) {
		s := newContainerSystem(t, name, `{}`)
		if _, err := s.api.PutFile(context.Background(), "tools", "euid", bytes.NewReader(euid)); err != nil {
			t.Fatal(err)
		}
		s.startExecutor("EXECUTOR_RUNTIME=" + name)
		id := s.submit(fmt.Sprintf(`{"files": {"euid": {"bucket": "tools", "key": "euid"}}, "dockerSteps": [{"image": %q, "commands": [
			"cp euid /workspace/esc-suid", "chmod 4755 /workspace/esc-suid", "echo planted", "sleep 1000"]}]}`, testImage))
		ws := waitRunning(t, s, cli, id).Labels["execd.workspace"]
		planted := filepath.Join(ws, "esc-suid")
		deadline := time.Now().Add(30 * time.Second)
		for {
			fi, err := os.Stat(planted)
			if err == nil && fi.Mode()&os.ModeSetuid != 0 && fi.Sys().(*syscall.Stat_t).Uid == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the step did not plant its setuid-root file: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(planted, &st); err != nil {
			t.Fatal(err)
		}
		if st.Flags&unix.ST_NOSUID == 0 || st.Flags&unix.ST_NODEV == 0 {
			t.Errorf("the workspace %s is mounted without nosuid,nodev (flags %#x)", ws, st.Flags)
		}
		cmd := exec.Command(planted)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		if out, err := cmd.CombinedOutput(); err == nil && strings.TrimSpace(string(out)) == "0" {
			t.Errorf("uid 65534 ran the planted setuid file with euid 0")
		} else {
			t.Logf("uid 65534 running the planted file: %q, %v", out, err)
		}
		if _, err := s.api.Cancel(context.Background(), queue, id); err != nil {
			t.Fatal(err)
		}
		s.waitState(id, 15*time.Second, "canceled")
	})
}

// buildEUIDProgram builds a static program that prints its effective uid.
func buildEUIDProgram(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	src := "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nfunc main() { fmt.Println(os.Geteuid()) }\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module euid\n\ngo 1.22\n"), 0o644)
	build := exec.Command("go", "build", "-o", "euid", ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the euid program: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "euid"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
