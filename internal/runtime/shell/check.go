//go:build linux

package shell

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
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

// removeStale implements [Runtime.RemoveStale].
func (r *Runtime) removeStale(ctx context.Context, owner string) error {
	host, err := findCgroups()
	if err != nil {
		return fmt.Errorf("shell: %w", err)
	}
	if err := removeOwner(context.WithoutCancel(ctx), host, r.cfg.cgroupParent(), owner); err != nil {
		return fmt.Errorf("shell: remove stale cgroups: %w", err)
	}
	return nil
}
