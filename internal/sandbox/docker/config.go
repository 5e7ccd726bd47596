package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/docker/docker/api/types/mount"

	"github.com/execd/execd/internal/sandbox/dockerconfig"
)

// DefaultGVisorRuntime is the name under which runsc is registered in
// dockerd's "runtimes" (/etc/docker/daemon.json) by `executor install
// gvisor`.
const DefaultGVisorRuntime = "runsc"

// Config configures the docker runtime. The zero value runs containers
// with dockerd's default OCI runtime (runc), reached through DOCKER_HOST
// or the default socket.
type Config struct {
	// GVisor runs every container with gVisor: with the OCI runtime
	// GVisorRuntime, which must be registered in dockerd. The runtime is
	// then named "gvisor" instead of "docker".
	GVisor bool
	// GVisorRuntime is the name of runsc in dockerd's runtimes; default
	// DefaultGVisorRuntime.
	GVisorRuntime string
	// Host is the Docker daemon's address (unix:///var/run/docker.sock,
	// tcp://host:2376); empty means DOCKER_HOST or the default socket.
	Host string
	// RegistryMirrors are registry mirrors (URLs or host[:port]) that
	// images of Docker Hub (docker.io) are pulled through, in order,
	// before Docker Hub itself (EXECUTOR_DOCKER_REGISTRY_MIRROR_URL).
	RegistryMirrors []string
	// AdditionalMounts are mounted into every container
	// (EXECUTOR_DOCKER_ADDITIONAL_MOUNTS): each "source:target[:ro]" or,
	// as the reference writes them, a docker --mount specification
	// "type=bind,source=/foo,target=/bar[,readonly]". See [dockerconfig.ParseMounts].
	AdditionalMounts []string
	// AddHostGateway makes host.docker.internal resolve to the host in
	// every container (EXECUTOR_DOCKER_ADD_HOST_GATEWAY). It lets steps
	// reach the host's services: use it only when they need to.
	AddHostGateway bool
	// AuthConfig is a docker config JSON, {"auths": {"<registry>":
	// {"auth": "<base64 user:password>"}}}, with the credentials images
	// are pulled with (EXECUTOR_DOCKER_AUTH_CONFIG). A job's own
	// credentials (sandbox.Options.RegistryAuth) replace it.
	AuthConfig string
	// Firewall, when set, installs the network policy of each job's
	// network on its bridge interface; when it also has a method
	// Check(context.Context) error, [Runtime.Check] calls it. nil
	// installs no rules: the containers of NetworkInternet jobs may then
	// reach anything the host routes to.
	Firewall Firewall
	// Logger receives the runtime's debug and warning messages; nil
	// discards them.
	Logger *slog.Logger
}

// Firewall installs and removes the network policy of a job's bridge
// network (package netpolicy implements it): the internet, but no private
// ranges, link-local addresses, host services or other jobs.
type Firewall interface {
	// Apply installs the rules for the bridge interface bridge, whose
	// network is subnet. It is idempotent.
	Apply(ctx context.Context, bridge string, subnet netip.Prefix) error
	// Remove removes the rules of bridge; it does nothing when there are
	// none.
	Remove(ctx context.Context, bridge string) error
}

// withDefaults returns c with its defaults filled in.
func (c Config) withDefaults() Config {
	if c.GVisorRuntime == "" {
		c.GVisorRuntime = DefaultGVisorRuntime
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// settings are a Config's parsed values.
type settings struct {
	mirrors []string // host[:port]
	mounts  []mount.Mount
	auths   map[string]string // registry -> base64 user:password
}

// parse checks c and returns its parsed values; each error names the
// setting and the value at fault.
func (c Config) parse() (settings, error) {
	var s settings
	var errs []error
	for _, m := range c.RegistryMirrors {
		mirror, err := dockerconfig.ParseMirror(m)
		if err != nil {
			errs = append(errs, fmt.Errorf("registry mirror %q: %w", m, err))
			continue
		}
		s.mirrors = append(s.mirrors, mirror.Host)
	}
	mounts, err := dockerconfig.ParseMounts(c.AdditionalMounts)
	if err != nil {
		errs = append(errs, err)
	}
	s.mounts = mounts
	if c.AuthConfig != "" {
		auths, err := dockerconfig.ParseAuthConfig(c.AuthConfig)
		if err != nil {
			errs = append(errs, err)
		}
		s.auths = auths
	}
	if strings.ContainsAny(c.GVisorRuntime, " /") {
		errs = append(errs, fmt.Errorf("gVisor runtime name %q: want the name of a dockerd runtime, such as runsc", c.GVisorRuntime))
	}
	if err := errors.Join(errs...); err != nil {
		return settings{}, fmt.Errorf("docker: invalid configuration: %w", err)
	}
	return s, nil
}
