package netpolicy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// dockerUser is docker's chain for the administrator's rules, which
// docker's FORWARD runs before its own.
const dockerUser = "DOCKER-USER"

// commentPrefix starts the comment of the jumps into a bridge's chains.
const commentPrefix = "execd:"

// family is one IP family's iptables commands and blocked ranges.
type family struct {
	name     string // "IPv4", "IPv6"
	iptables string // "iptables", "ip6tables"
	blocked  []netip.Prefix
}

func (f family) save() string    { return f.iptables + "-save" }
func (f family) restore() string { return f.iptables + "-restore" }

func ipv4() family {
	return family{name: "IPv4", iptables: "iptables", blocked: prefixes(
		"0.0.0.0/8",      // "this network"
		"10.0.0.0/8",     // private
		"100.64.0.0/10",  // carrier-grade NAT
		"127.0.0.0/8",    // loopback
		"169.254.0.0/16", // link-local, cloud metadata
		"172.16.0.0/12",  // private
		"192.168.0.0/16", // private
		"224.0.0.0/4",    // multicast
		"240.0.0.0/4",    // reserved, limited broadcast
	)}
}

func ipv6() family {
	return family{name: "IPv6", iptables: "ip6tables", blocked: prefixes(
		"::/127",        // unspecified, loopback
		"::ffff:0:0/96", // IPv4-mapped
		"fc00::/7",      // unique local
		"fe80::/10",     // link-local
		"fec0::/10",     // site-local (deprecated)
		"ff00::/8",      // multicast
	)}
}

func prefixes(s ...string) []netip.Prefix {
	ps := make([]netip.Prefix, len(s))
	for i, p := range s {
		ps[i] = netip.MustParsePrefix(p)
	}
	return ps
}

// rule is one rule: its chain and its match and target arguments.
type rule struct {
	chain string
	args  []string
}

func (r rule) String() string { return r.chain + " " + strings.Join(r.args, " ") }

// plan is a bridge's rules in one family's filter table.
type plan struct {
	fam            family
	forward, input string // the bridge's chains
	rules          []rule // the contents of forward and input, in order
	jumps          []rule // jumps into them, inserted at the top of their chains
}

// chainNames returns the names of a bridge's chains: a hash keeps them
// within iptables' 28 characters for any interface name.
func chainNames(bridge string) (forward, input string) {
	sum := sha256.Sum256([]byte(bridge))
	forward = "EXECD-" + strings.ToUpper(hex.EncodeToString(sum[:5]))
	return forward, forward + "-IN"
}

// options are a Firewall's exceptions to the policy.
type options struct {
	allowDNS  []netip.Addr
	allowTCP  []netip.AddrPort
	allowHost bool
	accept    bool
}

// opening is a service the policy lets sandboxes reach: a protocol and
// port of one address.
type opening struct {
	addr  netip.Addr
	proto string
	port  uint16
}

// openings returns the services of opts in fam: each resolver's port 53
// over UDP and TCP, then each TCP service.
func (opts options) openings(fam family) []opening {
	var o []opening
	for _, a := range opts.allowDNS {
		if a.Is4() == (fam.name == "IPv4") {
			o = append(o, opening{a, "udp", 53}, opening{a, "tcp", 53})
		}
	}
	for _, ap := range opts.allowTCP {
		if a := ap.Addr().Unmap(); a.Is4() == (fam.name == "IPv4") {
			o = append(o, opening{a, "tcp", ap.Port()})
		}
	}
	return o
}

// args are the rule arguments that match traffic to o.
func (o opening) args() []string {
	return []string{"-d", netip.PrefixFrom(o.addr, o.addr.BitLen()).String(), "-p", o.proto, "--dport", strconv.Itoa(int(o.port))}
}

// makePlan returns the rules of bridge in fam. When the subnet is of
// another family, the bridge is closed in fam.
func makePlan(fam family, bridge string, subnet netip.Prefix, opts options) plan {
	fwd, in := chainNames(bridge)
	p := plan{fam: fam, forward: fwd, input: in}
	comment := []string{"-m", "comment", "--comment", commentPrefix + bridge}
	p.jumps = []rule{
		{dockerUser, append(append([]string{"-i", bridge}, comment...), "-j", fwd)},
		{dockerUser, append(append([]string{"-o", bridge}, comment...), "-j", fwd)},
		{"INPUT", append(append([]string{"-i", bridge}, comment...), "-j", in)},
	}
	add := func(chain string, args ...string) { p.rules = append(p.rules, rule{chain, args}) }
	sameFamily := subnet.Addr().Is4() == (fam.name == "IPv4")

	// Forwarded traffic, in or out of the bridge. What passes returns to
	// the host's rules, or is accepted.
	pass := "RETURN"
	if opts.accept {
		pass = "ACCEPT"
	}
	add(fwd, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", pass)
	add(fwd, "-i", bridge, "-o", bridge, "-j", pass)
	add(fwd, "-o", bridge, "-j", "DROP")
	if !sameFamily {
		add(fwd, "-j", "DROP")
	} else {
		// Only traffic in from the bridge is left.
		add(fwd, "!", "-s", subnet.Masked().String(), "-j", "DROP")
		for _, o := range opts.openings(fam) {
			add(fwd, append(o.args(), "-j", pass)...)
		}
		for _, b := range fam.blocked {
			add(fwd, "-d", b.String(), "-j", "DROP")
		}
		if opts.accept {
			add(fwd, "-j", "ACCEPT")
		}
	}

	// The host's input from the bridge: with allowHost, the chain is empty.
	if !opts.allowHost {
		add(in, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN")
		if fam.name == "IPv6" {
			// Neighbour discovery, IPv6's ARP: the sandbox must resolve
			// the gateway, and a failed resolution lingers in its cache.
			for _, typ := range []string{"router-solicitation", "neighbour-solicitation", "neighbour-advertisement"} {
				add(in, "-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", typ, "-j", "RETURN")
			}
		}
		if sameFamily {
			for _, o := range opts.openings(fam) {
				add(in, append(o.args(), "-j", "RETURN")...)
			}
		}
		add(in, "-j", "DROP")
	}
	return p
}

// chains returns the plan's own chains.
func (p plan) chains() []string { return []string{p.forward, p.input} }

// restoreScript returns the iptables-restore --noflush input that writes
// the plan: it creates or empties the bridge's chains and fills them,
// creates DOCKER-USER and its jump from FORWARD when they are missing
// (st), and inserts the missing jumps. iptables-restore applies it as one
// transaction.
func (p plan) restoreScript(st state, present []bool) string {
	var b strings.Builder
	b.WriteString("*filter\n")
	if !st.chains[dockerUser] {
		fmt.Fprintf(&b, ":%s - [0:0]\n", dockerUser)
	}
	for _, c := range p.chains() {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c) // creates, or empties an existing chain
	}
	for _, r := range p.rules {
		fmt.Fprintf(&b, "-A %s\n", r)
	}
	if !st.forwardJump {
		fmt.Fprintf(&b, "-I FORWARD 1 -j %s\n", dockerUser)
	}
	for i, j := range p.jumps {
		if !present[i] {
			fmt.Fprintf(&b, "-I %s 1 %s\n", j.chain, strings.Join(j.args, " "))
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// state is what iptables-save shows of a family's filter table.
type state struct {
	chains      map[string]bool // chain names
	rules       []string        // "-A CHAIN ..." lines
	forwardJump bool            // FORWARD jumps to DOCKER-USER
}

// parseSave reads the output of iptables-save -t filter.
func parseSave(out string) state {
	st := state{chains: map[string]bool{}}
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			st.chains[name] = true
		case strings.HasPrefix(line, "-A "):
			st.rules = append(st.rules, line)
			if line == "-A FORWARD -j "+dockerUser {
				st.forwardJump = true
			}
		}
	}
	return st
}

// removeScript returns the iptables-restore --noflush input that deletes
// every rule jumping to one of chains and then the chains, or "" when
// there is nothing to delete.
func removeScript(st state, chains []string) string {
	var b strings.Builder
	for _, r := range st.rules {
		for _, c := range chains {
			if strings.HasSuffix(r, " -j "+c) && !strings.HasPrefix(r, "-A "+c+" ") {
				fmt.Fprintf(&b, "-D %s\n", strings.TrimPrefix(r, "-A "))
			}
		}
	}
	for _, c := range chains {
		if st.chains[c] {
			fmt.Fprintf(&b, "-F %s\n-X %s\n", c, c)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "*filter\n" + b.String() + "COMMIT\n"
}

// bridgesIn returns the bridges whose jumps are among the rules.
func bridgesIn(st state) []string {
	var bridges []string
	for _, r := range st.rules {
		_, after, ok := strings.Cut(r, "--comment ")
		if !ok {
			continue
		}
		c, _, _ := strings.Cut(after, " ")
		c = strings.Trim(c, `"`)
		if b, ok := strings.CutPrefix(c, commentPrefix); ok && b != "" {
			bridges = append(bridges, b)
		}
	}
	return bridges
}

// checkBridge refuses names that are not interface names, or that would
// be read as options or split by iptables.
func checkBridge(bridge string) error {
	if bridge == "" || len(bridge) > 15 || strings.HasPrefix(bridge, "-") {
		return fmt.Errorf("netpolicy: invalid bridge name %q: want an interface name of 1 to 15 characters", bridge)
	}
	for _, r := range bridge {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("netpolicy: invalid bridge name %q: only letters, digits, '-', '_' and '.' are supported", bridge)
		}
	}
	return nil
}
