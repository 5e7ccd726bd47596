// Package autoscale publishes the autoscaling metric: every few seconds,
// the size of each queue (its queued, errored and processing jobs, see
// [store.QueueSizes]) and of each group of queues that multi-queue
// executors pull from, to the cloud metric services whose autoscalers
// size the executor fleets.
//
// The names are the reference's, so that its Terraform modules' scaling
// rules work unchanged: a queue is named by itself, a group by its sorted
// queue names joined by "_" (batches_codeintel). Each [Sink] is one
// cloud's metric service, in a package of its own (cloudwatch, gcp); the
// allocation of EXECUTOR_ALLOCATIONS ([Allocations]) splits a queue's
// size between the clouds.
//
// A [Publisher] runs in the coordinator. When several coordinators share
// a database, they elect one publisher through a [store.Leaser] lease.
package autoscale

import "context"

// Sample is one published figure: the allocated size of one queue or
// group.
type Sample struct {
	// Queue is a queue's name, or a group's sorted queue names joined by
	// "_": the queueName dimension or label.
	Queue string
	// Value is the number of jobs times the sink's allocation, rounded up.
	Value int64
}

// Sink publishes samples to one cloud's metric service. Implementations
// are safe for concurrent use.
type Sink interface {
	// Name is the sink's cloud as EXECUTOR_ALLOCATIONS names it: "aws" or
	// "gcp".
	Name() string
	// Publish sends every sample, as one time series point each, and
	// returns when they are accepted, refused or ctx ends. An error
	// says why, in words an operator can act on.
	Publish(ctx context.Context, samples []Sample) error
}
