// Package guestnet is the guest's side of a micro-VM's network: the
// agent (the VM's init) calls [Configure] with the [Config] the host
// sent it (in JSON, or on the kernel command line: [Config.Cmdline],
// [ParseCmdline]), and writes [ResolvConf] to /etc/resolv.conf of the
// steps' root. The host side is package vmnet, whose Network.Guest makes
// the Config.
//
// The package talks rtnetlink to the kernel with golang.org/x/sys/unix
// alone: it is linked into the agent's small static binary
// (CGO_ENABLED=0).
package guestnet

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Config is the guest's network, as the host sends it to the agent (in
// JSON: addresses are strings such as "10.213.0.2/30").
type Config struct {
	// Address is the guest's address and the prefix of its subnet, such
	// as 10.213.0.2/30.
	Address netip.Prefix `json:"address"`
	// Gateway is the host's end of the link: the default route.
	Gateway netip.Addr `json:"gateway"`
	// DNS are the resolvers for /etc/resolv.conf, in order.
	DNS []netip.Addr `json:"dns,omitempty"`
	// MAC is the guest interface's hardware address, which the host gave
	// the VM's network device; "" when unknown. [Configure] finds the
	// interface by it when asked for no name.
	MAC string `json:"mac,omitempty"`
	// MTU, when not 0, is set on the interface.
	MTU int `json:"mtu,omitempty"`
}

// Validate reports what makes c unusable.
func (c Config) Validate() error {
	if !c.Address.IsValid() || !c.Address.Addr().Is4() || c.Address.Bits() > 30 {
		return fmt.Errorf("guestnet: address %v: want an IPv4 address with a prefix of at most /30", c.Address)
	}
	if !c.Gateway.Is4() || !c.Address.Contains(c.Gateway) || c.Gateway == c.Address.Addr() {
		return fmt.Errorf("guestnet: gateway %v: want another address of %v", c.Gateway, c.Address.Masked())
	}
	if c.MAC != "" {
		if _, err := net.ParseMAC(c.MAC); err != nil {
			return fmt.Errorf("guestnet: MAC %q: %w", c.MAC, err)
		}
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535) {
		return fmt.Errorf("guestnet: MTU %d out of range", c.MTU)
	}
	return nil
}

// Configure sets up the guest's network: lo up, iface (or, when iface
// is "", the interface whose hardware address is cfg.MAC) with
// cfg.Address, its MTU, up, and the default route via cfg.Gateway. It
// waits up to two seconds for the interface to appear (its driver may
// still be probing the device). It needs CAP_NET_ADMIN in the network
// namespace; configured again, it replaces what it set.
func Configure(iface string, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	var ifi *net.Interface
	var err error
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ifi, err = findInterface(iface, cfg.MAC); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return err
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return fmt.Errorf("guestnet: the loopback interface: %w", err)
	}
	c, err := dial()
	if err != nil {
		return fmt.Errorf("guestnet: %w", err)
	}
	defer c.close()
	if err := c.setLink(lo.Index, 0); err != nil {
		return fmt.Errorf("guestnet: bring lo up: %w", err)
	}
	if err := c.addAddr(ifi.Index, cfg.Address); err != nil {
		return fmt.Errorf("guestnet: add %v to %s: %w", cfg.Address, ifi.Name, err)
	}
	if err := c.setLink(ifi.Index, cfg.MTU); err != nil {
		return fmt.Errorf("guestnet: bring %s up: %w", ifi.Name, err)
	}
	if err := c.addDefaultRoute(ifi.Index, cfg.Gateway); err != nil {
		return fmt.Errorf("guestnet: default route via %v on %s: %w", cfg.Gateway, ifi.Name, err)
	}
	return nil
}

// findInterface returns the interface named name, or when name is "",
// the one whose hardware address is mac.
func findInterface(name, mac string) (*net.Interface, error) {
	if name != "" {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("guestnet: interface %s: %w", name, err)
		}
		return ifi, nil
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return nil, errors.New("guestnet: no interface named, and no MAC address to find it by")
	}
	all, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("guestnet: list the interfaces: %w", err)
	}
	for _, ifi := range all {
		if bytes.Equal(ifi.HardwareAddr, hw) {
			return &ifi, nil
		}
	}
	return nil, fmt.Errorf("guestnet: no interface has the MAC address %s (is the VM's network device's driver, virtio_net, loaded?)", hw)
}

// ResolvConf returns the content of /etc/resolv.conf for cfg: its DNS
// servers, at most three (the C library reads no more).
func ResolvConf(cfg Config) []byte {
	var b bytes.Buffer
	b.WriteString("# Written by the execd VM agent: the host's resolvers.\n")
	for i, a := range cfg.DNS {
		if i == 3 {
			break
		}
		fmt.Fprintf(&b, "nameserver %s\n", a)
	}
	return b.Bytes()
}
