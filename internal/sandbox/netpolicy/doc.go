// Package netpolicy is the firewall of a job's network: the kernel's
// filter rules that let a sandbox reach the internet and nothing else.
//
// A container runtime gives each job its own network (a docker bridge
// network: one bridge interface, one subnet, NAT to the outside) and calls
// [Apply] with the bridge's name and subnet after creating it, and
// [Remove] before deleting it. Both are idempotent.
//
// # Policy
//
// For a job's bridge, in the subnet's IP family:
//
//   - replies (conntrack ESTABLISHED, RELATED) always pass: NAT, and the
//     connections the job opened, keep working;
//   - traffic between the containers of the bridge passes: one job is one
//     network, so only the job's own containers are on it;
//   - nothing else may open a connection into the bridge: not another
//     job's sandbox, not a host on the LAN;
//   - packets from the bridge with a source outside the subnet (spoofed)
//     are dropped;
//   - new connections from the bridge to private and special addresses
//     are dropped: 0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10 (CGNAT),
//     127.0.0.0/8, 169.254.0.0/16 (link-local, among them the cloud
//     metadata endpoint 169.254.169.254), 172.16.0.0/12, 192.168.0.0/16,
//     224.0.0.0/4 (multicast) and 240.0.0.0/4 (reserved, broadcast); in
//     IPv6 ::/127, ::ffff:0:0/96 (IPv4-mapped), fc00::/7 (unique local),
//     fe80::/10 (link-local), fec0::/10 (old site-local) and ff00::/8
//     (multicast). Other sandboxes' subnets are private, hence covered;
//   - the host itself is closed: every new connection from the bridge to
//     any address of the host (its address on the bridge, the gateway, as
//     well as its public ones) is dropped, DNS included. IPv6 neighbour
//     and router solicitations and neighbour advertisements reach it, as
//     ARP does in IPv4. [Firewall.AllowHost] opens the host
//     (EXECUTOR_DOCKER_ADD_HOST_GATEWAY);
//   - DNS: docker's user-defined networks resolve names with the embedded
//     resolver at 127.0.0.11 inside the container's namespace, which needs
//     no host port but forwards queries, from that namespace, to the
//     host's resolvers. Those are often private (a cloud VPC's, a LAN
//     router): [Firewall.AllowDNS] opens their port 53, and [Resolvers]
//     lists them;
//   - everything else (the internet) is let through to the host's and
//     docker's own rules, which forward and masquerade it.
//
// The other family is closed entirely, apart from replies and traffic
// within the bridge: a job on an IPv4 network has no IPv6 but link-local
// addresses, and those must not reach the host's services. A network is
// one family; dual-stack job networks are not supported.
//
// # Rules
//
// The rules use the iptables command, the one docker itself runs (on
// Debian and Ubuntu, iptables-nft by default), so that they live in the
// same tables as docker's and both coexist. Each bridge gets two chains
// in the filter table of each family, named after a hash of the bridge's
// name: EXECD-<hash> for forwarded traffic, jumped to from DOCKER-USER
// (which docker runs first in FORWARD) for packets in or out of the
// bridge, and EXECD-<hash>-IN for the host's INPUT, jumped to for packets
// in from the bridge. The jumps carry the comment "execd:<bridge>". Our
// chains only drop or return: what they let through meets docker's rules
// and the host's policy as if they were not there, unless
// [Firewall.Accept] asks them to accept it (for a VM's tap device, which
// no other rules forward). An Apply writes its
// chains and inserts missing jumps in one iptables-restore transaction
// (atomic), so a running job never sees a half-written policy; an Apply
// over existing rules rewrites the chains in place. When DOCKER-USER does
// not exist (dockerd runs with --iptables=false or has not started yet),
// Apply creates it and the jump to it at the top of FORWARD, as docker
// would; Remove leaves DOCKER-USER in place.
//
// Changes are serialised between processes with a lock file,
// /run/execd-firewall.lock. Everything needs root (CAP_NET_ADMIN).
package netpolicy
