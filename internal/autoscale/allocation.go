package autoscale

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// AllocationsEnv is the variable holding the allocations, as JSON.
const AllocationsEnv = "EXECUTOR_ALLOCATIONS"

// Clouds are the keys of an allocation: the sinks' names.
var Clouds = []string{"aws", "gcp"}

// Allocations give, per queue and cloud, the share of the queue's size
// published to that cloud, from 0 to 1. A queue absent from the map is
// published whole to every configured cloud; a cloud absent from a
// queue's entry gets none of it.
//
// In EXECUTOR_ALLOCATIONS it is the reference's JSON object of queue
// names to objects of clouds to shares:
//
//	{"batches": {"aws": 0.5, "gcp": 0.5}, "codeintel": {"gcp": 1}}
type Allocations map[string]map[string]float64

// Share is queue's share published to cloud.
func (a Allocations) Share(queue, cloud string) float64 {
	shares, ok := a[queue]
	if !ok {
		return 1
	}
	return shares[cloud]
}

// ParseAllocations parses and checks the value of EXECUTOR_ALLOCATIONS
// (empty: every queue whole to every cloud), for the clouds configured.
// Errors name the variable. Warnings tell of shares that have no effect
// or leave part of a queue unpublished: a share for a cloud that is not
// configured is dropped, and a queue's shares summing to less than 1
// make its executors scale for part of its jobs.
func ParseAllocations(s string, configured []string) (a Allocations, warnings []string, err error) {
	if strings.TrimSpace(s) == "" {
		if len(configured) > 1 {
			warnings = append(warnings, fmt.Sprintf("%s is not set: every queue's whole size goes to each of %s", AllocationsEnv, strings.Join(configured, " and ")))
		}
		return Allocations{}, warnings, nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	if err := dec.Decode(&a); err != nil {
		return nil, nil, fmt.Errorf(`%s: want a JSON object of queue names to objects of clouds to shares, such as {"batches": {"aws": 0.5, "gcp": 0.5}}: %v`, AllocationsEnv, err)
	}
	if dec.More() {
		return nil, nil, fmt.Errorf("%s: unexpected text after the JSON object", AllocationsEnv)
	}
	if a == nil {
		return nil, nil, fmt.Errorf(`%s: want a JSON object, such as {"batches": {"aws": 0.5, "gcp": 0.5}}, not null`, AllocationsEnv)
	}
	for _, queue := range sortedKeys(a) {
		if err := checkQueueName(queue); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", AllocationsEnv, err)
		}
		shares := a[queue]
		if shares == nil {
			shares = map[string]float64{}
			a[queue] = shares
		}
		total := 0.0
		for _, cloud := range sortedKeys(shares) {
			v := shares[cloud]
			if !slices.Contains(Clouds, cloud) {
				return nil, nil, fmt.Errorf("%s: queue %q: unknown cloud %q: want %s", AllocationsEnv, queue, cloud, strings.Join(Clouds, " or "))
			}
			if math.IsNaN(v) || v < 0 || v > 1 {
				return nil, nil, fmt.Errorf("%s: queue %q: %s share %v: want a number from 0 to 1", AllocationsEnv, queue, cloud, v)
			}
			if v > 0 && !slices.Contains(configured, cloud) {
				warnings = append(warnings, fmt.Sprintf("%s: queue %q: %s share %v ignored: no %s metric sink is configured", AllocationsEnv, queue, cloud, v, cloud))
				delete(shares, cloud)
				continue
			}
			total += v
		}
		if total < 1 {
			warnings = append(warnings, fmt.Sprintf("%s: queue %q: shares add up to %v, under 1: its executors scale for part of its jobs only", AllocationsEnv, queue, total))
		}
	}
	return a, warnings, nil
}

// queueNameRE is the site config's rule for queue names.
var queueNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// checkQueueName checks a queue name as the site config does.
func checkQueueName(q string) error {
	if !queueNameRE.MatchString(q) {
		return fmt.Errorf("queue name %q is invalid: use lower-case letters, digits, '-' and '_' (at most 63)", q)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
