//go:build linux

package guest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/diskimage"
	"github.com/execd/execd/internal/sandbox/vm/agent"
)

// Where the guest mounts things.
const (
	workspaceDir = "/workspace"
	rootsDir     = "/run/execd/roots" // one read-only root per drive
	stepDir      = "/run/execd/step"  // a step's overlay: upper, work, merged
)

// DefaultPath is a step's PATH when its env has none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// mounted tracks the disks mounted so far (by drive ID); one goroutine
// (the running step's) uses it at a time.
var mounted = struct {
	workspace *string
	roots     map[string]string // drive ID -> Run.RootKey of the mounted content
}{roots: map[string]string{}}

// step is one running step.
type step struct {
	out func(agent.Type, []byte) error

	mu       sync.Mutex
	started  bool
	canceled bool
}

// cancel kills every process but PID 1: the step's whole tree,
// including what it left in the background or in other sessions.
func (st *step) cancel() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.canceled = true
	if st.started {
		unix.Kill(-1, unix.SIGKILL)
	}
}

// run runs one step to its end. An error means it could not run.
func (st *step) run(req agent.Run) (agent.Exit, error) {
	script, env, err := checkRequest(req)
	if err != nil {
		return agent.Exit{}, err
	}
	if err := ensureWorkspace(req.Workspace); err != nil {
		return agent.Exit{}, err
	}
	root := "/"
	if req.Root != agent.RootNone {
		lower, err := mountRoot(req.Root, req.RootKey)
		if err != nil {
			return agent.Exit{}, err
		}
		if root, err = setupOverlay(lower); err != nil {
			unix.Unmount(stepDir, unix.MNT_DETACH)
			return agent.Exit{}, err
		}
		defer unix.Unmount(stepDir, unix.MNT_DETACH)
	}
	if err := checkDir(req.Dir); err != nil {
		return agent.Exit{}, err
	}
	cred, home, err := resolveUser(root, req.User)
	if err != nil {
		return agent.Exit{}, err
	}
	env = withDefaults(env, home)
	if _, err := os.Stat(filepath.Join(root, "bin/sh")); err != nil {
		return agent.Exit{}, fmt.Errorf("the step's root file system has no /bin/sh (%v): the image needs a shell", err)
	}
	return st.exec(root, script, env, path.Join(workspaceDir, filepath.ToSlash(filepath.Clean("./"+req.Dir))), cred)
}

// exec starts the shell and streams its output until it and everything
// it started are gone.
func (st *step) exec(root, script string, env []string, dir string, cred *syscall.Credential) (agent.Exit, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return agent.Exit{}, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return agent.Exit{}, err
	}
	devNull, _ := os.Open(os.DevNull)
	cmd := &exec.Cmd{
		Path:   "/bin/sh",
		Args:   []string{"sh", "-c", script},
		Env:    env,
		Dir:    dir,
		Stdin:  devNull,
		Stdout: outW,
		Stderr: errW,
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid:    true,
			Credential: cred,
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	if root != "/" {
		cmd.SysProcAttr.Chroot = root
	}
	oomBefore := oomKills()
	st.mu.Lock()
	if st.canceled {
		st.mu.Unlock()
		outR.Close()
		errR.Close()
		outW.Close()
		errW.Close()
		return agent.Exit{Code: 137, Canceled: true}, nil
	}
	err = cmd.Start()
	st.started = err == nil
	st.mu.Unlock()
	outW.Close()
	errW.Close()
	if devNull != nil {
		devNull.Close()
	}
	if err != nil {
		outR.Close()
		errR.Close()
		return agent.Exit{}, fmt.Errorf("start the step's shell: %w", err)
	}
	var wg sync.WaitGroup
	for _, p := range []struct {
		r *os.File
		t agent.Type
	}{{outR, agent.TypeStdout}, {errR, agent.TypeStderr}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer p.r.Close()
			buf := make([]byte, agent.MaxChunk)
			for {
				n, err := p.r.Read(buf)
				if n > 0 {
					st.out(p.t, buf[:n])
				}
				if err != nil {
					return
				}
			}
		}()
	}
	state, _ := cmd.Process.Wait()
	// The step is over: what it left running goes too, and is reaped
	// (PID 1 inherits orphans), so that the pipes reach their end.
	unix.Kill(-1, unix.SIGKILL)
	reapAll()
	wg.Wait()

	st.mu.Lock()
	canceled := st.canceled
	st.mu.Unlock()
	ex := agent.Exit{Canceled: canceled}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		ex.Code = 128 + int(ws.Signal())
	} else {
		ex.Code = state.ExitCode()
	}
	// As docker's OOMKilled: the kernel killed a process of the step
	// (the only processes but PID 1, which it never picks) for memory.
	ex.OOMKilled = !canceled && oomKills() > oomBefore
	ex.DiskFull = ex.Code != 0 && diskimage.Full(workspaceDir)
	return ex, nil
}

// reapAll waits for every child of PID 1 until none is left.
func reapAll() {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
	}
}

// oomKills returns the kernel's count of OOM kills.
func oomKills() int {
	b, err := os.ReadFile("/proc/vmstat")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// checkRequest validates req as the docker runtime does and returns its
// script and environment.
func checkRequest(req agent.Run) (string, []string, error) {
	if req.Root == "" {
		return "", nil, errors.New("refused: the step names no root (a drive ID, or none)")
	}
	if !filepath.IsLocal(filepath.Clean("./"+req.Dir)) && filepath.Clean("./"+req.Dir) != "." {
		return "", nil, &sandbox.DirError{Msg: fmt.Sprintf("the step's dir %q is not inside the workspace", req.Dir)}
	}
	for i, kv := range req.Env {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || name == "" || strings.ContainsRune(kv, 0) {
			return "", nil, fmt.Errorf("environment entry %d is not NAME=value", i)
		}
	}
	var b strings.Builder
	b.WriteString("set -e\n")
	for i, c := range req.Commands {
		if strings.ContainsRune(c, 0) {
			return "", nil, fmt.Errorf("command %d contains a NUL byte", i)
		}
		b.WriteString(c)
		b.WriteString("\n")
	}
	return b.String(), req.Env, nil
}

// withDefaults adds PATH and HOME to env when it lacks them.
func withDefaults(env []string, home string) []string {
	has := func(name string) bool {
		for _, kv := range env {
			if strings.HasPrefix(kv, name+"=") {
				return true
			}
		}
		return false
	}
	out := append([]string(nil), env...)
	if !has("PATH") {
		out = append(out, "PATH="+DefaultPath)
	}
	if !has("HOME") {
		out = append(out, "HOME="+home)
	}
	return out
}

// checkDir refuses a step dir that is not a directory of the workspace,
// in the words every runtime uses (a *sandbox.DirError, sent as an
// Error of kind dir).
func checkDir(dir string) error { return sandbox.CheckDir(workspaceDir, dir) }
