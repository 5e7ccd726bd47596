package autoscale

import (
	"math"
	"slices"
	"strings"
)

// GroupName names a group of queues as the reference does: the sorted,
// distinct names joined by "_".
func GroupName(queues []string) string {
	q := slices.Clone(queues)
	slices.Sort(q)
	return strings.Join(slices.Compact(q), "_")
}

// Groups returns what is published, by name: each queue alone, every
// queue together when there are several (the reference's multi-queue
// figure), and each distinct set of two or more queues that some
// executor pulls from (execSets, from the executors' heartbeats).
func Groups(queues []string, execSets [][]string) map[string][]string {
	groups := map[string][]string{}
	add := func(qs []string) {
		q := slices.Clone(qs)
		slices.Sort(q)
		q = slices.Compact(q)
		if len(q) > 0 {
			groups[strings.Join(q, "_")] = q
		}
	}
	for _, q := range queues {
		add([]string{q})
	}
	if len(queues) > 1 {
		add(queues)
	}
	for _, set := range execSets {
		if len(slices.Compact(slices.Sorted(slices.Values(set)))) > 1 {
			add(set)
		}
	}
	return groups
}

// Samples computes one cloud's samples, sorted by name: for each group,
// the sum over its queues of the queue's size times its share for cloud,
// rounded up, so that a queue with any job keeps at least one executor
// wherever it has a share. (The reference rounds down, which leaves a
// half-allocated queue of one job with no executor at all.)
func Samples(groups map[string][]string, sizes map[string]int, alloc Allocations, cloud string) []Sample {
	out := make([]Sample, 0, len(groups))
	for _, name := range sortedKeys(groups) {
		total := 0.0
		for _, q := range groups[name] {
			total += float64(sizes[q]) * alloc.Share(q, cloud)
		}
		// The epsilon keeps 10 jobs at 0.3 (3.0000000000000004) at 3.
		out = append(out, Sample{Queue: name, Value: int64(math.Ceil(total - 1e-9))})
	}
	return out
}
