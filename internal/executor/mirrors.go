package executor

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
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
		m = strings.TrimSpace(m)
		scheme, host := "https", m
		if strings.Contains(m, "://") {
			u, err := url.Parse(m)
			if err != nil || u.Host == "" {
				errs = append(errs, fmt.Sprintf("%q is not a URL", m))
				continue
			}
			scheme, host = u.Scheme, u.Host
		}
		name, port := host, map[string]string{"http": "80"}[scheme]
		if port == "" {
			port = "443"
		}
		if h, p, err := net.SplitHostPort(host); err == nil {
			name, port = h, p
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%q: bad port %q", m, port))
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
			services = append(services, netip.AddrPortFrom(a.Unmap(), uint16(n)))
		}
	}
	if len(errs) > 0 {
		return services, fmt.Errorf("registry mirrors: %s", strings.Join(errs, "; "))
	}
	return services, nil
}
