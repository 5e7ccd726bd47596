package vmnet_test

import (
	"context"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/netpolicy"
	"github.com/execd/execd/internal/sandbox/vm/vmnet"
	"github.com/execd/execd/internal/sandbox/vm/vmnet/guestnet"
	"github.com/execd/execd/internal/testutil"
	"github.com/execd/execd/internal/testutil/netns"
)

// privDNS is the private host, given to the VMs as their resolver.
var privDNS = netip.MustParseAddr("192.168.77.10")

// Two VMs' networks in a real kernel: a VM reaches the internet, through
// NAT, and its resolver, but neither private hosts, the cloud metadata
// endpoint, the host's services nor the other VM. Without the firewall's
// rules everything is reachable, so that the test can fail; after Remove
// the host is as before.
func TestSetup_Policy(t *testing.T) {
	tp := newTopology(t)
	if err := netns.Do(tp.ns("host"), func() error { return vmnet.Check(t.Context(), true) }); err != nil {
		t.Fatalf("Check: %v", err)
	}
	before := tp.leftovers(t)
	cfg := vmnet.Config{Owner: "executor-1", JobID: "1", DNS: []netip.Addr{privDNS}}
	n0 := tp.setup(t, cfg)
	cfg.JobID = "2"
	n1 := tp.setup(t, cfg)
	t.Logf("VM networks: %s %v, %s %v", n0.Tap, n0.Subnet, n1.Tap, n1.Subnet)
	if n0.Subnet.Overlaps(n1.Subnet) || n0.Tap == n1.Tap {
		t.Fatalf("two networks share %v/%s and %v/%s", n0.Subnet, n0.Tap, n1.Subnet, n1.Tap)
	}
	if got := strings.TrimSpace(netns.Run(t, tp.ns("host"), "sysctl", "-n", "net.ipv4.ip_forward")); got != "1" {
		t.Errorf("net.ipv4.ip_forward = %s after Setup, want 1", got)
	}
	vm0 := tp.vm(t, "vm0", n0)
	vm1 := tp.vm(t, "vm1", n1)
	// The agent's side: vm0's interface by name, vm1's by MAC address.
	for _, g := range []struct {
		ns, iface string
		n         *vmnet.Network
	}{{vm0, "eth0", n0}, {vm1, "", n1}} {
		if err := netns.Do(g.ns, func() error { return guestnet.Configure(g.iface, g.n.Guest()) }); err != nil {
			t.Fatalf("Configure in %s: %v", g.ns, err)
		}
	}
	if out := netns.Run(t, vm0, "ip", "route"); !strings.Contains(out, "default via "+n0.Gateway.String()+" dev eth0") {
		t.Errorf("vm0's routes:\n%s\nwant a default route via %v", out, n0.Gateway)
	}
	if out := netns.Run(t, tp.ns("host"), "ip", "-6", "addr", "show", "dev", n0.Tap); out != "" {
		t.Errorf("the tap has IPv6 addresses:\n%s", out)
	}

	probes := []netns.Probe{
		{Name: "internet, through NAT", From: vm0, Addr: "203.0.113.10:8080", Want: "inet from 203.0.113.1"},
		{Name: "internet from the other VM", From: vm1, Addr: "203.0.113.10:8080", Want: "inet from 203.0.113.1"},
		{Name: "private resolver's DNS port", From: vm0, Addr: "192.168.77.10:53", Want: "priv"},
		{Name: "private host", From: vm0, Addr: "192.168.77.10:8080", Want: "priv"},
		{Name: "cloud metadata", From: vm0, Addr: "169.254.169.254:80", Want: "meta"},
		{Name: "host via gateway", From: vm0, Addr: netip.AddrPortFrom(n0.Gateway, 8080).String(), Want: "host"},
		{Name: "host via its other address", From: vm0, Addr: "203.0.113.1:8080", Want: "host"},
		{Name: "host via the other VM's gateway", From: vm0, Addr: netip.AddrPortFrom(n1.Gateway, 8080).String(), Want: "host"},
		{Name: "other VM", From: vm0, Addr: netip.AddrPortFrom(n1.Address.Addr(), 8080).String(), Want: "vm1"},
		{Name: "from other VM", From: vm1, Addr: netip.AddrPortFrom(n0.Address.Addr(), 8080).String(), Want: "vm0"},
	}
	netns.WantReach(t, probes, "internet, through NAT", "internet from the other VM", "private resolver's DNS port")

	t.Run("without the firewall", func(t *testing.T) {
		host := tp.ns("host")
		for _, n := range []*vmnet.Network{n0, n1} {
			if err := netns.Do(host, func() error { return netpolicy.Remove(t.Context(), n.Tap) }); err != nil {
				t.Fatal(err)
			}
		}
		netns.Run(t, host, "iptables", "-P", "FORWARD", "ACCEPT")
		netns.WantReach(t, probes, netns.Names(probes)...)
		netns.Run(t, host, "iptables", "-P", "FORWARD", "DROP")
	})

	tp.remove(t, n0)
	tp.remove(t, n1)
	tp.remove(t, n1) // idempotent
	if got := tp.leftovers(t); got != before {
		t.Errorf("after Remove:\n%s\nwant as before Setup:\n%s", got, before)
	}
}

// Setups at once, as concurrent jobs and executors make them, get
// distinct subnets and taps; a subnet of the pool that the host uses is
// skipped, and a full pool is an error.
func TestSetup_Allocation(t *testing.T) {
	tp := newTopology(t)
	host := tp.ns("host")
	pool := netip.MustParsePrefix("10.213.0.0/27") // eight /30s
	netns.Run(t, host, "ip", "link", "add", "used", "type", "bridge")
	netns.Run(t, host, "ip", "addr", "add", "10.213.0.9/30", "dev", "used")
	const jobs = 7
	nets := make(chan *vmnet.Network, jobs)
	errs := make(chan error, jobs)
	for i := range jobs {
		go func() {
			n, err := tp.trySetup(t, vmnet.Config{Owner: "e", JobID: string(rune('a' + i)), Pool: pool, DNS: []netip.Addr{privDNS}})
			nets <- n
			errs <- err
		}()
	}
	var subnets []netip.Prefix
	for range jobs {
		n, err := <-nets, <-errs
		if err != nil {
			t.Errorf("Setup: %v", err)
			continue
		}
		if n.Subnet == netip.MustParsePrefix("10.213.0.8/30") {
			t.Errorf("Setup took the host's subnet %v", n.Subnet)
		}
		subnets = append(subnets, n.Subnet)
	}
	slices.SortFunc(subnets, netip.Prefix.Compare)
	if len(slices.Compact(slices.Clone(subnets))) != len(subnets) {
		t.Errorf("subnets given twice: %v", subnets)
	}
	if _, err := tp.trySetup(t, vmnet.Config{Pool: pool, DNS: []netip.Addr{privDNS}}); err == nil || !strings.Contains(err.Error(), "no free") {
		t.Errorf("Setup in a full pool: %v, want no free subnet", err)
	}
}

// The bandwidth limits hold in both directions: moving size bytes at
// rate takes at least what the token buckets allow (a lower bound: the
// test cannot be failed by a slow machine).
func TestSetup_Bandwidth(t *testing.T) {
	tp := newTopology(t)
	const rate, size = 1 << 20, 3 << 19 // 1 MiB/s, 1.5 MiB
	n := tp.setup(t, vmnet.Config{Owner: "e", JobID: "1", DNS: []netip.Addr{privDNS}, Bandwidth: vmnet.Bandwidth{Ingress: rate, Egress: rate}})
	if n.Bandwidth != (vmnet.Bandwidth{Ingress: rate, Egress: rate}) {
		t.Errorf("Network.Bandwidth = %+v", n.Bandwidth)
	}
	vm := tp.vm(t, "vm", n)
	if err := netns.Do(vm, func() error { return guestnet.Configure("eth0", n.Guest()) }); err != nil {
		t.Fatal(err)
	}
	serveBulk(t, tp.ns("inet"), "203.0.113.10", size)
	min := time.Duration(float64(size-64<<10) / rate * 0.9 * float64(time.Second))
	for _, up := range []bool{true, false} {
		d, err := transfer(vm, "203.0.113.10", size, up)
		t.Logf("up=%v: %d bytes in %v (at least %v)", up, size, d, min)
		if err != nil {
			t.Errorf("up=%v: %v", up, err)
		} else if d < min {
			t.Errorf("up=%v: %d bytes took %v at %d bytes/s, want at least %v", up, size, d, rate, min)
		}
	}
	host := tp.ns("host")
	ifb := "execdvb" + strings.TrimPrefix(n.Tap, vmnet.TapPrefix)
	if out := netns.Run(t, host, "tc", "qdisc", "show", "dev", n.Tap); !strings.Contains(out, "tbf") || !strings.Contains(out, "ingress") {
		t.Errorf("the tap's qdiscs:\n%s\nwant tbf and ingress", out)
	}
	if out := netns.Run(t, host, "tc", "qdisc", "show", "dev", ifb); !strings.Contains(out, "tbf") {
		t.Errorf("the ifb's qdiscs:\n%s\nwant tbf", out)
	}

	// A monitor with rate limiters of its own gets the limits, and no tc.
	fc := tp.setup(t, vmnet.Config{DNS: []netip.Addr{privDNS}, Bandwidth: vmnet.Bandwidth{Egress: rate}, MonitorShapes: true})
	if fc.Bandwidth.Egress != rate {
		t.Errorf("Network.Bandwidth = %+v with MonitorShapes", fc.Bandwidth)
	}
	if out := netns.Run(t, host, "tc", "qdisc", "show", "dev", fc.Tap); strings.Contains(out, "tbf") || strings.Contains(out, "ingress") {
		t.Errorf("with MonitorShapes, the tap's qdiscs:\n%s", out)
	}
	if out := netns.Run(t, host, "ip", "-o", "link"); strings.Contains(out, "execdvb"+strings.TrimPrefix(fc.Tap, vmnet.TapPrefix)) {
		t.Errorf("with MonitorShapes, an ifb device:\n%s", out)
	}
}

// The janitor removes the networks whose jobs are over, and what is left
// of taps that are gone, and nothing else.
func TestClean(t *testing.T) {
	tp := newTopology(t)
	host := tp.ns("host")
	before := tp.leftovers(t)
	bw := vmnet.Bandwidth{Ingress: 1 << 20, Egress: 1 << 20}
	dead := tp.setup(t, vmnet.Config{Owner: "dead", JobID: "1", DNS: []netip.Addr{privDNS}, Bandwidth: bw})
	live := tp.setup(t, vmnet.Config{Owner: "live", JobID: "2", DNS: []netip.Addr{privDNS}, Bandwidth: bw})
	gone := tp.setup(t, vmnet.Config{Owner: "live", JobID: "3", DNS: []netip.Addr{privDNS}, Bandwidth: bw})
	netns.Run(t, host, "ip", "link", "del", gone.Tap) // its rules and ifb remain
	var seen []sandbox.Leftover
	var removed []string
	err := netns.Do(host, func() (err error) {
		removed, err = vmnet.Clean(t.Context(), func(l sandbox.Leftover) bool {
			seen = append(seen, l)
			return l.Owner == "dead"
		})
		return err
	})
	if err != nil {
		t.Fatalf("Clean: %v", err)
	}
	slices.SortFunc(seen, func(a, b sandbox.Leftover) int { return strings.Compare(a.JobID, b.JobID) })
	if want := []sandbox.Leftover{{Owner: "dead", JobID: "1"}, {Owner: "live", JobID: "2"}}; !slices.Equal(seen, want) {
		t.Errorf("Clean asked about %+v, want %+v", seen, want)
	}
	want := []string{dead.Tap, gone.Tap}
	slices.Sort(want)
	if slices.Sort(removed); !slices.Equal(removed, want) {
		t.Errorf("Clean removed %q, want %q", removed, want)
	}
	out := netns.Run(t, host, "ip", "-o", "link")
	rules := netns.Tables(t, host, "filter", "nat")
	for _, tap := range []string{dead.Tap, gone.Tap} {
		if strings.Contains(out, strings.TrimPrefix(tap, vmnet.TapPrefix)) || strings.Contains(rules, tap) {
			t.Errorf("%s remains after Clean:\n%s\n%s", tap, out, rules)
		}
	}
	if !strings.Contains(out, live.Tap) || !strings.Contains(rules, "execd-vm:"+live.Tap) || !strings.Contains(rules, "execd:"+live.Tap) {
		t.Errorf("the live job's network is damaged:\n%s\n%s", out, rules)
	}
	tp.remove(t, live)
	if got := tp.leftovers(t); got != before {
		t.Errorf("after Clean and Remove:\n%s\nwant as before:\n%s", got, before)
	}
	cleanAll := func() (err error) {
		removed, err = vmnet.Clean(context.Background(), func(sandbox.Leftover) bool { return true })
		return err
	}
	if err := netns.Do(host, cleanAll); err != nil || len(removed) != 0 {
		t.Errorf("Clean of a clean host: %q, %v", removed, err)
	}
	// A host without iptables (its jobs have no network) has no rules.
	t.Setenv("PATH", t.TempDir())
	if err := netns.Do(host, cleanAll); err != nil || len(removed) != 0 {
		t.Errorf("Clean without iptables: %q, %v", removed, err)
	}
}

// QEMU opens the tap as its network device's back end, as the monitor
// will (-netdev tap,ifname=...,script=no,downscript=no): the tap gets its
// carrier. QEMU waits, stopped (-S), without a guest.
func TestSetup_QEMU(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		testutil.Missing(t, "qemu", "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	tp := newTopology(t)
	n := tp.setup(t, vmnet.Config{DNS: []netip.Addr{privDNS}})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-M", "microvm", "-accel", "tcg", "-nodefaults", "-no-user-config",
		"-display", "none", "-S",
		"-netdev", "tap,id=net0,ifname="+n.Tap+",script=no,downscript=no",
		"-device", "virtio-net-device,netdev=net0,mac="+n.MAC)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := netns.Do(tp.ns("host"), cmd.Start); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cancel()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		link := netns.Run(t, tp.ns("host"), "ip", "-o", "link", "show", n.Tap)
		if strings.Contains(link, "LOWER_UP") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("QEMU did not open tap %s:\n%s\nQEMU: %s", n.Tap, link, out.String())
		}
	}
}
