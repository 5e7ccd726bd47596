package guestnet

import (
	"fmt"
	"net/netip"
	"strings"
)

// Cmdline returns c as kernel command line arguments, the way a monitor
// tells the agent its network: execd.ip=ADDR/PREFIX execd.gw=ADDR
// execd.dns=ADDR[,ADDR...] execd.mac=MAC (the names the agent's
// package vm/guest reads). [ParseCmdline] reads them back.
func (c Config) Cmdline() string {
	args := []string{"execd.ip=" + c.Address.String()}
	if c.Gateway.IsValid() {
		args = append(args, "execd.gw="+c.Gateway.String())
	}
	if len(c.DNS) > 0 {
		dns := make([]string, len(c.DNS))
		for i, a := range c.DNS {
			dns[i] = a.String()
		}
		args = append(args, "execd.dns="+strings.Join(dns, ","))
	}
	if c.MAC != "" {
		args = append(args, "execd.mac="+c.MAC)
	}
	return strings.Join(args, " ")
}

// ParseCmdline returns the network that a kernel command line (the
// content of /proc/cmdline) gives the guest; ok is false when it gives
// none (no execd.ip).
func ParseCmdline(cmdline string) (c Config, ok bool, err error) {
	for _, arg := range strings.Fields(cmdline) {
		key, value, _ := strings.Cut(arg, "=")
		switch key {
		case "execd.ip":
			ok = true
			c.Address, err = netip.ParsePrefix(value)
		case "execd.gw":
			c.Gateway, err = netip.ParseAddr(value)
		case "execd.dns":
			for d := range strings.SplitSeq(value, ",") {
				var a netip.Addr
				if a, err = netip.ParseAddr(d); err != nil {
					break
				}
				c.DNS = append(c.DNS, a)
			}
		case "execd.mac":
			c.MAC = value
		}
		if err != nil {
			return Config{}, false, fmt.Errorf("guestnet: kernel command line %s: %w", arg, err)
		}
	}
	if !ok {
		return Config{}, false, nil
	}
	return c, true, c.Validate()
}
