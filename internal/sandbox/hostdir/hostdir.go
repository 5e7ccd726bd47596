// Package hostdir makes the workspace of a sandbox whose steps see a host
// directory (the shell, docker and gvisor runtimes): a new directory at
// the path the job runner chose, holding a file system of the job's disk
// limit when there is one (package diskimage), and in every case mounted
// nosuid,nodev when the executor is root, so that a set-user-ID binary or
// a device node a step plants there is inert on the host. Mounts a
// container makes of it inherit those flags.
package hostdir

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/diskimage"
)

// Workspace is a workspace in a host directory. It implements
// [sandbox.Workspace]; its methods are safe for concurrent use.
type Workspace struct {
	dir     string
	image   string // the file system image, when bounded
	mounted bool   // dir is a mount point of its own
	keep    bool
	// onSeal, when set, runs at Seal (the shell runtime hands the files
	// to its sandbox user).
	onSeal func(ctx context.Context, dir string) error

	mu      sync.Mutex
	removed bool
}

var _ sandbox.Workspace = (*Workspace)(nil)

// Create makes the workspace of opts: directory opts.Workspace, whose
// parent must exist, bounded by opts.DiskBytes when it is not 0. onSeal,
// if not nil, runs at Seal.
func Create(ctx context.Context, opts sandbox.Options, onSeal func(ctx context.Context, dir string) error) (*Workspace, error) {
	dir := opts.Workspace
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("workspace %q is not an absolute path", dir)
	}
	if err := os.Mkdir(dir, 0o777); err != nil {
		return nil, fmt.Errorf("create workspace: %w", err)
	}
	// Mkdir applies the umask; steps of any user write here.
	if err := os.Chmod(dir, 0o777); err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("create workspace: %w", err)
	}
	w := &Workspace{dir: dir, keep: opts.KeepWorkspace, onSeal: onSeal}
	switch {
	case opts.DiskBytes > 0:
		w.image = dir + ".img"
		if err := diskimage.Mount(ctx, w.image, dir, opts.DiskBytes); err != nil {
			os.Remove(dir)
			return nil, fmt.Errorf("create workspace: %w", err)
		}
		w.mounted = true
	case os.Geteuid() == 0:
		if err := mountNosuid(dir); err != nil {
			os.Remove(dir)
			return nil, fmt.Errorf("create workspace: mount %s nosuid,nodev: %w", dir, err)
		}
		w.mounted = true
	}
	return w, nil
}

// HostDir is the workspace's directory.
func (w *Workspace) HostDir() string { return w.dir }

// Seal runs the workspace's onSeal; the directory stays the steps'.
func (w *Workspace) Seal(ctx context.Context) error {
	if w.onSeal == nil {
		return nil
	}
	return w.onSeal(ctx, w.dir)
}

// Full reports whether a bounded workspace has no space left: what a
// step that failed writing past the limit leaves.
func (w *Workspace) Full() bool { return w.image != "" && diskimage.Full(w.dir) }

// Remove unmounts and deletes the workspace, unless it is to be kept. It
// is idempotent.
func (w *Workspace) Remove() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.removed || w.keep {
		return nil
	}
	var errs []error
	if w.mounted {
		// Lazily: a process still inside cannot keep it.
		if err := syscall.Unmount(w.dir, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount workspace: %w", err))
		}
	}
	if w.image != "" {
		if err := os.Remove(w.image); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove workspace image: %w", err))
		}
	}
	if err := os.RemoveAll(w.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove workspace: %w", err))
	}
	if len(errs) == 0 {
		w.removed = true
	}
	return errors.Join(errs...)
}

// mountNosuid mounts dir on itself with nosuid and nodev.
func mountNosuid(dir string) error {
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
		return err
	}
	if err := syscall.Mount("", dir, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_NOSUID|syscall.MS_NODEV, ""); err != nil {
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		return err
	}
	return nil
}
