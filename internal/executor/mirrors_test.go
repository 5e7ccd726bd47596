package executor_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/execd/execd/internal/executor"
)

func TestMirrorServices(t *testing.T) {
	lookup := func(_ context.Context, _, host string) ([]netip.Addr, error) {
		if host == "mirror.internal" {
			return []netip.Addr{netip.MustParseAddr("10.0.1.4"), netip.MustParseAddr("fd00::4")}, nil
		}
		return nil, errors.New("no such host")
	}
	tests := []struct {
		mirrors []string
		want    []string
		err     bool
	}{
		{[]string{"http://10.0.1.4:5000"}, []string{"10.0.1.4:5000"}, false},
		{[]string{"http://10.0.1.4"}, []string{"10.0.1.4:80"}, false},
		{[]string{"https://10.0.1.4/"}, []string{"10.0.1.4:443"}, false},
		{[]string{"10.0.1.4:5000"}, []string{"10.0.1.4:5000"}, false},
		{[]string{"http://[fd00::4]:5000"}, []string{"[fd00::4]:5000"}, false},
		{[]string{"http://mirror.internal:5000"}, []string{"10.0.1.4:5000", "[fd00::4]:5000"}, false},
		{[]string{"http://nowhere.internal:5000", "http://10.0.1.5:5000"}, []string{"10.0.1.5:5000"}, true},
		{[]string{"http://10.0.1.4:http"}, nil, true},
		{nil, nil, false},
	}
	for _, tt := range tests {
		got, err := executor.MirrorServices(t.Context(), tt.mirrors, lookup)
		var gotS []string
		for _, s := range got {
			gotS = append(gotS, s.String())
		}
		if !slices.Equal(gotS, tt.want) || (err != nil) != tt.err {
			t.Errorf("MirrorServices(%q) = %q, %v; want %q, error %v", tt.mirrors, gotS, err, tt.want, tt.err)
		}
	}
}
