//go:build linux

package shell

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/hostdir"
)

const (
	// sandboxUID and sandboxGID run the steps when the executor runs as
	// root: nobody and nogroup, with no privilege on the host.
	sandboxUID = 65534
	sandboxGID = 65534
	// sandboxHostname is the host name steps see.
	sandboxHostname = "sandbox"
	// stopGrace is how long a cancelled step's processes have between
	// SIGTERM and SIGKILL.
	stopGrace = 2 * time.Second
)

// Sandbox is one job's shell sandbox: its cgroup, and the workspace the
// steps run in. Each step runs in namespaces of its own, built by Run and
// gone when the step ends.
//
// Run must not be called concurrently (see [sandbox.Sandbox]); Destroy may
// be called at any time, from any goroutine.
type Sandbox struct {
	log *slog.Logger
	// init is the program run as each step's init.
	init string
	// opts are Prepare's, with the workspace's symbolic links resolved.
	opts sandbox.Options
	// userNS is true when the executor is not root: the sandbox then
	// needs a user namespace to have the privilege to build itself.
	userNS bool
	// cloneIntoCgroup is true when the kernel can start a process in a
	// cgroup v2 (Linux 5.7).
	cloneIntoCgroup bool

	// ws is the job's workspace; nil if Prepare failed before making it.
	ws *hostdir.Workspace

	mu        sync.Mutex
	cg        *jobCgroup // nil unless Prepare succeeded
	destroyed bool
}

// prepare implements [Runtime.Prepare] for valid opts.
func (r *Runtime) prepare(ctx context.Context, opts sandbox.Options) (sandbox.Sandbox, error) {
	sb := &Sandbox{
		log:             r.cfg.Logger.With("runtime", "shell", "job", opts.JobID),
		init:            cmp.Or(r.cfg.Init, "/proc/self/exe"),
		userNS:          os.Geteuid() != 0,
		cloneIntoCgroup: kernelAtLeast(5, 7),
	}
	host, err := findCgroups()
	if err != nil {
		return sb, fmt.Errorf("shell: %w", err)
	}
	var seal func(ctx context.Context, dir string) error
	if !sb.userNS {
		// The step runs as sandboxUID, which must be able to write the
		// workspace that the job runner filled as root.
		seal = func(ctx context.Context, dir string) error {
			start := time.Now()
			n, err := chownTree(dir, sandboxUID, sandboxGID)
			if err != nil {
				return fmt.Errorf("shell: hand the workspace to the sandbox user: %w", err)
			}
			sb.log.Debug("workspace handed to the sandbox user", "files", n, "duration", time.Since(start))
			return nil
		}
	}
	ws, err := hostdir.Create(ctx, opts, seal)
	if err != nil {
		return sb, fmt.Errorf("shell: %w", err)
	}
	sb.ws = ws
	// The init binds the workspace through the host tree mounted
	// elsewhere, where absolute symbolic links would not resolve.
	if opts.Workspace, err = filepath.EvalSymlinks(opts.Workspace); err != nil {
		return sb, fmt.Errorf("shell: workspace: %w", err)
	}
	sb.opts = opts

	job, _ := cgroupName(opts.JobID)
	owner, _ := cgroupName(opts.Owner)
	cg := host.job(path.Join(r.cfg.cgroupParent(), owner, job))
	if err := cg.create(ctx, host, opts); err != nil {
		cg.remove(context.WithoutCancel(ctx))
		if sb.userNS {
			return sb, fmt.Errorf("shell: %w (the executor is not root: delegate cgroup %s to its user)", err, r.cfg.CgroupParent)
		}
		return sb, fmt.Errorf("shell: %w", err)
	}
	sb.cg = cg
	sb.log.Debug("sandbox prepared", "cgroup", cg.dirs)
	return sb, nil
}

// Run runs step in new namespaces, in the job's cgroup. See
// [sandbox.Sandbox].
func (s *Sandbox) Run(ctx context.Context, step sandbox.Step, out sandbox.Output) (sandbox.Result, error) {
	s.mu.Lock()
	cg, destroyed := s.cg, s.destroyed
	s.mu.Unlock()
	if cg == nil || destroyed {
		return sandbox.Result{}, errors.New("shell: Run on a sandbox that failed to prepare or was destroyed")
	}
	if err := sandbox.CheckDir(s.opts.Workspace, step.Dir); err != nil {
		return sandbox.Result{}, fmt.Errorf("shell: step %q: %w", step.Key, err)
	}
	cfg, err := s.initConfig(step)
	if err != nil {
		return sandbox.Result{}, fmt.Errorf("shell: step %q: %w", step.Key, err)
	}
	oomBefore, err := cg.oomKills()
	if err != nil {
		return sandbox.Result{}, fmt.Errorf("shell: %w", err)
	}
	res, err := s.run(ctx, cg, cfg, out)
	// The step's processes died with the init of their PID namespace, so
	// this normally finds none: it is the last guard that nothing of the
	// step outlives it.
	if n, kerr := cg.kill(); kerr != nil || n > 0 {
		s.log.Warn("killed processes left after a step", "step", step.Key, "processes", n, "error", kerr)
	}
	if err != nil {
		return res, err
	}
	if res.ExitCode != 0 {
		n, err := cg.oomKills()
		res.OOMKilled = err == nil && n > oomBefore
		res.DiskFull = s.ws.Full()
	}
	return res, nil
}

// run starts the init, waits for it and turns its ending into a result.
func (s *Sandbox) run(ctx context.Context, cg *jobCgroup, cfg *initConfig, out sandbox.Output) (sandbox.Result, error) {
	cmd, status, err := s.startInit(ctx, cg, cfg, out)
	if err != nil {
		return sandbox.Result{}, err
	}
	defer status.Close()
	waitErr := cmd.Wait()
	msg := readInitStatus(status)
	switch {
	case ctx.Err() != nil:
		return exitResult(cmd.ProcessState), ctx.Err()
	case msg.Error != "":
		return sandbox.Result{}, fmt.Errorf("shell: set up sandbox: %s", msg.Error)
	case !msg.Started:
		return sandbox.Result{}, fmt.Errorf("shell: sandbox init ended before starting the step (%v); "+
			"does the binary call shell.MaybeRunInit first in main?", waitErr)
	case cmd.ProcessState == nil:
		return sandbox.Result{}, fmt.Errorf("shell: wait for step: %w", waitErr)
	}
	return exitResult(cmd.ProcessState), nil
}

// startInit starts the sandbox init in the job's cgroup, and only then
// sends its config: the init waits for the config, so nothing of the step
// runs outside the cgroup. It returns the read end of the init's status
// pipe.
func (s *Sandbox) startInit(ctx context.Context, cg *jobCgroup, cfg *initConfig, out sandbox.Output) (*exec.Cmd, *os.File, error) {
	config, err := json.Marshal(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("shell: %w", err)
	}
	confR, confW, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("shell: %w", err)
	}
	statR, statW, err := os.Pipe()
	if err != nil {
		confR.Close()
		confW.Close()
		return nil, nil, fmt.Errorf("shell: %w", err)
	}
	cmd := s.initCmd(ctx, out, confR, statW)
	if cg.v2 && s.cloneIntoCgroup {
		// Born in the cgroup (clone3 CLONE_INTO_CGROUP): no migration,
		// which costs milliseconds of RCU synchronisation.
		dir, err := os.Open(cg.memory)
		if err != nil {
			return nil, nil, fmt.Errorf("shell: open cgroup: %w", err)
		}
		defer dir.Close()
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = int(dir.Fd())
	}
	err = cmd.Start()
	confR.Close()
	statW.Close()
	if err != nil {
		confW.Close()
		statR.Close()
		return nil, nil, fmt.Errorf("shell: start sandbox init: %w", err)
	}
	if !cmd.SysProcAttr.UseCgroupFD {
		err = cg.addProc(cmd.Process.Pid)
	}
	if err == nil {
		_, err = confW.Write(config)
	}
	confW.Close()
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		statR.Close()
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("shell: start sandbox init: %w", err)
	}
	return cmd, statR, nil
}

// initCmd returns the command that runs the init, reading its config from
// conf and writing its status to status.
func (s *Sandbox) initCmd(ctx context.Context, out sandbox.Output, conf, status *os.File) *exec.Cmd {
	cmd := exec.CommandContext(ctx, s.init, initArg)
	cmd.Args[0] = "execd-sandbox-init"
	cmd.Env = []string{} // not nil: nothing of the executor's environment
	cmd.Stdout, cmd.Stderr = out.Stdout, out.Stderr
	cmd.ExtraFiles = []*os.File{conf, status} // initConfigFD, initStatusFD
	cmd.SysProcAttr = sysProcAttr(s.userNS)
	// Cancellation: SIGTERM, which the init forwards to every process of
	// the sandbox; SIGKILL to the init, and so to all of them, after
	// stopGrace. An init that does not catch SIGTERM yet would not even
	// receive it (it is PID 1 of its namespace), but it has not run
	// anything of the step either: SIGKILL at once.
	cmd.Cancel = func() error {
		if !catchesSignal(cmd.Process.Pid, syscall.SIGTERM) {
			return cmd.Process.Kill()
		}
		return cmd.Process.Signal(syscall.SIGTERM)
	}
	cmd.WaitDelay = stopGrace
	return cmd
}

// sysProcAttr returns the init's namespaces.
func sysProcAttr(userNS bool) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC |
			syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET,
		// When the executor dies, even of SIGKILL, the kernel kills the
		// init, and with it every process of its PID namespace.
		Pdeathsig: syscall.SIGKILL,
	}
	if userNS {
		// The executor's user is root in the namespace, and nobody else
		// exists there.
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
		attr.GidMappingsEnableSetgroups = false
	}
	return attr
}

// readInitStatus reads the init's messages until it exits.
func readInitStatus(r io.Reader) initStatus {
	var st initStatus
	dec := json.NewDecoder(io.LimitReader(r, 1<<20))
	for {
		var msg initStatus
		if err := dec.Decode(&msg); err != nil {
			return st
		}
		st.Started = st.Started || msg.Started
		if msg.Error != "" {
			st.Error = msg.Error
		}
	}
}

// catchesSignal reports whether process pid has a handler for sig,
// according to the SigCgt mask of /proc/<pid>/status.
func catchesSignal(pid int, sig syscall.Signal) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<(sig-1)) != 0
		}
	}
	return false
}

// exitResult returns a step's result from its init's exit status, which
// is the step shell's: a code, or 128 + the signal that killed the init.
func exitResult(ps *os.ProcessState) sandbox.Result {
	if ps == nil {
		return sandbox.Result{ExitCode: -1}
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return sandbox.Result{ExitCode: 128 + int(ws.Signal())}
	}
	return sandbox.Result{ExitCode: ps.ExitCode()}
}

// initConfig checks step and turns it into the init's config.
func (s *Sandbox) initConfig(step sandbox.Step) (*initConfig, error) {
	dir := step.Dir
	if dir == "" {
		dir = "."
	}
	if !filepath.IsLocal(dir) {
		return nil, fmt.Errorf("directory %q is not inside the workspace", step.Dir)
	}
	env, err := stepEnv(step.Env)
	if err != nil {
		return nil, err
	}
	var script strings.Builder
	script.WriteString("set -e\n")
	for i, c := range step.Commands {
		if strings.ContainsRune(c, 0) {
			return nil, fmt.Errorf("command %d contains a NUL byte", i)
		}
		script.WriteString(c)
		script.WriteString("\n")
	}
	uid, gid := sandboxUID, sandboxGID
	if s.userNS {
		uid, gid = -1, -1
	}
	return &initConfig{
		Workspace: s.opts.Workspace,
		Dir:       filepath.Clean(dir),
		Script:    script.String(),
		Env:       env,
		UID:       uid,
		GID:       gid,
		Hostname:  sandboxHostname,
	}, nil
}

// stepEnv returns the step's whole environment: PATH and HOME, then the
// step's own variables, a later one replacing an earlier one of the same
// name (so a step may set its own PATH).
func stepEnv(vars []string) ([]string, error) {
	env := []string{"PATH=" + sandboxPath, "HOME=" + sandboxHome}
	for i, kv := range vars {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || name == "" || strings.ContainsRune(kv, 0) {
			// Not quoted: the value may be a secret.
			return nil, fmt.Errorf("environment entry %d is not NAME=value", i)
		}
		env = slices.DeleteFunc(env, func(e string) bool { return strings.HasPrefix(e, name+"=") })
		env = append(env, kv)
	}
	return env, nil
}

// Workspace is the job's workspace. See [sandbox.Sandbox].
func (s *Sandbox) Workspace() sandbox.Workspace { return s.ws }

// Destroy kills whatever still runs in the job's cgroup and removes it,
// then the workspace. It is idempotent, and runs even when ctx is
// already cancelled.
func (s *Sandbox) Destroy(ctx context.Context) error {
	s.mu.Lock()
	cg := s.cg
	s.destroyed = true
	s.mu.Unlock()
	if cg != nil {
		if err := cg.remove(context.WithoutCancel(ctx)); err != nil {
			return fmt.Errorf("shell: destroy sandbox: %w", err)
		}
	}
	if s.ws != nil {
		if err := s.ws.Remove(); err != nil {
			return fmt.Errorf("shell: destroy sandbox: %w", err)
		}
	}
	return nil
}

// kernelAtLeast reports whether the running kernel is at least
// major.minor.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	var maj, min int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &maj, &min); err != nil {
		return false
	}
	return maj > major || maj == major && min >= minor
}
