package netpolicy

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
)

// lockPath serialises the changes of every executor on the host.
const lockPath = "/run/execd-firewall.lock"

// Firewall installs the policy's rules. The zero value changes the
// caller's own network namespace with no exceptions; the package's
// functions use it. A Firewall is safe for concurrent use, also by
// several processes.
type Firewall struct {
	// NetNS is a network namespace, by its name under /run/netns as `ip
	// netns` knows it, whose firewall is changed instead of the caller's
	// own (the commands run under `ip netns exec`).
	NetNS string
	// AllowDNS are resolvers whose port 53 (UDP and TCP) a sandbox may
	// reach even though they are private addresses or the host's own,
	// such as a cloud VPC's resolver.
	AllowDNS []netip.Addr
	// AllowTCP are services a sandbox may connect to over TCP even though
	// they are on private addresses or the host's own, such as the
	// registry mirror of EXECUTOR_DOCKER_REGISTRY_MIRROR_URL.
	AllowTCP []netip.AddrPort
	// AllowHost lets sandboxes connect to the host's own addresses, as
	// EXECUTOR_DOCKER_ADD_HOST_GATEWAY asks; the rest of the policy stays.
	AllowHost bool
	// Accept makes the rules accept the forwarded traffic the policy lets
	// through, instead of returning it to the host's other rules and the
	// FORWARD chain's policy. It is for interfaces that no other rules
	// forward, such as a micro-VM's tap device, on hosts whose FORWARD
	// policy drops (docker sets it so): docker's bridges need it not.
	Accept bool
	// Logger receives a debug line for each change; nil discards them.
	Logger *slog.Logger
}

// Apply installs the policy for bridge, whose network is subnet, in the
// caller's network namespace. See [Firewall.Apply].
func Apply(ctx context.Context, bridge string, subnet netip.Prefix) error {
	return new(Firewall).Apply(ctx, bridge, subnet)
}

// Remove removes bridge's rules from the caller's network namespace. See
// [Firewall.Remove].
func Remove(ctx context.Context, bridge string) error {
	return new(Firewall).Remove(ctx, bridge)
}

// Check reports whether the firewall can be used here. See
// [Firewall.Check].
func Check(ctx context.Context) error {
	return new(Firewall).Check(ctx)
}

// Bridges lists the bridges that have rules. See [Firewall.Bridges].
func Bridges(ctx context.Context) ([]string, error) {
	return new(Firewall).Bridges(ctx)
}

// Apply installs the policy for the bridge interface bridge, whose
// network is subnet, in each IP family the host has. It is idempotent:
// applied again, the bridge's chains are rewritten (atomically) and its
// jumps are not repeated. The bridge need not exist yet.
func (f *Firewall) Apply(ctx context.Context, bridge string, subnet netip.Prefix) error {
	if err := checkBridge(bridge); err != nil {
		return err
	}
	if !subnet.IsValid() {
		return fmt.Errorf("netpolicy: invalid subnet %v of bridge %s", subnet, bridge)
	}
	unlock, err := lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	opts := options{allowDNS: f.AllowDNS, allowTCP: f.AllowTCP, allowHost: f.AllowHost, accept: f.Accept}
	for _, fam := range families() {
		if err := f.apply(ctx, makePlan(fam, bridge, subnet, opts)); err != nil {
			return fmt.Errorf("netpolicy: apply the %s rules of bridge %s: %w", fam.name, bridge, err)
		}
	}
	f.logger().Debug("network policy applied", "bridge", bridge, "subnet", subnet)
	return nil
}

func (f *Firewall) apply(ctx context.Context, p plan) error {
	st, err := f.state(ctx, p.fam)
	if err != nil {
		return err
	}
	present := make([]bool, len(p.jumps))
	for i, j := range p.jumps {
		if st.chains[j.chain] && st.chains[j.args[len(j.args)-1]] { // else it cannot exist

			if present[i], err = f.exists(ctx, p.fam, j); err != nil {
				return err
			}
		}
	}
	_, err = f.run(ctx, p.restoreScript(st, present), p.fam.restore(), "-w", "--noflush")
	return err
}

// Remove removes the rules and chains of bridge from each IP family,
// with every jump to them. It is idempotent: nothing to remove is no
// error.
func (f *Firewall) Remove(ctx context.Context, bridge string) error {
	if err := checkBridge(bridge); err != nil {
		return err
	}
	unlock, err := lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	fwd, in := chainNames(bridge)
	for _, fam := range families() {
		st, err := f.state(ctx, fam)
		if err == nil {
			if script := removeScript(st, []string{fwd, in}); script != "" {
				_, err = f.run(ctx, script, fam.restore(), "-w", "--noflush")
			}
		}
		if err != nil {
			return fmt.Errorf("netpolicy: remove the %s rules of bridge %s: %w", fam.name, bridge, err)
		}
	}
	f.logger().Debug("network policy removed", "bridge", bridge)
	return nil
}

// Bridges returns the bridges that have rules, sorted: a janitor can
// remove those of networks that no longer exist.
func (f *Firewall) Bridges(ctx context.Context) ([]string, error) {
	var all []string
	for _, fam := range families() {
		st, err := f.state(ctx, fam)
		if err != nil {
			return nil, fmt.Errorf("netpolicy: list the %s rules: %w", fam.name, err)
		}
		all = append(all, bridgesIn(st)...)
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

// Check reports whether the firewall works here: the iptables commands
// exist and can create the policy's kind of rules (conntrack, comment
// matches) in a scratch chain, which it removes.
func (f *Firewall) Check(ctx context.Context) error {
	for _, fam := range families() {
		if _, err := f.run(ctx, "", fam.iptables, "--version"); err != nil {
			return fmt.Errorf("netpolicy: %s: %w", fam.name, err)
		}
		chain := "EXECD-CHECK-" + strings.ToUpper(rand.Text()[:8])
		script := fmt.Sprintf("*filter\n:%[1]s - [0:0]\n"+
			"-A %[1]s -i execd-check -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment execd:check -j RETURN\n"+
			"-A %[1]s -o execd-check -j DROP\nCOMMIT\n", chain)
		if _, err := f.run(ctx, script, fam.restore(), "-w", "--noflush"); err != nil {
			return fmt.Errorf("netpolicy: %s cannot install the network policy's rules (run as root; the kernel needs nf_conntrack and the xt_conntrack and xt_comment matches): %w", fam.iptables, err)
		}
		if _, err := f.run(ctx, fmt.Sprintf("*filter\n-F %[1]s\n-X %[1]s\nCOMMIT\n", chain), fam.restore(), "-w", "--noflush"); err != nil {
			return fmt.Errorf("netpolicy: remove the scratch chain %s: %w", chain, err)
		}
	}
	return nil
}

// Version returns the iptables version and backend, e.g. "iptables
// v1.8.9 (nf_tables)".
func (f *Firewall) Version(ctx context.Context) (string, error) {
	out, err := f.run(ctx, "", "iptables", "--version")
	return strings.TrimSpace(out), err
}

// families returns the IP families the host has: IPv6 when the kernel
// has it, even if no interface uses it, since link-local addresses are
// enough to reach the host.
func families() []family {
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		return []family{ipv4()}
	}
	return []family{ipv4(), ipv6()}
}

// state reads fam's filter table.
func (f *Firewall) state(ctx context.Context, fam family) (state, error) {
	out, err := f.run(ctx, "", fam.save(), "-t", "filter")
	if err != nil {
		return state{}, err
	}
	return parseSave(out), nil
}

// exists reports whether rule r is in its chain.
func (f *Firewall) exists(ctx context.Context, fam family, r rule) (bool, error) {
	_, err := f.run(ctx, "", fam.iptables, append([]string{"-w", "-C", r.chain}, r.args...)...)
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 1 {
		return false, nil
	}
	return err == nil, err
}

// run runs an iptables command, in f.NetNS if set, with stdin, and
// returns its standard output.
func (f *Firewall) run(ctx context.Context, stdin, name string, args ...string) (string, error) {
	argv := append([]string{name}, args...)
	if f.NetNS != "" {
		argv = append([]string{"ip", "netns", "exec", f.NetNS}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if errors.Is(err, exec.ErrNotFound) {
		return "", fmt.Errorf("%s is not installed: install the iptables package (apt-get install iptables): %w", argv[0], err)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (f *Firewall) logger() *slog.Logger {
	if f.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return f.Logger
}
