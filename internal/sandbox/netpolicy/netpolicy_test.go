package netpolicy_test

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/execd/execd/internal/sandbox/netpolicy"
)

var (
	subnet0 = netip.MustParsePrefix("10.213.1.0/24")
	subnet1 = netip.MustParsePrefix("10.213.2.0/24")
)

// The policy, in a real kernel: before Apply everything is reachable (so
// that the test can fail); with it, only the internet; Remove restores
// the firewall exactly.
func TestFirewall_ApplyRemove(t *testing.T) {
	tp := newTopology(t)
	ctx := t.Context()
	fw := &netpolicy.Firewall{NetNS: tp.ns("host")}
	before := tp.rules(t)

	tp.wantReach(t, allProbes()...)
	if t.Failed() {
		t.Fatal("the topology is broken: not everything is reachable without the policy")
	}

	if err := fw.Apply(ctx, "execd-t0", subnet0); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	applied := tp.rules(t)
	t.Logf("rules after Apply(execd-t0, %v):\n%s", subnet0, applied)
	tp.wantReach(t, "internet")

	if err := fw.Apply(ctx, "execd-t0", subnet0); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	if got := tp.rules(t); got != applied {
		t.Errorf("rules after a second Apply:\n%s\nwant the same as after the first:\n%s", got, applied)
	}

	if err := fw.Remove(ctx, "execd-t0"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if got := tp.rules(t); got != before {
		t.Errorf("rules after Remove:\n%s\nwant those before Apply:\n%s", got, before)
	}
	tp.wantReach(t, allProbes()...)
	if err := fw.Remove(ctx, "execd-t0"); err != nil {
		t.Errorf("Remove with nothing to remove: %v", err)
	}
}

// Two job networks: each has its own rules, and removing one leaves the
// other's.
func TestFirewall_TwoBridges(t *testing.T) {
	tp := newTopology(t)
	ctx := t.Context()
	fw := &netpolicy.Firewall{NetNS: tp.ns("host")}
	before := tp.rules(t)

	if err := fw.Apply(ctx, "execd-t1", subnet1); err != nil {
		t.Fatalf("Apply(execd-t1): %v", err)
	}
	onlyT1 := tp.rules(t)
	if err := fw.Apply(ctx, "execd-t0", subnet0); err != nil {
		t.Fatalf("Apply(execd-t0): %v", err)
	}
	tp.wantReach(t, "internet")
	got, err := fw.Bridges(ctx)
	if want := []string{"execd-t0", "execd-t1"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("Bridges() = %q, %v, want %q", got, err, want)
	}

	if err := fw.Remove(ctx, "execd-t0"); err != nil {
		t.Fatalf("Remove(execd-t0): %v", err)
	}
	if got := tp.rules(t); got != onlyT1 {
		t.Errorf("rules after Remove(execd-t0):\n%s\nwant those of execd-t1 alone:\n%s", got, onlyT1)
	}
	// c0 is free again, but c1's sandbox is still closed both ways.
	tp.wantReach(t, "internet", "private host", "private DNS", "cloud metadata",
		"host via gateway", "host via public address", "host via IPv6 link-local")

	if err := fw.Remove(ctx, "execd-t1"); err != nil {
		t.Fatalf("Remove(execd-t1): %v", err)
	}
	if got := tp.rules(t); got != before {
		t.Errorf("rules after removing both:\n%s\nwant those before:\n%s", got, before)
	}
}

// AllowDNS opens port 53 of a private resolver, and AllowHost the host's
// addresses; the rest of the policy stays.
func TestFirewall_Exceptions(t *testing.T) {
	tp := newTopology(t)
	ctx := t.Context()
	fw := &netpolicy.Firewall{
		NetNS:     tp.ns("host"),
		AllowDNS:  []netip.Addr{netip.MustParseAddr("192.168.77.10")},
		AllowHost: true,
	}
	if err := fw.Apply(ctx, "execd-t0", subnet0); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	tp.wantReach(t, "internet", "private DNS", "host via gateway", "host via public address", "host via IPv6 link-local")

	// Applied again without the exceptions, the policy closes them.
	strict := &netpolicy.Firewall{NetNS: tp.ns("host")}
	if err := strict.Apply(ctx, "execd-t0", subnet0); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	tp.wantReach(t, "internet")
	if err := strict.Remove(ctx, "execd-t0"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
}

// AllowTCP opens one TCP port of a private address (a registry mirror's),
// and no other port of it.
func TestFirewall_AllowTCP(t *testing.T) {
	tp := newTopology(t)
	fw := &netpolicy.Firewall{NetNS: tp.ns("host"), AllowTCP: []netip.AddrPort{netip.MustParseAddrPort("192.168.77.10:8080")}}
	if err := fw.Apply(t.Context(), "execd-t0", subnet0); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	tp.wantReach(t, "internet", "private host")
	if err := fw.Remove(t.Context(), "execd-t0"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
}

// Without docker's DOCKER-USER chain, Apply creates it and the jump to it,
// once, even when several jobs start at the same time.
func TestFirewall_NoDockerUser(t *testing.T) {
	tp := newTopology(t)
	ctx := t.Context()
	for _, cmd := range []string{"iptables", "ip6tables"} {
		tp.in(t, "host", cmd, "-D", "FORWARD", "-j", "DOCKER-USER")
		tp.in(t, "host", cmd, "-X", "DOCKER-USER")
	}
	fw := &netpolicy.Firewall{NetNS: tp.ns("host")}
	var wg sync.WaitGroup
	for _, b := range []struct {
		name   string
		subnet netip.Prefix
	}{{"execd-t0", subnet0}, {"execd-t1", subnet1}} {
		wg.Go(func() {
			if err := fw.Apply(ctx, b.name, b.subnet); err != nil {
				t.Errorf("Apply(%s): %v", b.name, err)
			}
		})
	}
	wg.Wait()
	rules := tp.rules(t)
	if n := strings.Count(rules, "-A FORWARD -j DOCKER-USER\n"); n != 2 {
		t.Errorf("rules have %d jumps from FORWARD to DOCKER-USER, want one per family:\n%s", n, rules)
	}
	tp.wantReach(t, "internet")

	for _, b := range []string{"execd-t0", "execd-t1"} {
		if err := fw.Remove(ctx, b); err != nil {
			t.Fatalf("Remove(%s): %v", b, err)
		}
	}
	if rules := tp.rules(t); strings.Contains(rules, "EXECD") {
		t.Errorf("rules after Remove still name EXECD chains:\n%s", rules)
	}
}

// Check passes where iptables works and leaves nothing behind.
func TestFirewall_Check(t *testing.T) {
	tp := newTopology(t)
	fw := &netpolicy.Firewall{NetNS: tp.ns("host")}
	before := tp.rules(t)
	if err := fw.Check(t.Context()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if got := tp.rules(t); got != before {
		t.Errorf("rules after Check:\n%s\nwant unchanged:\n%s", got, before)
	}
}

// The rules of an IPv6 network load, and close its IPv4 entirely.
func TestFirewall_IPv6Network(t *testing.T) {
	tp := newTopology(t)
	ctx := t.Context()
	fw := &netpolicy.Firewall{NetNS: tp.ns("host"), AllowDNS: []netip.Addr{netip.MustParseAddr("fd00::53")}}
	before := tp.rules(t)
	if err := fw.Apply(ctx, "execd-t0", netip.MustParsePrefix("fd00:213::/64")); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	tp.wantReach(t)
	if err := fw.Remove(ctx, "execd-t0"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if got := tp.rules(t); got != before {
		t.Errorf("rules after Remove:\n%s\nwant those before Apply:\n%s", got, before)
	}
}
