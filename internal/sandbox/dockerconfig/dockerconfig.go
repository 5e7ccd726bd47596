// Package dockerconfig parses the executor's docker settings (additional
// mounts, registry credentials) without the docker client, so that a
// configuration is checked where no container runtime is linked.
package dockerconfig

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/mount"
)

// Workspace is where a job's workspace is mounted in its containers.
const Workspace = "/workspace"

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
			if err == nil && path.Clean(m.Target) == Workspace {
				err = fmt.Errorf("target %s is the workspace", Workspace)
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
// (see [RegistryKey]).
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
		if _, _, err := DecodeAuth(a.Auth); err != nil {
			// Not quoted: the value is a credential.
			return nil, fmt.Errorf("auth config: registry %q: %w", reg, err)
		}
		auths[RegistryKey(reg)] = a.Auth
	}
	return auths, nil
}

// DecodeAuth splits base64 "user:password".
func DecodeAuth(auth string) (user, password string, err error) {
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

// RegistryKey normalizes a registry as docker configs name it
// ("https://index.docker.io/v1/", "registry.example.com:5000") to its
// host, Docker Hub's being docker.io.
func RegistryKey(s string) string {
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
