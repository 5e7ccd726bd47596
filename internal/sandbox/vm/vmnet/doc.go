// Package vmnet is the network of a job's micro-VM, under the network
// policy of the docker runtime's job networks (package netpolicy): the
// internet yes; private ranges, link-local addresses and the cloud
// metadata endpoint, other jobs and the host's services no.
//
// # Topology
//
// Each job gets a tap device of its own, execdvm<hex>, where <hex> is
// the first address of the job's /30 subnet, taken from a pool
// (10.213.0.0/16 by default): the host's end of the tap has the subnet's
// first host address, the guest the second, with the host as its
// gateway. Subnets are allocated under a host-wide lock file
// (/run/execd-vmnet.lock) from what the kernel shows (the host's
// addresses and routes, and the existing taps), so that concurrent jobs
// and executors never share one, and nothing is left to forget but the
// devices themselves. The tap's alias labels it with its owner and job,
// for the janitor. The monitor opens the tap (QEMU's -netdev
// tap,ifname=X,script=no,downscript=no, Firecracker's host_dev_name) and
// gives the VM a virtio-net device with [Network.MAC]; the guest's agent
// configures its interface with package guestnet.
//
// # Policy
//
// Setup turns IPv4 forwarding on, masquerades the subnet's traffic
// leaving by other interfaces (a nat POSTROUTING rule commented
// "execd-vm:<tap>"), and applies netpolicy's firewall to the tap as to a
// bridge, with [netpolicy.Firewall.Accept] set so that the VM's traffic
// passes also where the FORWARD chain's policy drops (docker sets it
// so). The tap is IPv4 only: its IPv6 is closed.
//
// # DNS
//
// The guest uses the host's resolvers ([HostDNS]): those of
// /etc/resolv.conf, or behind systemd-resolved's loopback stub the
// upstream ones. Their port 53 is opened in the firewall even when they
// are private or the host's own. A host whose only resolver is another
// loopback stub has none a VM can use: Setup fails saying so, unless the
// resolvers are given ([Config.DNS]).
//
// # Bandwidth
//
// [Config.Bandwidth] limits the VM's traffic in bytes per second. With
// QEMU, Setup shapes it with tc: a token bucket on the tap limits what
// enters the VM, and the tap's ingress (what leaves the VM) is redirected
// to an ifb device, execdvb<hex>, whose token bucket limits it. A
// monitor with rate limiters of its own (Firecracker) sets
// [Config.MonitorShapes] and applies [Network.Bandwidth] itself.
//
// # Janitor
//
// [Network.Remove] undoes Setup and is idempotent. [Clean] finds what
// dead executors left: taps whose label a caller reports stale, and the
// rules and ifb devices of taps that are gone.
//
// Everything needs root (CAP_NET_ADMIN), the tun and ifb drivers, and
// the iptables and tc commands, and acts on the network namespace of the
// calling thread.
package vmnet
