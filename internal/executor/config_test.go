package executor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func minimal() map[string]string {
	return map[string]string{
		"EXECUTOR_FRONTEND_URL":      "http://127.0.0.1:3080",
		"EXECUTOR_FRONTEND_PASSWORD": "hunter2hunter2hunter2",
		"EXECUTOR_QUEUE_NAME":        "batches",
	}
}

func TestLoadConfig_Defaults(t *testing.T) {
	c, err := LoadConfig(env(minimal()))
	if err != nil {
		t.Fatalf("the three variables of the reference guide are not enough: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"queues", strings.Join(c.Queues, ","), "batches"},
		{"poll interval", c.PollInterval, time.Second},
		{"max jobs", c.MaxJobs, 1},
		{"cpus", c.JobCPUs, 4},
		{"memory", c.JobMemory, int64(12 << 30)},
		{"disk", c.DiskSpace, int64(20 << 30)},
		{"max runtime", c.MaxRuntime, 30 * time.Minute},
		{"cleanup", c.CleanupInterval, time.Minute},
		{"total jobs", c.NumTotalJobs, 0},
		{"active time", c.MaxActiveTime, time.Duration(0)},
		{"runtime", c.Runtime, "auto"},
		{"long poll", c.LongPoll, 30 * time.Second},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

// A relative workspace root (as the quickstart's ./data gives) is taken
// from the working directory, since sandboxes mount only absolute paths.
func TestLoadConfig_RelativeWorkspaceRoot(t *testing.T) {
	t.Chdir(t.TempDir())
	e := minimal()
	e["EXECUTOR_WORKSPACE_ROOT"] = "data/workspaces"
	c, err := LoadConfig(env(e))
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if want := filepath.Join(wd, "data", "workspaces"); c.WorkspaceRoot != want {
		t.Errorf("WorkspaceRoot = %q, want %q", c.WorkspaceRoot, want)
	}
}

func TestLoadConfig_Errors(t *testing.T) {
	tests := []struct {
		name  string
		set   map[string]string
		unset []string
		want  []string
	}{
		{"no url", nil, []string{"EXECUTOR_FRONTEND_URL"}, []string{"EXECUTOR_FRONTEND_URL is not set"}},
		{"bad url", map[string]string{"EXECUTOR_FRONTEND_URL": "coordinator:3080"}, nil, []string{`EXECUTOR_FRONTEND_URL="coordinator:3080"`, "http://"}},
		{"no password", nil, []string{"EXECUTOR_FRONTEND_PASSWORD"}, []string{"EXECUTOR_FRONTEND_PASSWORD is not set", "executors.accessToken"}},
		{"no queue", nil, []string{"EXECUTOR_QUEUE_NAME"}, []string{"EXECUTOR_QUEUE_NAME is not set"}},
		{"both queues", map[string]string{"EXECUTOR_QUEUE_NAMES": "batches,codeintel"}, nil, []string{"both set"}},
		{"poll", map[string]string{"EXECUTOR_QUEUE_POLL_INTERVAL": "often"}, nil, []string{`EXECUTOR_QUEUE_POLL_INTERVAL="often"`, "duration"}},
		{"max jobs", map[string]string{"EXECUTOR_MAXIMUM_NUM_JOBS": "0"}, nil, []string{`EXECUTOR_MAXIMUM_NUM_JOBS="0"`, "at least 1"}},
		{"firecracker", map[string]string{"EXECUTOR_USE_FIRECRACKER": "yes please"}, nil, []string{`EXECUTOR_USE_FIRECRACKER="yes please"`, "true or false"}},
		{"cpus", map[string]string{"EXECUTOR_JOB_NUM_CPUS": "-2"}, nil, []string{`EXECUTOR_JOB_NUM_CPUS="-2"`}},
		{"memory", map[string]string{"EXECUTOR_JOB_MEMORY": "12X"}, nil, []string{`EXECUTOR_JOB_MEMORY="12X"`, "12G"}},
		{"disk", map[string]string{"EXECUTOR_FIRECRACKER_DISK_SPACE": "big"}, nil, []string{`EXECUTOR_FIRECRACKER_DISK_SPACE="big"`}},
		{"runtime per job", map[string]string{"EXECUTOR_MAXIMUM_RUNTIME_PER_JOB": "30"}, nil, []string{`EXECUTOR_MAXIMUM_RUNTIME_PER_JOB="30"`, "duration"}},
		{"cleanup", map[string]string{"EXECUTOR_CLEANUP_TASK_INTERVAL": "1ms"}, nil, []string{`EXECUTOR_CLEANUP_TASK_INTERVAL="1ms"`, "at least 1s"}},
		{"total jobs", map[string]string{"EXECUTOR_NUM_TOTAL_JOBS": "many"}, nil, []string{`EXECUTOR_NUM_TOTAL_JOBS="many"`}},
		{"active time", map[string]string{"EXECUTOR_MAX_ACTIVE_TIME": "forever"}, nil, []string{`EXECUTOR_MAX_ACTIVE_TIME="forever"`}},
		{"keep", map[string]string{"EXECUTOR_KEEP_WORKSPACES": "sometimes"}, nil, []string{`EXECUTOR_KEEP_WORKSPACES="sometimes"`}},
		{"auth config", map[string]string{"EXECUTOR_DOCKER_AUTH_CONFIG": "{not json"}, nil, []string{"EXECUTOR_DOCKER_AUTH_CONFIG", "auths"}},
		{"auth config credentials", map[string]string{"EXECUTOR_DOCKER_AUTH_CONFIG": `{"auths": {"r.example.com": {"auth": "!!"}}}`}, nil, []string{"EXECUTOR_DOCKER_AUTH_CONFIG", "r.example.com", "base64"}},
		{"mounts", map[string]string{"EXECUTOR_DOCKER_ADDITIONAL_MOUNTS": "cache:/cache"}, nil, []string{"EXECUTOR_DOCKER_ADDITIONAL_MOUNTS", "not an absolute path"}},
		{"mount spec", map[string]string{"EXECUTOR_DOCKER_ADDITIONAL_MOUNTS": "type=bind,source=/a,target=/b,colour=red"}, nil, []string{"EXECUTOR_DOCKER_ADDITIONAL_MOUNTS", "unknown field"}},
		{"host gateway", map[string]string{"EXECUTOR_DOCKER_ADD_HOST_GATEWAY": "maybe"}, nil, []string{"EXECUTOR_DOCKER_ADD_HOST_GATEWAY"}},
		{"startup script", map[string]string{"EXECUTOR_VM_STARTUP_SCRIPT_PATH": "/nonexistent/script.sh"}, nil, []string{"EXECUTOR_VM_STARTUP_SCRIPT_PATH", "existing file"}},
		{"runtime", map[string]string{"EXECUTOR_RUNTIME": "podman"}, nil, []string{`EXECUTOR_RUNTIME="podman"`, "auto, shell, docker, gvisor, firecracker"}},
		{"network", map[string]string{"EXECUTOR_JOB_NETWORK": "all"}, nil, []string{`EXECUTOR_JOB_NETWORK="all"`, "none, internet"}},
		{"firecracker conflict", map[string]string{"EXECUTOR_USE_FIRECRACKER": "true", "EXECUTOR_RUNTIME": "shell"}, nil, []string{"conflicts"}},
		{"long poll", map[string]string{"EXECUTOR_LONG_POLL": "5m"}, nil, []string{"EXECUTOR_LONG_POLL", "60s"}},
		{"shell init", map[string]string{"EXECUTOR_SHELL_INIT": "bin/execd-sandbox-init"}, nil, []string{`EXECUTOR_SHELL_INIT="bin/execd-sandbox-init"`, "absolute path"}},
		{"processes", map[string]string{"EXECUTOR_JOB_MAX_PROCESSES": "2"}, nil, []string{"EXECUTOR_JOB_MAX_PROCESSES"}},
		{"output", map[string]string{"EXECUTOR_MAX_STEP_OUTPUT": "lots"}, nil, []string{"EXECUTOR_MAX_STEP_OUTPUT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kv := minimal()
			for k, v := range tt.set {
				kv[k] = v
			}
			for _, k := range tt.unset {
				delete(kv, k)
			}
			_, err := LoadConfig(env(kv))
			if err == nil {
				t.Fatalf("loadConfig accepted %v", tt.set)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadConfig_DockerMounts(t *testing.T) {
	tests := []struct{ value, want string }{
		{"/srv/cache:/cache:ro,/srv/tools:/tools", "/srv/cache:/cache:ro|/srv/tools:/tools"},
		{"type=bind,source=/foo,target=/bar;type=volume,source=v,target=/v", "type=bind,source=/foo,target=/bar|type=volume,source=v,target=/v"},
		{"", ""},
	}
	for _, tt := range tests {
		kv := minimal()
		kv["EXECUTOR_DOCKER_ADDITIONAL_MOUNTS"] = tt.value
		c, err := LoadConfig(env(kv))
		if got := strings.Join(c.DockerAdditionalMount, "|"); err != nil || got != tt.want {
			t.Errorf("EXECUTOR_DOCKER_ADDITIONAL_MOUNTS=%q: %q, %v; want %q", tt.value, got, err, tt.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{{"12G", 12 << 30}, {"512m", 512 << 20}, {"1024K", 1 << 20}, {"2Gi", 2 << 30}, {"1.5G", 3 << 29}, {"100", 100}, {"4MB", 4 << 20}}
	for _, tt := range tests {
		if got, err := parseSize(tt.in); err != nil || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "G", "12X", "-1G", "twelve"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}

func TestConfig_FitHost(t *testing.T) {
	tests := []struct {
		name         string
		cpus, memory string
		host         Host
		wantCPUs     int
		wantMemory   int64
		wantWarnings []string
	}{
		{"fits", "2", "1G", Host{CPUs: 2, MemoryBytes: 4 << 30}, 2, 1 << 30, nil},
		{"defaults on a small machine", "", "", Host{CPUs: 2, MemoryBytes: 8 << 30}, 2, 8 << 30,
			[]string{"EXECUTOR_JOB_NUM_CPUS=4 exceeds the 2 CPUs of this machine: jobs get 2", "EXECUTOR_JOB_MEMORY=12G exceeds the 8G of memory of this machine: jobs get 8G"}},
		{"memory unknown", "1", "64G", Host{CPUs: 1}, 1, 64 << 30, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := minimal()
			e["EXECUTOR_JOB_NUM_CPUS"], e["EXECUTOR_JOB_MEMORY"] = tt.cpus, tt.memory
			c, err := LoadConfig(env(e))
			if err != nil {
				t.Fatal(err)
			}
			warnings := c.FitHost(tt.host)
			if c.JobCPUs != tt.wantCPUs || c.JobMemory != tt.wantMemory {
				t.Errorf("limits = %d CPUs, %d bytes; want %d, %d", c.JobCPUs, c.JobMemory, tt.wantCPUs, tt.wantMemory)
			}
			if strings.Join(warnings, "\n") != strings.Join(tt.wantWarnings, "\n") {
				t.Errorf("warnings = %q, want %q", warnings, tt.wantWarnings)
			}
		})
	}
}

func TestMemTotal(t *testing.T) {
	f := filepath.Join(t.TempDir(), "meminfo")
	os.WriteFile(f, []byte("MemTotal:       24634620 kB\nMemFree:        1 kB\n"), 0o600)
	if got := memTotal(f); got != 24634620<<10 {
		t.Errorf("memTotal = %d, want %d", got, int64(24634620)<<10)
	}
	if got := memTotal(filepath.Join(t.TempDir(), "none")); got != 0 {
		t.Errorf("memTotal of a missing file = %d, want 0", got)
	}
	if ThisHost().CPUs < 1 {
		t.Error("ThisHost found no CPU")
	}
}
