package executor

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
)

// Each executor keeps its workspaces in a directory of its own under
// EXECUTOR_WORKSPACE_ROOT, holding an exclusive lock on <dir>/.lock while it
// runs. A directory whose lock is free belongs to an executor that died:
// cleanWorkspaces removes it, so crashes leave no workspaces behind.

const lockName = ".lock"

// lockWorkspaceRoot creates dir and locks it for this process.
func lockWorkspaceRoot(dir string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("EXECUTOR_WORKSPACE_ROOT: create %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("EXECUTOR_WORKSPACE_ROOT: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() {
		f.Close()
		_ = os.RemoveAll(dir)
	}, nil
}

// cleanWorkspaces removes the workspace directories under root whose
// executor is gone (their lock is free).
func cleanWorkspaces(root string, logger *slog.Logger) {
	entries, err := os.ReadDir(root)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			logger.Warn("workspace janitor: cannot read EXECUTOR_WORKSPACE_ROOT", "dir", root, "err", err)
		}
		return
	}
	for _, e := range entries {
		if !e.IsDir() || ownerAlive(root, e.Name()) {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if err := os.RemoveAll(dir); err != nil {
			logger.Warn("workspace janitor: remove", "dir", dir, "err", err)
		} else {
			logger.Info("workspace janitor: removed the workspaces of a stopped executor", "dir", dir)
		}
	}
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
