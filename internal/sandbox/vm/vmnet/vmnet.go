package vmnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"slices"

	"github.com/execd/execd/internal/sandbox/netpolicy"
	"github.com/execd/execd/internal/sandbox/vm/vmnet/guestnet"
)

// DefaultPool is the range the jobs' subnets are taken from when
// [Config.Pool] is not set.
var DefaultPool = netip.MustParsePrefix("10.213.0.0/16")

// Config is one job's network.
type Config struct {
	// Owner and JobID label the tap device, for the janitor ([Clean]):
	// Owner names the executor, JobID the job.
	Owner, JobID string
	// Workspace, when set, is where the owner keeps its workspaces (the
	// Leftover's Workspace the janitor reports): how a janitor tells
	// whether that owner is alive.
	Workspace string
	// Pool is the IPv4 range whose /30 subnets are given to jobs, one
	// each; zero means [DefaultPool]. It should be private (the policy
	// keeps the jobs from reaching private addresses, hence each other)
	// and not used elsewhere on the host's networks.
	Pool netip.Prefix
	// DNS are the resolvers the guest uses; nil means the host's
	// ([HostDNS]), an empty slice none. Their port 53 is opened in the firewall even where
	// they are private addresses or the host's own.
	DNS []netip.Addr
	// Bandwidth limits the VM's traffic; zero fields are unlimited.
	Bandwidth Bandwidth
	// TapOwner is the user ID that may open the tap besides root (a
	// monitor running as another user, such as Firecracker's jailer's);
	// 0 means root only.
	TapOwner uint32
	// MonitorShapes says that the monitor enforces Bandwidth itself
	// (Firecracker's rate limiters): Setup installs no traffic control.
	MonitorShapes bool
	// Firewall is the policy's firewall, with its exceptions (AllowDNS,
	// AllowHost); nil means the policy without exceptions. Setup uses a
	// copy with Accept set and the DNS servers allowed. Its NetNS must be
	// "": the network is made in the caller's network namespace.
	Firewall *netpolicy.Firewall
	// Logger receives a line for each network made; nil discards them.
	Logger *slog.Logger
}

// Bandwidth is a VM's bandwidth in bytes per second, as the reference's
// EXECUTOR_FIRECRACKER_BANDWIDTH_INGRESS and _EGRESS: Ingress into the VM
// (downloads), Egress out of it (uploads). Zero is unlimited.
type Bandwidth struct {
	Ingress, Egress int64
}

// Network is a job's network: a tap device and its rules. The VM's
// network device is put on Tap; the guest configures its interface with
// [Network.Guest].
type Network struct {
	// Tap is the host's tap device: QEMU's -netdev tap,ifname=, or
	// Firecracker's host_dev_name.
	Tap string
	// Subnet is the job's /30; Gateway is the host's end of it, Address
	// the guest's address in it.
	Subnet  netip.Prefix
	Gateway netip.Addr
	Address netip.Prefix
	// MAC is the hardware address to give the VM's network device.
	MAC string
	// DNS are the guest's resolvers.
	DNS []netip.Addr
	// Bandwidth are the limits asked for; with Config.MonitorShapes, the
	// monitor's to enforce.
	Bandwidth Bandwidth
}

// Guest returns what the guest's agent needs to configure its interface.
func (n *Network) Guest() guestnet.Config {
	return guestnet.Config{Address: n.Address, Gateway: n.Gateway, DNS: slices.Clone(n.DNS), MAC: n.MAC}
}

// Setup makes a job's network in the caller's network namespace: a tap
// device with the first free /30 of the pool (the host has the first
// address, the guest the second), labelled with the job, up; IPv4
// forwarding on; the subnet masqueraded; the network policy's firewall
// on the tap; and the bandwidth limits. On error nothing of it remains.
// It needs root (CAP_NET_ADMIN). Setup is safe for concurrent use, also
// by several processes on the host.
func Setup(ctx context.Context, cfg Config) (*Network, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	dns := cfg.DNS
	if dns == nil {
		var err error
		if dns, err = HostDNS(); err != nil {
			return nil, err
		}
	}
	if err := enableForwarding(logger(cfg.Logger)); err != nil {
		return nil, err
	}
	n, err := createTap(ctx, cfg)
	if err != nil {
		return nil, err
	}
	n.DNS, n.Bandwidth = slices.Clone(dns), cfg.Bandwidth
	if err := n.install(ctx, cfg, dns); err != nil {
		return nil, errors.Join(err, n.Remove(context.WithoutCancel(ctx)))
	}
	logger(cfg.Logger).Debug("VM network made", "tap", n.Tap, "subnet", n.Subnet, "job", cfg.JobID, "owner", cfg.Owner)
	return n, nil
}

// install adds the tap's rules: NAT, firewall and traffic control.
func (n *Network) install(ctx context.Context, cfg Config, dns []netip.Addr) error {
	if err := addNAT(ctx, n.Tap, n.Subnet); err != nil {
		return err
	}
	var fw netpolicy.Firewall
	if cfg.Firewall != nil {
		fw = *cfg.Firewall
	}
	fw.Accept = true
	fw.AllowDNS = append(slices.Clone(fw.AllowDNS), dns...)
	if err := fw.Apply(ctx, n.Tap, n.Subnet); err != nil {
		return fmt.Errorf("vmnet: %w", err)
	}
	if cfg.MonitorShapes {
		return nil
	}
	return shape(ctx, n.Tap, cfg.Bandwidth)
}

// Remove removes the network: the firewall's rules, the NAT rule, the
// traffic control and the tap device. It is idempotent, and works on
// what a failed Setup left.
func (n *Network) Remove(ctx context.Context) error {
	return remove(ctx, n.Tap)
}

// remove removes everything of tap.
func remove(ctx context.Context, tap string) error {
	var errs []error
	if err := netpolicy.Remove(ctx, tap); err != nil && !errors.Is(err, exec.ErrNotFound) {
		errs = append(errs, fmt.Errorf("vmnet: %w", err))
	}
	if err := deleteNAT(ctx, tap); err != nil {
		errs = append(errs, err)
	}
	if err := deleteLink(ifbName(tap)); err != nil {
		errs = append(errs, err)
	}
	if err := deleteLink(tap); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *Config) validate() error {
	if c.Pool == (netip.Prefix{}) {
		c.Pool = DefaultPool
	}
	if !c.Pool.IsValid() || !c.Pool.Addr().Is4() || c.Pool.Bits() > subnetBits {
		return fmt.Errorf("vmnet: pool %v: want an IPv4 range of /%d or larger", c.Pool, subnetBits)
	}
	c.Pool = c.Pool.Masked()
	if c.Firewall != nil && c.Firewall.NetNS != "" {
		return errors.New("vmnet: the firewall must act on the caller's network namespace (NetNS is set)")
	}
	if c.Bandwidth.Ingress < 0 || c.Bandwidth.Egress < 0 {
		return fmt.Errorf("vmnet: negative bandwidth %+v", c.Bandwidth)
	}
	for _, a := range c.DNS {
		if !a.Is4() {
			return fmt.Errorf("vmnet: DNS server %v: the guest's network is IPv4 only", a)
		}
	}
	_, err := label(c.Owner, c.JobID, c.Workspace)
	return err
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
