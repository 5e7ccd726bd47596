package shell

import (
	"fmt"
	"log/slog"
	"path"
	"strings"
)

// DefaultCgroupParent is the cgroup, relative to the root of each cgroup
// hierarchy, under which the runtime creates the jobs' cgroups.
const DefaultCgroupParent = "execd"

// Config configures the shell runtime. The zero value is ready to use.
type Config struct {
	// CgroupParent is the cgroup under which each job gets its own, as a
	// path relative to the root of every cgroup hierarchy; a job's cgroup
	// is <CgroupParent>/<Owner>/<JobID>. Default DefaultCgroupParent.
	// An executor that does not run as root must be delegated this cgroup
	// (it must be able to create cgroups under it and move its own
	// processes into them).
	CgroupParent string
	// Init is the program run as each step's init, the first process of
	// its namespaces, which builds the sandbox and starts the step's
	// shell: a build of cmd/execd-sandbox-init of the same release (see
	// [CheckInit]), which starts in a fraction of the time a whole
	// executor takes. Empty means this program itself, which must then
	// call [MaybeRunInit] first in main.
	Init string
	// WorkspaceRoot is where executors keep their workspaces, each in
	// <WorkspaceRoot>/<Owner>/ (EXECUTOR_WORKSPACE_ROOT): the janitor's
	// [sandbox.Leftover]s name workspaces there, so that a janitor can tell
	// whether their owner still runs.
	WorkspaceRoot string
	// Logger receives the runtime's debug and warning messages; nil
	// discards them.
	Logger *slog.Logger
}

// withDefaults returns c with its defaults filled in.
func (c Config) withDefaults() Config {
	if c.CgroupParent == "" {
		c.CgroupParent = DefaultCgroupParent
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate reports whether c, with defaults filled in, is usable.
func (c Config) validate() error {
	p := strings.TrimPrefix(c.CgroupParent, "/")
	if p == "" || path.Clean(p) != p || p == "." || strings.HasPrefix(p, "../") || p == ".." {
		return fmt.Errorf("shell: CgroupParent %q must be a clean path below the cgroup root", c.CgroupParent)
	}
	return nil
}

// cgroupParent is CgroupParent relative to a hierarchy's root.
func (c Config) cgroupParent() string {
	return strings.TrimPrefix(c.CgroupParent, "/")
}
