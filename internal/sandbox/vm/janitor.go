package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/vm/vmm"
)

// A machine's monitor process carries its name in its environment, as
// labelEnv=execd-vm:<owner>:<job>:<dir> (dir: the executor's directory,
// path-escaped), so that a janitor finds it after its executor died, and
// tells whether that executor is alive from its directory's lock: the
// owner's name alone would not say where that is (executors on one host
// may have different workspace roots). Machines die with their executor (their monitor gets
// SIGKILL when it does), their loop devices unbind when the monitor
// closes them, and their files are in the executor's directory, which
// the workspace janitor removes: what may be left is a monitor that
// outlived its executor, and the machines' networks.
const labelEnv = vmm.LabelEnv

// Clean kills the monitors of machines whose owner stale reports gone,
// and removes their networks. See [sandbox.Janitor].
func (r *Runtime) Clean(ctx context.Context, stale func(sandbox.Leftover) bool) error {
	var errs []error
	for _, p := range monitorProcesses() {
		if !stale(machineLeftover(p.owner, p.dir)) {
			continue
		}
		if err := syscall.Kill(p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill machine %s (pid %d): %w", p.name, p.pid, err))
			continue
		}
		r.cfg.Logger.Info("firecracker janitor: killed the machine of a stopped executor", "machine", p.name, "pid", p.pid)
	}
	if r.images != nil {
		if err := r.images.Clean(ctx); err != nil {
			errs = append(errs, fmt.Errorf("the image cache: %w", err))
		}
	}
	if r.nets != nil {
		if err := r.nets.Clean(ctx, stale); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("firecracker janitor: %w", err)
	}
	return nil
}

type monitorProcess struct {
	pid              int
	name, owner, dir string
}

// machineLabel names a machine of owner's job whose executor keeps its
// workspaces in dir.
func machineLabel(owner, job, dir string) string {
	return labelPrefix + owner + ":" + job + ":" + url.PathEscape(dir)
}

// machineLeftover is what a janitor asks stale about a machine (or its
// network) of owner, whose executor's directory is dir: a Leftover
// without a job, so that it is the executor's liveness that counts. A
// machine without a directory (made before this label) stays.
func machineLeftover(owner, dir string) sandbox.Leftover {
	return sandbox.Leftover{Owner: owner, Workspace: dir}
}

// Monitors lists the machines' monitor processes on this host: pid ->
// label (execd-vm:<owner>:<job>, "pool" for a machine of a warm pool).
func Monitors() map[int]string {
	m := map[int]string{}
	for _, p := range monitorProcesses() {
		m[p.pid] = p.name
	}
	return m
}

// monitorProcesses lists the processes labelled as machines' monitors.
func monitorProcesses() []monitorProcess {
	entries, _ := os.ReadDir("/proc")
	var out []monitorProcess
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			name, ok := strings.CutPrefix(string(kv), labelEnv+"=")
			if !ok {
				continue
			}
			rest, ok := strings.CutPrefix(name, labelPrefix)
			parts := strings.SplitN(rest, ":", 3)
			if !ok || len(parts) != 3 || parts[0] == "" {
				continue
			}
			dir, err := url.PathUnescape(parts[2])
			if err != nil || !filepath.IsAbs(dir) {
				continue
			}
			out = append(out, monitorProcess{pid: pid, name: name, owner: parts[0], dir: dir})
		}
	}
	return out
}
