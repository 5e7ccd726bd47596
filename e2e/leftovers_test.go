package e2e_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"github.com/execd/execd/internal/sandbox/netpolicy"
	"github.com/execd/execd/internal/sandbox/vm/vmnet"
)

// leftovers lists what jobs of system s left in dockerd: containers
// (step and network holder) and networks whose workspace is in s's
// directory, and the firewall rules of bridges that have no network
// (rules are applied after their network is made, and removed before
// it, so on this host, other tests' included, rules without a network
// are leftovers).
func leftovers(t *testing.T, s *system, cli *client.Client) []string {
	t.Helper()
	ctx := context.Background()
	managed := filters.NewArgs(filters.Arg("label", "execd.managed=true"))
	var left []string
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: managed})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if strings.HasPrefix(c.Labels["execd.workspace"], s.dir+"/") {
			left = append(left, fmt.Sprintf("container %s %v (%s)", c.ID[:12], c.Names, c.State))
		}
	}
	ns, err := cli.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var bridges []string
	for _, n := range ns {
		bridges = append(bridges, n.Options["com.docker.network.bridge.name"])
		if strings.HasPrefix(n.Labels["execd.workspace"], s.dir+"/") {
			left = append(left, "network "+n.Name)
		}
	}
	ruled, err := netpolicy.Bridges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range ruled {
		// A VM's tap (vmnet) is not a docker bridge: VM tests may run
		// beside these.
		if strings.HasPrefix(b, "execd") && !strings.HasPrefix(b, vmnet.TapPrefix) && !slices.Contains(bridges, b) {
			left = append(left, "firewall rules of bridge "+b)
		}
	}
	return left
}

// waitNoLeftovers waits until s's jobs left nothing behind.
func waitNoLeftovers(t *testing.T, s *system, cli *client.Client, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := leftovers(t, s, cli)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind %v after:\n%s", timeout, strings.Join(left, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestE2E_ContainerNothingLeft: sandboxes are removed after their job is
// marked; nothing of them is left once the executor exits, nor after it
// is killed right after its jobs were marked (the next executor's
// janitor removes what the teardown had not), with a network of the
// job's own (containers, the network and its firewall rules) or none.
func TestE2E_ContainerNothingLeft(t *testing.T) {
	forEachContainerRuntime(t, func(t *testing.T, name string, cli *client.Client) {
		for _, net := range []string{"internet", "none"} {
			t.Run("network="+net, func(t *testing.T) {
				s := newContainerSystem(t, name, `{"stalledAge": "8s"}`)
				submit := func() []int {
					return []int{
						s.submit(fmt.Sprintf(`{"dockerSteps": [{"image": %q, "commands": ["true"]}]}`, testImage)),
						s.submit(fmt.Sprintf(`{"dockerSteps": [{"image": %q, "commands": ["echo one"]}, {"image": %q, "commands": ["echo two"]}]}`, testImage, testImage)),
					}
				}

				// The executor exits after its jobs: it waits for their
				// teardown.
				ids := submit()
				exec := s.startExecutor("EXECUTOR_RUNTIME="+name, "EXECUTOR_JOB_NETWORK="+net, "EXECUTOR_NUM_TOTAL_JOBS=2")
				for _, id := range ids {
					s.waitState(id, 2*time.Minute, "completed")
				}
				select {
				case <-exec.done:
				case <-time.After(time.Minute):
					t.Fatalf("the executor did not exit after EXECUTOR_NUM_TOTAL_JOBS jobs:\n%s", exec.log)
				}
				if left := leftovers(t, s, cli); len(left) > 0 {
					t.Fatalf("left behind once the executor exited:\n%s", strings.Join(left, "\n"))
				}

				// Killed as soon as its jobs are marked, while their
				// teardown may run: the next executor's janitor removes
				// the rest when it starts.
				ids = submit()
				exec = s.startExecutor("EXECUTOR_RUNTIME="+name, "EXECUTOR_JOB_NETWORK="+net)
				for _, id := range ids {
					s.waitState(id, 2*time.Minute, "completed")
				}
				exec.kill()
				s.startExecutor("EXECUTOR_RUNTIME="+name, "EXECUTOR_JOB_NETWORK="+net)
				waitNoLeftovers(t, s, cli, 30*time.Second)
			})
		}
	})
}

// TestE2E_ContainerFirewallOfDeadExecutor: the firewall rules of a killed
// executor's job network are removed by the next executor's janitor, even
// when that executor gives its own jobs no network.
func TestE2E_ContainerFirewallOfDeadExecutor(t *testing.T) {
	forEachContainerRuntime(t, func(t *testing.T, name string, cli *client.Client) {
		s := newContainerSystem(t, name, `{"stalledAge": "60s"}`)
		first := s.startExecutor("EXECUTOR_RUNTIME="+name, "EXECUTOR_JOB_NETWORK=internet")
		id := s.submit(fmt.Sprintf(`{"dockerSteps": [{"image": %q, "commands": ["echo started", "sleep 1000"]}]}`, testImage))
		waitRunning(t, s, cli, id)
		if left := leftovers(t, s, cli); !slices.ContainsFunc(left, func(l string) bool { return strings.HasPrefix(l, "network ") }) {
			t.Fatalf("the running job has no network of its own: %v", left)
		}
		first.kill()
		s.startExecutor("EXECUTOR_RUNTIME="+name, "EXECUTOR_JOB_NETWORK=none")
		waitNoLeftovers(t, s, cli, 30*time.Second)
	})
}
