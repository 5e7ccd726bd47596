package netpolicy

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestRestoreScript(t *testing.T) {
	subnet := netip.MustParsePrefix("10.213.1.7/24") // not masked: Apply masks it
	fwd, in := chainNames("execd-t0")
	if fwd != "EXECD-8F160A1A09" || in != "EXECD-8F160A1A09-IN" {
		t.Fatalf("chainNames(execd-t0) = %s, %s", fwd, in)
	}
	const jumps = "-I DOCKER-USER 1 -i execd-t0 -m comment --comment execd:execd-t0 -j EXECD-8F160A1A09\n" +
		"-I DOCKER-USER 1 -o execd-t0 -m comment --comment execd:execd-t0 -j EXECD-8F160A1A09\n" +
		"-I INPUT 1 -i execd-t0 -m comment --comment execd:execd-t0 -j EXECD-8F160A1A09-IN\n"
	const v4 = ":EXECD-8F160A1A09 - [0:0]\n:EXECD-8F160A1A09-IN - [0:0]\n" +
		"-A EXECD-8F160A1A09 -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n" +
		"-A EXECD-8F160A1A09 -i execd-t0 -o execd-t0 -j RETURN\n" +
		"-A EXECD-8F160A1A09 -o execd-t0 -j DROP\n" +
		"-A EXECD-8F160A1A09 ! -s 10.213.1.0/24 -j DROP\n" +
		"-A EXECD-8F160A1A09 -d 0.0.0.0/8 -j DROP\n" +
		"-A EXECD-8F160A1A09 -d 10.0.0.0/8 -j DROP\n" +
		"-A EXECD-8F160A1A09 -d 100.64.0.0/10 -j DROP\n" +
		"-A EXECD-8F160A1A09 -d 127.0.0.0/8 -j DROP\n" +
		"-A EXECD-8F160A1A09 -d 169.254.0.0/16 -j DROP\n" +
		"-A EXECD-8F160A1A09 -d 172.16.0.0/12 -j DROP\n" +
		"-A EXECD-8F160A1A09 -d 192.168.0.0/16 -j DROP\n" +
		"-A EXECD-8F160A1A09 -d 224.0.0.0/4 -j DROP\n" +
		"-A EXECD-8F160A1A09 -d 240.0.0.0/4 -j DROP\n" +
		"-A EXECD-8F160A1A09-IN -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n" +
		"-A EXECD-8F160A1A09-IN -j DROP\n"
	docker := state{chains: map[string]bool{"INPUT": true, "FORWARD": true, dockerUser: true}, forwardJump: true}
	tests := []struct {
		name    string
		fam     family
		subnet  netip.Prefix // default: subnet
		opts    options
		st      state
		present []bool
		want    string
	}{
		{
			name: "IPv4 with docker's chains", fam: ipv4(), st: docker, present: []bool{false, false, false},
			want: "*filter\n" + v4 + jumps + "COMMIT\n",
		},
		{
			name: "IPv4 applied again", fam: ipv4(), st: docker, present: []bool{true, true, true},
			want: "*filter\n" + v4 + "COMMIT\n",
		},
		{
			name: "IPv4 without DOCKER-USER", fam: ipv4(), st: state{chains: map[string]bool{"INPUT": true, "FORWARD": true}}, present: []bool{false, false, false},
			want: "*filter\n:DOCKER-USER - [0:0]\n" + v4 + "-I FORWARD 1 -j DOCKER-USER\n" + jumps + "COMMIT\n",
		},
		{
			name: "IPv6 of an IPv4 network is closed", fam: ipv6(), st: docker, present: []bool{true, true, true},
			want: "*filter\n:EXECD-8F160A1A09 - [0:0]\n:EXECD-8F160A1A09-IN - [0:0]\n" +
				"-A EXECD-8F160A1A09 -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n" +
				"-A EXECD-8F160A1A09 -i execd-t0 -o execd-t0 -j RETURN\n" +
				"-A EXECD-8F160A1A09 -o execd-t0 -j DROP\n" +
				"-A EXECD-8F160A1A09 -j DROP\n" +
				"-A EXECD-8F160A1A09-IN -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n" +
				"-A EXECD-8F160A1A09-IN -p ipv6-icmp -m icmp6 --icmpv6-type router-solicitation -j RETURN\n" +
				"-A EXECD-8F160A1A09-IN -p ipv6-icmp -m icmp6 --icmpv6-type neighbour-solicitation -j RETURN\n" +
				"-A EXECD-8F160A1A09-IN -p ipv6-icmp -m icmp6 --icmpv6-type neighbour-advertisement -j RETURN\n" +
				"-A EXECD-8F160A1A09-IN -j DROP\n" +
				"COMMIT\n",
		},
		{
			name: "IPv6 network", fam: ipv6(), subnet: netip.MustParsePrefix("fd00:213::/64"), st: docker, present: []bool{true, true, true},
			opts: options{allowDNS: []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::53")}},
			want: "*filter\n:EXECD-8F160A1A09 - [0:0]\n:EXECD-8F160A1A09-IN - [0:0]\n" +
				"-A EXECD-8F160A1A09 -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n" +
				"-A EXECD-8F160A1A09 -i execd-t0 -o execd-t0 -j RETURN\n" +
				"-A EXECD-8F160A1A09 -o execd-t0 -j DROP\n" +
				"-A EXECD-8F160A1A09 ! -s fd00:213::/64 -j DROP\n" +
				"-A EXECD-8F160A1A09 -d fd00::53/128 -p udp --dport 53 -j RETURN\n" +
				"-A EXECD-8F160A1A09 -d fd00::53/128 -p tcp --dport 53 -j RETURN\n" +
				"-A EXECD-8F160A1A09 -d ::/127 -j DROP\n" +
				"-A EXECD-8F160A1A09 -d ::ffff:0.0.0.0/96 -j DROP\n" +
				"-A EXECD-8F160A1A09 -d fc00::/7 -j DROP\n" +
				"-A EXECD-8F160A1A09 -d fe80::/10 -j DROP\n" +
				"-A EXECD-8F160A1A09 -d fec0::/10 -j DROP\n" +
				"-A EXECD-8F160A1A09 -d ff00::/8 -j DROP\n" +
				"-A EXECD-8F160A1A09-IN -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n" +
				"-A EXECD-8F160A1A09-IN -p ipv6-icmp -m icmp6 --icmpv6-type router-solicitation -j RETURN\n" +
				"-A EXECD-8F160A1A09-IN -p ipv6-icmp -m icmp6 --icmpv6-type neighbour-solicitation -j RETURN\n" +
				"-A EXECD-8F160A1A09-IN -p ipv6-icmp -m icmp6 --icmpv6-type neighbour-advertisement -j RETURN\n" +
				"-A EXECD-8F160A1A09-IN -d fd00::53/128 -p udp --dport 53 -j RETURN\n" +
				"-A EXECD-8F160A1A09-IN -d fd00::53/128 -p tcp --dport 53 -j RETURN\n" +
				"-A EXECD-8F160A1A09-IN -j DROP\n" +
				"COMMIT\n",
		},
		{
			name: "exceptions", fam: ipv4(), st: docker, present: []bool{true, true, true},
			opts: options{allowDNS: []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::53")}, allowHost: true},
			want: "*filter\n:EXECD-8F160A1A09 - [0:0]\n:EXECD-8F160A1A09-IN - [0:0]\n" +
				"-A EXECD-8F160A1A09 -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n" +
				"-A EXECD-8F160A1A09 -i execd-t0 -o execd-t0 -j RETURN\n" +
				"-A EXECD-8F160A1A09 -o execd-t0 -j DROP\n" +
				"-A EXECD-8F160A1A09 ! -s 10.213.1.0/24 -j DROP\n" +
				"-A EXECD-8F160A1A09 -d 10.0.0.2/32 -p udp --dport 53 -j RETURN\n" +
				"-A EXECD-8F160A1A09 -d 10.0.0.2/32 -p tcp --dport 53 -j RETURN\n" +
				strings.Join(strings.SplitAfter(v4, "\n")[6:15], "") +
				"COMMIT\n",
		},
		{
			name: "accept, for a VM's tap", fam: ipv4(), st: docker, present: []bool{true, true, true},
			opts: options{allowDNS: []netip.Addr{netip.MustParseAddr("10.0.0.2")}, accept: true},
			want: "*filter\n:EXECD-8F160A1A09 - [0:0]\n:EXECD-8F160A1A09-IN - [0:0]\n" +
				"-A EXECD-8F160A1A09 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n" +
				"-A EXECD-8F160A1A09 -i execd-t0 -o execd-t0 -j ACCEPT\n" +
				"-A EXECD-8F160A1A09 -o execd-t0 -j DROP\n" +
				"-A EXECD-8F160A1A09 ! -s 10.213.1.0/24 -j DROP\n" +
				"-A EXECD-8F160A1A09 -d 10.0.0.2/32 -p udp --dport 53 -j ACCEPT\n" +
				"-A EXECD-8F160A1A09 -d 10.0.0.2/32 -p tcp --dport 53 -j ACCEPT\n" +
				strings.Join(strings.SplitAfter(v4, "\n")[6:15], "") +
				"-A EXECD-8F160A1A09 -j ACCEPT\n" +
				"-A EXECD-8F160A1A09-IN -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n" +
				"-A EXECD-8F160A1A09-IN -d 10.0.0.2/32 -p udp --dport 53 -j RETURN\n" +
				"-A EXECD-8F160A1A09-IN -d 10.0.0.2/32 -p tcp --dport 53 -j RETURN\n" +
				"-A EXECD-8F160A1A09-IN -j DROP\n" +
				"COMMIT\n",
		},
		{
			name: "a registry mirror's port, of each family in its own", fam: ipv4(), st: docker, present: []bool{true, true, true},
			opts: options{allowTCP: []netip.AddrPort{netip.MustParseAddrPort("10.0.1.4:5000"), netip.MustParseAddrPort("[fd00::4]:5000"), netip.MustParseAddrPort("[::ffff:10.0.1.5]:443")}},
			want: "*filter\n:EXECD-8F160A1A09 - [0:0]\n:EXECD-8F160A1A09-IN - [0:0]\n" +
				strings.Join(strings.SplitAfter(v4, "\n")[2:6], "") +
				"-A EXECD-8F160A1A09 -d 10.0.1.4/32 -p tcp --dport 5000 -j RETURN\n" +
				"-A EXECD-8F160A1A09 -d 10.0.1.5/32 -p tcp --dport 443 -j RETURN\n" +
				strings.Join(strings.SplitAfter(v4, "\n")[6:16], "") +
				"-A EXECD-8F160A1A09-IN -d 10.0.1.4/32 -p tcp --dport 5000 -j RETURN\n" +
				"-A EXECD-8F160A1A09-IN -d 10.0.1.5/32 -p tcp --dport 443 -j RETURN\n" +
				"-A EXECD-8F160A1A09-IN -j DROP\n" +
				"COMMIT\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := makePlan(tt.fam, "execd-t0", cmp.Or(tt.subnet, subnet), tt.opts)
			if got := p.restoreScript(tt.st, tt.present); got != tt.want {
				t.Errorf("restoreScript() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestRemoveScript(t *testing.T) {
	const save = `# Generated by iptables-save v1.8.9 (nf_tables)
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
:EXECD-8F160A1A09 - [0:0]
:EXECD-8F160A1A09-IN - [0:0]
:EXECD-0000000000 - [0:0]
-A INPUT -i execd-t0 -m comment --comment "execd:execd-t0" -j EXECD-8F160A1A09-IN
-A FORWARD -j DOCKER-USER
-A DOCKER-USER -o execd-t0 -m comment --comment "execd:execd-t0" -j EXECD-8F160A1A09
-A DOCKER-USER -i execd-t0 -m comment --comment "execd:execd-t0" -j EXECD-8F160A1A09
-A DOCKER-USER -i execd-t0 -m comment --comment "execd:execd-t0" -j EXECD-8F160A1A09
-A DOCKER-USER -i other -m comment --comment execd:other -j EXECD-0000000000
-A EXECD-8F160A1A09 -o execd-t0 -j DROP
-A EXECD-8F160A1A09-IN -j DROP
COMMIT
`
	st := parseSave(save)
	if !st.forwardJump {
		t.Errorf("parseSave: forwardJump = false, want true")
	}
	if got, want := bridgesIn(st), []string{"execd-t0", "execd-t0", "execd-t0", "execd-t0", "other"}; !slices.Equal(got, want) {
		t.Errorf("bridgesIn() = %q, want %q", got, want)
	}
	got := removeScript(st, []string{"EXECD-8F160A1A09", "EXECD-8F160A1A09-IN"})
	want := `*filter
-D INPUT -i execd-t0 -m comment --comment "execd:execd-t0" -j EXECD-8F160A1A09-IN
-D DOCKER-USER -o execd-t0 -m comment --comment "execd:execd-t0" -j EXECD-8F160A1A09
-D DOCKER-USER -i execd-t0 -m comment --comment "execd:execd-t0" -j EXECD-8F160A1A09
-D DOCKER-USER -i execd-t0 -m comment --comment "execd:execd-t0" -j EXECD-8F160A1A09
-F EXECD-8F160A1A09
-X EXECD-8F160A1A09
-F EXECD-8F160A1A09-IN
-X EXECD-8F160A1A09-IN
COMMIT
`
	if got != want {
		t.Errorf("removeScript() =\n%s\nwant\n%s", got, want)
	}
	if got := removeScript(st, []string{"EXECD-FFFFFFFFFF", "EXECD-FFFFFFFFFF-IN"}); got != "" {
		t.Errorf("removeScript() of absent chains = %q, want \"\"", got)
	}
}

func TestCheckBridge(t *testing.T) {
	tests := []struct {
		bridge string
		ok     bool
	}{
		{"execd-t0", true},
		{"br-0123456789ab", true},
		{"docker0", true},
		{"", false},
		{"-j", false},
		{"br0 -j ACCEPT", false},
		{`br"0`, false},
		{"a23456789012345x", false}, // 16 characters
	}
	for _, tt := range tests {
		if err := checkBridge(tt.bridge); (err == nil) != tt.ok {
			t.Errorf("checkBridge(%q) = %v, want ok = %v", tt.bridge, err, tt.ok)
		}
	}
}

func TestParseResolvConf(t *testing.T) {
	tests := []struct {
		name, conf string
		want       []string
	}{
		{"cloud", "# generated\nsearch ec2.internal\nnameserver 10.0.0.2\nnameserver 169.254.169.253\noptions edns0\n", []string{"10.0.0.2", "169.254.169.253"}},
		{"systemd-resolved stub", "nameserver 127.0.0.53\noptions edns0 trust-ad\n", nil},
		{"IPv6 and junk", "nameserver fe80::1%eth0\nnameserver ::1\nnameserver nonsense\nnameserver\n", []string{"fe80::1"}},
	}
	for _, tt := range tests {
		var got []string
		for _, a := range parseResolvConf(tt.conf) {
			got = append(got, a.String())
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: parseResolvConf() = %q, want %q", tt.name, got, tt.want)
		}
	}
}
