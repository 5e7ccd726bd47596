package vm

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/diskimage"
	"github.com/execd/execd/internal/sandbox/vm/slot"
	"github.com/execd/execd/internal/sandbox/vm/vmm"
)

// Runtime is the micro-VM runtime. Each job runs in a virtual machine of
// its own: the workspace is a disk image the host fills and then hands to
// the machine; each step runs in its image's root file system, a
// read-only disk the host swaps under the running machine (package
// slot), with a writable overlay in the guest's memory; nothing of the
// host's file system is shared with the guest. A warm pool of machines
// booted ahead hides the boot from jobs.
type Runtime struct {
	cfg     Config
	monitor monitor
	images  imageSource
	nets    networks
	// monitors are those that could be used, for Explain.
	monitors []monitor

	mu      sync.Mutex
	pool    *warmPool[*vmachine]
	started bool
	// last is the image of the last step run: a machine of the pool
	// mounts it ahead, as the next job likely uses it too.
	last rootImage
}

var (
	_ sandbox.Runtime = (*Runtime)(nil)
	_ sandbox.Starter = (*Runtime)(nil)
	_ sandbox.Janitor = (*Runtime)(nil)
)

// imageSource turns a step's image into a root file system image.
type imageSource interface {
	// Clean removes what builds that a crash interrupted left.
	Clean(ctx context.Context) error
	// Root returns the root file system image of image, built or
	// cached, and the image's user and environment. Its errors wrap
	// sandbox.ErrImageNotFound or sandbox.ErrRegistryDenied when no
	// retry can help.
	// out receives what the build does (the job's pull log).
	Root(ctx context.Context, image string, auth map[string]string, out io.Writer) (rootImage, error)
}

// rootImage is a step image's root file system.
type rootImage struct {
	// ID is the image's digest.
	ID   string
	Path string
	User string
	Env  []string
	// Release tells the cache the image is no longer in use.
	Release func()
}

// networks make the machines' networks.
type networks interface {
	// Setup makes the network of a machine of owner, whose workspaces
	// are in dir.
	Setup(ctx context.Context, owner, id, dir string) (network, error)
	// Clean removes the networks for which stale reports true.
	Clean(ctx context.Context, stale func(sandbox.Leftover) bool) error
}

// network is one machine's network.
type network interface {
	// Device is the machine's interface: its tap and the guest's side.
	Device() *vmm.Net
	Remove(ctx context.Context) error
}

// Name is the runtime's EXECUTOR_RUNTIME value: "firecracker", the
// reference's name for its micro-VM isolation, whichever monitor runs
// the machines.
func (r *Runtime) Name() string { return "firecracker" }

// Capabilities: steps run in their images, in a machine's own kernel;
// the workspace is a disk image; CPU and memory are the machine's, the
// disk its workspace's and its memory's (the overlay). Processes are not
// limited: a step's fork bomb fills its own machine only.
func (r *Runtime) Capabilities() sandbox.Capabilities {
	nets := []sandbox.Network{sandbox.NetworkNone}
	if r.nets != nil {
		nets = []sandbox.Network{sandbox.NetworkInternet, sandbox.NetworkNone}
	}
	return sandbox.Capabilities{
		Images:    true,
		Workspace: sandbox.WorkspaceDisk,
		Networks:  nets,
		Limits:    sandbox.Limits{CPU: true, Memory: true, Disk: true},
	}
}

// Check reports whether machines can boot here.
func (r *Runtime) Check(ctx context.Context) error {
	var errs []error
	if r.monitor == nil {
		errs = append(errs, errors.New(r.cfg.noMonitor))
	} else if err := r.monitor.Check(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := diskimage.Check(ctx); err != nil {
		errs = append(errs, fmt.Errorf("workspace disks: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: firecracker: %w", sandbox.ErrUnavailable, err)
	}
	return nil
}

// Monitor names the monitor in use and its version, for the heartbeat
// (the reference's igniteVersion) and `executor validate`.
func (r *Runtime) Monitor(ctx context.Context) string {
	if r.monitor == nil {
		return ""
	}
	v, err := r.monitor.Version(ctx)
	if err != nil {
		return r.monitor.Name()
	}
	return r.monitor.Name() + " " + v
}

// Explain says, for `executor validate`, which monitor runs the
// machines and with what acceleration, and why not the others.
func (r *Runtime) Explain(ctx context.Context) []string {
	var lines []string
	if r.monitor == nil {
		return []string{"-     vm monitor     none: " + r.cfg.noMonitor}
	}
	if err := r.monitor.Check(ctx); err != nil {
		lines = append(lines, fmt.Sprintf("-     vm monitor     %s cannot run here: %v", r.monitor.Name(), err))
	} else {
		lines = append(lines, fmt.Sprintf("ok    vm monitor     %s", r.Monitor(ctx)))
	}
	for _, m := range r.monitors {
		if m.Name() == r.monitor.Name() {
			continue
		}
		if err := m.Check(ctx); err != nil {
			lines = append(lines, fmt.Sprintf("-     vm monitor     not %s: %v", m.Name(), err))
		} else {
			lines = append(lines, fmt.Sprintf("-     vm monitor     not %s: EXECUTOR_VM_MONITOR=%s", m.Name(), r.cfg.Monitor))
		}
	}
	return lines
}

// Emulated reports whether machines run in software emulation.
func (r *Runtime) Emulated() bool { return r.monitor != nil && r.monitor.Emulated() }

// AutoSelectable reports why EXECUTOR_RUNTIME=auto must not pick this
// runtime though it can run: its machines would run in software
// emulation. Only an explicit EXECUTOR_RUNTIME=firecracker takes that.
func (r *Runtime) AutoSelectable(ctx context.Context) error {
	if r.Emulated() {
		return errors.New("no usable KVM: its machines would run in software emulation (set EXECUTOR_RUNTIME=firecracker to use them anyway)")
	}
	return nil
}

// Start starts filling the warm pool.
func (r *Runtime) Start(ctx context.Context) error {
	if err := os.MkdirAll(r.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("firecracker: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return nil
	}
	r.started = true
	shape := r.cfg.Machine
	r.pool = newWarmPool(r.cfg.WarmPool,
		func(ctx context.Context) (*vmachine, error) { return r.boot(ctx, shape, "pool") },
		func(m *vmachine) bool { return m.m.Alive() },
		func(m *vmachine) { m.destroy(context.Background(), r.cfg.Logger) },
		r.cfg.Logger)
	return nil
}

// Stop destroys the machines waiting in the pool.
func (r *Runtime) Stop() {
	r.mu.Lock()
	p := r.pool
	r.pool, r.started = nil, false
	r.mu.Unlock()
	if p != nil {
		p.Close()
	}
}

// machine returns a booted machine for a job of opts: from the pool when
// its machines have opts' shape.
func (r *Runtime) machine(ctx context.Context, opts sandbox.Options) (*vmachine, bool, error) {
	r.mu.Lock()
	p := r.pool
	r.mu.Unlock()
	shape := r.cfg.Machine
	if p != nil && opts.CPUs == shape.CPUs && opts.MemoryBytes == shape.MemoryBytes &&
		opts.DiskBytes == shape.DiskBytes && opts.Network == shape.Network {
		return p.Get(ctx)
	}
	m, err := r.boot(ctx, opts, opts.JobID)
	return m, false, err
}

// vmachine is a booted machine and what the host made for it.
type vmachine struct {
	id        string
	dir       string
	workspace string // the workspace's disk image
	m         machine
	root      *slot.Slot
	rootImage string // the image the root slot holds
	net       network
}

// boot boots a machine of shape, for job (or "pool").
func (r *Runtime) boot(ctx context.Context, shape sandbox.Options, job string) (_ *vmachine, err error) {
	id := rand.Text()[:10]
	// A pool's machine is the executor's; a job's, its owner's.
	owner := cmp.Or(shape.Owner, r.cfg.Owner)
	v := &vmachine{id: id, dir: filepath.Join(r.cfg.Dir, "vm-"+id)}
	defer func() {
		if err != nil {
			v.destroy(context.WithoutCancel(ctx), r.cfg.Logger)
		}
	}()
	if err := os.MkdirAll(r.cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("firecracker: %w", err)
	}
	if err := os.Mkdir(v.dir, 0o700); err != nil {
		return nil, fmt.Errorf("firecracker: %w", err)
	}
	disk := shape.DiskBytes
	if disk <= 0 {
		disk = defaultDisk
	}
	v.workspace = filepath.Join(v.dir, "workspace.img")
	if err := sparseFile(v.workspace, disk); err != nil {
		return nil, fmt.Errorf("firecracker: the workspace disk: %w", err)
	}
	// Its file system is made while the machine boots: the guest leaves
	// the disk alone until it is told to mount it (after dropping what it
	// read of it at boot).
	formatted := make(chan error, 1)
	go func() { formatted <- diskimage.Format(ctx, v.workspace) }()
	defer func() {
		if ferr := <-formatted; ferr != nil && err == nil {
			err = fmt.Errorf("firecracker: the workspace disk: %w", ferr)
		}
	}()
	// Until the first step, the root slot holds an empty image.
	empty := filepath.Join(v.dir, "empty.img")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		return nil, fmt.Errorf("firecracker: %w", err)
	}
	if v.root, err = slot.New(empty); err != nil {
		return nil, fmt.Errorf("firecracker: the root disk: %w", err)
	}
	spec := machineSpec{
		Name: machineLabel(owner, job, r.cfg.Dir), Dir: v.dir,
		VCPUs: max(shape.CPUs, 1), MemoryBytes: shape.MemoryBytes,
		Workspace: v.workspace, Root: v.root.Device(),
		RxBytesPerSec: r.cfg.BandwidthIngress, TxBytesPerSec: r.cfg.BandwidthEgress,
	}
	if spec.MemoryBytes <= 0 {
		spec.MemoryBytes = defaultMemory
	}
	// The guest's kernel needs its share: below this it does not boot.
	spec.MemoryBytes = max(spec.MemoryBytes, minMemory)
	if shape.Network == sandbox.NetworkInternet {
		if r.nets == nil {
			return nil, errors.New("firecracker: no network for jobs here (EXECUTOR_JOB_NETWORK=none)")
		}
		if v.net, err = r.nets.Setup(ctx, owner, id, r.cfg.Dir); err != nil {
			return nil, fmt.Errorf("firecracker: the machine's network: %w", err)
		}
		spec.Net = v.net.Device()
	}
	if v.m, err = r.monitor.Boot(ctx, spec); err != nil {
		return nil, fmt.Errorf("firecracker: boot a %s machine: %w", r.monitor.Name(), err)
	}
	if job == "pool" {
		r.warmRoot(ctx, v)
	}
	return v, nil
}

// warmRoot points a pooled machine's root slot at the image the last
// step ran in, and has the guest mount it: a job of that image then
// starts its first step without mounting it. Failing is no error: the
// step mounts its image itself.
func (r *Runtime) warmRoot(ctx context.Context, v *vmachine) {
	r.mu.Lock()
	last := r.last
	r.mu.Unlock()
	if last.Path == "" {
		return
	}
	if err := v.root.Swap(last.Path); err != nil {
		r.cfg.Logger.Debug("firecracker: warm the last image", "err", err)
		return
	}
	v.rootImage = last.Path
	if err := v.m.Guest().WarmRoot(ctx, last.ID); err != nil {
		r.cfg.Logger.Debug("firecracker: warm the last image", "err", err)
	}
}

// sparseFile makes a new sparse file of size bytes.
func sparseFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// destroy stops the machine and removes what the host made for it.
func (v *vmachine) destroy(ctx context.Context, log *slog.Logger) {
	if v.m != nil {
		if err := v.m.Kill(); err != nil {
			log.Warn("firecracker: stop machine", "machine", v.id, "err", err)
		}
	}
	if v.root != nil {
		_ = v.root.Close()
	}
	if v.net != nil {
		if err := v.net.Remove(ctx); err != nil {
			log.Warn("firecracker: remove machine network", "machine", v.id, "err", err)
		}
	}
	if err := os.RemoveAll(v.dir); err != nil {
		log.Warn("firecracker: remove machine files", "machine", v.id, "err", err)
	}
}

const (
	// labelPrefix starts a machine's name: execd-vm:<owner>:<job>.
	labelPrefix = "execd-vm:"
	// Defaults of a machine whose job sets no limit.
	defaultDisk   = 10 << 30
	defaultMemory = 2 << 30
	minMemory     = 128 << 20
)
