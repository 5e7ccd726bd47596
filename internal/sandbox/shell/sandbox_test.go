package shell_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/execd/execd/internal/sandbox"
)

func TestRun_Output(t *testing.T) {
	sb, _ := prepare(t, needSandbox(t), sandbox.Options{})
	out, errs, res := run(t, sb, sandbox.Step{Commands: []string{"echo to-stdout", "echo to-stderr >&2", "printf 'a\\nb\\n'"}})
	if res.ExitCode != 0 {
		t.Fatalf("exit code = %d, want 0", res.ExitCode)
	}
	if want := "to-stdout\na\nb\n"; out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}
	if want := "to-stderr\n"; errs != want {
		t.Errorf("stderr = %q, want %q", errs, want)
	}
}

func TestRun_ExitCode(t *testing.T) {
	sb, _ := prepare(t, needSandbox(t), sandbox.Options{})
	tests := []struct {
		name     string
		commands []string
		want     int
		stdout   string
	}{
		{"true", []string{"true"}, 0, ""},
		{"false", []string{"false"}, 1, ""},
		{"exit 3", []string{"exit 3"}, 3, ""},
		{"no commands", nil, 0, ""},
		{"stops at first failure", []string{"echo one", "exit 7", "echo two"}, 7, "one\n"},
		{"multi-line command", []string{"for i in 1 2; do\n  echo $i\ndone"}, 0, "1\n2\n"},
		{"command not found", []string{"no-such-command-anywhere"}, 127, ""},
		{"killed by a signal", []string{"kill -9 $$"}, 128 + 9, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errs, res := run(t, sb, sandbox.Step{Commands: tt.commands})
			if res.ExitCode != tt.want {
				t.Errorf("exit code = %d, want %d (stderr %q)", res.ExitCode, tt.want, errs)
			}
			if out != tt.stdout {
				t.Errorf("stdout = %q, want %q", out, tt.stdout)
			}
			if res.OOMKilled {
				t.Error("OOMKilled = true, want false")
			}
		})
	}
}

func TestRun_CannotWriteOutsideWorkspace(t *testing.T) {
	sb, _ := prepare(t, needSandbox(t), sandbox.Options{})
	for _, cmd := range []string{
		"touch /usr/x", "touch /usr/bin/x", "touch /bin/x", "touch /lib/x",
		"touch /etc/x", "echo x >> /etc/passwd", "touch /x", "mkdir /x",
		"touch /dev/x", "touch /proc/x", "echo 1 > /proc/sys/kernel/hostname",
		"rm /etc/hosts", "ln -s /tmp /y",
	} {
		t.Run(cmd, func(t *testing.T) {
			if _, _, res := run(t, sb, sandbox.Step{Commands: []string{cmd}}); res.ExitCode == 0 {
				t.Errorf("%q succeeded", cmd)
			}
		})
	}
	// The writable places.
	runOK(t, sb, "touch /tmp/x /dev/shm/x /workspace/x", "echo > /dev/null")
}

func TestRun_HostHidden(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sb, _ := prepare(t, needSandbox(t), sandbox.Options{})
	for _, cmd := range []string{
		"ls /root", "ls /home", "cat /etc/shadow", "cat /etc/gshadow", "ls /etc/ssh",
		"ls /var", "ls /run", "ls /sys", "ls /opt",
		"ls " + filepath.Dir(exe), "cat " + exe + " >/dev/null",
		fmt.Sprintf("cat /proc/%d/environ", os.Getpid()),
		fmt.Sprintf("cat /proc/%d/environ", os.Getppid()),
		"cat /proc/1/environ", "ls /proc/1/root/",
	} {
		t.Run(cmd, func(t *testing.T) {
			if out, _, res := run(t, sb, sandbox.Step{Commands: []string{cmd}}); res.ExitCode == 0 {
				t.Errorf("%q succeeded:\n%s", cmd, out)
			}
		})
	}
	t.Run("etc", func(t *testing.T) {
		got := strings.Fields(runOK(t, sb, "ls -A /etc"))
		want := []string{"alternatives", "group", "hosts", "ld.so.cache", "nsswitch.conf", "passwd", "resolv.conf"}
		if _, err := os.Stat("/etc/resolv.conf"); err != nil {
			want = slices.DeleteFunc(want, func(s string) bool { return s == "resolv.conf" })
		}
		if !slices.Equal(got, want) && !slices.Equal(got, slices.DeleteFunc(slices.Clone(want), func(s string) bool { return s == "alternatives" || s == "ld.so.cache" })) {
			t.Errorf("/etc holds %q, want %q", got, want)
		}
	})
	t.Run("root", func(t *testing.T) {
		got := strings.Fields(runOK(t, sb, "ls -A /"))
		allowed := []string{"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "sbin", "tmp", "usr", "workspace"}
		for _, name := range got {
			if !slices.Contains(allowed, name) {
				t.Errorf("/ holds %q; want only %q", name, allowed)
			}
		}
	})
}

func TestRun_Env(t *testing.T) {
	t.Setenv("EXECD_SHELL_TEST_SECRET", "hunter2")
	sb, _ := prepare(t, needSandbox(t), sandbox.Options{})
	out, _, _ := run(t, sb, sandbox.Step{Env: []string{"FOO=bar", "WITH_EQUALS=a=b", "EMPTY="}, Commands: []string{"env"}})
	if strings.Contains(out, "hunter2") {
		t.Fatalf("the executor's environment leaked into the step:\n%s", out)
	}
	var got []string
	for _, kv := range strings.Split(strings.TrimSpace(out), "\n") {
		// The shell itself exports PWD.
		if !strings.HasPrefix(kv, "PWD=") {
			got = append(got, kv)
		}
	}
	slices.Sort(got)
	want := []string{"EMPTY=", "FOO=bar", "HOME=/tmp", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "WITH_EQUALS=a=b"}
	if !slices.Equal(got, want) {
		t.Errorf("env = %q, want %q", got, want)
	}

	t.Run("override PATH", func(t *testing.T) {
		out, _, _ := run(t, sb, sandbox.Step{Env: []string{"PATH=/bin"}, Commands: []string{`echo "$PATH"`}})
		if out != "/bin\n" {
			t.Errorf("PATH = %q, want the step's", out)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		_, err := sb.Run(context.Background(), sandbox.Step{Env: []string{"NOEQUALS"}, Commands: []string{"true"}}, sandbox.Output{})
		if err == nil {
			t.Error("Run with env entry without '=': no error")
		}
	})
}

func TestRun_Identity(t *testing.T) {
	sb, _ := prepare(t, needSandbox(t), sandbox.Options{})
	wantUID := "65534"
	if os.Geteuid() != 0 {
		wantUID = "0" // root of a user namespace
	}
	out := runOK(t, sb, "id -u", "hostname", "grep -E '^(CapEff|CapPrm|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if lines[0] != wantUID {
		t.Errorf("uid = %s, want %s", lines[0], wantUID)
	}
	if lines[1] != "sandbox" {
		t.Errorf("hostname = %q, want sandbox", lines[1])
	}
	for _, l := range lines[2:] {
		name, v, _ := strings.Cut(l, ":")
		v = strings.TrimSpace(v)
		if name == "NoNewPrivs" && v != "1" || name != "NoNewPrivs" && strings.Trim(v, "0") != "" {
			t.Errorf("%s = %s, want no capabilities and no_new_privs", name, v)
		}
	}
}

func TestRun_OnlyOwnProcesses(t *testing.T) {
	sb, _ := prepare(t, needSandbox(t), sandbox.Options{})
	out := runOK(t, sb, "sleep 0.1 &", "ps -e -o pid=,comm=")
	procs := map[int]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		pid, _ := strconv.Atoi(f[0])
		procs[pid] = f[1]
	}
	if procs[1] != "execd-init" {
		t.Errorf("PID 1 is %q, want execd-init\n%s", procs[1], out)
	}
	for pid, comm := range procs {
		if !slices.Contains([]string{"execd-init", "sh", "sleep", "ps"}, comm) || pid > 100 {
			t.Errorf("the step sees process %d %s, not its own:\n%s", pid, comm, out)
		}
	}
	if len(procs) > 4 {
		t.Errorf("the step sees %d processes, want at most 4:\n%s", len(procs), out)
	}
}

func TestRun_NoNetwork(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash (for /dev/tcp) is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	// The test's own connection proves the server answers.
	port := ln.Addr().(*net.TCPAddr).Port
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	(<-accepted).Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()

	sb, _ := prepare(t, needSandbox(t), sandbox.Options{})
	_, errs, res := run(t, sb, sandbox.Step{Commands: []string{fmt.Sprintf("bash -c 'echo hi > /dev/tcp/127.0.0.1/%d'", port)}})
	if res.ExitCode == 0 {
		t.Errorf("connecting to the host's 127.0.0.1:%d succeeded", port)
	}
	select {
	case c := <-accepted:
		c.Close()
		t.Errorf("the host's server accepted a connection from the sandbox")
	case <-time.After(100 * time.Millisecond):
	}
	t.Logf("connect: %s", strings.TrimSpace(errs))

	out := runOK(t, sb, "tail -n +3 /proc/net/dev | cut -d: -f1")
	if ifaces := strings.Fields(out); !slices.Equal(ifaces, []string{"lo"}) {
		t.Errorf("network interfaces = %q, want only lo", ifaces)
	}
}

func TestRun_Background(t *testing.T) {
	rt := needSandbox(t)
	sb, opts := prepare(t, rt, sandbox.Options{})
	out := runOK(t, sb, "sleep 1234.5 &", "nohup sleep 1234.5 >/dev/null 2>&1 &", "echo started")
	if out != "started\n" {
		t.Fatalf("stdout = %q", out)
	}
	waitGone(t, jobCgroup(t, rt, opts), findProcs("1234.5"), 0)
	if pids := findProcs("1234.5"); len(pids) > 0 {
		t.Errorf("background processes outlived their step:\n%s", psOf(pids))
	}
}

// findProcs returns the live processes whose command line contains s.
func findProcs(s string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.Contains(string(cmdline), s) && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// startedWriter closes started on its first write.
type startedWriter struct {
	once    sync.Once
	started chan struct{}
}

func (w *startedWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.started) })
	return len(p), nil
}
