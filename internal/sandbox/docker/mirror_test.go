package docker

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/registry"
)

func TestPlainMirrorWarnings(t *testing.T) {
	cidr := func(s string) *registry.NetIPNet {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		return (*registry.NetIPNet)(n)
	}
	// dockerd's defaults: loopback is insecure.
	defaults := &registry.ServiceConfig{
		InsecureRegistryCIDRs: []*registry.NetIPNet{cidr("127.0.0.0/8")},
		IndexConfigs:          map[string]*registry.IndexInfo{"docker.io": {Name: "docker.io", Secure: true, Official: true}},
	}
	listed := &registry.ServiceConfig{
		InsecureRegistryCIDRs: []*registry.NetIPNet{cidr("127.0.0.0/8")},
		IndexConfigs: map[string]*registry.IndexInfo{
			"10.0.1.4:5000":        {Name: "10.0.1.4:5000", Secure: false},
			"mirror.internal:5000": {Name: "mirror.internal:5000", Secure: false},
			"secure.internal:5000": {Name: "secure.internal:5000", Secure: true},
		},
	}
	private := &registry.ServiceConfig{InsecureRegistryCIDRs: []*registry.NetIPNet{cidr("10.0.0.0/8")}}
	lookup := func(host string) ([]net.IP, error) {
		switch host {
		case "mirror.corp":
			return []net.IP{net.ParseIP("10.0.1.4")}, nil
		}
		return nil, errors.New("no such host")
	}
	tests := []struct {
		name    string
		mirrors []string
		rc      *registry.ServiceConfig
		warned  []string // the hosts warned about
	}{
		{"an http mirror dockerd does not know", []string{"http://10.0.1.4:5000"}, defaults, []string{"10.0.1.4:5000"}},
		{"an http mirror listed as insecure", []string{"http://10.0.1.4:5000"}, listed, nil},
		{"an http mirror on loopback", []string{"http://127.0.0.1:5000"}, defaults, nil},
		{"an http mirror by name, listed", []string{"http://mirror.internal:5000/"}, listed, nil},
		{"an http mirror by name, listed as secure", []string{"http://secure.internal:5000"}, listed, []string{"secure.internal:5000"}},
		{"an http mirror in an insecure CIDR", []string{"http://10.9.8.7:5000"}, private, nil},
		{"an http mirror by name resolving into an insecure CIDR", []string{"http://mirror.corp:5000"}, private, nil},
		{"an http mirror by a name that does not resolve", []string{"http://nowhere.corp:5000"}, private, []string{"nowhere.corp:5000"}},
		{"an https mirror", []string{"https://mirror.example.com"}, defaults, nil},
		{"a host:port mirror (dockerd decides)", []string{"10.0.1.4:5000"}, defaults, nil},
		{"no registry configuration in docker info", []string{"http://10.0.1.4:5000"}, nil, nil},
		{"several", []string{"http://10.0.1.4:5000", "https://a.example.com", "http://10.0.1.5:5000"}, defaults, []string{"10.0.1.4:5000", "10.0.1.5:5000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := plainMirrorWarnings(tt.mirrors, tt.rc, lookup)
			if len(got) != len(tt.warned) {
				t.Fatalf("warnings %q, want one for each of %q", got, tt.warned)
			}
			for i, host := range tt.warned {
				if !strings.Contains(got[i], `add "`+host+`" to "insecure-registries"`) || !strings.Contains(got[i], "executor install docker") {
					t.Errorf("warning %q does not name %s and the fix", got[i], host)
				}
			}
		})
	}
}
