package docker_test

import (
	"context"
	"net/netip"
	"sync"
	"testing"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/docker"
)

// fakeFirewall records the bridges it was applied to and removed from.
type fakeFirewall struct {
	mu      sync.Mutex
	rules   map[string]netip.Prefix
	removes map[string]int
}

func (f *fakeFirewall) Apply(_ context.Context, bridge string, subnet netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rules == nil {
		f.rules = map[string]netip.Prefix{}
	}
	f.rules[bridge] = subnet
	return nil
}

func (f *fakeFirewall) Remove(_ context.Context, bridge string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removes == nil {
		f.removes = map[string]int{}
	}
	f.removes[bridge]++
	delete(f.rules, bridge)
	return nil
}

func (f *fakeFirewall) Bridges(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var bridges []string
	for b := range f.rules {
		bridges = append(bridges, b)
	}
	return bridges, nil
}

func (f *fakeFirewall) applied(bridge string) netip.Prefix {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rules[bridge]
}

func (f *fakeFirewall) removed(bridge string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, applied := f.rules[bridge]
	return f.removes[bridge] > 0 && !applied
}

// TestClean_FirewallRules: the janitor removes the rules of bridges that
// look like ours and whose network is gone, and no other.
func TestClean_FirewallRules(t *testing.T) {
	fw := &fakeFirewall{}
	rt := needRuntime(t, docker.Config{Firewall: fw})
	live, _ := prepare(t, rt, sandbox.Options{Network: sandbox.NetworkInternet})
	_, _, liveBridge := docker.SandboxInfo(live)
	ctx := context.Background()
	for _, b := range []string{"execd0123456789", "docker0", "execd-other"} {
		fw.Apply(ctx, b, netip.MustParsePrefix("172.30.0.0/16"))
	}
	if err := rt.Clean(ctx, func(sandbox.Leftover) bool { return false }); err != nil {
		t.Fatal(err)
	}
	for b, want := range map[string]bool{"execd0123456789": false, "docker0": true, "execd-other": true, liveBridge: true} {
		if got := fw.applied(b).IsValid(); got != want {
			t.Errorf("after Clean, bridge %s has rules: %v, want %v", b, got, want)
		}
	}
}
