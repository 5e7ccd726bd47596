package shell

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/execd/execd/internal/sandbox"
)

func TestParseMountinfo(t *testing.T) {
	tests := []struct {
		name      string
		mountinfo string
		unified   string
		v1        map[string]string
	}{
		{
			name: "hybrid",
			mountinfo: `25 1 0:23 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:24 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
27 25 0:25 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
28 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
29 25 0:27 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
30 25 0:28 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`,
			unified: "/sys/fs/cgroup/unified",
			v1:      map[string]string{"cpu": "/sys/fs/cgroup/cpu", "memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids"},
		},
		{
			name: "v1 with shared hierarchies",
			mountinfo: `31 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
32 25 0:30 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
33 25 0:31 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
34 25 0:32 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
`,
			v1: map[string]string{"cpu": "/sys/fs/cgroup/cpu,cpuacct", "memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids"},
		},
		{
			name:      "v2",
			mountinfo: "35 22 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n",
			unified:   "/sys/fs/cgroup",
			v1:        map[string]string{},
		},
		{
			name:      "escaped mount point",
			mountinfo: `40 22 0:33 / /mnt/my\040cgroups rw - cgroup cgroup rw,memory` + "\n",
			v1:        map[string]string{"memory": "/mnt/my cgroups"},
		},
		{
			name:      "none",
			mountinfo: "22 1 8:1 / / rw,relatime - ext4 /dev/root rw\n",
			v1:        map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := parseMountinfo(strings.NewReader(tt.mountinfo))
			if err != nil {
				t.Fatal(err)
			}
			if h.unified != tt.unified {
				t.Errorf("unified = %q, want %q", h.unified, tt.unified)
			}
			if !maps.Equal(h.v1, tt.v1) {
				t.Errorf("v1 = %v, want %v", h.v1, tt.v1)
			}
		})
	}
}

func TestCgroupHost_Job(t *testing.T) {
	v1 := &cgroupHost{v1: map[string]string{"cpu": "/cg/cpu,cpuacct", "memory": "/cg/memory", "pids": "/cg/pids"}}
	cg := v1.job("execd/o/j")
	if cg.v2 || cg.memory != "/cg/memory/execd/o/j" || cg.cpu != "/cg/cpu,cpuacct/execd/o/j" || len(cg.dirs) != 3 {
		t.Errorf("v1 job cgroup = %+v", cg)
	}
	v2 := &cgroupHost{unified: "/cg"}
	cg = v2.job("execd/o/j")
	if !cg.v2 || cg.memory != "/cg/execd/o/j" || len(cg.dirs) != 1 {
		t.Errorf("v2 job cgroup = %+v", cg)
	}
}

func TestCgroupName(t *testing.T) {
	tests := []struct {
		in, want string
		err      bool
	}{
		{"42-batches", "42-batches", false},
		{"executor.example.com", "executor.example.com", false},
		{"my executor/1", "my_executor_1", false},
		{"é", "_", false},
		{"", "", true},
		{".", "", true},
		{"..", "", true},
	}
	for _, tt := range tests {
		got, err := cgroupName(tt.in)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("cgroupName(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestStepEnv(t *testing.T) {
	tests := []struct {
		in   []string
		want string
		err  bool
	}{
		{nil, "PATH=" + sandboxPath + " HOME=/tmp", false},
		{[]string{"A=1", "B=2=3"}, "PATH=" + sandboxPath + " HOME=/tmp A=1 B=2=3", false},
		{[]string{"A=1", "A=2"}, "PATH=" + sandboxPath + " HOME=/tmp A=2", false},
		{[]string{"HOME=/workspace"}, "PATH=" + sandboxPath + " HOME=/workspace", false},
		{[]string{"NOVALUE"}, "", true},
		{[]string{"=x"}, "", true},
		{[]string{"A=\x00"}, "", true},
	}
	for _, tt := range tests {
		got, err := stepEnv(tt.in)
		if strings.Join(got, " ") != tt.want || (err != nil) != tt.err {
			t.Errorf("stepEnv(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestConfig_Validate(t *testing.T) {
	for parent, ok := range map[string]bool{
		"":           true, // the default
		"execd":      true,
		"/execd":     true,
		"a/b":        true,
		"..":         false,
		"../x":       false,
		"a/../../x":  false,
		"a//b":       false,
		"/":          false,
		"execd/./x":  false,
		"execd/x/..": false,
	} {
		err := Config{CgroupParent: parent}.withDefaults().validate()
		if (err == nil) != ok {
			t.Errorf("CgroupParent %q: validate() = %v, want ok %v", parent, err, ok)
		}
	}
}

func TestMountFlags(t *testing.T) {
	// ST_RDONLY|ST_NOSUID|ST_NODEV|ST_NOEXEC|ST_RELATIME
	if got, want := mountFlags(1|2|4|8|4096), uintptr(0x1|0x2|0x4|0x8|0x200000); got != want {
		t.Errorf("mountFlags = %#x, want %#x", got, want)
	}
}

// fakeCgroup makes a directory with the given (empty) cgroup files, as
// the kernel would show them.
func fakeCgroup(t *testing.T, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestJobCgroup_SetLimits(t *testing.T) {
	opts := sandbox.Options{CPUs: 3, MemoryBytes: 1 << 30, PIDs: 500}
	tests := []struct {
		name  string
		v2    bool
		files []string
		want  map[string]string
	}{
		{
			name:  "v2",
			v2:    true,
			files: []string{"memory.max", "memory.swap.max", "cpu.max", "pids.max"},
			want:  map[string]string{"memory.max": "1073741824", "memory.swap.max": "0", "cpu.max": "300000 100000", "pids.max": "500"},
		},
		{
			name:  "v2 without swap accounting",
			v2:    true,
			files: []string{"memory.max", "cpu.max", "pids.max"},
			want:  map[string]string{"memory.max": "1073741824", "cpu.max": "300000 100000", "pids.max": "500"},
		},
		{
			name:  "v1",
			files: []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "cpu.cfs_period_us", "cpu.cfs_quota_us", "pids.max"},
			want: map[string]string{"memory.limit_in_bytes": "1073741824", "memory.memsw.limit_in_bytes": "1073741824",
				"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "300000", "pids.max": "500"},
		},
		{
			name:  "v1 without swap accounting",
			files: []string{"memory.limit_in_bytes", "cpu.cfs_period_us", "cpu.cfs_quota_us", "pids.max"},
			want:  map[string]string{"memory.limit_in_bytes": "1073741824", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "300000", "pids.max": "500"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fakeCgroup(t, tt.files...)
			cg := &jobCgroup{v2: tt.v2, dirs: []string{dir}, memory: dir, pids: dir, cpu: dir}
			if err := cg.setLimits(opts); err != nil {
				t.Fatal(err)
			}
			for _, f := range tt.files {
				b, _ := os.ReadFile(filepath.Join(dir, f))
				if string(b) != tt.want[f] {
					t.Errorf("%s = %q, want %q", f, b, tt.want[f])
				}
			}
		})
	}
	t.Run("no limits", func(t *testing.T) {
		dir := t.TempDir() // no files: nothing may be written
		cg := &jobCgroup{v2: true, dirs: []string{dir}, memory: dir, pids: dir, cpu: dir}
		if err := cg.setLimits(sandbox.Options{}); err != nil {
			t.Error(err)
		}
	})
	t.Run("missing controller", func(t *testing.T) {
		dir := fakeCgroup(t, "memory.max")
		cg := &jobCgroup{v2: true, dirs: []string{dir}, memory: dir, pids: dir, cpu: dir}
		if err := cg.setLimits(opts); err == nil {
			t.Error("no error without pids.max and cpu.max")
		}
	})
}

func TestJobCgroup_OOMKills(t *testing.T) {
	tests := []struct {
		v2      bool
		file    string
		content string
		want    int64
	}{
		{false, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", 3},
		{false, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n", 0}, // before Linux 4.13
		{true, "memory.events", "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n", 2},
	}
	for _, tt := range tests {
		dir := fakeCgroup(t)
		if err := os.WriteFile(filepath.Join(dir, tt.file), []byte(tt.content), 0o644); err != nil {
			t.Fatal(err)
		}
		cg := &jobCgroup{v2: tt.v2, memory: dir}
		if got, err := cg.oomKills(); got != tt.want || err != nil {
			t.Errorf("oomKills(%s %q) = %d, %v; want %d", tt.file, tt.content, got, err, tt.want)
		}
	}
}
