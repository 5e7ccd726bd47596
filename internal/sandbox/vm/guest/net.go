//go:build linux

package guest

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// netConfig is the guest's network, from the kernel command line:
// execd.ip=ADDR/PREFIX, execd.gw=ADDR, execd.dns=ADDR[,ADDR]. The
// monitor's caller, which made the tap, sets them.
type netConfig struct {
	addr netip.Prefix
	gw   netip.Addr
	dns  []string
}

func parseNetConfig(cmdline string) (*netConfig, error) {
	ip, ok := cmdlineValue(cmdline, "execd.ip")
	if !ok {
		return nil, nil
	}
	var c netConfig
	var err error
	if c.addr, err = netip.ParsePrefix(ip); err != nil || !c.addr.Addr().Is4() {
		return nil, fmt.Errorf("execd.ip=%q: want an IPv4 ADDR/PREFIX", ip)
	}
	if gw, ok := cmdlineValue(cmdline, "execd.gw"); ok {
		if c.gw, err = netip.ParseAddr(gw); err != nil || !c.gw.Is4() {
			return nil, fmt.Errorf("execd.gw=%q: want an IPv4 address", gw)
		}
	}
	if dns, ok := cmdlineValue(cmdline, "execd.dns"); ok {
		for d := range strings.SplitSeq(dns, ",") {
			if _, err := netip.ParseAddr(d); err != nil {
				return nil, fmt.Errorf("execd.dns=%q: %v", dns, err)
			}
			c.dns = append(c.dns, d)
		}
	}
	return &c, nil
}

// resolvConf is the steps' /etc/resolv.conf, "" for none.
func (c *netConfig) resolvConf() string {
	if c == nil || len(c.dns) == 0 {
		return ""
	}
	var b strings.Builder
	for _, d := range c.dns {
		fmt.Fprintf(&b, "nameserver %s\n", d)
	}
	return b.String()
}

// setupNetwork brings lo up and, with a configuration, eth0 with its
// address and default route.
func setupNetwork(c *netConfig) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := linkUp(fd, "lo"); err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	if c == nil {
		return nil
	}
	const dev = "eth0"
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, err := os.Stat("/sys/class/net/" + dev); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %s (the VM has no network device)", dev)
		}
		time.Sleep(5 * time.Millisecond)
	}
	ifr, err := unix.NewIfreq(dev)
	if err != nil {
		return err
	}
	if err := ifr.SetInet4Addr(c.addr.Addr().AsSlice()); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFADDR, ifr); err != nil {
		return fmt.Errorf("%s address: %w", dev, err)
	}
	m := uint32(0xffffffff) << (32 - c.addr.Bits())
	if c.addr.Bits() == 0 {
		m = 0
	}
	ifr.SetInet4Addr(binary.BigEndian.AppendUint32(nil, m))
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFNETMASK, ifr); err != nil {
		return fmt.Errorf("%s netmask: %w", dev, err)
	}
	if err := linkUp(fd, dev); err != nil {
		return fmt.Errorf("%s: %w", dev, err)
	}
	if c.gw.IsValid() {
		if err := addDefaultRoute(c.gw); err != nil {
			return fmt.Errorf("default route via %s: %w", c.gw, err)
		}
	}
	return nil
}

func linkUp(fd int, name string) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// addDefaultRoute adds 0.0.0.0/0 via gw with one rtnetlink request.
func addDefaultRoute(gw netip.Addr) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	attr := make([]byte, 8) // rtattr (4) + IPv4 (4)
	binary.NativeEndian.PutUint16(attr[0:], 8)
	binary.NativeEndian.PutUint16(attr[2:], unix.RTA_GATEWAY)
	copy(attr[4:], gw.AsSlice())
	rtm := []byte{unix.AF_INET, 0, 0, 0, unix.RT_TABLE_MAIN, unix.RTPROT_BOOT, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST, 0, 0, 0, 0}
	body := append(rtm, attr...)
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(unix.SizeofNlMsghdr+len(body)))
	binary.NativeEndian.PutUint16(msg[4:], unix.RTM_NEWROUTE)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	binary.NativeEndian.PutUint32(msg[8:], 1)
	msg = append(msg, body...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return err
	}
	if n >= unix.SizeofNlMsghdr+4 && binary.NativeEndian.Uint16(buf[4:]) == unix.NLMSG_ERROR {
		if code := int32(binary.NativeEndian.Uint32(buf[unix.SizeofNlMsghdr:])); code != 0 {
			return unix.Errno(-code)
		}
	}
	return nil
}
