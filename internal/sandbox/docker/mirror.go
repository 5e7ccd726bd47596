package docker

import (
	"fmt"
	"net"

	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/system"

	"github.com/execd/execd/internal/sandbox/dockerconfig"
)

// MirrorWarnings says which registry mirrors dockerd cannot pull from as
// configured, with the fix; none when all can. Known after a Check.
func (r *Runtime) MirrorWarnings() []string {
	r.checkMu.Lock()
	defer r.checkMu.Unlock()
	return r.mirrorWarnings
}

func (r *Runtime) checkMirrors(info system.Info) {
	w := plainMirrorWarnings(r.cfg.RegistryMirrors, info.RegistryConfig, net.LookupIP)
	r.checkMu.Lock()
	r.mirrorWarnings = w
	r.checkMu.Unlock()
}

// plainMirrorWarnings returns a warning for each http:// mirror that
// dockerd would reach over HTTPS: the runtime pulls <mirror>/<image>
// itself, which then fails on every Docker Hub image (and falls back to
// Docker Hub). dockerd speaks plain HTTP to a registry of its
// insecure-registries: a host:port it lists with Secure false, or an
// address in one of its insecure CIDRs (127.0.0.0/8 by default).
func plainMirrorWarnings(mirrors []string, rc *registry.ServiceConfig, lookup func(string) ([]net.IP, error)) []string {
	if rc == nil {
		return nil
	}
	var warnings []string
	for _, m := range mirrors {
		mirror, err := dockerconfig.ParseMirror(m)
		if err != nil || mirror.Scheme != "http" || insecureRegistry(mirror.Host, rc, lookup) {
			continue
		}
		warnings = append(warnings, fmt.Sprintf("the registry mirror %s is plain HTTP, but dockerd would reach %s over HTTPS, "+
			"so pulls through it fail: run `executor install docker`, or add %q to \"insecure-registries\" in /etc/docker/daemon.json and reload dockerd",
			m, mirror.Host, mirror.Host))
	}
	return warnings
}

func insecureRegistry(host string, rc *registry.ServiceConfig, lookup func(string) ([]net.IP, error)) bool {
	if ic, ok := rc.IndexConfigs[host]; ok {
		return !ic.Secure
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	ips := []net.IP{net.ParseIP(name)}
	if ips[0] == nil {
		var err error
		if ips, err = lookup(name); err != nil {
			return false
		}
	}
	for _, ip := range ips {
		for _, cidr := range rc.InsecureRegistryCIDRs {
			if cidr != nil && (*net.IPNet)(cidr).Contains(ip) {
				return true
			}
		}
	}
	return false
}
