package docker

import (
	"slices"
	"strings"
	"testing"

	"github.com/distribution/reference"
)

func TestPullSources(t *testing.T) {
	r := New(Config{RegistryMirrors: []string{"http://mirror-a:5000", "mirror-b"}})
	if r.cfgErr != nil {
		t.Fatal(r.cfgErr)
	}
	digest := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		ref  string
		want []string
	}{
		{"alpine", []string{"mirror-a:5000/library/alpine:latest", "mirror-b/library/alpine:latest", "docker.io/library/alpine:latest"}},
		{"golang:1.22", []string{"mirror-a:5000/library/golang:1.22", "mirror-b/library/golang:1.22", "docker.io/library/golang:1.22"}},
		{"sourcegraph/src-cli:5", []string{"mirror-a:5000/sourcegraph/src-cli:5", "mirror-b/sourcegraph/src-cli:5", "docker.io/sourcegraph/src-cli:5"}},
		{"alpine@" + digest, []string{"mirror-a:5000/library/alpine@" + digest, "mirror-b/library/alpine@" + digest, "docker.io/library/alpine@" + digest}},
		// Other registries are not mirrored.
		{"ghcr.io/acme/tool:1", []string{"ghcr.io/acme/tool:1"}},
		{"localhost:5000/x", []string{"localhost:5000/x:latest"}},
	}
	for _, tt := range tests {
		named, err := reference.ParseNormalizedNamed(tt.ref)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range r.pullSources(reference.TagNameOnly(named)) {
			got = append(got, s.ref)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("pullSources(%q) = %q, want %q", tt.ref, got, tt.want)
		}
	}
}
