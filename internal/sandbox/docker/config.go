package docker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/mount"
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
	// "type=bind,source=/foo,target=/bar[,readonly]". See [ParseMounts].
	AdditionalMounts []string
	// AddHostGateway makes host.docker.internal resolve to the host in
	// every container (EXECUTOR_DOCKER_ADD_HOST_GATEWAY). It lets steps
	// reach the host's services: use it only when they need to.
	AddHostGateway bool
	// AuthConfig is a docker config JSON, {"auths": {"<registry>":
	// {"auth": "<base64 user:password>"}}}, with the credentials images
	// are pulled with (EXECUTOR_DOCKER_AUTH_CONFIG). A job's own
	// credentials (sandbox.Options.DockerAuth) replace it.
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
		host, err := mirrorHost(m)
		if err != nil {
			errs = append(errs, fmt.Errorf("registry mirror %q: %w", m, err))
			continue
		}
		s.mirrors = append(s.mirrors, host)
	}
	mounts, err := ParseMounts(c.AdditionalMounts)
	if err != nil {
		errs = append(errs, err)
	}
	s.mounts = mounts
	if c.AuthConfig != "" {
		auths, err := ParseAuthConfig(c.AuthConfig)
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

// mirrorHost returns the host[:port] of a registry mirror given as a URL
// (http://mirror:5000) or as host[:port].
func mirrorHost(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("empty")
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", err
		}
		if u.Host == "" || (u.Path != "" && u.Path != "/") {
			return "", errors.New("want a URL such as http://mirror.example.com:5000, without a path")
		}
		return u.Host, nil
	}
	if strings.ContainsAny(s, "/ ") {
		return "", errors.New("want a URL such as http://mirror.example.com:5000, or host:port")
	}
	return s, nil
}

// ParseMounts parses additional mounts. Each entry is either
// "source:target[:ro|:rw]" (a bind mount) or a docker --mount
// specification, "type=bind,source=/foo,target=/bar[,readonly]" (types
// bind, volume and tmpfs). Entries that are --mount specifications may be
// given as one string separated by semicolons, as the reference's
// EXECUTOR_DOCKER_ADDITIONAL_MOUNTS is.
func ParseMounts(entries []string) ([]mount.Mount, error) {
	var mounts []mount.Mount
	var errs []error
	for _, entry := range entries {
		for _, e := range strings.Split(entry, ";") {
			e = strings.TrimSpace(e)
			if e == "" {
				continue
			}
			var m mount.Mount
			var err error
			if strings.Contains(e, "=") {
				m, err = parseMountSpec(e)
			} else {
				m, err = parseShortMount(e)
			}
			if err == nil && (!path.IsAbs(m.Target) || path.Clean(m.Target) == "/") {
				err = fmt.Errorf("target %q is not an absolute path below /", m.Target)
			}
			if err == nil && (m.Type == mount.TypeBind && !path.IsAbs(m.Source)) {
				err = fmt.Errorf("source %q of a bind mount is not an absolute path", m.Source)
			}
			if err == nil && path.Clean(m.Target) == containerWorkspace {
				err = fmt.Errorf("target %s is the workspace", containerWorkspace)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("additional mount %q: %w (want source:target[:ro], or type=bind,source=/foo,target=/bar[,readonly])", e, err))
				continue
			}
			mounts = append(mounts, m)
		}
	}
	return mounts, errors.Join(errs...)
}

func parseShortMount(s string) (mount.Mount, error) {
	parts := strings.Split(s, ":")
	m := mount.Mount{Type: mount.TypeBind}
	switch len(parts) {
	case 3:
		switch parts[2] {
		case "ro":
			m.ReadOnly = true
		case "rw":
		default:
			return m, fmt.Errorf("unknown mode %q", parts[2])
		}
		fallthrough
	case 2:
		m.Source, m.Target = parts[0], parts[1]
	default:
		return m, errors.New("not source:target[:ro]")
	}
	return m, nil
}

func parseMountSpec(s string) (mount.Mount, error) {
	m := mount.Mount{Type: mount.TypeBind}
	for _, field := range strings.Split(s, ",") {
		k, v, hasValue := strings.Cut(strings.TrimSpace(field), "=")
		switch strings.ToLower(k) {
		case "type":
			switch t := mount.Type(v); t {
			case mount.TypeBind, mount.TypeVolume, mount.TypeTmpfs:
				m.Type = t
			default:
				return m, fmt.Errorf("unsupported type %q", v)
			}
		case "source", "src":
			m.Source = v
		case "target", "destination", "dst":
			m.Target = v
		case "readonly", "ro":
			ro := true
			if hasValue {
				b, err := strconv.ParseBool(v)
				if err != nil {
					return m, fmt.Errorf("readonly=%q: want true or false", v)
				}
				ro = b
			}
			m.ReadOnly = ro
		default:
			return m, fmt.Errorf("unknown field %q", k)
		}
	}
	if m.Type == mount.TypeTmpfs && m.Source != "" {
		return m, errors.New("a tmpfs mount has no source")
	}
	if m.Type != mount.TypeTmpfs && m.Source == "" {
		return m, errors.New("no source")
	}
	return m, nil
}

// ParseAuthConfig reads the registry credentials of a docker config JSON:
// {"auths": {"<registry>": {"auth": "<base64 user:password>"}}}. It
// returns registry host -> base64 user:password, the hosts normalized
// (see [registryKey]).
func ParseAuthConfig(s string) (map[string]string, error) {
	var cfg struct {
		Auths map[string]struct {
			Auth string `json:"auth"`
		} `json:"auths"`
	}
	if err := json.Unmarshal([]byte(s), &cfg); err != nil {
		return nil, fmt.Errorf("auth config: %w (want {\"auths\": {\"registry.example.com\": {\"auth\": \"<base64 user:password>\"}}})", err)
	}
	auths := make(map[string]string, len(cfg.Auths))
	for reg, a := range cfg.Auths {
		if _, _, err := decodeAuth(a.Auth); err != nil {
			// Not quoted: the value is a credential.
			return nil, fmt.Errorf("auth config: registry %q: %w", reg, err)
		}
		auths[registryKey(reg)] = a.Auth
	}
	return auths, nil
}

// decodeAuth splits base64 "user:password".
func decodeAuth(auth string) (user, password string, err error) {
	b, err := base64.StdEncoding.DecodeString(auth)
	if err != nil {
		return "", "", errors.New(`"auth" is not base64`)
	}
	user, password, ok := strings.Cut(string(b), ":")
	if !ok {
		return "", "", errors.New(`"auth" is not base64 of user:password`)
	}
	return user, password, nil
}

// registryKey normalizes a registry as docker configs name it
// ("https://index.docker.io/v1/", "registry.example.com:5000") to its
// host, Docker Hub's being docker.io.
func registryKey(s string) string {
	s = strings.TrimSpace(s)
	if u, err := url.Parse(s); err == nil && u.Host != "" {
		s = u.Host
	}
	s, _, _ = strings.Cut(s, "/")
	switch s = strings.ToLower(s); s {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return "docker.io"
	}
	return s
}
