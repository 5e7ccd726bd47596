// Package qemu is the QEMU microvm monitor of the VM runtime
// ([vmm.Monitor]): it runs qemu-system-x86_64 -M microvm with the
// guest's kernel booted through PVH, its drives as virtio-blk devices
// (the drive's ID as the device's serial), an optional virtio-net
// device on a tap, and the agent's channel as a virtio-serial port named
// guest.PortName whose host end is one side of a socketpair handed to
// QEMU as a file descriptor (no socket path to race on or clean up).
//
// It uses KVM when /dev/kvm can run this kernel, and software emulation
// (TCG, -cpu max) only when the spec allows it.
package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/execd/execd/internal/sandbox/vm/agent"
	"github.com/execd/execd/internal/sandbox/vm/vmm"
)

// PortName is the name of the agent's virtio-serial port (the guest's
// guest.PortName).
const PortName = "org.execd.agent"

// Monitor starts QEMU microvm machines. The zero value uses
// qemu-system-x86_64 from PATH and /dev/kvm.
type Monitor struct {
	// Binary is QEMU's path; "" finds qemu-system-x86_64 on PATH.
	Binary string
	// KVMDevice is the KVM device; "" is /dev/kvm.
	KVMDevice string
}

var _ vmm.Monitor = (*Monitor)(nil)

// Name implements [vmm.Monitor].
func (*Monitor) Name() string { return "qemu" }

// Check implements [vmm.Monitor]: QEMU is installed, and KVM is usable
// or emulation allowed.
func (m *Monitor) Check(_ context.Context, allowEmulation bool) error {
	if _, err := m.binary(); err != nil {
		return err
	}
	_, err := m.ChooseAccel(allowEmulation)
	return err
}

// Version implements [vmm.Monitor]: "qemu 7.2.22 (kvm)" or "(tcg)".
func (m *Monitor) Version(ctx context.Context, allowEmulation bool) (string, error) {
	bin, err := m.binary()
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("vm: %s --version: %w", bin, err)
	}
	// "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)"
	v := strings.Fields(strings.TrimPrefix(strings.SplitN(string(out), "\n", 2)[0], "QEMU emulator version "))
	if len(v) == 0 {
		return "", fmt.Errorf("vm: %s --version said %q", bin, out)
	}
	accel, err := m.ChooseAccel(allowEmulation)
	if err != nil {
		return "qemu " + v[0], err
	}
	return fmt.Sprintf("qemu %s (%s)", v[0], accel), nil
}

func (m *Monitor) binary() (string, error) {
	if m.Binary != "" {
		return m.Binary, nil
	}
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return "", fmt.Errorf("vm: qemu-system-x86_64 is not installed (executor install vm): %w", err)
	}
	return bin, nil
}

// Accel is how a machine's CPU runs.
type Accel string

const (
	AccelKVM Accel = "kvm"
	AccelTCG Accel = "tcg" // software emulation
)

// ChooseAccel returns KVM when the KVM device is usable, else TCG when
// emulation is allowed, else an error wrapping vmm.ErrNoKVM that says
// why and names the setting.
func (m *Monitor) ChooseAccel(allowEmulation bool) (Accel, error) {
	kvmErr := CheckKVM(m.kvmDevice())
	if kvmErr == nil {
		return AccelKVM, nil
	}
	if allowEmulation {
		return AccelTCG, nil
	}
	return "", fmt.Errorf("%w: %v; set EXECUTOR_VM_ALLOW_EMULATION=true to run VMs in software emulation (slow; for development and CI)", vmm.ErrNoKVM, kvmErr)
}

func (m *Monitor) kvmDevice() string {
	if m.KVMDevice != "" {
		return m.KVMDevice
	}
	return "/dev/kvm"
}

// The KVM ioctls that tell whether KVM can run a VM.
const (
	kvmGetAPIVersion = 0xAE00
	kvmCreateVM      = 0xAE01
)

// CheckKVM reports whether the KVM device at path can run an ordinary
// guest kernel: it opens, speaks the stable API, creates a VM, and is
// not PVM (kvm_pvm, nested virtualisation without hardware support,
// which only boots PVM-enabled guest kernels).
func CheckKVM(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("KVM: %w", err)
	}
	defer f.Close()
	v, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), kvmGetAPIVersion, 0)
	if errno != 0 || v != 12 {
		return fmt.Errorf("KVM: %s does not speak the KVM API", path)
	}
	vm, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), kvmCreateVM, 0)
	if errno != 0 {
		return fmt.Errorf("KVM: %s cannot create a VM: %v", path, errno)
	}
	unix.Close(int(vm))
	return vmm.CheckNotPVM(path)
}

// Args returns QEMU's arguments for spec with accel; the agent's
// channel is the inherited file descriptor agentFD. The console is the
// serial port on QEMU's standard output.
func Args(spec vmm.Spec, accel Accel, agentFD int) []string {
	vcpus, mem := max(spec.VCPUs, 1), spec.MemoryMiB
	cpu := "host"
	if accel == AccelTCG {
		cpu = tcgCPU
		if spec.EmulatedCPU != "" {
			cpu = spec.EmulatedCPU
		}
	}
	if mem == 0 {
		mem = 512
	}
	// cryptomgr.notests: the self-tests of the kernel's crypto
	// algorithms took a quarter of a boot under TCG (1.98 s -> 1.66 s).
	cmdline := "console=ttyS0 quiet panic=-1 reboot=t cryptomgr.notests"
	if accel == AccelTCG {
		cmdline += tcgCmdline()
	}
	if g := spec.GuestCmdline(); g != "" {
		cmdline += " " + g
	}
	if spec.Cmdline != "" {
		cmdline += " " + spec.Cmdline
	}
	args := []string{
		"-M", "microvm,x-option-roms=off",
		"-accel", string(accel),
		"-cpu", cpu,
		"-smp", strconv.Itoa(vcpus),
		"-m", strconv.Itoa(mem),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-monitor", "none",
		"-serial", "stdio",
		"-kernel", spec.Kernel,
		"-initrd", spec.Initramfs,
		"-append", cmdline,
	}
	if spec.Label != "" {
		args = append(args, "-name", escapeOpt(spec.Label)+",process="+escapeOpt(spec.Label))
	}
	for i, d := range spec.Drives {
		id := "d" + strconv.Itoa(i)
		opt := "if=none,id=" + id + ",format=raw,file=" + escapeOpt(d.Path)
		if d.ReadOnly {
			opt += ",read-only=on"
		}
		if d.Direct {
			opt += ",cache=none"
		}
		args = append(args, "-drive", opt, "-device", "virtio-blk-device,drive="+id+",serial="+d.ID)
	}
	if spec.Net != nil {
		args = append(args, "-netdev", "tap,id=net0,script=no,downscript=no,ifname="+escapeOpt(spec.Net.Tap))
		dev := "virtio-net-device,netdev=net0"
		if spec.Net.MAC != "" {
			dev += ",mac=" + spec.Net.MAC
		}
		args = append(args, "-device", dev)
	}
	args = append(args,
		"-device", "virtio-serial-device,max_ports=2",
		"-chardev", "socket,id=agent,fd="+strconv.Itoa(agentFD),
		"-device", "virtserialport,chardev=agent,name="+PortName,
	)
	return args
}

// tcgCmdline returns kernel arguments for a guest under TCG. Its TSC is
// the host's, but the kernel's calibration of it against the emulated
// PIT fails when the host is busy, and the kernel then hangs early in
// its boot (seen here: 3 boots of 8 under load). Telling it the
// frequency (the host's, from /proc/cpuinfo) skips the calibration, and
// tsc=reliable keeps the clock watchdog from discarding the TSC when the
// emulated timer ticks late.
func tcgCmdline() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "cpu MHz" {
			mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || mhz < 100 {
				return ""
			}
			return fmt.Sprintf(" tsc_early_khz=%d tsc=reliable", int(mhz*1000))
		}
	}
	return ""
}

// tcgCPU is the CPU model emulated under TCG by default: every feature
// QEMU can emulate, so that steps' binaries built for newer CPUs run.
const tcgCPU = "max"

// escapeOpt escapes a value inside a QEMU option list (commas double).
func escapeOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// Start implements [vmm.Monitor].
func (m *Monitor) Start(ctx context.Context, spec vmm.Spec) (vmm.Machine, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	for _, p := range []string{spec.Kernel, spec.Initramfs} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("vm: %w (executor install vm makes the guest)", err)
		}
	}
	accel, err := m.ChooseAccel(spec.AllowEmulation)
	if err != nil {
		return nil, err
	}
	bin, err := m.binary()
	if err != nil {
		return nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("vm: socketpair: %w", err)
	}
	hostEnd := os.NewFile(uintptr(fds[0]), "agent")
	guestEnd := os.NewFile(uintptr(fds[1]), "agent-qemu")
	conn, err := net.FileConn(hostEnd)
	hostEnd.Close()
	if err != nil {
		guestEnd.Close()
		return nil, fmt.Errorf("vm: agent socket: %w", err)
	}

	consoleBytes := spec.ConsoleBytes
	if consoleBytes <= 0 {
		consoleBytes = 64 << 10
	}
	mc := &machine{console: newRing(consoleBytes), done: make(chan struct{})}
	cmd := exec.Command(bin, Args(spec, accel, 3)...)
	cmd.ExtraFiles = []*os.File{guestEnd}
	cmd.Stdout, cmd.Stderr = mc.console, mc.console
	cmd.Stdin = nil
	// The executor's environment holds its secret: the monitor gets a
	// PATH and its label only.
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if spec.Label != "" {
		cmd.Env = append(cmd.Env, vmm.LabelEnv+"="+spec.Label)
	}
	// Its own process group; killed with the executor if it dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		guestEnd.Close()
		conn.Close()
		return nil, fmt.Errorf("vm: start qemu: %w", err)
	}
	guestEnd.Close()
	mc.cmd = cmd
	go func() {
		mc.waitErr = cmd.Wait()
		conn.Close() // a reader of a dead VM's channel ends
		close(mc.done)
	}()

	// The boot ends with Hello, with QEMU's exit, or with ctx.
	bootCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-mc.done:
			cancel(errors.New("qemu exited"))
		case <-bootCtx.Done():
		}
	}()
	start := time.Now()
	ac, err := agent.Handshake(bootCtx, conn)
	if err != nil {
		mc.Kill()
		mc.Wait()
		return nil, fmt.Errorf("vm: the guest did not start (%s, %v after start: %v); qemu: %v; console:\n%s", accel, time.Since(start).Round(time.Millisecond), err, mc.waitErr, mc.Console())
	}
	mc.agent = ac
	mc.accel = accel
	return mc, nil
}

// machine is a running QEMU.
type machine struct {
	cmd     *exec.Cmd
	agent   *agent.Conn
	accel   Accel
	console *ring

	done     chan struct{}
	waitErr  error
	killOnce sync.Once
}

func (mc *machine) Agent() *agent.Conn { return mc.agent }

// Accel returns how the machine's CPU runs.
func (mc *machine) Accel() Accel { return mc.accel }

func (mc *machine) Wait() error {
	<-mc.done
	var ee *exec.ExitError
	if errors.As(mc.waitErr, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL {
		return nil // Kill
	}
	if mc.waitErr != nil {
		return fmt.Errorf("qemu: %w; console:\n%s", mc.waitErr, mc.Console())
	}
	return nil
}

func (mc *machine) Kill() error {
	mc.killOnce.Do(func() {
		select {
		case <-mc.done:
		default:
			mc.cmd.Process.Kill()
		}
	})
	return nil
}

func (mc *machine) Console() string { return mc.console.String() }

func (mc *machine) Done() <-chan struct{} { return mc.done }

// ring keeps the last n bytes written to it.
type ring struct {
	mu   sync.Mutex
	buf  []byte
	n    int
	lost bool
}

func newRing(n int) *ring { return &ring{n: n} }

func (r *ring) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = append(r.buf, p...)
	if over := len(r.buf) - r.n; over > 0 {
		r.buf = append(r.buf[:0], r.buf[over:]...)
		r.lost = true
	}
	return len(p), nil
}

func (r *ring) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := strings.ToValidUTF8(string(r.buf), "?")
	if r.lost {
		s = "...\n" + s
	}
	return s
}
