package docker_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/docker"
	"github.com/execd/execd/internal/sandbox/netpolicy"
	"github.com/execd/execd/internal/testutil"
	"github.com/execd/execd/internal/testutil/netns"
)

// e2eHost is a host around the executor's machine, in a network
// namespace of its own, linked to the root namespace by a veth pair whose
// ends have point-to-point addresses of TEST-NET-2 (198.51.100.0/24);
// addr is routed to it from the root namespace.
type e2eHost struct {
	name     string // the greeting of its server, and the probe's name
	addr     string // its service address, on its eth0
	rootSide string // 198.51.100.x/30 of the root-side veth
	nsSide   string // 198.51.100.y/30 of its eth0
}

var e2eHosts = []e2eHost{
	{"internet", "203.0.113.10", "198.51.100.1", "198.51.100.2"},
	{"private", "192.168.77.10", "198.51.100.5", "198.51.100.6"},
	{"metadata", "169.254.169.254", "198.51.100.9", "198.51.100.10"},
}

const e2ePort = 8080

// e2eTopology creates the hosts, each running a TCP server on port 8080
// that greets with its name, and turns forwarding on in the root
// namespace. Everything is undone when the test ends.
func e2eTopology(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("iptables"); err != nil {
		testutil.Missing(t, "netns", "the network policy needs iptables (apt-get install iptables): "+err.Error())
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		testutil.Missing(t, "netns", fmt.Sprintf("ip netns: %v: %s", err, out))
	}
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	prev, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", prev, 0o644); err != nil {
			t.Errorf("restore net.ipv4.ip_forward: %v", err)
		}
	})
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, h := range e2eHosts {
		ns := fmt.Sprintf("execd-e2e%d-%s", os.Getpid(), h.name)
		veth := fmt.Sprintf("xe2e%d-%d", os.Getpid()%100000, i)
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			testutil.Missing(t, "netns", fmt.Sprintf("ip netns add: %v: %s", err, out))
		}
		t.Cleanup(func() {
			exec.Command("ip", "route", "del", h.addr+"/32").Run()
			exec.Command("ip", "link", "del", veth).Run()
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
		in := func(args ...string) { t.Helper(); sh(append([]string{"ip", "netns", "exec", ns}, args...)...) }
		in("ip", "link", "set", "lo", "up")
		sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
		sh("ip", "addr", "add", h.rootSide+"/30", "dev", veth)
		sh("ip", "link", "set", veth, "up")
		in("ip", "addr", "add", h.nsSide+"/30", "dev", "eth0")
		in("ip", "addr", "add", h.addr+"/32", "dev", "eth0")
		in("ip", "link", "set", "eth0", "up")
		// Back to the root namespace, hence to the job networks' subnets.
		in("ip", "route", "add", "default", "via", h.rootSide)
		sh("ip", "route", "add", h.addr+"/32", "via", h.nsSide, "dev", veth)
		netns.Serve(t, ns, fmt.Sprintf("%s:%d", h.addr, e2ePort), h.name)
	}
}

// The job network policy with real containers and the real firewall: a
// job's container reaches the internet, but neither private hosts, the
// cloud metadata endpoint, the host itself nor another job's container.
// Without a firewall all of them are reachable (but the other job where
// dockerd isolates its networks itself), so that the test can fail.
func TestNetworkPolicy_EndToEnd(t *testing.T) {
	e2eTopology(t)
	all := []string{"internet", "private", "metadata", "host", "other job"}
	for _, r := range runtimes {
		t.Run(r.name, func(t *testing.T) {
			open := needRuntime(t, docker.Config{GVisor: r.gvisor})
			strict := needRuntime(t, docker.Config{GVisor: r.gvisor, Firewall: &netpolicy.Firewall{}})
			t.Run("without firewall", func(t *testing.T) {
				reachable := all
				if dockerIsolatesNetworks() {
					// dockerd with its default settings drops traffic
					// between its networks itself.
					reachable = all[:4]
				}
				wantReachable(t, e2eProbe(t, open), all, reachable)
			})
			t.Run("with firewall", func(t *testing.T) {
				wantReachable(t, e2eProbe(t, strict), all, []string{"internet"})
			})
		})
	}
}

// dockerIsolatesNetworks reports whether dockerd manages the firewall
// (its default, unlike CI's --iptables=false) and so drops traffic between
// its networks: its isolation chain exists.
func dockerIsolatesNetworks() bool {
	return exec.Command("iptables", "-w", "-S", "DOCKER-ISOLATION-STAGE-1").Run() == nil
}

func wantReachable(t *testing.T, got map[string]bool, all, reachable []string) {
	t.Helper()
	for _, name := range all {
		want := false
		for _, r := range reachable {
			want = want || r == name
		}
		if got[name] != want {
			t.Errorf("%s: reachable = %v, want %v", name, got[name], want)
		}
	}
}

// e2eProbe prepares two jobs with the internet, A and B, and reports what
// a container of job A reaches: the hosts of the topology, a server of
// the test process on A's gateway address (the host), and a server in
// B's container.
func e2eProbe(t *testing.T, rt *docker.Runtime) map[string]bool {
	t.Helper()
	// Job B listens on port 9000 until its workspace has a file "done".
	sbB, optsB, _ := e2ePrepare(t, rt)
	w := newStartedWriter("ready\n")
	doneB := make(chan error, 1)
	ctxB, cancelB := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancelB()
	go func() {
		_, err := sbB.Run(ctxB, step(
			`ipaddr=$(ip -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}' | cut -d/ -f1)`,
			`[ -n "$ipaddr" ] || ipaddr=$(hostname -i)`,
			`echo "ip=$ipaddr"`,
			`(echo jobB | nc -l -p 9000) &`,
			`sleep 0.3`,
			`echo ready`,
			`while [ ! -e /workspace/done ]; do sleep 0.1; done`,
		), sandbox.Output{Stdout: w, Stderr: w})
		doneB <- err
	}()
	defer func() {
		os.WriteFile(optsB.Workspace+"/done", nil, 0o644)
		if err := <-doneB; err != nil {
			t.Errorf("job B's step: %v", err)
		}
	}()
	select {
	case <-w.started:
	case err := <-doneB:
		doneB <- err
		t.Fatalf("job B's step ended before listening: %v\n%s", err, w.buf.String())
	case <-time.After(90 * time.Second):
		t.Fatalf("job B's step not listening after 90s:\n%s", w.buf.String())
	}
	w.mu.Lock()
	outB := w.buf.String()
	w.mu.Unlock()
	var ipB string
	for line := range strings.Lines(outB) {
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), "ip="); ok {
			ipB = s
		}
	}
	if _, err := netip.ParseAddr(ipB); err != nil {
		t.Fatalf("job B's address %q: %v\n%s", ipB, err, outB)
	}

	// Job A probes.
	sbA, _, gw := e2ePrepare(t, rt)
	hostLn, err := net.Listen("tcp", net.JoinHostPort(gw.String(), "0"))
	if err != nil {
		t.Fatalf("listen on the gateway %s: %v", gw, err)
	}
	hostLn.Close()
	hostAddr := hostLn.Addr().String()
	netns.Serve(t, "", hostAddr, "host")

	targets := map[string]string{"other job": net.JoinHostPort(ipB, "9000"), "host": hostAddr}
	greeting := map[string]string{"other job": "jobB", "host": "host"}
	for _, h := range e2eHosts {
		targets[h.name] = fmt.Sprintf("%s:%d", h.addr, e2ePort)
		greeting[h.name] = h.name
	}
	var cmds []string
	for name, addr := range targets {
		host, port, _ := net.SplitHostPort(addr)
		cmds = append(cmds, fmt.Sprintf(`(echo "probe %s: $(nc -w 3 %s %s </dev/null 2>&1 | head -n 1)") &`,
			strings.ReplaceAll(name, " ", "_"), host, port))
	}
	cmds = append(cmds, "wait")
	out := runOK(t, sbA, cmds...)
	t.Logf("%s: job A probed (job B at %s, host at %s):\n%s", rt.Name(), ipB, hostAddr, out)
	got := make(map[string]bool)
	for name := range targets {
		prefix := "probe " + strings.ReplaceAll(name, " ", "_") + ": "
		for line := range strings.Lines(out) {
			if s, ok := strings.CutPrefix(strings.TrimSpace(line), strings.TrimSpace(prefix)); ok {
				got[name] = strings.TrimSpace(s) == greeting[name]
			}
		}
	}
	return got
}

// e2ePrepare prepares a sandbox with the internet whose subnet holds
// none of the topology's addresses (docker's pools include
// 192.168.64.0/20): it prepares again while it does, keeping the
// sandboxes it skips until the test ends, so that docker moves on. It
// returns the network's gateway.
func e2ePrepare(t *testing.T, rt *docker.Runtime) (sandbox.Sandbox, sandbox.Options, netip.Addr) {
	t.Helper()
	for range 8 {
		sb, opts := prepare(t, rt, sandbox.Options{Network: sandbox.NetworkInternet})
		if gw, ok := e2eCheckSubnet(t, rt, sb); ok {
			return sb, opts, gw
		}
	}
	t.Fatal("docker keeps giving job networks subnets that hold the test's hosts")
	return nil, sandbox.Options{}, netip.Addr{}
}

// e2eCheckSubnet returns the gateway of a sandbox's network, and whether
// its subnet holds none of the topology's addresses.
func e2eCheckSubnet(t *testing.T, rt *docker.Runtime, sb sandbox.Sandbox) (netip.Addr, bool) {
	t.Helper()
	_, netID, _ := docker.SandboxInfo(sb)
	n, err := docker.Client(rt).NetworkInspect(context.Background(), netID, network.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range n.IPAM.Config {
		p, err := netip.ParsePrefix(c.Subnet)
		if err != nil || !p.Addr().Is4() {
			continue
		}
		gw, err := netip.ParseAddr(c.Gateway)
		if err != nil {
			t.Fatalf("network %s: gateway %q: %v", n.Name, c.Gateway, err)
		}
		for _, h := range e2eHosts {
			if p.Contains(netip.MustParseAddr(h.addr)) {
				t.Logf("the job network's subnet %s holds the test's host %s: preparing another", p, h.addr)
				return gw, false
			}
		}
		return gw, true
	}
	t.Fatalf("network %s has no IPv4 subnet: %+v", n.Name, n.IPAM.Config)
	return netip.Addr{}, false
}
