// Package executor assembles an executor: its configuration from the
// environment, the sandbox runtime, the job runner and the worker loop. The
// executor command and the coordinator's quickstart both run it.
package executor

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/execd/execd/internal/sandbox/dockerconfig"
)

// Config is the executor's configuration, read from the environment with
// the reference's variable names and defaults.
type Config struct {
	FrontendURL      string
	FrontendPassword string
	Queues           []string
	PollInterval     time.Duration
	MaxJobs          int
	UseFirecracker   bool
	JobCPUs          int
	JobMemory        int64
	DiskSpace        int64
	MaxRuntime       time.Duration
	CleanupInterval  time.Duration
	NumTotalJobs     int
	MaxActiveTime    time.Duration
	KeepWorkspaces   bool

	DockerRegistryMirrors []string
	DockerAdditionalMount []string // each source:target[:ro] or a docker --mount spec
	DockerAddHostGateway  bool
	DockerAuthConfig      string
	VMPrefix              string
	VMStartupScriptPath   string
	// Bytes per second a job's machine may receive and send.
	BandwidthIngress, BandwidthEgress int64

	// Ours.
	Version         string // the executor's version, reported to the coordinator
	Runtime         string // auto, shell, docker, gvisor, firecracker
	ShellInit       string // auto, self, or the path of execd-sandbox-init
	JobNetwork      string // none, internet; empty: the runtime's default
	JobMaxProcesses int
	MaxStepOutput   int64
	WorkspaceRoot   string
	MetricsAddr     string // empty: off
	LongPoll        time.Duration
	// The micro-VM runtime's.
	VMMonitor        string // auto, firecracker, qemu
	VMAllowEmulation bool   // QEMU without KVM, by software emulation
	VMWarmPool       int    // machines booted ahead of jobs
	VMAssets         string // the kernel and initramfs (executor install vm)
	memoryText       string
}

// runtimeNames are the values of EXECUTOR_RUNTIME.
var runtimeNames = []string{"auto", "shell", "docker", "gvisor", "firecracker"}

// LoadConfig reads the configuration through getenv. Every invalid value
// is reported, each naming the variable, the value and what is expected.
func LoadConfig(getenv func(string) string) (Config, error) {
	p := &envParser{getenv: getenv}
	c := Config{
		FrontendURL:      p.url("EXECUTOR_FRONTEND_URL"),
		FrontendPassword: p.required("EXECUTOR_FRONTEND_PASSWORD", "the executors.accessToken of the coordinator's site config"),
		PollInterval:     p.duration("EXECUTOR_QUEUE_POLL_INTERVAL", time.Second, time.Millisecond),
		MaxJobs:          p.int("EXECUTOR_MAXIMUM_NUM_JOBS", 1, 1),
		UseFirecracker:   p.bool("EXECUTOR_USE_FIRECRACKER", false),
		JobCPUs:          p.int("EXECUTOR_JOB_NUM_CPUS", 4, 1),
		JobMemory:        p.size("EXECUTOR_JOB_MEMORY", "12G"),
		DiskSpace:        p.size("EXECUTOR_FIRECRACKER_DISK_SPACE", "20G"),
		MaxRuntime:       p.duration("EXECUTOR_MAXIMUM_RUNTIME_PER_JOB", 30*time.Minute, time.Second),
		CleanupInterval:  p.duration("EXECUTOR_CLEANUP_TASK_INTERVAL", time.Minute, time.Second),
		NumTotalJobs:     p.int("EXECUTOR_NUM_TOTAL_JOBS", 0, 0),
		MaxActiveTime:    p.duration("EXECUTOR_MAX_ACTIVE_TIME", 0, 0),
		KeepWorkspaces:   p.bool("EXECUTOR_KEEP_WORKSPACES", false),

		DockerRegistryMirrors: p.list("EXECUTOR_DOCKER_REGISTRY_MIRROR_URL"),
		DockerAdditionalMount: p.mounts("EXECUTOR_DOCKER_ADDITIONAL_MOUNTS"),
		DockerAddHostGateway:  p.bool("EXECUTOR_DOCKER_ADD_HOST_GATEWAY", false),
		DockerAuthConfig:      p.json("EXECUTOR_DOCKER_AUTH_CONFIG"),
		VMPrefix:              p.str("EXECUTOR_VM_PREFIX", "executor"),
		VMStartupScriptPath:   p.file("EXECUTOR_VM_STARTUP_SCRIPT_PATH"),
		BandwidthIngress:      p.size("EXECUTOR_FIRECRACKER_BANDWIDTH_INGRESS", "500M"),
		BandwidthEgress:       p.size("EXECUTOR_FIRECRACKER_BANDWIDTH_EGRESS", "500M"),

		Runtime:          p.oneOf("EXECUTOR_RUNTIME", "auto", runtimeNames),
		ShellInit:        p.str("EXECUTOR_SHELL_INIT", "auto"),
		JobNetwork:       p.oneOf("EXECUTOR_JOB_NETWORK", "", []string{"", "none", "internet"}),
		JobMaxProcesses:  p.int("EXECUTOR_JOB_MAX_PROCESSES", 1024, 16),
		MaxStepOutput:    p.size("EXECUTOR_MAX_STEP_OUTPUT", "4M"),
		WorkspaceRoot:    p.dir("EXECUTOR_WORKSPACE_ROOT", filepath.Join(os.TempDir(), "execd-workspaces")),
		MetricsAddr:      p.str("EXECUTOR_METRICS_ADDR", "127.0.0.1:6060"),
		LongPoll:         p.duration("EXECUTOR_LONG_POLL", 30*time.Second, 0),
		VMMonitor:        p.oneOf("EXECUTOR_VM_MONITOR", "auto", []string{"auto", "firecracker", "qemu"}),
		VMAllowEmulation: p.bool("EXECUTOR_VM_ALLOW_EMULATION", false),
		VMWarmPool:       p.int("EXECUTOR_VM_WARM_POOL", 1, 0),
		VMAssets:         p.dir("EXECUTOR_VM_ASSETS", "/var/lib/execd/vm"),
		memoryText:       p.getenv("EXECUTOR_JOB_MEMORY"),
	}
	c.Queues = p.queues()
	if c.MetricsAddr == "off" {
		c.MetricsAddr = ""
	}
	if c.UseFirecracker {
		if c.Runtime != "auto" && c.Runtime != "firecracker" {
			p.fail("EXECUTOR_USE_FIRECRACKER", "true", "it conflicts with EXECUTOR_RUNTIME="+c.Runtime+"; unset one of them")
		}
		c.Runtime = "firecracker"
	}
	if c.ShellInit != "auto" && c.ShellInit != "self" && !filepath.IsAbs(c.ShellInit) {
		p.fail("EXECUTOR_SHELL_INIT", c.ShellInit, "auto, self, or the absolute path of execd-sandbox-init")
	}
	if c.LongPoll > 60*time.Second {
		p.fail("EXECUTOR_LONG_POLL", c.LongPoll.String(), "at most 60s (the coordinator's limit); 0 disables long-polling")
	}
	return c, errors.Join(p.errs...)
}

type envParser struct {
	getenv func(string) string
	errs   []error
}

func (p *envParser) fail(name, value, want string) {
	p.errs = append(p.errs, fmt.Errorf("%s=%q: %s", name, value, want))
}

func (p *envParser) str(name, def string) string {
	if v := strings.TrimSpace(p.getenv(name)); v != "" {
		return v
	}
	return def
}

func (p *envParser) required(name, what string) string {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		p.errs = append(p.errs, fmt.Errorf("%s is not set: set it to %s", name, what))
	}
	return v
}

func (p *envParser) url(name string) string {
	v := p.required(name, "the coordinator's URL, e.g. http://coordinator.example.com:3080")
	if v == "" {
		return ""
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.fail(name, v, "want an http:// or https:// URL, e.g. http://coordinator.example.com:3080")
		return ""
	}
	return strings.TrimSuffix(v, "/")
}

func (p *envParser) int(name string, def, minimum int) int {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < minimum {
		p.fail(name, v, fmt.Sprintf("want a whole number of at least %d", minimum))
		return def
	}
	return n
}

func (p *envParser) bool(name string, def bool) bool {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(name, v, "want true or false")
		return def
	}
	return b
}

func (p *envParser) duration(name string, def, minimum time.Duration) time.Duration {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < minimum {
		p.fail(name, v, fmt.Sprintf("want a duration such as 30s, 5m or 1h (at least %s)", minimum))
		return def
	}
	return d
}

func (p *envParser) size(name, def string) int64 {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		v = def
	}
	n, err := parseSize(v)
	if err != nil || n <= 0 {
		p.fail(name, v, "want a size such as 12G, 512M or 1024K")
		n, _ = parseSize(def)
	}
	return n
}

func (p *envParser) list(name string) []string {
	var out []string
	for _, f := range strings.Split(p.getenv(name), ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func (p *envParser) json(name string) string {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return ""
	}
	const want = `want a docker config JSON object such as {"auths": {"registry.example.com": {"auth": "<base64 user:password>"}}}`
	if !json.Valid([]byte(v)) {
		p.fail(name, v, want)
		return v
	}
	if _, err := dockerconfig.ParseAuthConfig(v); err != nil {
		// Not quoted: the value holds credentials.
		p.errs = append(p.errs, fmt.Errorf("%s: %v; %s", name, err, want))
	}
	return v
}

// mounts reads EXECUTOR_DOCKER_ADDITIONAL_MOUNTS: docker --mount
// specifications separated by semicolons, as the reference writes them
// ("type=bind,source=/foo,target=/bar;..."), or source:target[:ro]
// entries separated by commas or semicolons.
func (p *envParser) mounts(name string) []string {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return nil
	}
	sep := func(r rune) bool { return r == ';' || r == ',' }
	if strings.Contains(v, "=") {
		sep = func(r rune) bool { return r == ';' }
	}
	var entries []string
	for _, e := range strings.FieldsFunc(v, sep) {
		if e = strings.TrimSpace(e); e != "" {
			entries = append(entries, e)
		}
	}
	if _, err := dockerconfig.ParseMounts(entries); err != nil {
		p.fail(name, v, err.Error())
	}
	return entries
}

// dir reads a directory path, made absolute against the working
// directory: sandboxes mount it, and a mount needs an absolute path.
func (p *envParser) dir(name, def string) string {
	v := p.str(name, def)
	abs, err := filepath.Abs(v)
	if err != nil {
		p.fail(name, v, "want a directory path: "+err.Error())
		return v
	}
	return abs
}

func (p *envParser) file(name string) string {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return ""
	}
	if _, err := os.Stat(v); err != nil {
		p.fail(name, v, "want the path of an existing file: "+err.Error())
	}
	return v
}

func (p *envParser) oneOf(name, def string, allowed []string) string {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	for _, a := range allowed {
		if v == a && a != "" {
			return v
		}
	}
	var shown []string
	for _, a := range allowed {
		if a != "" {
			shown = append(shown, a)
		}
	}
	p.fail(name, v, "want one of "+strings.Join(shown, ", "))
	return def
}

// queues reads EXECUTOR_QUEUE_NAME or EXECUTOR_QUEUE_NAMES: exactly one.
func (p *envParser) queues() []string {
	one := strings.TrimSpace(p.getenv("EXECUTOR_QUEUE_NAME"))
	many := p.list("EXECUTOR_QUEUE_NAMES")
	switch {
	case one != "" && len(many) > 0:
		p.errs = append(p.errs, errors.New("EXECUTOR_QUEUE_NAME and EXECUTOR_QUEUE_NAMES are both set: set exactly one"))
	case one == "" && len(many) == 0:
		p.errs = append(p.errs, errors.New("EXECUTOR_QUEUE_NAME is not set: set it to the queue to pull jobs from (e.g. batches), or EXECUTOR_QUEUE_NAMES to several, comma-separated"))
	case one != "":
		if strings.Contains(one, ",") {
			p.fail("EXECUTOR_QUEUE_NAME", one, "one queue name; use EXECUTOR_QUEUE_NAMES for several")
		}
		return []string{one}
	}
	return many
}

// parseSize reads sizes such as 12G, 512M, 1024K, 2Gi, 1.5G or a byte count.
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult != 1 {
			t = t[:n-1]
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return int64(f * float64(mult)), nil
}
