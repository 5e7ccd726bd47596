// Package protocol holds the wire types of the executor queue protocol that
// Sourcegraph executors speak to a Sourcegraph instance, and that our
// coordinator and executor speak to each other.
//
// The job lifecycle, as the coordinator sees it:
//
//	queued -> processing (dequeue) -> completed (markComplete)
//	                                -> errored   (markErrored; retried after a delay)
//	                                -> failed    (markFailed, or errored too often)
//	                                -> canceled  (markErrored/markFailed after a cancel)
//	processing -> queued (the resetter, when heartbeats stop)
//
// JSON keys follow the reference exactly; see shared/protocol.md.
package protocol
