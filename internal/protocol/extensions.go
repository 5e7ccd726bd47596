package protocol

import (
	"net/http"
	"slices"
	"strings"
)

// Our coordinator offers extensions of the reference protocol. It names
// them in ExtensionsHeader on every response of its executor routes;
// stock executors ignore the header. Our executor uses an extension only
// after a response named it, so a stock Sourcegraph instance receives
// exactly the reference executor's requests.
const ExtensionsHeader = "X-Execd-Extensions"

// The extensions.
const (
	// ExtLongPoll: a dequeue carrying WaitHeader waits for work.
	ExtLongPoll = "long-poll"
	// ExtHeartbeatWait: a heartbeat carrying WaitHeader waits for a
	// cancellation of one of its jobs.
	ExtHeartbeatWait = "heartbeat-wait"
	// ExtLogAppend: POST /queue/{queue}/appendExecutionLogEntry.
	ExtLogAppend = "log-append"
	// ExtJobV2: a dequeue carrying JobVersionHeader "2" gets a version 2
	// payload (file contents as bytes), whatever the executor's version:
	// ours are numbered apart from Sourcegraph's, whose rule (4.3.0 or
	// later) would give them version 1, where binary files are corrupted.
	ExtJobV2 = "job-v2"
)

// Extensions are all the extensions, in the order the header lists them.
var Extensions = []string{ExtLongPoll, ExtHeartbeatWait, ExtLogAppend, ExtJobV2}

// JobVersionHeader asks a dequeue for a payload version (see ExtJobV2).
const JobVersionHeader = "X-Execd-Job-Version"

// WaitHeader asks a dequeue to wait for work and a heartbeat for a
// cancellation (a duration such as "30s").
const WaitHeader = "X-Executor-Wait"

// ParseExtensions reads the extensions a response names; unknown names
// (a newer coordinator's) are kept, and ignored by callers.
func ParseExtensions(h http.Header) []string {
	var exts []string
	for _, v := range h.Values(ExtensionsHeader) {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" && !slices.Contains(exts, name) {
				exts = append(exts, name)
			}
		}
	}
	return exts
}
