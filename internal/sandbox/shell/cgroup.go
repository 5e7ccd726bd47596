//go:build linux

package shell

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/mountinfo"
)

// The controllers a job's cgroup needs: memory and pids always, cpu for
// CPU quotas.
const (
	ctlMemory = "memory"
	ctlPIDs   = "pids"
	ctlCPU    = "cpu"
)

// cpuPeriod is the CFS period of CPU quotas, in microseconds: the kernel's
// default, short enough that a throttled job stays responsive.
const cpuPeriod = 100000

// cgroupHost is where this host's cgroup hierarchies are mounted.
type cgroupHost struct {
	// unified is the mount point of the cgroup v2 hierarchy when it holds
	// every controller we need; then v1 is unused.
	unified string
	// v1 maps each controller to the mount point of its v1 hierarchy
	// (several controllers may share one, as in "cpu,cpuacct").
	v1 map[string]string
}

// findCgroups reads /proc/self/mountinfo to find the cgroup hierarchies.
// cgroup v2 is used when its hierarchy has every controller; otherwise
// (v1, or the hybrid layout whose unified hierarchy has no controllers)
// each controller's v1 hierarchy is used.
func findCgroups() (*cgroupHost, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("find cgroups: %w", err)
	}
	defer f.Close()
	h, err := parseMountinfo(f)
	if err != nil {
		return nil, fmt.Errorf("find cgroups: %w", err)
	}
	if h.unified != "" {
		ctls, err := os.ReadFile(filepath.Join(h.unified, "cgroup.controllers"))
		if err == nil && hasAll(strings.Fields(string(ctls)), ctlMemory, ctlPIDs, ctlCPU) {
			h.v1 = nil
			return h, nil
		}
		h.unified = ""
	}
	var missing []string
	for _, c := range []string{ctlMemory, ctlPIDs, ctlCPU} {
		if h.v1[c] == "" {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("cgroup controllers %s are not mounted (need cgroup v2 with them enabled, or v1 hierarchies for each)",
			strings.Join(missing, ", "))
	}
	return h, nil
}

// parseMountinfo finds the cgroup mounts in a /proc/self/mountinfo.
func parseMountinfo(r io.Reader) (*cgroupHost, error) {
	h := &cgroupHost{v1: make(map[string]string)}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 5 || len(fields) < sep+4 {
			continue
		}
		mnt := mountinfo.Unescape(fields[4])
		switch fields[sep+1] {
		case "cgroup2":
			if h.unified == "" {
				h.unified = mnt
			}
		case "cgroup":
			for _, opt := range strings.Split(fields[sep+3], ",") {
				if _, ok := h.v1[opt]; !ok && (opt == ctlMemory || opt == ctlPIDs || opt == ctlCPU) {
					h.v1[opt] = mnt
				}
			}
		}
	}
	return h, sc.Err()
}

func hasAll(have []string, want ...string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// roots returns the hierarchies' mount points, each once.
func (h *cgroupHost) roots() []string {
	if h.unified != "" {
		return []string{h.unified}
	}
	var roots []string
	for _, c := range []string{ctlMemory, ctlPIDs, ctlCPU} {
		if !slices.Contains(roots, h.v1[c]) {
			roots = append(roots, h.v1[c])
		}
	}
	return roots
}

// job returns the cgroup at rel, relative to each hierarchy's root.
func (h *cgroupHost) job(rel string) *jobCgroup {
	if h.unified != "" {
		dir := filepath.Join(h.unified, rel)
		return &jobCgroup{v2: true, dirs: []string{dir}, memory: dir, pids: dir, cpu: dir}
	}
	cg := &jobCgroup{
		memory: filepath.Join(h.v1[ctlMemory], rel),
		pids:   filepath.Join(h.v1[ctlPIDs], rel),
		cpu:    filepath.Join(h.v1[ctlCPU], rel),
	}
	for _, d := range []string{cg.memory, cg.pids, cg.cpu} {
		if !slices.Contains(cg.dirs, d) {
			cg.dirs = append(cg.dirs, d)
		}
	}
	return cg
}

// children lists the cgroups directly under rel, in the first hierarchy
// (every hierarchy holds the same ones); none when rel does not exist.
func (h *cgroupHost) children(rel string) ([]string, error) {
	roots := h.roots()
	if len(roots) == 0 {
		return nil, nil
	}
	entries, err := os.ReadDir(filepath.Join(roots[0], rel))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// checkWritable reports whether cgroups can be created under rel.
func (h *cgroupHost) checkWritable(rel string) error {
	for _, root := range h.roots() {
		dir := filepath.Join(root, rel)
		// The nearest existing ancestor must be writable for us to create
		// the rest.
		for {
			if _, err := os.Stat(dir); err == nil || dir == root {
				break
			}
			dir = filepath.Dir(dir)
		}
		if err := unix.Access(dir, unix.W_OK); err != nil {
			return fmt.Errorf("cannot create cgroups in %s (%w): run the executor as root, or delegate that cgroup to its user", dir, err)
		}
	}
	return nil
}

// jobCgroup is one job's cgroup: one directory on v2, one per hierarchy on
// v1.
type jobCgroup struct {
	v2   bool
	dirs []string
	// The directories holding each controller's files.
	memory, pids, cpu string
}

// create makes the cgroup, replacing a stale one of the same name left by
// a crash, and applies opts' limits.
func (cg *jobCgroup) create(ctx context.Context, host *cgroupHost, opts sandbox.Options) error {
	if err := cg.remove(ctx); err != nil {
		return fmt.Errorf("remove stale cgroup: %w", err)
	}
	if cg.v2 {
		if err := enableControllers(host.unified, filepath.Dir(cg.memory)); err != nil {
			return err
		}
	}
	for _, d := range cg.dirs {
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			return fmt.Errorf("create cgroup: %w", err)
		}
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("create cgroup: %w", err)
		}
	}
	return cg.setLimits(opts)
}

// enableControllers creates the v2 cgroups from root down to dir and
// enables our controllers in each, so that dir's children get them.
func enableControllers(root, dir string) error {
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		return err
	}
	cur := root
	for _, elem := range append([]string{"."}, strings.Split(rel, "/")...) {
		cur = filepath.Join(cur, elem)
		if err := os.Mkdir(cur, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create cgroup: %w", err)
		}
		enabled, err := os.ReadFile(filepath.Join(cur, "cgroup.subtree_control"))
		if err != nil {
			return fmt.Errorf("enable cgroup controllers: %w", err)
		}
		for _, c := range []string{ctlMemory, ctlPIDs, ctlCPU} {
			if slices.Contains(strings.Fields(string(enabled)), c) {
				continue
			}
			if err := writeCgroupFile(filepath.Join(cur, "cgroup.subtree_control"), "+"+c); err != nil {
				return fmt.Errorf("enable cgroup controller %s: %w", c, err)
			}
		}
	}
	return nil
}

// cgroupSetting is a value to write to a cgroup file.
type cgroupSetting struct {
	dir, file, value string
	// optional settings are skipped when the kernel lacks the file.
	optional bool
}

// setLimits applies opts' CPU, memory and PID limits; 0 means no limit.
func (cg *jobCgroup) setLimits(opts sandbox.Options) error {
	var settings []cgroupSetting // in order: v1 needs the memory limit before memsw
	if opts.MemoryBytes > 0 {
		mem := strconv.FormatInt(opts.MemoryBytes, 10)
		// No swap: memory.swap.max is 0; memsw, which caps memory plus
		// swap, is the memory limit. Both files are missing when the
		// kernel does not account swap, and then there is nothing to cap.
		if cg.v2 {
			settings = append(settings,
				cgroupSetting{cg.memory, "memory.max", mem, false},
				cgroupSetting{cg.memory, "memory.swap.max", "0", true})
		} else {
			settings = append(settings,
				cgroupSetting{cg.memory, "memory.limit_in_bytes", mem, false},
				cgroupSetting{cg.memory, "memory.memsw.limit_in_bytes", mem, true})
		}
	}
	if opts.PIDs > 0 {
		settings = append(settings, cgroupSetting{cg.pids, "pids.max", strconv.Itoa(opts.PIDs), false})
	}
	if opts.CPUs > 0 {
		quota, period := strconv.Itoa(opts.CPUs*cpuPeriod), strconv.Itoa(cpuPeriod)
		if cg.v2 {
			settings = append(settings, cgroupSetting{cg.cpu, "cpu.max", quota + " " + period, false})
		} else {
			settings = append(settings,
				cgroupSetting{cg.cpu, "cpu.cfs_period_us", period, false},
				cgroupSetting{cg.cpu, "cpu.cfs_quota_us", quota, false})
		}
	}
	for _, set := range settings {
		err := writeCgroupFile(filepath.Join(set.dir, set.file), set.value)
		if err != nil && !(set.optional && errors.Is(err, fs.ErrNotExist)) {
			return fmt.Errorf("set cgroup limit: %w", err)
		}
	}
	return nil
}

// addProc moves process pid into the cgroup.
func (cg *jobCgroup) addProc(pid int) error {
	for _, d := range cg.dirs {
		if err := writeCgroupFile(filepath.Join(d, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("move process into cgroup: %w", err)
		}
	}
	return nil
}

// oomKills returns how many processes the kernel killed in the cgroup for
// exceeding its memory limit.
func (cg *jobCgroup) oomKills() (int64, error) {
	name := "memory.oom_control" // v1: "oom_kill N" since Linux 4.13
	if cg.v2 {
		name = "memory.events"
	}
	b, err := os.ReadFile(filepath.Join(cg.memory, name))
	if err != nil {
		return 0, fmt.Errorf("read OOM kills: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, nil
}

// procs returns the processes in the cgroup.
func (cg *jobCgroup) procs() ([]int, error) {
	var pids []int
	for _, d := range cg.dirs {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			return nil, err
		}
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			if err == nil && !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids, nil
}

// kill sends SIGKILL to every process in the cgroup and reports how many
// there were.
func (cg *jobCgroup) kill() (int, error) {
	pids, err := cg.procs()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("list cgroup processes: %w", err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return len(pids), fmt.Errorf("kill process %d: %w", pid, err)
		}
	}
	return len(pids), nil
}

// remove kills the cgroup's processes and removes it. A missing cgroup is
// not an error.
func (cg *jobCgroup) remove(ctx context.Context) error {
	// Killed processes leave the cgroup once their parent reaps them,
	// which takes a moment: retry until then.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if _, err := cg.kill(); err != nil {
			return err
		}
		err := cg.rmdirs()
		if err == nil || !errors.Is(err, syscall.EBUSY) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%w)", err, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (cg *jobCgroup) rmdirs() error {
	for _, d := range cg.dirs {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("remove cgroup %s: %w", d, err)
		}
	}
	return nil
}

// writeCgroupFile writes value to an existing cgroup file; unlike
// os.WriteFile it never creates one.
func writeCgroupFile(name, value string) error {
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", value, name, err)
	}
	return nil
}
