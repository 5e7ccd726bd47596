package autoscale_test

import (
	"reflect"
	"testing"

	"github.com/execd/execd/internal/autoscale"
)

func TestGroups(t *testing.T) {
	tests := []struct {
		name     string
		queues   []string
		execSets [][]string
		want     map[string][]string
	}{
		{"one queue", []string{"batches"}, nil, map[string][]string{"batches": {"batches"}}},
		{"two queues: each and both", []string{"codeintel", "batches"}, nil, map[string][]string{
			"batches": {"batches"}, "codeintel": {"codeintel"}, "batches_codeintel": {"batches", "codeintel"},
		}},
		{"executors' sets, unsorted and repeated", []string{"a", "b", "c"}, [][]string{{"c", "a"}, {"a", "c", "a"}, {"b"}, {}, {"c", "b", "a"}}, map[string][]string{
			"a": {"a"}, "b": {"b"}, "c": {"c"}, "a_b_c": {"a", "b", "c"}, "a_c": {"a", "c"},
		}},
		{"executor set with a queue not configured", []string{"a"}, [][]string{{"x", "a"}}, map[string][]string{
			"a": {"a"}, "a_x": {"a", "x"},
		}},
		{"duplicate single set ignored", []string{"a"}, [][]string{{"a", "a"}}, map[string][]string{"a": {"a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := autoscale.Groups(tt.queues, tt.execSets); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Groups(%q, %q) = %q, want %q", tt.queues, tt.execSets, got, tt.want)
			}
		})
	}
}

func TestGroupName(t *testing.T) {
	if got, want := autoscale.GroupName([]string{"codeintel", "batches", "codeintel"}), "batches_codeintel"; got != want {
		t.Errorf("GroupName = %q, want %q", got, want)
	}
}

func TestSamples(t *testing.T) {
	groups := autoscale.Groups([]string{"batches", "codeintel"}, nil)
	tests := []struct {
		name  string
		sizes map[string]int
		alloc autoscale.Allocations
		cloud string
		want  []autoscale.Sample
	}{
		{"whole, no allocations", map[string]int{"batches": 400, "codeintel": 3}, nil, "aws",
			[]autoscale.Sample{{"batches", 400}, {"batches_codeintel", 403}, {"codeintel", 3}}},
		{"empty queues publish 0", map[string]int{}, nil, "gcp",
			[]autoscale.Sample{{"batches", 0}, {"batches_codeintel", 0}, {"codeintel", 0}}},
		{"half each", map[string]int{"batches": 10, "codeintel": 4}, autoscale.Allocations{"batches": {"aws": 0.5, "gcp": 0.5}}, "aws",
			[]autoscale.Sample{{"batches", 5}, {"batches_codeintel", 9}, {"codeintel", 4}}},
		{"odd count rounds up on both clouds", map[string]int{"batches": 1}, autoscale.Allocations{"batches": {"aws": 0.5, "gcp": 0.5}}, "gcp",
			[]autoscale.Sample{{"batches", 1}, {"batches_codeintel", 1}, {"codeintel", 0}}},
		{"cloud without a share gets 0", map[string]int{"batches": 7, "codeintel": 2}, autoscale.Allocations{"batches": {"gcp": 1}}, "aws",
			[]autoscale.Sample{{"batches", 0}, {"batches_codeintel", 2}, {"codeintel", 2}}},
		{"group sums shares before rounding", map[string]int{"batches": 3, "codeintel": 3}, autoscale.Allocations{"batches": {"aws": 0.5}, "codeintel": {"aws": 0.5}}, "aws",
			[]autoscale.Sample{{"batches", 2}, {"batches_codeintel", 3}, {"codeintel", 2}}},
		{"float noise does not round up", map[string]int{"batches": 10}, autoscale.Allocations{"batches": {"aws": 0.3, "gcp": 0.7}}, "aws",
			[]autoscale.Sample{{"batches", 3}, {"batches_codeintel", 3}, {"codeintel", 0}}},
		{"queue without a group is not published", map[string]int{"other": 9}, nil, "aws",
			[]autoscale.Sample{{"batches", 0}, {"batches_codeintel", 0}, {"codeintel", 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := autoscale.Samples(groups, tt.sizes, tt.alloc, tt.cloud); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Samples(%v, %v, %s) = %v, want %v", tt.sizes, tt.alloc, tt.cloud, got, tt.want)
			}
		})
	}
}
