package docker_test

import (
	"context"
	"fmt"
	"github.com/execd/execd/internal/sandbox/sandboxtest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

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

// TestClean_ExecutorKilled: an executor killed with SIGKILL in the middle
// of a step leaves its container running and its network; the janitor of
// another executor, told that the owner is dead, removes them, and leaves
// those of live owners alone.
func TestClean_ExecutorKilled(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *docker.Runtime) {
		gvisor := rt.Name() == "gvisor"
		dead := fmt.Sprintf("%s-dead-%d", testOwner, sandboxtest.Seq())
		opts := sandbox.Options{
			JobID: fmt.Sprintf("%d-killed", sandboxtest.Seq()), Owner: dead, Workspace: t.TempDir(),
			MemoryBytes: 64 << 20, PIDs: 64, CPUs: 1, Network: sandbox.NetworkInternet,
		}
		sandboxtest.StartHelper(t, docker.Config{GVisor: gvisor}, testImage, opts)()

		byOwner := docker.LabelOwner + "=" + dead
		if n := containersLabelled(t, rt, true, byOwner); len(n) != 1 {
			t.Fatalf("after the executor was killed, its step containers are %v; want its step's", n)
		}
		if n := networksLabelled(t, rt, byOwner); len(n) != 1 {
			t.Fatalf("after the executor was killed, its networks are %v; want its job's", n)
		}

		// A live sandbox of another owner, which the janitor must keep.
		live, _ := prepare(t, rt, sandbox.Options{Network: sandbox.NetworkInternet})
		liveID, liveNet, _ := docker.SandboxInfo(live)

		var seen []sandbox.Leftover
		var mu sync.Mutex
		stale := func(l sandbox.Leftover) bool {
			mu.Lock()
			seen = append(seen, l)
			mu.Unlock()
			return l.Owner == dead
		}
		start := time.Now()
		if err := rt.Clean(context.Background(), stale); err != nil {
			t.Fatalf("Clean: %v", err)
		}
		t.Logf("Clean took %v", time.Since(start))
		if n := containersLabelled(t, rt, false, byOwner); len(n) > 0 {
			for _, id := range n {
				c, _ := docker.Client(rt).ContainerInspect(context.Background(), id)
				t.Logf("left: %s %v %+v created %s", id[:12], c.Config.Labels, c.State, c.Created)
			}
			t.Errorf("containers %v of the dead executor left after Clean", n)
		}
		if n := networksLabelled(t, rt, byOwner); len(n) > 0 {
			t.Errorf("networks %v of the dead executor left after Clean", n)
		}
		if !networkExists(t, rt, liveNet) {
			t.Errorf("Clean removed the network of a live owner")
		}
		runOK(t, live, "true")
		_ = liveID
		found := false
		for _, l := range seen {
			if l.Owner == dead {
				found = true
				if l.JobID != opts.JobID || !strings.HasPrefix(l.Workspace, "/") {
					t.Errorf("leftover %+v, want job %s and its workspace", l, opts.JobID)
				}
			}
		}
		if !found {
			t.Errorf("stale was never asked about the dead executor's sandbox (asked about %+v)", seen)
		}
		// Nothing left: nothing to do.
		if err := rt.Clean(context.Background(), func(l sandbox.Leftover) bool { return l.Owner == dead }); err != nil {
			t.Errorf("second Clean: %v", err)
		}
	})
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
