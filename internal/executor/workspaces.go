package executor

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/execd/execd/internal/sandbox/diskimage"
)

// Each executor keeps its workspaces in a directory of its own under
// EXECUTOR_WORKSPACE_ROOT, holding an exclusive lock on <dir>/.lock while it
// runs. A directory whose lock is free belongs to an executor that died:
// cleanWorkspaces removes it, so crashes leave no workspaces behind.
//
// The directory is its owner's alone (0700): steps reach their workspace
// through the mounts their sandbox makes as root, and no host user can
// reach what a step leaves there. Each workspace in it is its sandbox's
// (package sandbox/hostdir: mounted nosuid,nodev, bounded by the disk
// limit; a disk image for a virtual machine).

const lockName = ".lock"

// newPrefix names a directory whose executor is still creating it.
const newPrefix = ".new-"

// lockWorkspaceRoot creates dir and locks it for this process. The
// directory is made and locked under another name, then renamed: an
// executor starting at the same time never sees it without its lock
// (which would mean that its owner is dead).
func lockWorkspaceRoot(dir string) (release func(), err error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o711); err != nil {
		return nil, fmt.Errorf("EXECUTOR_WORKSPACE_ROOT: create %s: %w", filepath.Dir(dir), err)
	}
	tmp := filepath.Join(filepath.Dir(dir), newPrefix+filepath.Base(dir))
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("EXECUTOR_WORKSPACE_ROOT: create %s: %w", tmp, err)
	}
	f, err := os.OpenFile(filepath.Join(tmp, lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("EXECUTOR_WORKSPACE_ROOT: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("lock %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		f.Close()
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("EXECUTOR_WORKSPACE_ROOT: %w", err)
	}
	return func() {
		f.Close()
		_ = diskimage.UnmountUnder(dir)
		_ = os.RemoveAll(dir)
	}, nil
}

// cleanWorkspaces removes the workspace directories under root whose
// executor is gone (their lock is free), and returns those directories:
// the sandbox janitor takes what is left of those executors for orphans.
func cleanWorkspaces(root string, logger *slog.Logger) (removed []string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			logger.Warn("workspace janitor: cannot read EXECUTOR_WORKSPACE_ROOT", "dir", root, "err", err)
		}
		return nil
	}
	for _, e := range entries {
		if !e.IsDir() || ownerAlive(root, e.Name()) {
			continue
		}
		if strings.HasPrefix(e.Name(), newPrefix) {
			// Being made by an executor that is starting, unless that
			// executor died doing it a while ago.
			if fi, err := e.Info(); err != nil || time.Since(fi.ModTime()) < time.Minute {
				continue
			}
		}
		dir := filepath.Join(root, e.Name())
		// Its jobs' workspace mounts go first.
		if err := diskimage.UnmountUnder(dir); err != nil {
			logger.Warn("workspace janitor: unmount workspaces", "dir", dir, "err", err)
		}
		if err := os.RemoveAll(dir); err != nil {
			logger.Warn("workspace janitor: remove", "dir", dir, "err", err)
		} else {
			logger.Info("workspace janitor: removed the workspaces of a stopped executor", "dir", dir)
		}
		removed = append(removed, dir)
	}
	return removed
}

// ownerAlive reports whether the executor name, whose workspaces are in
// root/name, runs: whether its lock is held (by any process, this one
// included). A directory without a lock file belongs to no live
// executor; one whose lock cannot be checked is taken as alive.
func ownerAlive(root, name string) bool {
	f, err := os.Open(filepath.Join(root, name, lockName))
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		return true
	}
	defer f.Close()
	// flock locks belong to open files: this one conflicts with the
	// owner's even within the owner's process.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	return false
}
