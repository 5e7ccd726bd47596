package shell

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path"
	goruntime "runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// initArg is the private sentinel first argument that makes a binary the
// sandbox init; see MaybeRunInit.
const initArg = "__execd-shell-sandbox-init"

// initProtocolArg asks an init program which protocol it speaks: it prints
// initProtocol and exits.
const initProtocolArg = "__execd-shell-sandbox-init-protocol"

// initProtocol numbers the runtime's exchange with its init (the
// arguments, the file descriptors, initConfig and initStatus). Change it
// with any of them, so that an init of another release is refused.
const initProtocol = "1"

// The file descriptors the init inherits from the runtime.
const (
	// initConfigFD carries the JSON initConfig, then EOF once the runtime
	// has moved the init into the job's cgroup: the init waits for it
	// before running anything of the step.
	initConfigFD = 3
	// initStatusFD takes initStatus messages back to the runtime.
	initStatusFD = 4
)

// initSetupFailed is the init's exit code when it could not build the
// sandbox; the runtime reads the reason from the status pipe.
const initSetupFailed = 125

// errStepFailed means that the step failed before its script could run,
// for a reason already written to its stderr: not a sandbox failure.
var errStepFailed = errors.New("step failed")

// initConfig is what the runtime tells the init to run.
type initConfig struct {
	// Workspace is the host directory mounted at /workspace.
	Workspace string
	// Dir is the step's working directory, relative to the workspace.
	Dir string
	// Script is the step's /bin/sh script.
	Script string
	// Env is the step's whole environment.
	Env []string
	// UID and GID run the step. -1 keeps the init's: the root of a user
	// namespace, without capabilities.
	UID, GID int
	// Hostname is the sandbox's host name.
	Hostname string
}

// initStatus is a message from the init to the runtime.
type initStatus struct {
	// Started says the step's shell runs: from now on the init's exit
	// status is the step's.
	Started bool `json:"started,omitempty"`
	// Error says why the init could not start the step.
	Error string `json:"error,omitempty"`
}

// MaybeRunInit makes this process the shell runtime's sandbox init when
// it was started as one, and then never returns; otherwise, it returns
// at once.
//
// The shell runtime runs each step by re-executing the running binary
// (/proc/self/exe) with a private sentinel argument, as the first process
// (PID 1) of the step's new namespaces. That init builds the sandbox's
// filesystem, drops privileges, runs the step's shell and exits with its
// status. Every binary that uses the runtime (cmd/executor, and test
// binaries through TestMain) must therefore call MaybeRunInit first in
// main, before anything else runs:
//
//	func main() {
//		shell.MaybeRunInit()
//		...
//	}
func MaybeRunInit() {
	if len(os.Args) < 2 {
		return
	}
	switch os.Args[1] {
	case initArg:
		os.Exit(runInit())
	case initProtocolArg:
		fmt.Println(initProtocol)
		os.Exit(0)
	}
}

// CheckInit checks that program can be [Config.Init]: that it runs and
// speaks this runtime's protocol with it.
func CheckInit(ctx context.Context, program string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, program, initProtocolArg)
	cmd.Env = []string{}
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("sandbox init %s does not run (%w): build it from the executor's release (go build ./cmd/execd-sandbox-init)", program, err)
	}
	if got := strings.TrimSpace(string(out)); got != initProtocol {
		return fmt.Errorf("sandbox init %s speaks protocol %q, this executor %q: install the execd-sandbox-init of the executor's release", program, got, initProtocol)
	}
	return nil
}

// runInit is the init: it sets up the sandbox, starts the step's shell,
// and then reaps processes until the shell exits, forwarding termination
// signals to everything in the sandbox.
func runInit() int {
	// The capability bounding set, no_new_privs and the cgroup namespace
	// belong to a thread, not the process: set them and start the step
	// from one thread.
	goruntime.LockOSThread()
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "execd sandbox init: not the first process of a new PID namespace; only the shell runtime starts this")
		return 2
	}
	// Neither pipe, nor any descriptor the executor inherited, may leak
	// into the step.
	syscall.CloseOnExec(initConfigFD)
	syscall.CloseOnExec(initStatusFD)
	if err := CloseInheritedOnExec(); err != nil {
		fmt.Fprintln(os.Stderr, "execd sandbox init: close inherited descriptors:", err)
		return initSetupFailed
	}
	// Catch termination signals from now on: as PID 1 of its namespace
	// the init would otherwise not even receive them. One that comes
	// while the sandbox is built ends the init before the step starts;
	// later ones are forwarded to the step's processes.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
	status := os.NewFile(initStatusFD, "init-status")
	cfg, err := readInitConfig(os.NewFile(initConfigFD, "init-config"))
	if err == nil {
		err = setUp(cfg)
	}
	select {
	case sig := <-sigs:
		// Cancelled while setting up: no need to start the step.
		if err == nil {
			err = fmt.Errorf("%v before the step started", sig)
		}
	default:
	}
	var pid int
	if err == nil {
		pid, err = startShell(cfg)
	}
	if errors.Is(err, errStepFailed) {
		json.NewEncoder(status).Encode(initStatus{Started: true})
		return 1
	}
	if err != nil {
		json.NewEncoder(status).Encode(initStatus{Error: err.Error()})
		return initSetupFailed
	}
	json.NewEncoder(status).Encode(initStatus{Started: true})
	status.Close()
	go func() {
		for sig := range sigs {
			// -1: every process of the PID namespace but the init.
			unix.Kill(-1, sig.(syscall.Signal))
		}
	}()
	return reap(pid)
}

// readInitConfig reads the config until EOF: the runtime closes the pipe
// once the init is in the job's cgroup.
func readInitConfig(f *os.File) (*initConfig, error) {
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read init config: %w", err)
	}
	cfg := new(initConfig)
	if err := json.Unmarshal(b, cfg); err != nil {
		return nil, fmt.Errorf("read init config: %w", err)
	}
	return cfg, nil
}

// reap waits for the init's children, and orphans it inherits, until the
// step's shell exits, and returns the shell's exit status as a shell
// would: the exit code, or 128 + the signal that killed it. When the init
// exits, the kernel kills every other process of the PID namespace.
func reap(step int) int {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "execd sandbox init: wait: %v\n", err)
			return initSetupFailed
		}
		if pid != step {
			continue
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}

// setUp builds the sandbox around the init, for the step's shell.
func setUp(cfg *initConfig) error {
	// In a new cgroup namespace rooted at the job's cgroup (where the
	// runtime put the init), /proc/self/cgroup shows no host paths.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("new cgroup namespace: %w", err)
	}
	// Named so that ps in the sandbox shows what PID 1 is.
	os.WriteFile("/proc/self/comm", []byte("execd-init"), 0)
	if err := setUpFilesystem(cfg); err != nil {
		return err
	}
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		return fmt.Errorf("set host name: %w", err)
	}
	if err := loopbackUp(); err != nil {
		return err
	}
	if err := dropPrivileges(); err != nil {
		return err
	}
	return nil
}

// loopbackUp brings up the network namespace's only interface, which
// starts down.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback: set up: %w", err)
	}
	return nil
}

// dropPrivileges empties the capability bounding set and sets
// no_new_privs, for this thread and the processes it starts: the step's
// shell then runs without capabilities even as the root of a user
// namespace, and no set-user-ID or file-capability binary can give any
// back. The init itself keeps its capabilities; it runs no step code.
func dropPrivileges() error {
	for c := 0; ; c++ {
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) {
			break // past the last capability the kernel knows
		}
		if err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	return nil
}

// startShell starts /bin/sh -c the step's script as the sandbox user, in
// a session of its own, in the working directory.
func startShell(cfg *initConfig) (int, error) {
	dir := path.Join(sandboxWorkspace, cfg.Dir)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		// The step's own failure, not the sandbox's: a missing
		// directory is reported like any failing command.
		fmt.Fprintf(os.Stderr, "execd: working directory %s does not exist\n", dir)
		return 0, errStepFailed
	}
	sys := &syscall.SysProcAttr{Setsid: true}
	if cfg.UID >= 0 {
		sys.Credential = &syscall.Credential{Uid: uint32(cfg.UID), Gid: uint32(cfg.GID), Groups: []uint32{}}
	}
	pid, err := syscall.ForkExec("/bin/sh", []string{"sh", "-c", cfg.Script}, &syscall.ProcAttr{
		Dir:   dir,
		Env:   cfg.Env,
		Files: []uintptr{0, 1, 2},
		Sys:   sys,
	})
	if err != nil {
		return 0, fmt.Errorf("start /bin/sh in %s: %w", dir, err)
	}
	return pid, nil
}
