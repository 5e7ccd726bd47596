package guestnet_test

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"

	"github.com/execd/execd/internal/sandbox/vm/vmnet/guestnet"
)

var cfg = guestnet.Config{
	Address: netip.MustParsePrefix("10.213.0.6/30"),
	Gateway: netip.MustParseAddr("10.213.0.5"),
	DNS:     []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("1.1.1.1")},
	MAC:     "02:ed:0a:d5:00:06",
}

// The host sends the Config to the agent in JSON.
func TestConfig_JSON(t *testing.T) {
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"address":"10.213.0.6/30","gateway":"10.213.0.5","dns":["10.0.0.2","1.1.1.1"],"mac":"02:ed:0a:d5:00:06"}`
	if string(b) != want {
		t.Errorf("json.Marshal = %s, want %s", b, want)
	}
	var got guestnet.Config
	if err := json.Unmarshal(b, &got); err != nil || !reflect.DeepEqual(got, cfg) {
		t.Errorf("json.Unmarshal = %+v, %v, want %+v", got, err, cfg)
	}
}

func TestConfig_Validate(t *testing.T) {
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	bad := map[string]func(c *guestnet.Config){
		"no address":        func(c *guestnet.Config) { c.Address = netip.Prefix{} },
		"IPv6":              func(c *guestnet.Config) { c.Address = netip.MustParsePrefix("fd00::2/64") },
		"/32":               func(c *guestnet.Config) { c.Address = netip.MustParsePrefix("10.213.0.6/32") },
		"gateway elsewhere": func(c *guestnet.Config) { c.Gateway = netip.MustParseAddr("10.213.0.1") },
		"gateway is the VM": func(c *guestnet.Config) { c.Gateway = c.Address.Addr() },
		"MAC":               func(c *guestnet.Config) { c.MAC = "nope" },
		"MTU":               func(c *guestnet.Config) { c.MTU = 100 },
	}
	for name, f := range bad {
		c := cfg
		f(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil, want an error", name)
		}
	}
}

func TestResolvConf(t *testing.T) {
	c := cfg
	c.DNS = append(c.DNS, netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("9.9.9.9"))
	const want = "# Written by the execd VM agent: the host's resolvers.\n" +
		"nameserver 10.0.0.2\nnameserver 1.1.1.1\nnameserver 8.8.8.8\n"
	if got := string(guestnet.ResolvConf(c)); got != want {
		t.Errorf("ResolvConf =\n%s\nwant\n%s", got, want)
	}
}

// The network passed on the kernel command line reads back the same.
func TestConfig_Cmdline(t *testing.T) {
	line := cfg.Cmdline()
	const want = "execd.ip=10.213.0.6/30 execd.gw=10.213.0.5 execd.dns=10.0.0.2,1.1.1.1 execd.mac=02:ed:0a:d5:00:06"
	if line != want {
		t.Errorf("Cmdline() = %s, want %s", line, want)
	}
	got, ok, err := guestnet.ParseCmdline("console=ttyS0 quiet " + line + " execd.vsock=52")
	if err != nil || !ok || !reflect.DeepEqual(got, cfg) {
		t.Errorf("ParseCmdline = %+v, %v, %v, want %+v", got, ok, err, cfg)
	}
	if _, ok, err := guestnet.ParseCmdline("console=ttyS0 execd.vsock=52"); ok || err != nil {
		t.Errorf("ParseCmdline without a network = %v, %v", ok, err)
	}
	for _, bad := range []string{"execd.ip=10.1.2.3", "execd.ip=10.0.0.2/30 execd.gw=x", "execd.ip=10.0.0.2/30 execd.gw=10.0.0.1 execd.dns=y", "execd.ip=10.0.0.2/30 execd.gw=10.9.0.1"} {
		if _, _, err := guestnet.ParseCmdline(bad); err == nil {
			t.Errorf("ParseCmdline(%q): no error", bad)
		}
	}
}
