//go:build linux

package shell

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/execd/execd/internal/sandbox"
)

// check implements [Runtime.Check] for a valid config.
func (r *Runtime) check(ctx context.Context) error {
	var initErr error
	if r.cfg.Init != "" {
		initErr = CheckInit(ctx, r.cfg.Init)
	}
	return errors.Join(checkShell(), checkNamespaces(ctx), r.checkCgroups(), initErr)
}

func checkShell() error {
	if err := unix.Access("/bin/sh", unix.X_OK); err != nil {
		return fmt.Errorf("/bin/sh is not executable (%w): install a POSIX shell", err)
	}
	return nil
}

// checkNamespaces starts a shell in the namespaces of a sandbox.
func checkNamespaces(ctx context.Context) error {
	userNS := os.Geteuid() != 0
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", "exit 0")
	cmd.Env = []string{}
	cmd.SysProcAttr = sysProcAttr(userNS)
	cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWCGROUP // the init makes one too
	err := cmd.Run()
	switch {
	case err == nil:
		return nil
	case userNS:
		return fmt.Errorf("cannot create namespaces (%w): run the executor as root, or enable unprivileged user namespaces "+
			"(sysctl -w kernel.unprivileged_userns_clone=1 on Debian kernels, and user.max_user_namespaces > 0)", err)
	default:
		return fmt.Errorf("cannot create namespaces (%w): the kernel needs mount, PID, IPC, UTS, network and cgroup namespaces", err)
	}
}

func (r *Runtime) checkCgroups() error {
	host, err := findCgroups()
	if err == nil {
		err = host.checkWritable(r.cfg.cgroupParent())
	}
	if err != nil {
		return fmt.Errorf("cgroups: %w", err)
	}
	return nil
}

// clean implements [Runtime.Clean].
func (r *Runtime) clean(ctx context.Context, stale func(sandbox.Leftover) bool) error {
	host, err := findCgroups()
	if err != nil {
		return fmt.Errorf("shell: %w", err)
	}
	parent := r.cfg.cgroupParent()
	owners, err := host.children(parent)
	if err != nil {
		return fmt.Errorf("shell: janitor: %w", err)
	}
	var errs []error
	for _, owner := range owners {
		jobs, err := host.children(path.Join(parent, owner))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		left := len(jobs)
		ownerLeft := sandbox.Leftover{Owner: owner, Workspace: filepath.Join(r.cfg.WorkspaceRoot, owner)}
		for _, jobID := range jobs {
			l := sandbox.Leftover{JobID: jobID, Owner: owner, Workspace: filepath.Join(r.cfg.WorkspaceRoot, owner, jobID)}
			if !stale(l) {
				continue
			}
			cg := host.job(path.Join(parent, owner, jobID))
			// A job that is over may still have processes: only when its
			// whole executor is gone are they orphans to kill.
			if pids, err := cg.procs(); err == nil && len(pids) > 0 && !stale(ownerLeft) {
				continue
			}
			if err := cg.remove(ctx); err != nil {
				errs = append(errs, err)
				continue
			}
			left--
			r.cfg.Logger.Info("janitor: removed the cgroup of a job that is over", "job", jobID, "owner", owner)
		}
		if left == 0 && stale(ownerLeft) {
			if err := host.job(path.Join(parent, owner)).rmdirs(); err != nil && !errors.Is(err, syscall.EBUSY) && !errors.Is(err, syscall.ENOTEMPTY) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shell: janitor: %w", err)
	}
	return nil
}
