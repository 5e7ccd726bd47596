package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/vm/vmm"
)

// A machine's monitor process carries its name in its environment, as
// labelEnv=execd-vm:<owner>:<job>, so that a janitor finds it after its
// executor died. Machines die with their executor (their monitor gets
// SIGKILL when it does), their loop devices unbind when the monitor
// closes them, and their files are in the executor's directory, which
// the workspace janitor removes: what may be left is a monitor that
// outlived its executor, and the machines' networks.
const labelEnv = vmm.LabelEnv

// Clean kills the monitors of machines whose owner stale reports gone,
// and removes their networks. See [sandbox.Janitor].
func (r *Runtime) Clean(ctx context.Context, stale func(sandbox.Leftover) bool) error {
	root := filepath.Dir(r.cfg.Dir)
	isStale := func(owner string) bool {
		return stale(sandbox.Leftover{Owner: owner, Workspace: filepath.Join(root, owner)})
	}
	var errs []error
	for _, p := range monitorProcesses() {
		if !isStale(p.owner) {
			continue
		}
		if err := syscall.Kill(p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill machine %s (pid %d): %w", p.name, p.pid, err))
			continue
		}
		r.cfg.Logger.Info("firecracker janitor: killed the machine of a stopped executor", "machine", p.name, "pid", p.pid)
	}
	if r.nets != nil {
		if err := r.nets.Clean(ctx, isStale); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("firecracker janitor: %w", err)
	}
	return nil
}

type monitorProcess struct {
	pid         int
	name, owner string
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
			owner, _, ok2 := strings.Cut(rest, ":")
			if ok && ok2 && owner != "" {
				out = append(out, monitorProcess{pid: pid, name: name, owner: owner})
			}
		}
	}
	return out
}
