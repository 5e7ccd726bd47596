package dockerconfig

import (
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/mount"
)

func TestParseMounts(t *testing.T) {
	tests := []struct {
		name    string
		entries []string
		want    []mount.Mount
		wantErr string
	}{
		{"none", nil, nil, ""},
		{"short", []string{"/srv/cache:/cache"}, []mount.Mount{{Type: mount.TypeBind, Source: "/srv/cache", Target: "/cache"}}, ""},
		{"short read-only", []string{"/srv/a:/a:ro", "/srv/b:/b:rw"}, []mount.Mount{
			{Type: mount.TypeBind, Source: "/srv/a", Target: "/a", ReadOnly: true},
			{Type: mount.TypeBind, Source: "/srv/b", Target: "/b"},
		}, ""},
		{"reference form, semicolons", []string{"type=bind,source=/foo,destination=/bar;type=volume,src=cache,dst=/cache,readonly"}, []mount.Mount{
			{Type: mount.TypeBind, Source: "/foo", Target: "/bar"},
			{Type: mount.TypeVolume, Source: "cache", Target: "/cache", ReadOnly: true},
		}, ""},
		{"tmpfs", []string{"type=tmpfs,target=/scratch,readonly=false"}, []mount.Mount{{Type: mount.TypeTmpfs, Target: "/scratch"}}, ""},
		{"relative source", []string{"cache:/cache"}, nil, "not an absolute path"},
		{"relative target", []string{"/srv:cache"}, nil, "not an absolute path"},
		{"root target", []string{"/srv:/"}, nil, "not an absolute path below /"},
		{"the workspace", []string{"/srv:/workspace/"}, nil, "is the workspace"},
		{"bad mode", []string{"/a:/b:rx"}, nil, "unknown mode"},
		{"too many colons", []string{"/a:/b:ro:x"}, nil, "not source:target"},
		{"unknown field", []string{"type=bind,source=/a,target=/b,colour=red"}, nil, "unknown field"},
		{"unknown type", []string{"type=npipe,source=/a,target=/b"}, nil, "unsupported type"},
		{"no source", []string{"type=bind,target=/b"}, nil, "no source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMounts(tt.entries)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ParseMounts(%q) error = %v, want one saying %q", tt.entries, err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("ParseMounts(%q) = %+v, %v; want %+v", tt.entries, got, err, tt.want)
			}
		})
	}
}

func TestParseAuthConfig(t *testing.T) {
	got, err := ParseAuthConfig(`{"auths": {
		"https://index.docker.io/v1/": {"auth": "dTpw"},
		"registry.example.com:5000": {"auth": "YWxpY2U6czNjcmV0"},
		"http://127.0.0.1:5000/v2/": {"auth": "dTpw"}}}`)
	want := map[string]string{"docker.io": "dTpw", "registry.example.com:5000": "YWxpY2U6czNjcmV0", "127.0.0.1:5000": "dTpw"}
	if err != nil || len(got) != len(want) {
		t.Fatalf("ParseAuthConfig = %v, %v; want %v", got, err, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("auth for %s = %q, want %q", k, got[k], v)
		}
	}
	for _, bad := range []string{`[]`, `{"auths": {"r": {"auth": "!!"}}}`, `{"auths": {"r": {"auth": "bm9jb2xvbg=="}}}`} {
		if _, err := ParseAuthConfig(bad); err == nil {
			t.Errorf("ParseAuthConfig(%s): no error", bad)
		} else if strings.Contains(err.Error(), "bm9jb2xvbg") {
			t.Errorf("ParseAuthConfig error %q shows the credential", err)
		}
	}
}

func TestRegistryKey(t *testing.T) {
	for in, want := range map[string]string{
		"https://index.docker.io/v1/": "docker.io", "docker.io": "docker.io", "registry-1.docker.io": "docker.io",
		"Registry.Example.com:5000": "registry.example.com:5000", "http://127.0.0.1:5000/v2/": "127.0.0.1:5000",
		"ghcr.io/acme": "ghcr.io",
	} {
		if got := RegistryKey(in); got != want {
			t.Errorf("RegistryKey(%q) = %q, want %q", in, got, want)
		}
	}
}
