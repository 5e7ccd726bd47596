package vmnet

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/execd/execd/internal/sandbox/netpolicy"
)

// ErrNoDNS is HostDNS's error when the host has no resolver a VM can use.
var ErrNoDNS = errors.New("the host has no IPv4 DNS resolver a VM can reach")

// HostDNS returns the host's IPv4 resolvers, which a VM can reach through
// its tap: those of /etc/resolv.conf, or when it names only loopback
// addresses (a local stub such as systemd-resolved's 127.0.0.53), the
// upstream ones of /run/systemd/resolve/resolv.conf. When there are none
// (a stub other than systemd-resolved's, such as dnsmasq on 127.0.0.1,
// or IPv6 resolvers only), the error wraps [ErrNoDNS] and says so: give
// the VMs resolvers explicitly ([Config.DNS]).
func HostDNS() ([]netip.Addr, error) {
	return hostDNS(netpolicy.Resolvers)
}

// hostDNS is HostDNS with the host's resolvers from resolvers.
func hostDNS(resolvers func() ([]netip.Addr, error)) ([]netip.Addr, error) {
	all, err := resolvers()
	if err != nil {
		return nil, fmt.Errorf("vmnet: %w", err)
	}
	var v4 []netip.Addr
	for _, a := range all {
		if a = a.Unmap(); a.Is4() {
			v4 = append(v4, a)
		}
	}
	if len(v4) == 0 {
		return nil, fmt.Errorf("vmnet: %w: /etc/resolv.conf names only loopback addresses (a local stub resolver) or IPv6 ones (%v), and /run/systemd/resolve/resolv.conf no upstream one; set the VMs' DNS servers explicitly", ErrNoDNS, all)
	}
	return v4, nil
}
