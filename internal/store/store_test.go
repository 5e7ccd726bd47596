package store_test

import (
	"maps"
	"testing"

	"github.com/execd/execd/internal/store"
)

func TestQueueSizes(t *testing.T) {
	got := store.QueueSizes([]store.QueueCount{
		{Queue: "a", State: store.StateQueued, Count: 3},
		{Queue: "a", State: store.StateProcessing, Count: 2},
		{Queue: "a", State: store.StateErrored, Count: 1},
		{Queue: "a", State: store.StateCompleted, Count: 100},
		{Queue: "a", State: store.StateFailed, Count: 100},
		{Queue: "a", State: store.StateCanceled, Count: 100},
		{Queue: "b", State: store.StateCompleted, Count: 7},
		{Queue: "c", State: store.StateProcessing, Count: 4},
	})
	want := map[string]int{"a": 6, "c": 4}
	if !maps.Equal(got, want) {
		t.Errorf("QueueSizes = %v, want %v", got, want)
	}
}
