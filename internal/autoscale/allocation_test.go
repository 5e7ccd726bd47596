package autoscale_test

import (
	"maps"
	"strings"
	"testing"

	"github.com/execd/execd/internal/autoscale"
)

func TestParseAllocations(t *testing.T) {
	both := []string{"aws", "gcp"}
	tests := []struct {
		name         string
		in           string
		configured   []string
		want         autoscale.Allocations
		wantErr      string   // substring; every error names the variable
		wantWarnings []string // substrings, in order
	}{
		{name: "unset, one cloud", in: "", configured: []string{"aws"}, want: autoscale.Allocations{}},
		{name: "unset, both clouds", in: "  ", configured: both, want: autoscale.Allocations{}, wantWarnings: []string{"every queue's whole size goes to each of aws and gcp"}},
		{name: "split", in: `{"batches": {"aws": 0.5, "gcp": 0.5}, "codeintel": {"gcp": 1}}`, configured: both,
			want: autoscale.Allocations{"batches": {"aws": 0.5, "gcp": 0.5}, "codeintel": {"gcp": 1}}},
		{name: "share of an unconfigured cloud dropped", in: `{"batches": {"aws": 0.5, "gcp": 0.5}}`, configured: []string{"gcp"},
			want:         autoscale.Allocations{"batches": {"gcp": 0.5}},
			wantWarnings: []string{`queue "batches": aws share 0.5 ignored: no aws metric sink is configured`, `queue "batches": shares add up to 0.5, under 1`}},
		{name: "under 1", in: `{"batches": {"aws": 0.25}}`, configured: both,
			want: autoscale.Allocations{"batches": {"aws": 0.25}}, wantWarnings: []string{"shares add up to 0.25"}},
		{name: "empty entry", in: `{"batches": {}}`, configured: both,
			want: autoscale.Allocations{"batches": {}}, wantWarnings: []string{"shares add up to 0"}},
		{name: "null entry", in: `{"batches": null}`, configured: both,
			want: autoscale.Allocations{"batches": {}}, wantWarnings: []string{"shares add up to 0"}},
		{name: "not JSON", in: `batches=aws`, configured: both, wantErr: "want a JSON object of queue names"},
		{name: "array", in: `[{"aws": 1}]`, configured: both, wantErr: "want a JSON object of queue names"},
		{name: "null", in: `null`, configured: both, wantErr: "not null"},
		{name: "trailing text", in: `{} {}`, configured: both, wantErr: "unexpected text"},
		{name: "share as string", in: `{"batches": {"aws": "0.5"}}`, configured: both, wantErr: "want a JSON object"},
		{name: "unknown cloud", in: `{"batches": {"azure": 1}}`, configured: both, wantErr: `queue "batches": unknown cloud "azure": want aws or gcp`},
		{name: "negative", in: `{"batches": {"aws": -0.1}}`, configured: both, wantErr: `aws share -0.1: want a number from 0 to 1`},
		{name: "above 1", in: `{"batches": {"gcp": 1.5}}`, configured: both, wantErr: `gcp share 1.5: want a number from 0 to 1`},
		{name: "bad queue name", in: `{"Batches": {"aws": 1}}`, configured: both, wantErr: `queue name "Batches" is invalid`},
		{name: "empty queue name", in: `{"": {"aws": 1}}`, configured: both, wantErr: `queue name "" is invalid`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, warnings, err := autoscale.ParseAllocations(tt.in, tt.configured)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "EXECUTOR_ALLOCATIONS: ") {
					t.Fatalf("ParseAllocations(%q) error = %v, want one starting with EXECUTOR_ALLOCATIONS: and containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAllocations(%q): %v", tt.in, err)
			}
			if !maps.EqualFunc(got, tt.want, maps.Equal) {
				t.Errorf("ParseAllocations(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if len(warnings) != len(tt.wantWarnings) {
				t.Fatalf("warnings = %q, want %d containing %q", warnings, len(tt.wantWarnings), tt.wantWarnings)
			}
			for i, w := range tt.wantWarnings {
				if !strings.Contains(warnings[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, warnings[i], w)
				}
			}
		})
	}
}

func TestAllocations_Share(t *testing.T) {
	a := autoscale.Allocations{"batches": {"aws": 0.25, "gcp": 0.75}, "codeintel": {"gcp": 1}}
	tests := []struct {
		queue, cloud string
		want         float64
	}{
		{"batches", "aws", 0.25},
		{"batches", "gcp", 0.75},
		{"codeintel", "aws", 0}, // listed queue, cloud absent: none
		{"codeintel", "gcp", 1},
		{"other", "aws", 1}, // unlisted queue: whole
		{"other", "gcp", 1},
	}
	for _, tt := range tests {
		if got := a.Share(tt.queue, tt.cloud); got != tt.want {
			t.Errorf("Share(%q, %q) = %v, want %v", tt.queue, tt.cloud, got, tt.want)
		}
	}
}
