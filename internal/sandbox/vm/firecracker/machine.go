package firecracker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// LabelEnv is the environment variable carrying Spec.Label.
const LabelEnv = "EXECD_VM"

// A Machine is a running micro-VM: one firecracker process.
type Machine struct {
	spec    Spec // with absolute paths
	cmd     *exec.Cmd
	api     *apiClient
	console *console

	agentLn *net.UnixListener // for the guest's connections when Spec.AgentDials

	done    chan struct{} // closed when the process is reaped and its sockets removed
	waitErr error         // the process's exit, set before done is closed
}

// Start starts a firecracker process (binary: a path, or a name looked up
// in PATH; "" is "firecracker"), configures the VM of spec and boots it.
// ctx bounds the start, not the VM's life. On any error no process is left
// and the sockets are removed.
func Start(ctx context.Context, binary string, spec Spec) (*Machine, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	spec, err := spec.absolute()
	if err != nil {
		return nil, fmt.Errorf("firecracker: %w", err)
	}
	bin, err := lookBinary(binary)
	if err != nil {
		return nil, err
	}
	m, err := launch(bin, spec)
	if err != nil {
		return nil, err
	}
	if err := m.configure(ctx); err != nil {
		m.Kill()
		return nil, m.startError(err)
	}
	return m, nil
}

// launch prepares Dir and starts the process.
func launch(bin string, spec Spec) (*Machine, error) {
	if err := os.MkdirAll(spec.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("firecracker: %w", err)
	}
	// Firecracker refuses to bind a socket path that exists: remove those
	// of an earlier VM in Dir.
	if err := removeSockets(&spec); err != nil {
		return nil, fmt.Errorf("firecracker: %w", err)
	}
	// Firecracker's logger opens the file read-write; make it ours.
	f, err := os.OpenFile(filepath.Join(spec.Dir, vmmLog), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("firecracker: %w", err)
	}
	f.Close()
	con, err := newConsole(filepath.Join(spec.Dir, consoleLog))
	if err != nil {
		return nil, fmt.Errorf("firecracker: %w", err)
	}
	// The guest's connections to the agent port go to our listener,
	// which must exist before the guest dials.
	var agentLn *net.UnixListener
	if p := spec.agentSocket(); p != "" {
		agentLn, err = net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		if err != nil {
			con.close()
			return nil, fmt.Errorf("firecracker: %w", err)
		}
	}
	apiPath := filepath.Join(spec.Dir, apiSocket)
	cmd := exec.Command(bin, "--api-sock", apiPath, "--id", instanceID(spec.Dir))
	cmd.Dir = spec.Dir
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if spec.Label != "" {
		cmd.Env = append(cmd.Env, LabelEnv+"="+spec.Label)
	}
	cmd.Stdout = con
	cmd.Stderr = con
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Should anything else hold the output pipe open, do not let Wait
	// (and so Kill) wait for it.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		con.close()
		if agentLn != nil {
			agentLn.Close()
		}
		return nil, fmt.Errorf("firecracker: %w", err)
	}
	m := &Machine{spec: spec, cmd: cmd, api: newAPIClient(apiPath), console: con, agentLn: agentLn, done: make(chan struct{})}
	go m.reap()
	return m, nil
}

func (m *Machine) reap() {
	err := m.cmd.Wait()
	m.api.close()
	m.console.close()
	if m.agentLn != nil {
		m.agentLn.Close()
	}
	removeSockets(&m.spec)
	m.waitErr = err
	close(m.done)
}

// removeSockets removes the VM's Unix sockets: Firecracker's, which it
// does not remove when it exits, and the agent's.
func removeSockets(s *Spec) error {
	paths := []string{filepath.Join(s.Dir, apiSocket), filepath.Join(s.Dir, vsockSocket)}
	if p := s.agentSocket(); p != "" {
		paths = append(paths, p)
	}
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// configure waits for the API socket, then sends the requests of the
// package comment in order.
func (m *Machine) configure(ctx context.Context) error {
	ctx, cancel := m.bind(ctx)
	defer cancel()
	if err := m.waitAPI(ctx); err != nil {
		return err
	}
	s := &m.spec
	put := func(path string, body any) error { return m.api.do(ctx, "PUT", path, body) }
	if err := put("/logger", loggerConfig{LogPath: filepath.Join(s.Dir, vmmLog), Level: "Warning", ShowLevel: true}); err != nil {
		return err
	}
	if err := put("/boot-source", bootSource{KernelImagePath: s.Kernel, InitrdPath: s.Initrd, BootArgs: s.Cmdline}); err != nil {
		return err
	}
	if err := put("/machine-config", machineConfig{VCPUCount: s.VCPUs, MemSizeMiB: s.MemoryMiB}); err != nil {
		return err
	}
	for _, d := range s.Drives {
		if err := put("/drives/"+d.ID, drive{DriveID: d.ID, PathOnHost: d.Path, IsReadOnly: d.ReadOnly}); err != nil {
			return err
		}
	}
	if s.Tap != "" {
		err := put("/network-interfaces/"+ifaceID, networkInterface{
			IfaceID: ifaceID, HostDevName: s.Tap, GuestMAC: s.MAC,
			RxRateLimiter: bandwidthLimiter(s.RxBytesPerSec),
			TxRateLimiter: bandwidthLimiter(s.TxBytesPerSec),
		})
		if err != nil {
			return err
		}
	}
	if s.AgentPort != 0 {
		if err := put("/vsock", vsockConfig{GuestCID: guestCID, UDSPath: filepath.Join(s.Dir, vsockSocket)}); err != nil {
			return err
		}
	}
	return put("/actions", instanceAction{ActionType: "InstanceStart"})
}

// bind returns a context that also ends when the process exits, so that
// no request waits for a dead VM.
func (m *Machine) bind(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-m.done:
			cancel(errExited)
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(context.Canceled) }
}

var errExited = errors.New("firecracker exited")

// waitAPI waits until the API socket accepts connections.
func (m *Machine) waitAPI(ctx context.Context) error {
	path := filepath.Join(m.spec.Dir, apiSocket)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("firecracker: waiting for the API socket: %w", context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// startError adds to err how the process ended and its console's tail.
func (m *Machine) startError(err error) error {
	<-m.done
	var exit *exec.ExitError
	if errors.As(m.waitErr, &exit) && !m.killedByUs(exit) {
		err = fmt.Errorf("%w (firecracker %v)", err, exit)
	}
	if out := bytes.TrimSpace(m.Console()); len(out) > 0 {
		err = fmt.Errorf("%w; its output ends:\n%s", err, lastLines(out, 20))
	}
	return err
}

func (m *Machine) killedByUs(exit *exec.ExitError) bool {
	ws, ok := exit.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// PID returns the firecracker process's ID.
func (m *Machine) PID() int { return m.cmd.Process.Pid }

// Dir returns the VM's directory, an absolute path.
func (m *Machine) Dir() string { return m.spec.Dir }

// Wait waits for the firecracker process to exit. It returns nil when
// Firecracker exited with status 0, as it does when the guest powers off
// or reboots (with reboot=k on its command line), and otherwise an error
// with the exit status and the console's tail, also after [Machine.Kill].
// Its sockets are removed when Wait returns.
func (m *Machine) Wait() error {
	<-m.done
	if m.waitErr == nil {
		return nil
	}
	err := fmt.Errorf("firecracker: %w", m.waitErr)
	if out := bytes.TrimSpace(m.Console()); len(out) > 0 {
		err = fmt.Errorf("%w; its output ends:\n%s", err, lastLines(out, 20))
	}
	return err
}

// Done returns a channel closed when the process has exited and its
// sockets are removed.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Kill kills the firecracker process (SIGKILL: the VM's disks are
// disposable) and waits until it is reaped and its sockets are removed.
// It returns nil, also when the process had already exited.
func (m *Machine) Kill() error {
	select {
	case <-m.done:
		return nil
	default:
	}
	if err := m.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("firecracker: kill: %w", err)
	}
	<-m.done
	return nil
}

// Console returns the last bytes Firecracker wrote to its stdout and
// stderr (the guest's serial console, and Firecracker's messages before
// its logger was set), followed by the end of its log if that is not
// empty: at most about 40 KiB, for error messages.
func (m *Machine) Console() []byte {
	out := m.console.bytes()
	if log := fileTail(filepath.Join(m.spec.Dir, vmmLog), logTail); len(log) > 0 {
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		out = append(out, "[firecracker.log]\n"...)
		out = append(out, log...)
	}
	return out
}

// UpdateDrive makes the drive id use the file at path: PATCH /drives/{id},
// which Firecracker accepts after the boot. The guest must not have the
// drive mounted nor be using it meanwhile.
func (m *Machine) UpdateDrive(ctx context.Context, id, path string) error {
	if !validID(id) {
		return fmt.Errorf("firecracker: drive ID %q: must be ASCII letters, digits or underscores", id)
	}
	path, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("firecracker: %w", err)
	}
	ctx, cancel := m.bind(ctx)
	defer cancel()
	return m.api.do(ctx, "PATCH", "/drives/"+id, partialDrive{DriveID: id, PathOnHost: path})
}

func lastLines(b []byte, n int) []byte {
	i := len(b)
	for ; n > 0 && i > 0; n-- {
		i = bytes.LastIndexByte(b[:i], '\n')
		if i < 0 {
			return b
		}
	}
	return b[i+1:]
}
