package dockerconfig_test

import (
	"testing"

	"github.com/execd/execd/internal/sandbox/dockerconfig"
)

func TestParseMirror(t *testing.T) {
	for _, tt := range []struct {
		in, host, scheme, name string
		port                   uint16
	}{
		{"http://10.0.0.5:5000", "10.0.0.5:5000", "http", "10.0.0.5", 5000},
		{"https://mirror.example.com/", "mirror.example.com", "https", "mirror.example.com", 443},
		{"http://mirror.example.com", "mirror.example.com", "http", "mirror.example.com", 80},
		{"mirror.example.com:5000", "mirror.example.com:5000", "", "mirror.example.com", 5000},
		{"mirror.example.com", "mirror.example.com", "", "mirror.example.com", 443},
		{"http://[fd00::4]:5000", "[fd00::4]:5000", "http", "fd00::4", 5000},
	} {
		m, err := dockerconfig.ParseMirror(tt.in)
		if err != nil || m.Host != tt.host || m.Scheme != tt.scheme {
			t.Errorf("ParseMirror(%q) = %+v, %v; want host %q, scheme %q", tt.in, m, err, tt.host, tt.scheme)
			continue
		}
		if name, port, err := m.Addr(); err != nil || name != tt.name || port != tt.port {
			t.Errorf("ParseMirror(%q).Addr() = %q, %d, %v; want %q, %d", tt.in, name, port, err, tt.name, tt.port)
		}
	}
	for _, bad := range []string{"", "http://mirror/path", "mirror/path", "http://"} {
		if m, err := dockerconfig.ParseMirror(bad); err == nil {
			t.Errorf("ParseMirror(%q) = %+v, want an error", bad, m)
		}
	}
	if m, err := dockerconfig.ParseMirror("10.0.1.4:http"); err != nil {
		t.Errorf("ParseMirror: %v", err)
	} else if _, _, err := m.Addr(); err == nil {
		t.Errorf("Addr() of %+v: no error for a port that is not a number", m)
	}
}
