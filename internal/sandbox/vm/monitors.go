package vm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/vm/agent"
	"github.com/execd/execd/internal/sandbox/vm/firecracker"
	"github.com/execd/execd/internal/sandbox/vm/qemu"
	"github.com/execd/execd/internal/sandbox/vm/rootfs"
	"github.com/execd/execd/internal/sandbox/vm/vmm"
	"github.com/execd/execd/internal/sandbox/vm/vmnet"
)

// Drive IDs, as the guest finds them.
const (
	workspaceDrive = "workspace"
	rootDrive      = "root"
)

// assets are the guest's kernel and initramfs (executor install vm).
type assets struct{ dir string }

func (a assets) kernel() string    { return filepath.Join(a.dir, "vmlinux") }
func (a assets) initramfs() string { return filepath.Join(a.dir, "initramfs.cpio") }

func (a assets) check() error {
	for _, p := range []string{a.kernel(), a.initramfs()} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("the guest is not installed (%w): run `executor install vm`", err)
		}
	}
	return nil
}

// qemuMonitor runs machines under QEMU's microvm.
type qemuMonitor struct {
	q              *qemu.Monitor
	assets         assets
	allowEmulation bool
}

func (m *qemuMonitor) Name() string { return "qemu" }

func (m *qemuMonitor) Emulated() bool {
	accel, err := m.q.ChooseAccel(m.allowEmulation)
	return err == nil && accel == qemu.AccelTCG
}

func (m *qemuMonitor) Check(ctx context.Context) error {
	if err := m.q.Check(ctx, m.allowEmulation); err != nil {
		return err
	}
	return m.assets.check()
}

// Version is QEMU's version and the acceleration machines get.
func (m *qemuMonitor) Version(ctx context.Context) (string, error) {
	v, err := m.q.Version(ctx, m.allowEmulation)
	return strings.TrimPrefix(v, "qemu "), err
}

func (m *qemuMonitor) Boot(ctx context.Context, spec machineSpec) (machine, error) {
	mc, err := m.q.Start(ctx, vmSpec(m.assets, spec, m.allowEmulation))
	if err != nil {
		return nil, err
	}
	return newVMMMachine(mc), nil
}

// vmSpec is spec for a vmm.Monitor.
func vmSpec(a assets, spec machineSpec, allowEmulation bool) vmm.Spec {
	return vmm.Spec{
		Kernel: a.kernel(), Initramfs: a.initramfs(),
		VCPUs: spec.VCPUs, MemoryMiB: int(spec.MemoryBytes >> 20),
		Drives: []vmm.Drive{
			{ID: workspaceDrive, Path: spec.Workspace},
			// The host changes the slot's image under QEMU: no cache.
			{ID: rootDrive, Path: spec.Root, ReadOnly: true, Direct: true},
		},
		Net:            spec.Net,
		AllowEmulation: allowEmulation,
		Dir:            spec.Dir,
		Label:          spec.Name,
	}
}

// vmmMachine is a machine of a vmm.Monitor.
type vmmMachine struct {
	m    vmm.Machine
	done chan struct{}
}

func newVMMMachine(m vmm.Machine) *vmmMachine {
	v := &vmmMachine{m: m, done: make(chan struct{})}
	go func() {
		_ = m.Wait()
		close(v.done)
	}()
	return v
}

func (v *vmmMachine) Guest() guest { return agentGuest{v.m.Agent()} }

func (v *vmmMachine) Alive() bool {
	select {
	case <-v.done:
		return false
	default:
		return true
	}
}

func (v *vmmMachine) Kill() error {
	err := v.m.Kill()
	<-v.done
	return err
}

func (v *vmmMachine) Console() string { return v.m.Console() }

// agentGuest is the guest's agent over its protocol.
type agentGuest struct{ c *agent.Conn }

func (g agentGuest) MountWorkspace(ctx context.Context) error {
	return g.c.MountWorkspace(ctx, workspaceDrive)
}

func (g agentGuest) WarmRoot(ctx context.Context, key string) error {
	return g.c.Mount(ctx, agent.Mount{Root: rootDrive, RootKey: key})
}

func (g agentGuest) Run(ctx context.Context, st guestStep, out sandbox.Output) (sandbox.Result, error) {
	req := agent.Run{Commands: st.Commands, Env: st.Env, Dir: st.Dir, User: st.User, Workspace: workspaceDrive, Root: rootDrive, RootKey: st.RootKey}
	exit, err := g.c.Run(ctx, req, cmp.Or[io.Writer](out.Stdout, io.Discard), cmp.Or[io.Writer](out.Stderr, io.Discard))
	var stepErr *agent.StepError
	switch {
	case ctx.Err() != nil:
		return sandbox.Result{ExitCode: exit.Code}, ctx.Err()
	case errors.As(err, &stepErr) && stepErr.Kind == agent.KindDir:
		return sandbox.Result{}, &sandbox.DirError{Msg: stepErr.Msg}
	case err != nil:
		return sandbox.Result{}, err
	}
	return sandbox.Result{ExitCode: exit.Code, OOMKilled: exit.OOMKilled, DiskFull: exit.DiskFull}, nil
}

// cacheImages is the root file system image cache.
type cacheImages struct{ c *rootfs.Cache }

func (i cacheImages) Root(ctx context.Context, image string, auth map[string]string, out io.Writer) (rootImage, error) {
	im, err := i.c.Get(ctx, image, auth, cmp.Or[io.Writer](out, io.Discard))
	if err != nil {
		return rootImage{}, err
	}
	return rootImage{ID: im.ID, Path: im.Path, User: im.Config.User, Env: im.Config.Env, Release: func() { _ = im.Release() }}, nil
}

func (i cacheImages) Clean(ctx context.Context) error { return i.c.Clean(ctx) }

// tapNetworks are machines' networks on tap devices (package vmnet).
type tapNetworks struct{ cfg vmnet.Config }

func (t tapNetworks) Setup(ctx context.Context, owner, id, dir string) (network, error) {
	cfg := t.cfg
	cfg.Owner, cfg.JobID, cfg.Workspace = owner, id, dir
	n, err := vmnet.Setup(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return tapNetwork{n}, nil
}

func (t tapNetworks) Clean(ctx context.Context, stale func(sandbox.Leftover) bool) error {
	// A tap without a label is being made, or its maker died making it:
	// its owner is unknown, so it stays.
	_, err := vmnet.Clean(ctx, func(l sandbox.Leftover) bool { return l.Owner != "" && stale(machineLeftover(l.Owner, l.Workspace)) })
	return err
}

type tapNetwork struct{ n *vmnet.Network }

func (t tapNetwork) Device() *vmm.Net {
	g := t.n.Guest()
	return &vmm.Net{Tap: t.n.Tap, MAC: t.n.MAC, Address: g.Address, Gateway: g.Gateway, DNS: g.DNS}
}

func (t tapNetwork) Remove(ctx context.Context) error { return t.n.Remove(ctx) }

// agentPort is the vsock port the guest's agent dials under Firecracker.
const agentPort = 1024

// firecrackerMonitor runs machines under Firecracker.
type firecrackerMonitor struct {
	binary string // "" finds firecracker on PATH
	assets assets
}

func (m *firecrackerMonitor) Name() string { return "firecracker" }

func (m *firecrackerMonitor) Emulated() bool { return false }

func (m *firecrackerMonitor) Check(ctx context.Context) error {
	err := firecracker.Check(ctx, m.binary)
	if err == nil {
		err = vmm.CheckNotPVM("/dev/kvm")
	}
	if err != nil {
		return fmt.Errorf("%w: %w", vmm.ErrNoKVM, err)
	}
	return m.assets.check()
}

func (m *firecrackerMonitor) Version(ctx context.Context) (string, error) {
	return firecracker.Version(ctx, m.binary)
}

func (m *firecrackerMonitor) Boot(ctx context.Context, spec machineSpec) (machine, error) {
	if spec.VCPUs > 1 && spec.VCPUs%2 != 0 {
		return nil, fmt.Errorf("firecracker takes 1 or an even number of vCPUs, not %d: set EXECUTOR_JOB_NUM_CPUS accordingly", spec.VCPUs)
	}
	// The guest finds its drives by their order (Firecracker has no
	// serials), and the agent dials the host over vsock.
	vs := vmSpec(m.assets, spec, false)
	cmdline := "console=ttyS0 reboot=k panic=1 " + vs.GuestCmdline() + fmt.Sprintf(" execd.vsock=%d", agentPort)
	// Unix socket paths are short (108 bytes): the sockets get a
	// directory of their own.
	dir, err := os.MkdirTemp("", "fc")
	if err != nil {
		return nil, err
	}
	fs := firecracker.Spec{
		Kernel: vs.Kernel, Initrd: vs.Initramfs, Cmdline: cmdline,
		VCPUs: max(spec.VCPUs, 1), MemoryMiB: vs.MemoryMiB,
		Drives: []firecracker.Drive{
			{ID: "d0", Path: spec.Workspace},
			{ID: "d1", Path: spec.Root, ReadOnly: true},
		},
		RxBytesPerSec: spec.RxBytesPerSec, TxBytesPerSec: spec.TxBytesPerSec,
		AgentPort: agentPort, AgentDials: true, Label: spec.Name, Dir: dir,
	}
	if spec.Net != nil {
		fs.Tap, fs.MAC = spec.Net.Tap, spec.Net.MAC
	}
	fm, err := firecracker.Start(ctx, m.binary, fs)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	conn, err := fm.Agent(ctx)
	var ac *agent.Conn
	if err == nil {
		ac, err = agent.Handshake(ctx, conn)
	}
	if err != nil {
		_ = fm.Kill()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("the guest did not start: %w; console:\n%s", err, fm.Console())
	}
	return &fcMachine{m: fm, agent: ac, dir: dir}, nil
}

// fcMachine is a Firecracker machine.
type fcMachine struct {
	m     *firecracker.Machine
	agent *agent.Conn
	dir   string
}

func (f *fcMachine) Guest() guest { return agentGuest{f.agent} }

func (f *fcMachine) Alive() bool {
	select {
	case <-f.m.Done():
		return false
	default:
		return true
	}
}

func (f *fcMachine) Kill() error {
	err := f.m.Kill()
	os.RemoveAll(f.dir)
	return err
}

func (f *fcMachine) Console() string { return string(f.m.Console()) }
