package vmnet

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/execd/execd/internal/sandbox"
)

func TestPick(t *testing.T) {
	pool := netip.MustParsePrefix("10.213.0.0/28") // four /30s
	p := netip.MustParsePrefix
	tests := []struct {
		name  string
		used  []netip.Prefix
		start int
		want  string // "" for an error
	}{
		{name: "empty pool", want: "10.213.0.0/30"},
		{name: "from start", start: 2, want: "10.213.0.8/30"},
		{name: "wraps around", start: 3, used: []netip.Prefix{p("10.213.0.12/30")}, want: "10.213.0.0/30"},
		{name: "skips taken subnets", used: []netip.Prefix{p("10.213.0.0/30"), p("10.213.0.4/30")}, want: "10.213.0.8/30"},
		{name: "skips a host address in the pool", used: []netip.Prefix{p("10.213.0.2/32")}, want: "10.213.0.4/30"},
		{name: "skips a larger network", used: []netip.Prefix{p("10.213.0.0/29")}, want: "10.213.0.8/30"},
		{name: "ignores other networks", used: []netip.Prefix{p("192.168.1.0/24"), p("10.214.0.0/30")}, want: "10.213.0.0/30"},
		{name: "full", used: []netip.Prefix{p("10.213.0.0/29"), p("10.213.0.8/29")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pick(pool, tt.used, tt.start)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("pick() = %v, want an error", got)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Errorf("pick() = %v, %v, want %s", got, err, tt.want)
			}
		})
	}
}

func TestTapName(t *testing.T) {
	subnet := netip.MustParsePrefix("10.213.0.4/30")
	name := tapName(subnet)
	if name != "execdvm0ad50004" || len(name) > 15 {
		t.Errorf("tapName(%v) = %q, want execdvm0ad50004 (at most 15 bytes)", subnet, name)
	}
	if got, ok := tapSubnet(name); !ok || got != subnet {
		t.Errorf("tapSubnet(%q) = %v, %v, want %v", name, got, ok, subnet)
	}
	if got := ifbName(name); got != "execdvb0ad50004" {
		t.Errorf("ifbName(%q) = %q", name, got)
	}
	for _, other := range []string{"execd0123456789", "execdvm0AD50004", "execdvm0ad5000", "execdvm0ad50005", "eth0", "execdvb0ad50004"} {
		if _, ok := tapSubnet(other); ok {
			t.Errorf("tapSubnet(%q) is a VM's tap", other)
		}
	}
}

func TestLabel(t *testing.T) {
	for _, l := range []sandbox.Leftover{
		{Owner: "executor-1", JobID: "42"},
		{Owner: "a b&c=d", JobID: "ü/é"},
		{Owner: "executor-2", JobID: "pool", Workspace: "/tmp/execd workspaces/executor-2"},
		{},
	} {
		alias, err := label(l.Owner, l.JobID, l.Workspace)
		if err != nil {
			t.Fatal(err)
		}
		if got := parseLabel(alias); got != l {
			t.Errorf("parseLabel(label(%q, %q)) = %+v (alias %q)", l.Owner, l.JobID, got, alias)
		}
	}
	if got := parseLabel("some admin's alias"); got != (sandbox.Leftover{}) {
		t.Errorf("parseLabel of a foreign alias = %+v, want none", got)
	}
	if _, err := label(strings.Repeat("x", 300), "1", ""); err == nil {
		t.Error("label accepted an owner longer than an alias")
	}
}

func TestGuestMAC(t *testing.T) {
	if got := guestMAC(netip.MustParseAddr("10.213.0.6")); got != "02:ed:0a:d5:00:06" {
		t.Errorf("guestMAC = %s", got)
	}
}

func TestNATRules(t *testing.T) {
	tap := "execdvm0ad50004"
	rule := natRule(tap, netip.MustParsePrefix("10.213.0.6/30"))
	want := "-s 10.213.0.4/30 ! -o execdvm0ad50004 -m comment --comment execd-vm:execdvm0ad50004 -j MASQUERADE"
	if got := strings.Join(rule, " "); got != want {
		t.Errorf("natRule = %s, want %s", got, want)
	}
	out := "-P POSTROUTING ACCEPT\n" +
		"-A POSTROUTING -s 10.213.0.4/30 ! -o execdvm0ad50004 -m comment --comment execd-vm:execdvm0ad50004 -j MASQUERADE\n" +
		"-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\n" +
		"-A POSTROUTING -s 10.213.0.8/30 -m comment --comment \"execd-vm:execdvm0ad50008\" -j MASQUERADE\n"
	got := parseNATRules(out)
	if len(got) != 2 || len(got[tap]) != 1 || len(got["execdvm0ad50008"]) != 1 {
		t.Errorf("parseNATRules = %q", got)
	}
}

func TestTBF(t *testing.T) {
	for _, tt := range []struct {
		rate int64
		want string
	}{
		{1 << 20, "tbf rate 8388608bit burst 65536 latency 50ms"},
		{500 << 20, "tbf rate 4194304000bit burst 10485760 latency 50ms"},
	} {
		if got := strings.Join(tbf(tt.rate), " "); got != tt.want {
			t.Errorf("tbf(%d) = %s, want %s", tt.rate, got, tt.want)
		}
	}
}

func TestConfig_validate(t *testing.T) {
	var c Config
	if err := c.validate(); err != nil || c.Pool != DefaultPool {
		t.Errorf("zero Config: %v, pool %v", err, c.Pool)
	}
	bad := []Config{
		{Pool: netip.MustParsePrefix("fd00::/64")},
		{Pool: netip.MustParsePrefix("10.0.0.0/31")},
		{DNS: []netip.Addr{netip.MustParseAddr("fd00::53")}},
		{Bandwidth: Bandwidth{Egress: -1}},
	}
	for _, c := range bad {
		if err := c.validate(); err == nil {
			t.Errorf("validate(%+v) = nil, want an error", c)
		}
	}
	c = Config{Pool: netip.MustParsePrefix("10.9.8.7/24")}
	if err := c.validate(); err != nil || c.Pool != netip.MustParsePrefix("10.9.8.0/24") {
		t.Errorf("validate masks the pool: %v, %v", c.Pool, err)
	}
}

func TestHostDNS(t *testing.T) {
	a := netip.MustParseAddr
	for _, tt := range []struct {
		name string
		host []netip.Addr // as netpolicy.Resolvers finds them: without loopback
		want []netip.Addr // nil for ErrNoDNS
	}{
		{"IPv4", []netip.Addr{a("10.0.0.2"), a("1.1.1.1")}, []netip.Addr{a("10.0.0.2"), a("1.1.1.1")}},
		{"without IPv6", []netip.Addr{a("fd00::53"), a("10.0.0.2")}, []netip.Addr{a("10.0.0.2")}},
		{"IPv6 only", []netip.Addr{a("fd00::53")}, nil},
		{"only a loopback stub", nil, nil},
	} {
		got, err := hostDNS(func() ([]netip.Addr, error) { return tt.host, nil })
		if tt.want == nil {
			if !errors.Is(err, ErrNoDNS) {
				t.Errorf("%s: hostDNS() = %v, %v, want ErrNoDNS", tt.name, got, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("%s: hostDNS() = %v, %v, want %v", tt.name, got, err, tt.want)
		}
	}
}
