package protocol

import (
	"strconv"
	"strings"
)

// JobVersionFor returns the job payload version an executor of the given
// version understands: 2 for 4.3.0 and later and for development builds
// (anything that is not a plain release number), 1 otherwise.
func JobVersionFor(executorVersion string) int {
	v := strings.TrimPrefix(strings.TrimSpace(executorVersion), "v")
	if v == "" {
		return 1
	}
	core, _, _ := strings.Cut(v, "-")
	core, _, _ = strings.Cut(core, "+")
	parts := strings.Split(core, ".")
	if len(parts) < 2 {
		// Not a release version (e.g. "dev", a commit sha, a date build).
		return 2
	}
	nums := make([]int, 3)
	for i := 0; i < len(parts) && i < 3; i++ {
		n, err := strconv.Atoi(parts[i])
		if err != nil {
			return 2
		}
		nums[i] = n
	}
	if nums[0] == 0 && nums[1] == 0 && nums[2] == 0 {
		return 2 // 0.0.0+dev
	}
	if nums[0] > 4 || (nums[0] == 4 && nums[1] >= 3) {
		return 2
	}
	return 1
}
