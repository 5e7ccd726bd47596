package shell

import (
	"maps"
	"strings"
	"testing"
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
