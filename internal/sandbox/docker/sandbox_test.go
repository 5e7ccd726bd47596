package docker_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/docker"
	"github.com/execd/execd/internal/sandbox/sandboxtest"
)

func TestRuntime_Name(t *testing.T) {
	for _, r := range runtimes {
		if got := docker.New(docker.Config{GVisor: r.gvisor}).Name(); got != r.name {
			t.Errorf("Name with GVisor %v = %q, want %q", r.gvisor, got, r.name)
		}
	}
}

func TestRun_Steps(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *docker.Runtime) {
		sb, _ := prepare(t, rt, sandbox.Options{})
		tests := []struct {
			name       string
			commands   []string
			wantOut    string
			wantErr    string
			wantCode   int
			wantOOMErr bool
		}{
			{"multi-step", []string{"echo one", "echo two >&2", "echo three"}, "one\nthree\n", "two\n", 0, false},
			{"stops at the first failure", []string{"echo before", "exit 3", "echo after"}, "before\n", "", 3, false},
			{"false", []string{"false"}, "", "", 1, false},
			{"no commands", nil, "", "", 0, false},
			{"killed", []string{"kill -9 $$"}, "", "", 137, false},
			{"shell syntax", []string{"for i in 1 2 3; do", "  echo $i", "done | tr '\\n' ,"}, "1,2,3,", "", 0, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				out, errs, res := run(t, sb, step(tt.commands...))
				if out != tt.wantOut || errs != tt.wantErr || res.ExitCode != tt.wantCode || res.OOMKilled {
					t.Errorf("Run(%q) = stdout %q, stderr %q, %+v; want %q, %q, exit %d", tt.commands, out, errs, res, tt.wantOut, tt.wantErr, tt.wantCode)
				}
			})
		}
	})
}

// startedWriter closes started when it has been written s.
type startedWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	s       string
	once    sync.Once
	started chan struct{}
}

func newStartedWriter(s string) *startedWriter {
	return &startedWriter{s: s, started: make(chan struct{})}
}

func (w *startedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.s) {
		w.once.Do(func() { close(w.started) })
	}
	return len(p), nil
}

func TestRun_StreamsOutput(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *docker.Runtime) {
		sb, opts := prepare(t, rt, sandbox.Options{})
		w := newStartedWriter("first\n")
		done := make(chan error, 1)
		go func() {
			// The step waits for the test to see its first line.
			_, err := sb.Run(context.Background(), step("echo first", "while [ ! -e seen ]; do sleep 0.05; done", "echo second"),
				sandbox.Output{Stdout: w, Stderr: w})
			done <- err
		}()
		select {
		case <-w.started:
		case err := <-done:
			t.Fatalf("Run returned before its output was seen: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("no output 30s after the step started")
		}
		if err := os.WriteFile(filepath.Join(opts.Workspace, "seen"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got := w.buf.String(); got != "first\nsecond\n" {
			t.Errorf("output = %q, want first and second", got)
		}
	})
}

func TestRun_LongScript(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *docker.Runtime) {
		sb, _ := prepare(t, rt, sandbox.Options{})
		// Longer than one argument may be: the script is copied in.
		var commands []string
		for i := range 5000 {
			commands = append(commands, fmt.Sprintf("x=%d # %s", i, strings.Repeat("padding ", 5)))
		}
		commands = append(commands, `echo "$x"`)
		if got := runOK(t, sb, commands...); got != "4999\n" {
			t.Errorf("output = %q, want 4999", got)
		}
	})
}

func TestRun_HostHidden(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *docker.Runtime) {
		outside := t.TempDir()
		marker := filepath.Join(outside, "host-secret")
		if err := os.WriteFile(marker, []byte("top secret\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		sb, _ := prepare(t, rt, sandbox.Options{})

		// The container's /etc is the image's, not the host's.
		if got := runOK(t, sb, "cat /etc/execd-test-image"); got != "execd-test-image\n" {
			t.Errorf("/etc/execd-test-image = %q: not the image's /etc", got)
		}
		hostEtc, err := os.ReadDir("/etc")
		if err != nil {
			t.Fatal(err)
		}
		var host []string
		for _, e := range hostEtc {
			host = append(host, e.Name())
		}
		inside := strings.Fields(runOK(t, sb, "ls -A /etc"))
		if slices.Equal(inside, host) {
			t.Errorf("the container's /etc lists the host's: %q", inside)
		}
		for _, cmd := range []string{
			"cat /etc/shadow", "cat " + marker, "ls " + outside,
			fmt.Sprintf("cat /proc/%d/environ", os.Getpid()),
		} {
			if out, _, res := run(t, sb, step(cmd)); res.ExitCode == 0 {
				t.Errorf("%q succeeded:\n%s", cmd, out)
			}
		}
		if out := runOK(t, sb, "find / \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o -name host-secret -print"); out != "" {
			t.Errorf("the host's file is visible in the container at %s", out)
		}

		// Writes outside the workspace stay in the container.
		for _, cmd := range []string{"mkdir -p " + outside, "echo changed > " + marker, "touch " + filepath.Join(outside, "new")} {
			run(t, sb, step(cmd))
		}
		if b, _ := os.ReadFile(marker); string(b) != "top secret\n" {
			t.Errorf("the host's file outside the workspace was changed: %q", b)
		}
		if _, err := os.Stat(filepath.Join(outside, "new")); err == nil {
			t.Error("the step created a file on the host outside the workspace")
		}
		// Nor does one step's container leak into the next.
		runOK(t, sb, "echo x > /leftover")
		if _, _, res := run(t, sb, step("test -e /leftover")); res.ExitCode == 0 {
			t.Error("a file a step wrote outside the workspace is there in the next step")
		}
	})
}

func TestRun_Env(t *testing.T) {
	t.Setenv("EXECD_DOCKER_TEST_SECRET", "hunter2")
	forEachRuntime(t, func(t *testing.T, rt *docker.Runtime) {
		sb, _ := prepare(t, rt, sandbox.Options{})
		st := step("env")
		st.Env = []string{"FOO=bar", "WITH_EQUALS=a=b", "EMPTY="}
		out, _, _ := run(t, sb, st)
		if strings.Contains(out, "hunter2") {
			t.Fatalf("the executor's environment leaked into the step:\n%s", out)
		}
		got := map[string]string{}
		for _, kv := range strings.Split(strings.TrimSpace(out), "\n") {
			k, v, _ := strings.Cut(kv, "=")
			got[k] = v
		}
		for k, v := range map[string]string{"FOO": "bar", "WITH_EQUALS": "a=b", "EMPTY": "", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"} {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("%s = %q (set: %v), want %q", k, g, ok, v)
			}
		}
		bad := step("true")
		bad.Env = []string{"NOEQUALS"}
		if _, err := sb.Run(context.Background(), bad, sandbox.Output{}); err == nil {
			t.Error("Run with env entry without '=': no error")
		}
	})
}

func TestRun_Privileges(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *docker.Runtime) {
		sb, _ := prepare(t, rt, sandbox.Options{})
		out := runOK(t, sb, "grep -E '^(CapEff|CapPrm|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status")
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			name, v, _ := strings.Cut(l, ":")
			v = strings.TrimSpace(v)
			if name == "NoNewPrivs" && v != "1" || name != "NoNewPrivs" && strings.Trim(v, "0") != "" {
				t.Errorf("%s = %s, want no capabilities and no_new_privs", name, v)
			}
		}
		for _, cmd := range []string{"mount -t tmpfs none /mnt", "chown 1:1 /etc/passwd", "mknod /x c 1 3", "hostname other"} {
			if _, _, res := run(t, sb, step(cmd)); res.ExitCode == 0 {
				t.Errorf("%q succeeded without capabilities", cmd)
			}
		}
	})
}

func TestRun_Network(t *testing.T) {
	fw := &fakeFirewall{}
	for _, r := range runtimes {
		t.Run(r.name, func(t *testing.T) {
			rt := needRuntime(t, docker.Config{GVisor: r.gvisor, Firewall: fw, AddHostGateway: true})
			t.Run("none", func(t *testing.T) {
				sb, _ := prepare(t, rt, sandbox.Options{Network: sandbox.NetworkNone})
				if _, netID, _ := docker.SandboxInfo(sb); netID != "" {
					t.Errorf("a sandbox without network has network %s", netID)
				}
				out := runOK(t, sb, "cat /proc/net/dev | tail -n +3 | cut -d: -f1")
				if ifaces := strings.Fields(out); !slices.Equal(ifaces, []string{"lo"}) {
					t.Errorf("network interfaces = %q, want only lo", ifaces)
				}
				if out := runOK(t, sb, "cat /etc/hosts"); strings.Contains(out, "host.docker.internal") {
					t.Errorf("host.docker.internal in /etc/hosts without a network:\n%s", out)
				}
			})
			t.Run("internet", func(t *testing.T) {
				sb, opts := prepare(t, rt, sandbox.Options{Network: sandbox.NetworkInternet})
				id, netID, bridge := docker.SandboxInfo(sb)
				if netID == "" || bridge != "execd"+id {
					t.Fatalf("network %q, bridge %q; want a network with bridge execd%s", netID, bridge, id)
				}
				if got := networksLabelled(t, rt, docker.LabelJob+"="+opts.JobID); !slices.Equal(got, []string{netID}) {
					t.Errorf("networks labelled with the job = %v, want [%s]", got, netID)
				}
				applied := fw.applied(bridge)
				if !applied.IsValid() || !applied.Addr().Is4() {
					t.Errorf("firewall applied to %s with subnet %v, want the network's", bridge, applied)
				}
				out := runOK(t, sb, "cat /proc/net/dev | tail -n +3 | cut -d: -f1", "cat /etc/hosts")
				if !strings.Contains(out, "eth0") {
					t.Errorf("no eth0 in a sandbox with a network:\n%s", out)
				}
				if !strings.Contains(out, "host.docker.internal") {
					t.Errorf("EXECUTOR_DOCKER_ADD_HOST_GATEWAY: no host.docker.internal in /etc/hosts:\n%s", out)
				}
				if err := sb.Destroy(context.Background()); err != nil {
					t.Fatal(err)
				}
				if !fw.removed(bridge) {
					t.Errorf("Destroy did not remove the firewall rules of %s", bridge)
				}
			})
		})
	}
}

func TestRun_AdditionalMounts(t *testing.T) {
	extra := t.TempDir()
	if err := os.WriteFile(filepath.Join(extra, "data"), []byte("shared data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rw := t.TempDir()
	for _, r := range runtimes {
		t.Run(r.name, func(t *testing.T) {
			rt := needRuntime(t, docker.Config{GVisor: r.gvisor, AdditionalMounts: []string{
				extra + ":/extra:ro", "type=bind,source=" + rw + ",target=/rw",
			}})
			sb, _ := prepare(t, rt, sandbox.Options{})
			if got := runOK(t, sb, "cat /extra/data", "echo "+r.name+" > /rw/out"); got != "shared data\n" {
				t.Errorf("/extra/data = %q", got)
			}
			if _, _, res := run(t, sb, step("touch /extra/x")); res.ExitCode == 0 {
				t.Error("wrote to a read-only additional mount")
			}
			if b, _ := os.ReadFile(filepath.Join(rw, "out")); string(b) != r.name+"\n" {
				t.Errorf("read-write mount: host file = %q", b)
			}
		})
	}
}

// ctxResult is what Run returned.
type ctxResult struct {
	res sandbox.Result
	err error
}

func TestSandbox_Destroy(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *docker.Runtime) {
		ctx := context.Background()
		opts := sandbox.Options{JobID: "destroy-test", Owner: testOwner, Workspace: sandboxtest.WorkspacePath(t), Network: sandbox.NetworkInternet, MemoryBytes: 64 << 20}
		sb, err := rt.Prepare(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		id, netID, _ := docker.SandboxInfo(sb)
		// A step still running when the job is torn down.
		w := newStartedWriter("started")
		done := make(chan error, 1)
		go func() {
			_, err := sb.Run(ctx, step("echo started", "sleep 1000"), sandbox.Output{Stdout: w})
			done <- err
		}()
		select {
		case <-w.started:
		case err := <-done:
			t.Fatalf("step ended early: %v", err)
		}
		for i := range 3 {
			if err := sb.Destroy(ctx); err != nil {
				t.Fatalf("Destroy #%d: %v", i+1, err)
			}
		}
		select {
		case err := <-done:
			if err == nil {
				t.Error("Run of a destroyed sandbox's step returned no error")
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not return after Destroy")
		}
		if left := containersOf(t, rt, id); len(left) > 0 {
			t.Errorf("containers %v left after Destroy", left)
		}
		if networkExists(t, rt, netID) {
			t.Errorf("network %s left after Destroy", netID)
		}
		if _, err := sb.Run(ctx, step("true"), sandbox.Output{}); err == nil {
			t.Error("Run after Destroy: no error")
		}
	})
}

func TestRun_NoImage(t *testing.T) {
	rt := needRuntime(t, docker.Config{})
	sb, _ := prepare(t, rt, sandbox.Options{})
	_, err := sb.Run(context.Background(), sandbox.Step{Key: "cli", Commands: []string{"true"}}, sandbox.Output{})
	if err == nil || !strings.Contains(err.Error(), "image") {
		t.Errorf("Run without an image: %v, want an error saying a step needs one", err)
	}
}

// firstStepOwnNetwork runs a sandbox's first step, and checks while it
// runs that its container has a network of its own, not the holder's,
// and (when the steps share one) that the holder starts meanwhile.
func firstStepOwnNetwork(t *testing.T, rt *docker.Runtime, sb sandbox.Sandbox, id string, shared bool) {
	t.Helper()
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		res, err := sb.Run(ctx, step("sleep 3"), sandbox.Output{})
		if err == nil && res.ExitCode != 0 {
			err = fmt.Errorf("exit %d", res.ExitCode)
		}
		done <- err
	}()
	var mode container.NetworkMode
	holderSeen := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && (mode == "" || shared && !holderSeen); time.Sleep(50 * time.Millisecond) {
		if ids := containersLabelled(t, rt, true, docker.LabelSandbox+"="+id); len(ids) == 1 && mode == "" {
			if c, err := docker.Client(rt).ContainerInspect(ctx, ids[0]); err == nil && c.State != nil && c.State.Running {
				mode = c.HostConfig.NetworkMode
			}
		}
		holderSeen = len(containersLabelled(t, rt, false, docker.LabelSandbox+"="+id, docker.LabelRole+"="+docker.RoleHolder)) > 0
	}
	if err := <-done; err != nil {
		t.Fatalf("first step: %v", err)
	}
	if mode == "" || mode.IsContainer() {
		t.Errorf("the first step's container had network mode %q: want a network of its own, so that it does not wait for the holder", mode)
	}
	if shared && !holderSeen {
		t.Errorf("no holder started while the first step ran")
	}
}

// TestRun_NetworkHolder: the steps of a job after the first share one
// network namespace, held by a container that starts beside the first
// step (except for gvisor jobs with a network); when it dies, the next
// step starts another.
func TestRun_NetworkHolder(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *docker.Runtime) {
		for _, network := range []sandbox.Network{sandbox.NetworkNone, sandbox.NetworkInternet} {
			t.Run(string(network), func(t *testing.T) {
				shared := !(rt.Name() == "gvisor" && network == sandbox.NetworkInternet)
				sb, _ := prepare(t, rt, sandbox.Options{Network: network})
				id, _, _ := docker.SandboxInfo(sb)
				netns := func() string { return runOK(t, sb, "readlink /proc/self/ns/net") }
				firstStepOwnNetwork(t, rt, sb, id, shared)
				first, second := netns(), netns()
				holders := containersLabelled(t, rt, false, docker.LabelSandbox+"="+id, docker.LabelRole+"="+docker.RoleHolder)
				if !shared {
					if len(holders) != 0 {
						t.Errorf("holders %v, want none", holders)
					}
					return
				}
				if len(holders) != 1 || first != second {
					t.Fatalf("holders %v, network namespaces %q and %q; want one holder whose namespace the second and third steps share", holders, first, second)
				}
				if err := docker.Client(rt).ContainerRemove(context.Background(), holders[0], container.RemoveOptions{Force: true}); err != nil {
					t.Fatal(err)
				}
				if got := runOK(t, sb, "echo after"); got != "after\n" {
					t.Errorf("step after the holder died: %q", got)
				}
				if n := containersLabelled(t, rt, false, docker.LabelSandbox+"="+id, docker.LabelRole+"="+docker.RoleHolder); len(n) != 1 || n[0] == holders[0] {
					t.Errorf("holders after one died: %v, want a new one", n)
				}
			})
		}
	})
}
