package netpolicy_test

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/execd/execd/internal/testutil"
	"github.com/execd/execd/internal/testutil/netns"
)

// topology is a little network in namespaces of its own, playing the
// host of two job networks, with hosts around it:
//
//	ns c0 10.213.1.2 (sandbox) --- execd-t0 10.213.1.1, fe80::1 ---+
//	ns c1 10.213.2.2 (sandbox) --- execd-t1 10.213.2.1 ------------+ ns host: forwards,
//	ns inet 203.0.113.10 (the internet) ---- 203.0.113.1 ----------+ masquerades the
//	ns priv 192.168.77.10 (a private host) --- 192.168.77.1 -------+ sandboxes' traffic
//	ns meta 169.254.169.254 (cloud metadata) --- 169.254.0.1 ------+
//
// Each of c0, c1, inet, priv, meta and host runs a TCP server on port
// 8080 (meta on 80, priv also on 53) that greets with its name. The
// host's firewall starts as docker leaves it: an empty DOCKER-USER chain
// that FORWARD jumps to first. Nothing of it touches the test's own
// network namespace.
type topology struct {
	prefix string // of the namespaces' names
}

// ns returns the name of one of the topology's namespaces.
func (tp *topology) ns(name string) string { return tp.prefix + "-" + name }

func newTopology(t *testing.T) *topology {
	t.Helper()
	if _, err := exec.LookPath("iptables"); err != nil {
		testutil.Missing(t, "netns", "the firewall tests need iptables (apt-get install iptables): "+err.Error())
	}
	tp := &topology{prefix: fmt.Sprintf("execd-np%d", os.Getpid())}
	names := []string{"host", "c0", "c1", "inet", "priv", "meta"}
	for _, n := range names {
		netns.Add(t, tp.ns(n))
	}
	tp.in(t, "host", "sysctl", "-qw", "net.ipv4.ip_forward=1")
	for i, br := range []string{"execd-t0", "execd-t1"} {
		gw := fmt.Sprintf("10.213.%d.1/24", i+1)
		tp.in(t, "host", "ip", "link", "add", br, "type", "bridge")
		tp.in(t, "host", "ip", "addr", "add", gw, "dev", br)
		tp.link(t, fmt.Sprintf("c%d", i), fmt.Sprintf("10.213.%d.2/24", i+1), fmt.Sprintf("10.213.%d.1", i+1), fmt.Sprintf("p%d", i), "")
		tp.in(t, "host", "ip", "link", "set", fmt.Sprintf("p%d", i), "master", br)
		tp.in(t, "host", "ip", "link", "set", br, "up")
	}
	tp.in(t, "host", "ip", "-6", "addr", "add", "fe80::1/64", "dev", "execd-t0", "nodad")
	tp.link(t, "inet", "203.0.113.10/24", "203.0.113.1", "up-inet", "203.0.113.1/24")
	tp.link(t, "priv", "192.168.77.10/24", "192.168.77.1", "up-priv", "192.168.77.1/24")
	tp.link(t, "meta", "169.254.169.254/16", "169.254.0.1", "up-meta", "169.254.0.1/16")
	tp.in(t, "host", "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.213.0.0/16", "!", "-o", "execd-t+", "-j", "MASQUERADE")
	for _, cmd := range []string{"iptables", "ip6tables"} {
		tp.in(t, "host", cmd, "-N", "DOCKER-USER")
		tp.in(t, "host", cmd, "-I", "FORWARD", "-j", "DOCKER-USER")
	}

	tp.serve(t, "c0", "10.213.1.2:8080")
	tp.serve(t, "c1", "10.213.2.2:8080")
	tp.serve(t, "inet", "203.0.113.10:8080")
	tp.serve(t, "priv", "192.168.77.10:8080")
	tp.serve(t, "priv", "192.168.77.10:53")
	tp.serve(t, "meta", "169.254.169.254:80")
	tp.serve(t, "host", ":8080") // every address of the host, IPv4 and IPv6
	return tp
}

// link connects namespace name to the host with a veth pair: eth0 in name
// with addr and a default route via gw; hostSide in the host, with
// hostAddr unless empty.
func (tp *topology) link(t *testing.T, name, addr, gw, hostSide, hostAddr string) {
	t.Helper()
	netns.Link(t, tp.ns("host"), hostSide, hostAddr, tp.ns(name), addr, gw)
}

// in runs a command in namespace name and returns its output.
func (tp *topology) in(t *testing.T, name string, args ...string) string {
	t.Helper()
	return netns.Run(t, tp.ns(name), args...)
}

// serve runs a TCP server greeting with name at addr in namespace name
// until the test ends.
func (tp *topology) serve(t *testing.T, name, addr string) {
	t.Helper()
	netns.Serve(t, tp.ns(name), addr, name)
}

// probe is a connection a test tries: from a namespace to an address,
// whose server should greet as want.
type probe struct {
	name string
	from string
	addr string
	want string
}

// probes are the connections that the policy decides, from sandbox c0
// unless said otherwise.
var probes = []probe{
	{"internet", "c0", "203.0.113.10:8080", "inet"},
	{"private host", "c0", "192.168.77.10:8080", "priv"},
	{"private DNS", "c0", "192.168.77.10:53", "priv"},
	{"cloud metadata", "c0", "169.254.169.254:80", "meta"},
	{"host via gateway", "c0", "10.213.1.1:8080", "host"},
	{"host via public address", "c0", "203.0.113.1:8080", "host"},
	{"host via IPv6 link-local", "c0", "[fe80::1%eth0]:8080", "host"},
	{"other sandbox", "c0", "10.213.2.2:8080", "c1"},
	{"from other sandbox", "c1", "10.213.1.2:8080", "c0"},
}

// wantReach fails the test for every probe whose outcome is not the
// expected one: reachable are the probes that must connect, the others
// must not.
func (tp *topology) wantReach(t *testing.T, reachable ...string) {
	t.Helper()
	var ps []netns.Probe
	for _, p := range probes {
		ps = append(ps, netns.Probe{Name: p.name, From: tp.ns(p.from), Addr: p.addr, Want: p.want})
	}
	netns.WantReach(t, ps, reachable...)
}

// allProbes names every probe.
func allProbes() []string {
	var names []string
	for _, p := range probes {
		names = append(names, p.name)
	}
	return names
}

// rules returns the host's filter tables, IPv4 then IPv6, without the
// comment lines and counters of iptables-save.
func (tp *topology) rules(t *testing.T) string {
	t.Helper()
	return netns.Tables(t, tp.ns("host"), "filter")
}
