package netpolicy

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// Resolvers returns the DNS servers that docker's embedded resolver
// forwards a job's queries to, from the job's own network namespace:
// those of /etc/resolv.conf, or, when it names only loopback addresses
// (systemd-resolved's 127.0.0.53), those of
// /run/systemd/resolve/resolv.conf, as docker chooses them. On most hosts
// they are private (a cloud VPC's resolver, a LAN router), which the
// policy drops: give them to [Firewall.AllowDNS].
func Resolvers() ([]netip.Addr, error) {
	data, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return nil, fmt.Errorf("netpolicy: read the host's resolvers: %w", err)
	}
	addrs := parseResolvConf(string(data))
	if len(addrs) > 0 {
		return addrs, nil
	}
	data, err = os.ReadFile("/run/systemd/resolve/resolv.conf")
	if err != nil {
		return nil, nil // docker falls back to public resolvers
	}
	return parseResolvConf(string(data)), nil
}

// parseResolvConf returns the nameservers of a resolv.conf, without
// loopback addresses, which sandboxes never reach.
func parseResolvConf(data string) []netip.Addr {
	var addrs []netip.Addr
	for line := range strings.Lines(data) {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil || a.IsLoopback() {
			continue
		}
		addrs = append(addrs, a.WithZone(""))
	}
	return addrs
}
