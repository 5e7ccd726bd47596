package e2e_test

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/execd/execd/internal/siteconfig"
	"github.com/execd/execd/internal/testutil"
)

// TestREADME_Quickstart runs the README's main set-up command as written,
// as a new user would: in a fresh clone of this repository, from its
// root, with the defaults (a relative data dir), adding only a free port.
// Uncommitted changes to tracked files are applied to the clone, so the
// test checks the tree under test rather than the last commit.
func TestREADME_Quickstart(t *testing.T) {
	testutil.NeedGit(t)
	if _, err := exec.LookPath("go"); err != nil {
		t.Skipf("skipping: the go command is not on PATH (%v)", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, ".git")); err != nil {
		t.Skipf("skipping: %s is not a git checkout to clone", root)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	commands := setupCommands(string(readme))
	if len(commands) != 2 {
		t.Fatalf("the README's \"Set-up commands\" section has %d commands %q, want two: the quickstart, then the tests", len(commands), commands)
	}
	quickstart := commands[0]
	if !strings.Contains(quickstart, "quickstart") {
		t.Fatalf("the README's first set-up command %q does not run the quickstart", quickstart)
	}

	clone := filepath.Join(t.TempDir(), "execd")
	git := func(dir string, stdin []byte, args ...string) []byte {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = testutil.GitEnv(t)
		cmd.Stdin = bytes.NewReader(stdin)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	git(root, nil, "clone", "--quiet", root, clone)
	if diff := git(root, nil, "diff", "--binary", "HEAD"); len(diff) > 0 {
		git(clone, diff, "apply", "--whitespace=nowarn", "-")
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var out lockedBuffer
	cmd := exec.Command("sh", "-c", quickstart+" --addr "+addr)
	cmd.Dir = clone
	cmd.Stdout, cmd.Stderr = &out, &out
	// go run starts the built program as its child: signal the group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})

	// The first build in a new directory compiles everything.
	deadline := time.After(8 * time.Minute)
	for !strings.Contains(out.String(), "keeps serving") {
		select {
		case err := <-exited:
			t.Fatalf("%q exited before serving: %v\n%s", quickstart, err, out.String())
		case <-deadline:
			t.Fatalf("%q did not finish its demo job in 8 minutes:\n%s", quickstart, out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	got := out.String()
	for _, want := range []string{"job 1: completed", "checked out v1.0.0", "build ok", "[REDACTED]"} {
		if !strings.Contains(got, want) {
			t.Errorf("the quickstart's output lacks %q:\n%s", want, got)
		}
	}

	// The defaults put everything in ./data of the working directory, and
	// the new site config names the address it serves on.
	cfg, err := siteconfig.Load(filepath.Join(clone, "data", "site-config.json"))
	if err != nil {
		t.Fatalf("the quickstart's site config in ./data: %v", err)
	}
	if want := "http://" + addr; cfg.ExternalURL != want {
		t.Errorf("the generated site config's externalURL is %q, want %q", cfg.ExternalURL, want)
	}

	// Ctrl-C stops it cleanly.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(time.Minute):
		t.Fatalf("the quickstart did not stop within a minute of Ctrl-C:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "stopping") {
		t.Errorf("the quickstart did not say it was stopping after Ctrl-C:\n%s", out.String())
	}
}

// setupCommands returns the indented command lines of the README's
// "Set-up commands" section.
func setupCommands(readme string) []string {
	var cmds []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(readme))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = strings.TrimSpace(strings.TrimPrefix(line, "## ")) == "Set-up commands"
			continue
		}
		if in && strings.HasPrefix(line, "    ") && strings.TrimSpace(line) != "" {
			cmds = append(cmds, strings.TrimSpace(line))
		}
	}
	return cmds
}

// lockedBuffer is a buffer written by a process and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
