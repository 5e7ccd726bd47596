package docker

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"

	"github.com/execd/execd/internal/phase"
	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/dockerconfig"
	"github.com/execd/execd/internal/sandbox/hostdir"
)

// Labels on everything the runtime creates, for Destroy and the janitor.
const (
	labelManaged   = "execd.managed"   // "true"
	labelOwner     = "execd.owner"     // sandbox.Options.Owner
	labelJob       = "execd.job"       // sandbox.Options.JobID
	labelWorkspace = "execd.workspace" // sandbox.Options.Workspace
	labelSandbox   = "execd.sandbox"   // one Prepare's random id
	labelStep      = "execd.step"      // sandbox.Step.Key, on containers
)

// bridgeOption names a bridge network's interface on the host.
const bridgeOption = "com.docker.network.bridge.name"

// Runtime is the docker runtime, or the gvisor runtime when
// [Config.GVisor] is set. It is safe for concurrent use by multiple
// goroutines; its sandboxes are independent.
type Runtime struct {
	cfg    Config
	set    settings
	cfgErr error
	cli    *client.Client
	cliErr error

	checkMu sync.Mutex // guards what Check learns: disk, mirrorWarnings
	disk    diskBound
	// mirrorWarnings: see MirrorWarnings.
	mirrorWarnings []string
}

var (
	_ sandbox.Runtime = (*Runtime)(nil)
	_ sandbox.Janitor = (*Runtime)(nil)
	_ sandbox.Sandbox = (*Sandbox)(nil)
	_ sandbox.Puller  = (*Sandbox)(nil)
)

// New returns a docker runtime. Config errors are reported by
// [Runtime.Check] and [Runtime.Prepare]; New does not contact the daemon.
func New(cfg Config) *Runtime {
	cfg = cfg.withDefaults()
	r := &Runtime{cfg: cfg}
	r.set, r.cfgErr = cfg.parse()
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.Host != "" {
		opts = append(opts, client.WithHost(cfg.Host))
	}
	r.cli, r.cliErr = client.NewClientWithOpts(opts...)
	if r.cliErr != nil {
		r.cliErr = fmt.Errorf("docker: client for %s: %w (check DOCKER_HOST)", cmp.Or(cfg.Host, os.Getenv("DOCKER_HOST")), r.cliErr)
	}
	return r
}

// Name returns "docker", or "gvisor" when [Config.GVisor] is set.
func (r *Runtime) Name() string {
	if r.cfg.GVisor {
		return "gvisor"
	}
	return "docker"
}

// Capabilities: steps run in their images, with the internet (fenced by
// [Config.Firewall]) or no network, and CPU, memory and process limits.
func (r *Runtime) Capabilities() sandbox.Capabilities {
	return sandbox.Capabilities{
		Images:    true,
		Workspace: sandbox.WorkspaceHostDir,
		Networks:  []sandbox.Network{sandbox.NetworkInternet, sandbox.NetworkNone},
		Limits:    sandbox.Limits{CPU: true, Memory: true, Processes: true, Disk: r.boundsDisk()},
	}
}

// ociRuntime is the dockerd runtime containers run with; empty for the
// daemon's default.
func (r *Runtime) ociRuntime() string {
	if r.cfg.GVisor {
		return r.cfg.GVisorRuntime
	}
	return ""
}

// usable reports a configuration or client error.
func (r *Runtime) usable() error {
	return errors.Join(r.cfgErr, r.cliErr)
}

// Check reports whether the Docker daemon answers and can enforce memory
// and process limits, for gvisor that it has runsc registered, and that
// the firewall can be installed when [Config.Firewall] has a Check method
// (func(context.Context) error). Its
// error wraps [sandbox.ErrUnavailable] and says how to fix what is
// missing.
func (r *Runtime) Check(ctx context.Context) error {
	if err := r.check(ctx); err != nil {
		return fmt.Errorf("%w: %w", sandbox.ErrUnavailable, err)
	}
	return nil
}

func (r *Runtime) check(ctx context.Context) error {
	if err := r.usable(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info, err := r.cli.Info(ctx)
	if err != nil {
		return r.daemonError(err)
	}
	var errs []error
	if !info.MemoryLimit {
		errs = append(errs, errors.New("docker: dockerd cannot limit memory (no memory cgroup): enable the memory cgroup controller (cgroup_enable=memory on the kernel command line)"))
	}
	if !info.PidsLimit {
		errs = append(errs, errors.New("docker: dockerd cannot limit processes (no pids cgroup): use a kernel with the pids cgroup controller"))
	}
	if r.cfg.GVisor {
		errs = append(errs, r.checkGVisor(info.Runtimes))
	}
	r.checkDisk(ctx, info)
	r.checkMirrors(info)
	if c, ok := r.cfg.Firewall.(interface{ Check(context.Context) error }); ok {
		if err := c.Check(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: the network policy of jobs' networks cannot be installed: %w "+
				"(or set EXECUTOR_JOB_NETWORK=none: jobs then have no network)", r.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// checkGVisor checks that dockerd has runsc registered, and when the
// daemon is local, that the binary exists.
func (r *Runtime) checkGVisor(runtimes map[string]system.RuntimeWithStatus) error {
	name := r.cfg.GVisorRuntime
	rt, ok := runtimes[name]
	if !ok {
		return fmt.Errorf("gvisor: dockerd has no runtime named %q: run `executor install gvisor`, or build runsc "+
			"(CGO_ENABLED=0 go install gvisor.dev/gvisor/runsc@<version>, copied to /usr/local/bin/runsc) and register it in /etc/docker/daemon.json "+
			`as {"runtimes": {%q: {"path": "/usr/local/bin/runsc"}}}, then restart dockerd`, name, name)
	}
	if strings.HasPrefix(r.cli.DaemonHost(), "unix://") && filepath.IsAbs(rt.Path) {
		if _, err := os.Stat(rt.Path); err != nil {
			return fmt.Errorf("gvisor: dockerd's runtime %q is %s, which is missing (%w): run `executor install gvisor`", name, rt.Path, err)
		}
	}
	return nil
}

// ServerVersion returns the Docker daemon's version, for the executor's
// telemetry.
func (r *Runtime) ServerVersion(ctx context.Context) (string, error) {
	if err := r.usable(); err != nil {
		return "", err
	}
	v, err := r.cli.ServerVersion(ctx)
	if err != nil {
		return "", r.daemonError(err)
	}
	return v.Version, nil
}

// daemonError explains an error of a request to the daemon: when the
// daemon did not answer, it says so and how to fix it.
func (r *Runtime) daemonError(err error) error {
	if client.IsErrConnectionFailed(err) || isDialError(err) {
		return fmt.Errorf("docker: cannot reach the Docker daemon at %s: start dockerd or set DOCKER_HOST (%w)", r.cli.DaemonHost(), err)
	}
	return fmt.Errorf("docker: %w", err)
}

// isDialError reports whether err is the client's failure to connect to
// the daemon, as opposed to an error the daemon answered with.
func isDialError(err error) bool {
	s := err.Error()
	return strings.Contains(s, "Cannot connect to the Docker daemon") && !strings.Contains(s, "Error response from daemon")
}

// Prepare creates the job's network (unless opts.Network is
// [sandbox.NetworkNone]) and applies the firewall to its bridge. See the
// package documentation.
//
// Even when it fails, Prepare returns a Sandbox whose Destroy is safe to
// call.
func (r *Runtime) Prepare(ctx context.Context, opts sandbox.Options) (sandbox.Sandbox, error) {
	sb := &Sandbox{r: r}
	if err := r.usable(); err != nil {
		return sb, err
	}
	if err := validateOptions(opts); err != nil {
		return sb, err
	}
	w, err := hostdir.Create(ctx, opts, nil)
	if err != nil {
		return sb, fmt.Errorf("docker: %w", err)
	}
	sb.ws = w
	// Docker resolves a bind mount's source; the janitor matches labels.
	ws, err := filepath.EvalSymlinks(opts.Workspace)
	if err != nil {
		return sb, fmt.Errorf("docker: workspace: %w", err)
	}
	opts.Workspace = ws
	auths := r.set.auths
	if len(opts.RegistryAuth) > 0 {
		auths = make(map[string]string, len(opts.RegistryAuth))
		for reg, a := range opts.RegistryAuth {
			auths[dockerconfig.RegistryKey(reg)] = a
		}
	}
	sb.opts = opts
	sb.id = randomHex(5)
	sb.auths = auths
	sb.log = r.cfg.Logger.With("runtime", r.Name(), "job", opts.JobID, "sandbox", sb.id)
	sb.labels = map[string]string{
		labelManaged:   "true",
		labelOwner:     opts.Owner,
		labelJob:       opts.JobID,
		labelWorkspace: ws,
		labelSandbox:   sb.id,
	}
	if opts.Network == sandbox.NetworkInternet {
		if err := sb.createNetwork(ctx); err != nil {
			sb.Destroy(ctx)
			return sb, err
		}
	}
	sb.mu.Lock()
	sb.prepared = true
	sb.mu.Unlock()
	sb.log.Debug("sandbox prepared", "network", sb.networkName, "bridge", sb.bridge)
	return sb, nil
}

// createNetwork creates the job's bridge network and applies the
// firewall to it.
func (s *Sandbox) createNetwork(ctx context.Context) error {
	// The interface name must fit IFNAMSIZ (15 bytes).
	bridge := "execd" + s.id
	name := "execd-" + safeName(s.opts.JobID) + "-" + s.id
	end := phase.Start(ctx, phase.NetworkCreate)
	resp, err := s.r.cli.NetworkCreate(ctx, name, network.CreateOptions{
		Driver:  "bridge",
		Labels:  s.labels,
		Options: map[string]string{bridgeOption: bridge},
	})
	end()
	if err != nil {
		return fmt.Errorf("%w (creating the job's network)", s.r.daemonError(err))
	}
	s.mu.Lock()
	s.networkID, s.networkName, s.bridge = resp.ID, name, bridge
	s.mu.Unlock()
	if s.r.cfg.Firewall == nil {
		return nil
	}
	defer phase.Start(ctx, phase.NetworkFirewall)()
	subnet, err := s.r.networkSubnet(ctx, resp.ID)
	if err != nil {
		return err
	}
	if err := s.r.cfg.Firewall.Apply(ctx, bridge, subnet); err != nil {
		return fmt.Errorf("docker: apply the network policy to bridge %s (%s): %w", bridge, subnet, err)
	}
	return nil
}

// networkSubnet returns the IPv4 subnet of a network.
func (r *Runtime) networkSubnet(ctx context.Context, id string) (netip.Prefix, error) {
	n, err := r.cli.NetworkInspect(ctx, id, network.InspectOptions{})
	if err != nil {
		return netip.Prefix{}, r.daemonError(err)
	}
	for _, c := range n.IPAM.Config {
		if p, err := netip.ParsePrefix(c.Subnet); err == nil && p.Addr().Is4() {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("docker: network %s has no IPv4 subnet (IPAM %+v)", n.Name, n.IPAM.Config)
}

// validateOptions checks opts before anything is created.
func validateOptions(opts sandbox.Options) error {
	switch opts.Network {
	case sandbox.NetworkNone, sandbox.NetworkInternet:
	case "":
		return errors.New("docker: no network policy: want none or internet")
	default:
		return fmt.Errorf("docker: unknown network policy %q: want none or internet", opts.Network)
	}
	if opts.JobID == "" {
		return errors.New("docker: empty job ID")
	}
	if opts.Owner == "" {
		return errors.New("docker: empty owner")
	}
	if !filepath.IsAbs(opts.Workspace) {
		return fmt.Errorf("docker: workspace %q is not an absolute path", opts.Workspace)
	}
	if opts.CPUs < 0 || opts.MemoryBytes < 0 || opts.PIDs < 0 {
		return fmt.Errorf("docker: negative limit (CPUs %d, memory %d, PIDs %d)", opts.CPUs, opts.MemoryBytes, opts.PIDs)
	}
	if opts.MemoryBytes > 0 && opts.MemoryBytes < 6<<20 {
		return fmt.Errorf("docker: memory limit %d is below docker's minimum of 6M", opts.MemoryBytes)
	}
	for reg, a := range opts.RegistryAuth {
		if _, _, err := dockerconfig.DecodeAuth(a); err != nil {
			return fmt.Errorf("docker: the job's credentials for registry %q: %w", reg, err)
		}
	}
	return nil
}

// safeName turns s into a part of a container or network name: bytes
// other than letters, digits, '.', '_' and '-' become '_'.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '_'
	}, s)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
