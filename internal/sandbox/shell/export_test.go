package shell

import (
	"context"
	"errors"
	"io/fs"
	"path"
	"path/filepath"
	"syscall"
)

// CheckNamespaces and CheckCgroups let tests tell which part is missing.
func CheckNamespaces(ctx context.Context) error { return checkNamespaces(ctx) }
func CheckCgroups(r *Runtime) error             { return r.checkCgroups() }

// TestCgroup is where a job's cgroup files are.
type TestCgroup struct {
	V2                bool
	Dirs              []string
	Memory, PIDs, CPU string
}

// JobCgroup returns the cgroup of owner's job jobID.
func JobCgroup(r *Runtime, owner, jobID string) (TestCgroup, error) {
	host, err := findCgroups()
	if err != nil {
		return TestCgroup{}, err
	}
	owner, _ = cgroupName(owner)
	jobID, _ = cgroupName(jobID)
	cg := host.job(path.Join(r.cfg.cgroupParent(), owner, jobID))
	return TestCgroup{V2: cg.v2, Dirs: cg.dirs, Memory: cg.memory, PIDs: cg.pids, CPU: cg.cpu}, nil
}

// Procs returns the processes in the cgroup.
func (c TestCgroup) Procs() ([]int, error) {
	return (&jobCgroup{dirs: c.Dirs}).procs()
}

// RemoveCgroupParent removes the runtime's (empty) parent cgroup.
func RemoveCgroupParent(r *Runtime) error {
	host, err := findCgroups()
	if err != nil {
		return err
	}
	var errs []error
	for _, root := range host.roots() {
		err := syscall.Rmdir(filepath.Join(root, r.cfg.cgroupParent()))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
