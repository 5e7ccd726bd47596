package executor

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/execd/execd/internal/sandbox/dockerconfig"
)

// MirrorServices returns the addresses and ports of the registry mirrors
// (EXECUTOR_DOCKER_REGISTRY_MIRROR_URL: URLs, or host[:port] as docker
// takes them), which jobs may reach though they are private, as the
// reference's firewall lets them. A name is resolved with lookup; what
// cannot be resolved is returned as an error beside the rest.
func MirrorServices(ctx context.Context, mirrors []string, lookup func(ctx context.Context, network, host string) ([]netip.Addr, error)) ([]netip.AddrPort, error) {
	var (
		services []netip.AddrPort
		errs     []string
	)
	for _, m := range mirrors {
		mirror, err := dockerconfig.ParseMirror(m)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%q: %v", m, err))
			continue
		}
		name, port, err := mirror.Addr()
		if err != nil {
			errs = append(errs, fmt.Sprintf("%q: %v", m, err))
			continue
		}
		addrs := []netip.Addr{}
		if a, err := netip.ParseAddr(name); err == nil {
			addrs = append(addrs, a)
		} else if addrs, err = lookup(ctx, "ip", name); err != nil {
			errs = append(errs, fmt.Sprintf("%q: %v", m, err))
			continue
		}
		for _, a := range addrs {
			services = append(services, netip.AddrPortFrom(a.Unmap(), port))
		}
	}
	if len(errs) > 0 {
		return services, fmt.Errorf("registry mirrors: %s", strings.Join(errs, "; "))
	}
	return services, nil
}
