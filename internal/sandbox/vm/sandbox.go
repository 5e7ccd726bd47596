package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/diskimage"
)

// Sandbox is one job's machine.
type Sandbox struct {
	r    *Runtime
	opts sandbox.Options
	vm   *vmachine // nil if Prepare failed before it had one
	ws   *workspace

	mu        sync.Mutex
	destroyed bool
}

var (
	_ sandbox.Sandbox   = (*Sandbox)(nil)
	_ sandbox.Puller    = (*Sandbox)(nil)
	_ sandbox.Workspace = (*workspace)(nil)
)

// Prepare gives the job a booted machine and mounts its workspace disk
// on the host at opts.Workspace, for the job runner to fill.
func (r *Runtime) Prepare(ctx context.Context, opts sandbox.Options) (sandbox.Sandbox, error) {
	sb := &Sandbox{r: r, opts: opts}
	if err := validate(opts); err != nil {
		return sb, err
	}
	if r.monitor == nil {
		return sb, fmt.Errorf("firecracker: %s", r.cfg.noMonitor)
	}
	vm, warm, err := r.machine(ctx, opts)
	if err != nil {
		return sb, err
	}
	sb.vm = vm
	r.cfg.Logger.Debug("firecracker: machine for job", "job", opts.JobID, "machine", vm.id, "warm", warm)
	if err := os.Mkdir(opts.Workspace, 0o700); err != nil {
		return sb, fmt.Errorf("firecracker: workspace: %w", err)
	}
	sb.ws = &workspace{sb: sb, dir: opts.Workspace}
	if err := diskimage.MountImage(ctx, vm.workspace, opts.Workspace); err != nil {
		return sb, fmt.Errorf("firecracker: mount the workspace disk to fill it: %w", err)
	}
	sb.ws.mounted = true
	return sb, nil
}

func validate(opts sandbox.Options) error {
	switch {
	case opts.Network != sandbox.NetworkNone && opts.Network != sandbox.NetworkInternet:
		return fmt.Errorf("firecracker: unknown network policy %q: want none or internet", opts.Network)
	case opts.JobID == "" || opts.Owner == "":
		return errors.New("firecracker: empty job ID or owner")
	case !strings.HasPrefix(opts.Workspace, "/"):
		return fmt.Errorf("firecracker: workspace %q is not an absolute path", opts.Workspace)
	case opts.CPUs < 0 || opts.MemoryBytes < 0 || opts.DiskBytes < 0:
		return fmt.Errorf("firecracker: negative limit (CPUs %d, memory %d, disk %d)", opts.CPUs, opts.MemoryBytes, opts.DiskBytes)
	case opts.MemoryBytes > 0 && opts.MemoryBytes < 64<<20:
		return fmt.Errorf("firecracker: memory limit %d is below a machine's minimum of 64M", opts.MemoryBytes)
	}
	// Checked before a machine is taken for nothing.
	if fi, err := os.Stat(filepath.Dir(opts.Workspace)); err != nil || !fi.IsDir() {
		return fmt.Errorf("firecracker: the workspace's directory %s does not exist", filepath.Dir(opts.Workspace))
	}
	return nil
}

// workspace is the machine's workspace disk, mounted on the host until
// Seal.
type workspace struct {
	sb      *Sandbox
	dir     string
	mu      sync.Mutex
	mounted bool
	sealed  bool
}

func (w *workspace) HostDir() string { return w.dir }

// Seal releases the disk on the host, then has the guest mount it.
func (w *workspace) Seal(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sealed {
		return nil
	}
	if err := w.unmount(); err != nil {
		return fmt.Errorf("firecracker: release the workspace disk: %w", err)
	}
	if err := w.sb.vm.m.Guest().MountWorkspace(ctx); err != nil {
		return fmt.Errorf("firecracker: the guest could not mount the workspace: %w%s", err, w.sb.console())
	}
	w.sealed = true
	return nil
}

// unmount unmounts the host's mount, syncing it first: the guest reads
// the disk image after.
func (w *workspace) unmount() error {
	if !w.mounted {
		return nil
	}
	if err := syscall.Unmount(w.dir, 0); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	w.mounted = false
	return nil
}

// Workspace is the job's workspace disk.
func (s *Sandbox) Workspace() sandbox.Workspace { return s.ws }

// Pull makes image's root file system image, or finds it in the cache,
// before the first step. See [sandbox.Puller].
func (s *Sandbox) Pull(ctx context.Context, image string, out io.Writer) error {
	root, err := s.r.images.Root(ctx, image, s.opts.RegistryAuth, out)
	if err != nil {
		return fmt.Errorf("firecracker: %w", err)
	}
	root.Release()
	return nil
}

// Run runs step in the machine, in its image's root file system.
func (s *Sandbox) Run(ctx context.Context, step sandbox.Step, out sandbox.Output) (sandbox.Result, error) {
	s.mu.Lock()
	destroyed := s.destroyed
	s.mu.Unlock()
	if destroyed || s.vm == nil || s.ws == nil || !s.ws.sealed {
		return sandbox.Result{}, errors.New("firecracker: Run on a sandbox that is not prepared, not sealed or destroyed")
	}
	if step.Image == "" {
		return sandbox.Result{}, errors.New("firecracker: no image: each step runs in its image's root file system")
	}
	root, err := s.r.images.Root(ctx, step.Image, s.opts.RegistryAuth, nil)
	if err != nil {
		return sandbox.Result{}, fmt.Errorf("firecracker: step %q: %w", step.Key, err)
	}
	defer root.Release()
	// The guest keeps the last step's root mounted when its image is
	// this step's (RootKey): the slot must not change under it.
	if s.vm.rootImage != root.Path {
		if err := s.vm.root.Swap(root.Path); err != nil {
			return sandbox.Result{}, fmt.Errorf("firecracker: step %q: %w", step.Key, err)
		}
		s.vm.rootImage = root.Path
	}
	s.r.mu.Lock()
	s.r.last = rootImage{ID: root.ID, Path: root.Path}
	s.r.mu.Unlock()
	// The image's environment, then the step's (which wins).
	env := slices.Concat(root.Env, step.Env)
	res, err := s.vm.m.Guest().Run(ctx, guestStep{Commands: step.Commands, Env: env, Dir: step.Dir, User: root.User, RootKey: root.ID}, out)
	if err != nil && ctx.Err() == nil && !s.vm.m.Alive() {
		return res, fmt.Errorf("firecracker: the machine stopped: %w%s", err, s.console())
	}
	if res.ExitCode != 0 {
		// The guest's kernel says on its console when its disks fail.
		if c := s.vm.m.Console(); strings.Contains(c, "I/O error") || strings.Contains(c, "EXT4-fs error") {
			s.r.cfg.Logger.Warn("firecracker: the guest's kernel reports disk errors", "job", s.opts.JobID, "machine", s.vm.id, "console", c)
		}
	}
	return res, err
}

// console quotes the end of the machine's console, for an error.
func (s *Sandbox) console() string {
	if s.vm == nil || s.vm.m == nil {
		return ""
	}
	c := strings.TrimSpace(s.vm.m.Console())
	if c == "" {
		return ""
	}
	return "; its console ended with:\n" + c
}

// Destroy stops the machine and removes its disks, the workspace's
// included unless Options.KeepWorkspace: then its image is kept at
// Options.Workspace + ".img".
func (s *Sandbox) Destroy(ctx context.Context) error {
	s.mu.Lock()
	if s.destroyed {
		s.mu.Unlock()
		return nil
	}
	s.destroyed = true
	s.mu.Unlock()
	var errs []error
	if s.ws != nil {
		s.ws.mu.Lock()
		if err := s.ws.unmount(); err != nil {
			errs = append(errs, fmt.Errorf("unmount the workspace disk: %w", err))
		}
		s.ws.mu.Unlock()
	}
	if s.vm != nil {
		if s.opts.KeepWorkspace {
			if s.vm.m != nil {
				_ = s.vm.m.Kill()
			}
			if err := os.Rename(s.vm.workspace, s.opts.Workspace+".img"); err != nil {
				errs = append(errs, fmt.Errorf("keep the workspace disk: %w", err))
			}
		}
		s.vm.destroy(ctx, s.r.cfg.Logger)
	}
	if !s.opts.KeepWorkspace && s.ws != nil {
		if err := os.Remove(s.ws.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("firecracker: destroy sandbox: %w", err)
	}
	return nil
}
