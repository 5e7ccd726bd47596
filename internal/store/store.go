// Package store keeps jobs, their execution logs, their tokens and the
// executors table. It has one interface, [Store], with two implementations:
// sqlite (embedded, the default) and postgres (shared by many coordinators).
// The conformance suite in storetest runs against both.
//
// The semantics are those of Sourcegraph's dbworker store (shared/protocol.md):
// dequeue hands the oldest eligible job to exactly one executor; heartbeats
// keep processing jobs alive; the resetter requeues jobs whose heartbeats
// stopped; errors are retried up to a job's maximum attempts after a delay.
package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/execd/execd/internal/protocol"
)

// Job states.
const (
	StateQueued     = "queued"
	StateProcessing = "processing"
	StateCompleted  = "completed"
	StateErrored    = "errored"
	StateFailed     = "failed"
	StateCanceled   = "canceled"
)

// States lists every state, in lifecycle order.
var States = []string{StateQueued, StateProcessing, StateCompleted, StateErrored, StateFailed, StateCanceled}

var (
	// ErrNotFound means no job matched: it does not exist, or it is not in
	// a state or owned by the executor the operation requires.
	ErrNotFound = errors.New("job not found")
	// ErrInvalidState means the job exists but the operation does not apply
	// to its state (e.g. retrying a processing job).
	ErrInvalidState = errors.New("job is not in a state that allows this")
	// ErrFileNotFound means no file is stored under that bucket and key.
	ErrFileNotFound = errors.New("file not found")
	// ErrOffsetMismatch means an append named an offset other than the
	// entry's current output length; the length comes back with it.
	ErrOffsetMismatch = errors.New("log output offset does not match the stored length")
)

// Spec is what a producer submits: the Job fields of the protocol less
// id, token, version and queue.
type Spec struct {
	RepositoryName      string                          `json:"repositoryName,omitempty"`
	RepositoryDirectory string                          `json:"repositoryDirectory,omitempty"`
	Commit              string                          `json:"commit,omitempty"`
	FetchTags           bool                            `json:"fetchTags,omitempty"`
	ShallowClone        bool                            `json:"shallowClone,omitempty"`
	SparseCheckout      []string                        `json:"sparseCheckout,omitempty"`
	Files               map[string]protocol.VirtualFile `json:"files,omitempty"`
	DockerSteps         []protocol.DockerStep           `json:"dockerSteps,omitempty"`
	CliSteps            []protocol.CliStep              `json:"cliSteps,omitempty"`
	RedactedValues      map[string]string               `json:"redactedValues,omitempty"`
	DockerAuthConfig    protocol.DockerAuthConfig       `json:"dockerAuthConfig,omitempty"`
}

// Job is a job as stored.
type Job struct {
	ID              int
	Queue           string
	State           string
	Spec            Spec
	FailureMessage  string
	NumFailures     int
	NumResets       int
	MaxAttempts     int
	Cancel          bool // cancel requested while processing
	QueuedAt        time.Time
	ProcessAfter    *time.Time
	StartedAt       *time.Time
	FinishedAt      *time.Time
	LastHeartbeatAt *time.Time
	WorkerHostname  string
}

// Session is a signed-in browser of the admin UI. The store keeps the
// hash of its id (the cookie), not the id.
type Session struct {
	ID        TokenHash
	CSRF      string
	TokenHash TokenHash // of the api.accessToken signed in with
	Expires   time.Time
}

// JobRef names a job.
type JobRef struct {
	Queue string
	ID    int
}

// CancelKey is the [Waker] key under which waiters of [Store.WakeOnCancel]
// wait for job's cancellation, and the payload that tells other
// coordinators of it (queue names cannot hold a colon).
func CancelKey(job JobRef) string { return cancelPrefix + job.Queue + ":" + strconv.Itoa(job.ID) }

// IsCancelKey reports whether a [Waker] key or notification payload is a
// CancelKey.
func IsCancelKey(key string) bool { return strings.HasPrefix(key, cancelPrefix) }

const cancelPrefix = "cancel:"

// LogEntry is one stored execution log entry. ID is 1-based within its job,
// the value addExecutionLogEntry returns. Out holds the part of the
// output that the [LogRange] of [Store.LogEntries] asked for: the bytes
// from offset From of the whole output, whose length is Length.
type LogEntry struct {
	ID int
	protocol.ExecutionLogEntry
	From   int64
	Length int64
}

// LogRange chooses the part of each entry's output that LogEntries reads;
// the zero LogRange reads all of it. A log may run to gigabytes: the UI
// reads the end of it, then only what was appended since.
type LogRange struct {
	// From maps entry ids to the first byte to read (what a reader
	// already holds); entries not in it are read from the start.
	From map[int]int64
	// Tail, when positive, reads at most the last Tail bytes.
	Tail int64
	// Only, when positive, reads the output of that entry only: the
	// others come with their Length and no Out.
	Only int
}

// Start is the first byte r reads of entry id's output of length n. The
// read then starts at the next character boundary at or after it.
func (r LogRange) Start(id int, n int64) int64 {
	if r.Only > 0 && id != r.Only {
		return n
	}
	start := min(r.From[id], n)
	if r.Tail > 0 {
		start = max(start, n-r.Tail)
	}
	return max(start, 0)
}

// AlignStart returns how many bytes at the start of p continue a
// character begun before p (at most utf8.UTFMax-1): a read that starts
// there skips them.
func AlignStart(p []byte) int {
	n := 0
	for n < len(p) && n < utf8.UTFMax-1 && !utf8.RuneStart(p[n]) {
		n++
	}
	return n
}

// Executor is a row of the executors table, upserted by heartbeats.
type Executor struct {
	Name            string // the executor's self-chosen name ("hostname" in the reference)
	Queues          []string
	OS              string
	Architecture    string
	DockerVersion   string
	ExecutorVersion string
	GitVersion      string
	IgniteVersion   string
	SrcCliVersion   string
	Runtime         string // the sandbox runtime in use (our heartbeat extension)
	FirstSeenAt     time.Time
	LastSeenAt      time.Time
}

// TokenHash is the SHA-256 of a per-job token; only the hash is stored.
type TokenHash [sha256.Size]byte

// HashToken hashes a per-job token.
func HashToken(token string) TokenHash { return sha256.Sum256([]byte(token)) }

// TokenOwner is what a per-job token authorises: one job of one queue,
// and that job's repository.
type TokenOwner struct {
	JobID          int
	Queue          string
	RepositoryName string
}

// DequeueOptions are the executor's identity and the new per-job token.
type DequeueOptions struct {
	ExecutorName string
	TokenHash    TokenHash
}

// ListOptions filter and paginate [Store.ListJobs]. Jobs come newest first;
// BeforeID (when > 0) continues after the last id of the previous page.
type ListOptions struct {
	State          string // empty: any
	RepositoryName string // empty: any
	BeforeID       int
	Limit          int // <= 0: 100
}

// QueueCount is the number of jobs of one queue in one state.
type QueueCount struct {
	Queue string
	State string
	Count int
}

// ResetOptions configure one resetter pass over one queue.
type ResetOptions struct {
	StalledBefore time.Time // processing jobs last heartbeating before this are stalled
	MaxResets     int       // a stalled job reset this many times already fails instead
}

// Store is the job store. Implementations are safe for concurrent use, and
// several coordinator processes may share one database (postgres): no
// operation may rely on in-process state for correctness.
//
// Times are passed in by callers (a clock seam for tests), never read from
// the database server's clock.
type Store interface {
	// Enqueue stores a new queued job and wakes waiters of its queue.
	// maxAttempts <= 0 means 1.
	Enqueue(ctx context.Context, queue string, spec Spec, maxAttempts int, now time.Time) (int, error)

	// Dequeue moves the oldest eligible job of queue to processing and
	// returns it, or ok=false when none is eligible. Eligible: queued or
	// errored, with process_after unset or not after now. It never hands one
	// job to two callers, even from different processes. It sets started_at,
	// last_heartbeat_at, worker_hostname, the token hash; it clears the
	// job's previous log entries; and it upserts the executor's last_seen_at
	// (creating the row if needed) so the executor counts as known.
	Dequeue(ctx context.Context, queue string, opts DequeueOptions, now time.Time) (job Job, ok bool, err error)

	// QueuedCount is the number of jobs of queue that Dequeue could take now.
	QueuedCount(ctx context.Context, queue string, now time.Time) (int, error)

	// Heartbeat upserts the executor (its queues, telemetry, last_seen_at,
	// first_seen_at on insert), then, for the given job ids of queue,
	// bumps last_heartbeat_at of those processing and owned by the executor.
	// known lists those ids; cancel lists the subset whose cancel flag is set.
	// An empty queue with no ids only upserts the executor.
	Heartbeat(ctx context.Context, e Executor, queue string, ids []int, now time.Time) (known, cancel []int, err error)

	// AddLogEntry appends an entry to a processing job owned by executor and
	// returns its id. ErrNotFound when the job is not processing or not owned.
	AddLogEntry(ctx context.Context, queue string, jobID int, executor string, entry protocol.ExecutionLogEntry) (int, error)
	// UpdateLogEntry replaces entry entryID, under the same conditions.
	// ErrNotFound also when the entry does not exist.
	UpdateLogEntry(ctx context.Context, queue string, jobID int, executor string, entryID int, entry protocol.ExecutionLogEntry) error
	// AppendLogOutput appends chunk to entry entryID's output, under the
	// same conditions, if offset is the output's current length in bytes,
	// and returns the new length. Otherwise it returns the current length
	// and an error wrapping ErrOffsetMismatch. The output is stored in
	// chunks: an append never rewrites what is already stored.
	AppendLogOutput(ctx context.Context, queue string, jobID int, executor string, entryID int, offset int64, chunk string) (length int64, err error)
	// FinishLogEntry sets entry entryID's exit code and duration, under the
	// same conditions as UpdateLogEntry, leaving its output as it is.
	FinishLogEntry(ctx context.Context, queue string, jobID int, executor string, entryID int, exitCode, durationMs *int) error

	// MarkComplete moves a processing job owned by executor to completed and
	// deletes its token. ErrNotFound otherwise.
	MarkComplete(ctx context.Context, queue string, jobID int, executor string, now time.Time) error
	// MarkErrored records a failed attempt of a processing job owned by
	// executor, and deletes its token: canceled if its cancel flag is set;
	// failed once num_failures+1 >= max attempts; else errored, eligible
	// again at now+retryDelay. num_failures is incremented in every case.
	MarkErrored(ctx context.Context, queue string, jobID int, executor, message string, retryDelay time.Duration, now time.Time) error
	// MarkFailed moves a processing job owned by executor to failed (canceled
	// if its cancel flag is set), and deletes its token.
	MarkFailed(ctx context.Context, queue string, jobID int, executor, message string, now time.Time) error

	// Release puts a processing job owned by executor back in the queue as
	// if it had never been dequeued (no failure or reset counted), deletes
	// its token and wakes a waiter. The coordinator uses it when the
	// executor that asked for the job left before the answer was written.
	// ErrNotFound otherwise.
	Release(ctx context.Context, queue string, jobID int, executor string) error

	// ResetStalled moves processing jobs of queue whose last heartbeat is
	// before opts.StalledBefore back to queued with num_resets+1, or to
	// failed ("job stalled too many times") when num_resets >= MaxResets, or
	// to canceled when their cancel flag is set. Tokens are deleted. It
	// returns the ids it reset and those it failed or canceled.
	ResetStalled(ctx context.Context, queue string, opts ResetOptions, now time.Time) (reset, failed []int, err error)

	// TokenOwner returns the job a token hash belongs to. ErrNotFound when
	// no live job holds it.
	TokenOwner(ctx context.Context, hash TokenHash) (TokenOwner, error)
	// ExecutorExists reports whether an executor of that name has a row.
	ExecutorExists(ctx context.Context, name string) (bool, error)

	// GetJob returns one job of queue. ErrNotFound when absent.
	GetJob(ctx context.Context, queue string, id int) (Job, error)
	// LogEntries returns a job's entries in id order, each with the part
	// of its output that r chooses (see [LogRange], [LogEntry]).
	LogEntries(ctx context.Context, queue string, id int, r LogRange) ([]LogEntry, error)
	// ListJobs lists jobs of queue, newest first.
	ListJobs(ctx context.Context, queue string, opts ListOptions) ([]Job, error)
	// Cancel cancels a job: queued or errored jobs become canceled at once;
	// processing jobs get their cancel flag set (the executor learns it from
	// its next heartbeat). ErrInvalidState for finished jobs.
	Cancel(ctx context.Context, queue string, id int, now time.Time) error
	// Retry requeues a failed, errored or canceled job now, clearing its
	// failure count, resets, cancel flag and failure message, and wakes
	// waiters. ErrInvalidState otherwise.
	Retry(ctx context.Context, queue string, id int, now time.Time) error

	// ListExecutors lists executors, most recently seen first.
	ListExecutors(ctx context.Context) ([]Executor, error)
	// CountByState counts jobs per queue and state (absent pairs are zero).
	CountByState(ctx context.Context) ([]QueueCount, error)

	// CreateSession stores a UI session, and deletes expired ones.
	CreateSession(ctx context.Context, sess Session, now time.Time) error
	// Session returns the UI session whose id hashes to id. ErrNotFound
	// when there is none or it expired by now.
	Session(ctx context.Context, id TokenHash, now time.Time) (Session, error)
	// DeleteSession deletes a UI session; none is not an error.
	DeleteSession(ctx context.Context, id TokenHash) error

	// Wake returns a channel closed when a job may have become eligible in
	// any of queues (enqueue, retry, on any coordinator sharing the
	// database), and a function to stop waiting. Wake-ups are handed out one
	// per new job, oldest waiter first (see [Waker]); callers must still
	// re-check now and then. A caller that leaves without acting on a
	// wake-up calls stop, which passes it on (see [Waker.Wake]).
	Wake(queues []string) (ch <-chan struct{}, stop func())
	// WakeOnCancel returns a channel closed when Cancel flags one of jobs
	// (processing jobs, on any coordinator sharing the database), and a
	// function to stop waiting, which callers always call.
	WakeOnCancel(jobs []JobRef) (ch <-chan struct{}, stop func())

	// Close releases the store's connections.
	Close() error
}

// QueueSizes sums counts into each queue's size: the jobs that need an
// executor now or soon, that is queued, errored (awaiting a retry) and
// processing. It is the autoscaling figure (src_executors_queue_size),
// counted as the reference counts it.
func QueueSizes(counts []QueueCount) map[string]int {
	size := map[string]int{}
	for _, c := range counts {
		switch c.State {
		case StateQueued, StateErrored, StateProcessing:
			size[c.Queue] += c.Count
		}
	}
	return size
}
