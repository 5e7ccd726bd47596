package vmnet

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/execd/execd/internal/hostlock"
	"github.com/execd/execd/internal/sandbox"
)

const (
	// TapPrefix starts the name of every VM's tap device; the rest is
	// the subnet's first address in hexadecimal: execdvm0ad50004 is the
	// tap of 10.213.0.4/30.
	TapPrefix = "execdvm"
	// ifbPrefix starts the name of a tap's ifb device, which shapes the
	// VM's egress; the rest is the tap's.
	ifbPrefix = "execdvb"
	// labelPrefix starts the alias of a tap device, followed by its
	// owner and job as a URL query.
	labelPrefix = "execd-vm "
	// subnetBits is the size of a job's subnet: network, host, guest,
	// broadcast.
	subnetBits = 30
	// lockPath serialises the allocation of subnets between processes.
	lockPath = "/run/execd-vmnet.lock"
)

// tapName returns the name of the tap of subnet: within IFNAMSIZ (15).
func tapName(subnet netip.Prefix) string {
	a := subnet.Addr().As4()
	return fmt.Sprintf("%s%08x", TapPrefix, binary.BigEndian.Uint32(a[:]))
}

// ifbName returns the name of tap's ifb device.
func ifbName(tap string) string { return ifbPrefix + strings.TrimPrefix(tap, TapPrefix) }

// tapSubnet returns the subnet of a VM's tap device from its name; ok is
// false for other names.
func tapSubnet(name string) (subnet netip.Prefix, ok bool) {
	h, ok := strings.CutPrefix(name, TapPrefix)
	if !ok || len(h) != 8 || strings.ToLower(h) != h {
		return netip.Prefix{}, false
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return netip.Prefix{}, false
	}
	p := netip.PrefixFrom(netip.AddrFrom4([4]byte(b)), subnetBits)
	return p, p == p.Masked()
}

// guestMAC returns the guest's hardware address: locally administered,
// unicast, unique on the host as the guest's address is.
func guestMAC(guest netip.Addr) string {
	a := guest.As4()
	return net.HardwareAddr{0x02, 0xed, a[0], a[1], a[2], a[3]}.String()
}

// label returns the alias of a job's tap device.
func label(owner, jobID, workspace string) (string, error) {
	v := url.Values{"owner": {owner}, "job": {jobID}}
	if workspace != "" {
		v.Set("ws", workspace)
	}
	l := labelPrefix + v.Encode()
	if len(l) > 255 {
		return "", fmt.Errorf("vmnet: owner %q and job %q are too long for the tap's label", owner, jobID)
	}
	return l, nil
}

// parseLabel returns the job of a tap from its alias; an alias not made
// by label gives an empty Leftover.
func parseLabel(alias string) sandbox.Leftover {
	q, ok := strings.CutPrefix(alias, labelPrefix)
	if !ok {
		return sandbox.Leftover{}
	}
	v, err := url.ParseQuery(q)
	if err != nil {
		return sandbox.Leftover{}
	}
	return sandbox.Leftover{Owner: v.Get("owner"), JobID: v.Get("job"), Workspace: v.Get("ws")}
}

// pick returns the first /30 of pool, from the start-th on and wrapping
// around, that overlaps none of used.
func pick(pool netip.Prefix, used []netip.Prefix, start int) (netip.Prefix, error) {
	n := 1 << (subnetBits - pool.Bits())
	base := pool.Masked().Addr().As4()
	first := binary.BigEndian.Uint32(base[:])
	for i := range n {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], first+uint32((start+i)%n)<<(32-subnetBits))
		cand := netip.PrefixFrom(netip.AddrFrom4(a), subnetBits)
		free := true
		for _, u := range used {
			if u.Overlaps(cand) {
				free = false
				break
			}
		}
		if free {
			return cand, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("vmnet: no free /%d left in the pool %v: %d VM networks or other addresses use it", subnetBits, pool, len(used))
}

// createTap allocates a subnet and makes its tap device, with its label
// and the host's address, up. Allocation and creation happen under the
// host-wide lock, so that two executors never take the same subnet.
func createTap(ctx context.Context, cfg Config) (_ *Network, err error) {
	alias, err := label(cfg.Owner, cfg.JobID, cfg.Workspace)
	if err != nil {
		return nil, err
	}
	unlock, err := hostlock.Lock(ctx, lockPath)
	if err != nil {
		return nil, fmt.Errorf("vmnet: %w", err)
	}
	defer unlock()
	used, err := usedPrefixes(cfg.Pool)
	if err != nil {
		return nil, err
	}
	start, err := rand.Int(rand.Reader, big.NewInt(1<<(subnetBits-cfg.Pool.Bits())))
	if err != nil {
		return nil, err
	}
	subnet, err := pick(cfg.Pool, used, int(start.Int64()))
	if err != nil {
		return nil, err
	}
	n := &Network{Tap: tapName(subnet), Subnet: subnet}
	n.Gateway = subnet.Addr().Next()
	n.Address = netip.PrefixFrom(n.Gateway.Next(), subnetBits)
	n.MAC = guestMAC(n.Address.Addr())
	tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: n.Tap}, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_NO_PI, Owner: cfg.TapOwner}
	if err := netlink.LinkAdd(tap); err != nil {
		return nil, fmt.Errorf("vmnet: create tap device %s (run as root; the kernel needs tun): %w", n.Tap, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, deleteLink(n.Tap))
		}
	}()
	if err := netlink.LinkSetAlias(tap, alias); err != nil {
		return nil, fmt.Errorf("vmnet: label tap %s: %w", n.Tap, err)
	}
	if err := disableIPv6(n.Tap); err != nil {
		return nil, err
	}
	host := &netlink.Addr{IPNet: &net.IPNet{IP: n.Gateway.AsSlice(), Mask: net.CIDRMask(subnetBits, 32)}}
	if err := netlink.AddrAdd(tap, host); err != nil {
		return nil, fmt.Errorf("vmnet: add %v to tap %s: %w", n.Gateway, n.Tap, err)
	}
	if err := netlink.LinkSetUp(tap); err != nil {
		return nil, fmt.Errorf("vmnet: bring tap %s up: %w", n.Tap, err)
	}
	return n, nil
}

// usedPrefixes returns the subnets of the host's IPv4 addresses, of its
// routes more specific than pool, and of the VMs' tap devices (one may
// have no address yet, or have lost it): a subnet overlapping one of
// them is not free.
func usedPrefixes(pool netip.Prefix) ([]netip.Prefix, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("vmnet: list the host's interfaces: %w", err)
	}
	var used []netip.Prefix
	for _, l := range links {
		if p, ok := tapSubnet(l.Attrs().Name); ok {
			used = append(used, p)
		}
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("vmnet: list the host's addresses: %w", err)
	}
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet); ok {
			used = append(used, p.Masked())
		}
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("vmnet: list the host's routes: %w", err)
	}
	for _, r := range routes {
		if p, ok := prefixOf(r.Dst); ok && p.Bits() >= pool.Bits() && p.Overlaps(pool) {
			used = append(used, p.Masked())
		}
	}
	return used, nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	ones, bits := n.Mask.Size()
	if !ok || bits == 0 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// deleteLink deletes the interface name; one that does not exist is no
// error.
func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return nil
	}
	if err == nil {
		err = netlink.LinkDel(l)
	}
	if err != nil {
		return fmt.Errorf("vmnet: delete %s: %w", name, err)
	}
	return nil
}

// disableIPv6 turns IPv6 off on the interface name, where the kernel has
// IPv6: the guest's network is IPv4 only, and the host's end of the tap
// then has no link-local address for the guest to try.
func disableIPv6(name string) error {
	path := "/proc/sys/net/ipv6/conf/" + name + "/disable_ipv6"
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("vmnet: turn IPv6 off on %s: %w", name, err)
	}
	return nil
}
