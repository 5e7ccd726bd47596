// Package storetest is the conformance suite of [store.Store]: every
// implementation runs [Run] (and [RunShared] if several processes may share
// its database) from its tests, and [Bench] from its benchmarks.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/store"
)

// t0 is the suite's clock origin. It has sub-millisecond digits so that the
// suite checks that stores keep them (PostgreSQL keeps microseconds).
var t0 = time.Date(2025, 3, 4, 5, 6, 7, 123456000, time.UTC)

// at returns the suite's clock d after t0.
func at(d time.Duration) time.Time { return t0.Add(d) }

// Run runs the conformance suite. open returns a new, empty store and
// arranges for it to be closed when the test ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"EnqueueGetJob", testEnqueueGetJob},
		{"DequeueOrder", testDequeueOrder},
		{"DequeueEligibility", testDequeueEligibility},
		{"DequeueConcurrent", testDequeueConcurrent},
		{"DequeueUpsertsExecutor", testDequeueUpsertsExecutor},
		{"Tokens", testTokens},
		{"Ownership", testOwnership},
		{"LogEntries", testLogEntries},
		{"LogEntriesClearedOnDequeue", testLogEntriesClearedOnDequeue},
		{"LogAppend", testLogAppend},
		{"LogAppendClearedOnDequeue", testLogAppendClearedOnDequeue},
		{"LogRange", testLogRange},
		{"Heartbeat", testHeartbeat},
		{"HeartbeatExecutorUpsert", testHeartbeatExecutorUpsert},
		{"MarkComplete", testMarkComplete},
		{"MarkErrored", testMarkErrored},
		{"MarkFailed", testMarkFailed},
		{"Release", testRelease},
		{"ResetStalled", testResetStalled},
		{"Cancel", testCancel},
		{"Retry", testRetry},
		{"ListJobs", testListJobs},
		{"CountByState", testCountByState},
		{"QueuedCount", testQueuedCount},
		{"ListExecutors", testListExecutors},
		{"Wake", testWake},
		{"Sessions", testSessions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // each test has a store of its own
			tt.fn(t, open(t))
		})
	}
}

// RunShared checks that two stores opened on one database, as two
// processes would, never hand out a job twice and see each other's
// writes. open returns two stores on one new, empty database and arranges
// for both to be closed.
func RunShared(t *testing.T, open func(t *testing.T) (a, b store.Store)) {
	t.Run("DequeueAcrossStores", func(t *testing.T) {
		a, b := open(t)
		const jobs = 300
		ids := make(map[int]bool)
		for i := range jobs {
			ids[mustEnqueue(t, a, "q", store.Spec{}, 1, at(time.Duration(i)))] = true
		}
		got := dequeueAll(t, []store.Store{a, b}, "q", 8)
		checkEachOnce(t, got, ids)
	})
	t.Run("WritesAcrossStores", func(t *testing.T) {
		a, b := open(t)
		id := mustEnqueue(t, a, "q", store.Spec{}, 1, t0)
		mustDequeue(t, b, "q", "ex", "tok", t0)
		if o, err := a.TokenOwner(t.Context(), store.HashToken("tok")); err != nil || o.JobID != id {
			t.Errorf("TokenOwner through a of a job dequeued through b: got %+v, %v, want job %d", o, err, id)
		}
		if ok, err := a.ExecutorExists(t.Context(), "ex"); err != nil || !ok {
			t.Errorf("ExecutorExists through a after a dequeue through b: got %v, %v, want true", ok, err)
		}
		mustOK(t, a.MarkComplete(t.Context(), "q", id, "ex", t0))
		if j := mustGet(t, b, "q", id); j.State != store.StateCompleted {
			t.Errorf("state through b after MarkComplete through a: got %q, want completed", j.State)
		}
	})
}

// RunCrossWake checks that a waiter of one store is woken by an enqueue or
// a retry through another store on the same database, as coordinators
// sharing a database need. open is as for [RunShared].
func RunCrossWake(t *testing.T, open func(t *testing.T) (a, b store.Store)) {
	t.Run("WakeAcrossStores", func(t *testing.T) {
		a, b := open(t)
		ch, stop := b.Wake([]string{"q"})
		defer stop()
		other, stopOther := b.Wake([]string{"other"})
		defer stopOther()
		mustEnqueue(t, a, "q", store.Spec{}, 1, t0)
		waitWoken(t, ch, "waiter of b after an enqueue through a")
		notWoken(t, other, "waiter of another queue")

		// Retry wakes too.
		id := mustEnqueue(t, a, "r", store.Spec{}, 1, t0)
		mustDequeue(t, a, "r", "ex", "tok", t0)
		mustOK(t, a.MarkFailed(t.Context(), "r", id, "ex", "boom", t0))
		ch, stop2 := b.Wake([]string{"r"})
		defer stop2()
		mustOK(t, a.Retry(t.Context(), "r", id, at(time.Second)))
		waitWoken(t, ch, "waiter of b after a retry through a")
	})
}

func testEnqueueGetJob(t *testing.T, s store.Store) {
	ctx := t.Context()
	spec := fullSpec()
	id1 := mustEnqueue(t, s, "batches", spec, 3, t0)
	id2 := mustEnqueue(t, s, "batches", store.Spec{}, 0, at(time.Second))
	id3 := mustEnqueue(t, s, "codeintel", store.Spec{}, -5, at(2*time.Second))
	if !(id1 < id2 && id2 < id3) {
		t.Errorf("ids: got %d, %d, %d, want increasing", id1, id2, id3)
	}

	j, err := s.GetJob(ctx, "batches", id1)
	mustOK(t, err)
	if j.ID != id1 || j.Queue != "batches" || j.State != store.StateQueued {
		t.Errorf("GetJob: got id %d queue %q state %q, want %d %q %q", j.ID, j.Queue, j.State, id1, "batches", store.StateQueued)
	}
	if !reflect.DeepEqual(j.Spec, spec) {
		t.Errorf("spec round trip:\ngot  %+v\nwant %+v", j.Spec, spec)
	}
	if j.MaxAttempts != 3 || j.NumFailures != 0 || j.NumResets != 0 || j.Cancel || j.FailureMessage != "" || j.WorkerHostname != "" {
		t.Errorf("new job counters: got %+v", j)
	}
	wantTime(t, "queued_at", j.QueuedAt, t0)
	for name, p := range map[string]*time.Time{"process_after": j.ProcessAfter, "started_at": j.StartedAt, "finished_at": j.FinishedAt, "last_heartbeat_at": j.LastHeartbeatAt} {
		if p != nil {
			t.Errorf("%s of a new job: got %v, want nil", name, *p)
		}
	}

	for _, id := range []int{id2, id3} {
		q := "batches"
		if id == id3 {
			q = "codeintel"
		}
		j, err := s.GetJob(ctx, q, id)
		mustOK(t, err)
		if j.MaxAttempts != 1 {
			t.Errorf("job %d enqueued with maxAttempts <= 0: got max attempts %d, want 1", id, j.MaxAttempts)
		}
	}

	for _, tc := range []struct {
		name  string
		queue string
		id    int
	}{
		{"wrong queue", "codeintel", id1},
		{"missing id", "batches", id3 + 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.GetJob(ctx, tc.queue, tc.id)
			wantErr(t, err, store.ErrNotFound)
		})
	}
}

func testDequeueOrder(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, ok, err := s.Dequeue(ctx, "q", store.DequeueOptions{ExecutorName: "ex"}, t0); err != nil || ok {
		t.Fatalf("Dequeue of an empty queue: got ok=%v err=%v, want ok=false", ok, err)
	}
	a := mustEnqueue(t, s, "q", store.Spec{RepositoryName: "a"}, 1, t0)
	other := mustEnqueue(t, s, "other", store.Spec{}, 1, t0)
	b := mustEnqueue(t, s, "q", store.Spec{RepositoryName: "b"}, 1, t0)
	c := mustEnqueue(t, s, "q", store.Spec{RepositoryName: "c"}, 1, at(-time.Hour)) // older clock, newer id

	now := at(time.Minute)
	var got []int
	for range 3 {
		j := mustDequeue(t, s, "q", "ex", fmt.Sprint(len(got)), now)
		got = append(got, j.ID)
		if j.State != store.StateProcessing || j.Queue != "q" || j.WorkerHostname != "ex" {
			t.Errorf("dequeued job %d: got state %q queue %q worker %q, want processing q ex", j.ID, j.State, j.Queue, j.WorkerHostname)
		}
		if j.StartedAt == nil || !j.StartedAt.Equal(now) || j.LastHeartbeatAt == nil || !j.LastHeartbeatAt.Equal(now) {
			t.Errorf("dequeued job %d: got started_at %v last_heartbeat_at %v, want both %v", j.ID, j.StartedAt, j.LastHeartbeatAt, now)
		}
		stored, err := s.GetJob(ctx, "q", j.ID)
		mustOK(t, err)
		if stored.State != store.StateProcessing || stored.WorkerHostname != "ex" || stored.StartedAt == nil {
			t.Errorf("stored job %d after dequeue: got state %q worker %q started_at %v", j.ID, stored.State, stored.WorkerHostname, stored.StartedAt)
		}
	}
	if want := []int{a, b, c}; !slices.Equal(got, want) {
		t.Errorf("dequeue order: got %v, want %v (by id)", got, want)
	}
	if _, ok, err := s.Dequeue(ctx, "q", store.DequeueOptions{ExecutorName: "ex"}, now); err != nil || ok {
		t.Errorf("Dequeue after draining: got ok=%v err=%v, want ok=false", ok, err)
	}
	j := mustDequeue(t, s, "other", "ex", "x", now)
	if j.ID != other {
		t.Errorf("dequeue of other queue: got job %d, want %d", j.ID, other)
	}
}

func testDequeueEligibility(t *testing.T, s store.Store) {
	ctx := t.Context()
	const delay = time.Minute
	// A job that errored at t0 is eligible again at t0+delay.
	errored := mustEnqueue(t, s, "q", store.Spec{}, 3, t0)
	mustDequeue(t, s, "q", "ex", "t1", t0)
	mustOK(t, s.MarkErrored(ctx, "q", errored, "ex", "boom", delay, t0))

	for _, tc := range []struct {
		name   string
		now    time.Time
		wantOK bool
	}{
		{"before the retry delay", at(delay - time.Millisecond), false},
		{"at the retry delay", at(delay), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := s.QueuedCount(ctx, "q", tc.now)
			mustOK(t, err)
			if want := map[bool]int{false: 0, true: 1}[tc.wantOK]; n != want {
				t.Errorf("QueuedCount: got %d, want %d", n, want)
			}
			j, ok, err := s.Dequeue(ctx, "q", store.DequeueOptions{ExecutorName: "ex", TokenHash: store.HashToken("t2")}, tc.now)
			mustOK(t, err)
			if ok != tc.wantOK {
				t.Fatalf("Dequeue: got ok=%v, want %v", ok, tc.wantOK)
			}
			if ok && (j.ID != errored || j.NumFailures != 1) {
				t.Errorf("Dequeue: got job %d with %d failures, want job %d with 1", j.ID, j.NumFailures, errored)
			}
		})
	}

	// Jobs in other states are never eligible.
	mustEnqueue(t, s, "r", store.Spec{}, 1, t0)
	mustDequeue(t, s, "r", "ex", "r1", t0) // processing
	s3 := mustEnqueue(t, s, "r", store.Spec{}, 1, t0)
	mustDequeue(t, s, "r", "ex", "r2", t0)
	mustOK(t, s.MarkComplete(ctx, "r", s3, "ex", t0))
	s4 := mustEnqueue(t, s, "r", store.Spec{}, 1, t0)
	mustDequeue(t, s, "r", "ex", "r3", t0)
	mustOK(t, s.MarkFailed(ctx, "r", s4, "ex", "no", t0))
	s5 := mustEnqueue(t, s, "r", store.Spec{}, 1, t0)
	mustOK(t, s.Cancel(ctx, "r", s5, t0))
	later := at(24 * time.Hour)
	if n, err := s.QueuedCount(ctx, "r", later); err != nil || n != 0 {
		t.Errorf("QueuedCount of processing/completed/failed/canceled jobs: got %d, %v, want 0", n, err)
	}
	if j, ok, err := s.Dequeue(ctx, "r", store.DequeueOptions{ExecutorName: "ex"}, later); err != nil || ok {
		t.Errorf("Dequeue with only processing/completed/failed/canceled jobs: got job %d ok=%v err=%v, want none", j.ID, ok, err)
	}
}

func testDequeueConcurrent(t *testing.T, s store.Store) {
	const jobs = 500
	ids := make(map[int]bool)
	for i := range jobs {
		ids[mustEnqueue(t, s, "q", store.Spec{}, 1, at(time.Duration(i)))] = true
	}
	got := dequeueAll(t, []store.Store{s}, "q", 16)
	checkEachOnce(t, got, ids)
}

// dequeueAll drains queue with workers goroutines per store and returns
// the ids each dequeue returned.
func dequeueAll(t *testing.T, stores []store.Store, queue string, workers int) []int {
	t.Helper()
	var (
		mu   sync.Mutex
		got  []int
		wg   sync.WaitGroup
		errs = make(chan error, len(stores)*workers)
	)
	for si, s := range stores {
		for w := range workers {
			wg.Go(func() {
				name := fmt.Sprintf("ex-%d-%d", si, w)
				for i := 0; ; i++ {
					tok := store.HashToken(fmt.Sprintf("%s-%d", name, i))
					j, ok, err := s.Dequeue(context.Background(), queue, store.DequeueOptions{ExecutorName: name, TokenHash: tok}, t0)
					if err != nil {
						errs <- err
						return
					}
					if !ok {
						return
					}
					mu.Lock()
					got = append(got, j.ID)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Dequeue: %v", err)
	}
	return got
}

func checkEachOnce(t *testing.T, got []int, want map[int]bool) {
	t.Helper()
	seen := make(map[int]int)
	for _, id := range got {
		seen[id]++
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("job %d dequeued %d times, want once", id, n)
		}
		if !want[id] {
			t.Errorf("job %d dequeued but never enqueued", id)
		}
	}
	for id := range want {
		if seen[id] == 0 {
			t.Errorf("job %d never dequeued", id)
		}
	}
	if len(got) != len(want) {
		t.Errorf("dequeued %d jobs, want %d", len(got), len(want))
	}
}

func testDequeueUpsertsExecutor(t *testing.T, s store.Store) {
	ctx := t.Context()
	if ok, err := s.ExecutorExists(ctx, "ex"); err != nil || ok {
		t.Fatalf("ExecutorExists before any dequeue: got %v, %v, want false", ok, err)
	}
	mustEnqueue(t, s, "a", store.Spec{}, 1, t0)
	mustEnqueue(t, s, "b", store.Spec{}, 1, t0)
	mustEnqueue(t, s, "a", store.Spec{}, 1, t0)
	mustDequeue(t, s, "a", "ex", "1", at(time.Second))
	if ok, err := s.ExecutorExists(ctx, "ex"); err != nil || !ok {
		t.Fatalf("ExecutorExists after a dequeue: got %v, %v, want true", ok, err)
	}
	mustDequeue(t, s, "b", "ex", "2", at(2*time.Second))
	mustDequeue(t, s, "a", "ex", "3", at(3*time.Second))
	e := findExecutor(t, s, "ex")
	wantTime(t, "first_seen_at", e.FirstSeenAt, at(time.Second))
	wantTime(t, "last_seen_at", e.LastSeenAt, at(3*time.Second))
	if got := slices.Sorted(slices.Values(e.Queues)); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("executor queues: got %q, want [a b] (each once)", e.Queues)
	}
	if ok, err := s.ExecutorExists(ctx, "nobody"); err != nil || ok {
		t.Errorf("ExecutorExists of an unknown name: got %v, %v, want false", ok, err)
	}
}

func testTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, err := s.TokenOwner(ctx, store.HashToken("nothing")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TokenOwner of an unknown hash: got %v, want ErrNotFound", err)
	}
	id := mustEnqueue(t, s, "q", store.Spec{RepositoryName: "github.com/a/b"}, 1, t0)
	mustDequeue(t, s, "q", "ex", "first", t0)
	o, err := s.TokenOwner(ctx, store.HashToken("first"))
	mustOK(t, err)
	if want := (store.TokenOwner{JobID: id, Queue: "q", RepositoryName: "github.com/a/b"}); o != want {
		t.Errorf("TokenOwner: got %+v, want %+v", o, want)
	}

	// A reset deletes the token; the next dequeue gets a new one.
	reset, _, err := s.ResetStalled(ctx, "q", store.ResetOptions{StalledBefore: at(time.Minute), MaxResets: 3}, at(time.Minute))
	mustOK(t, err)
	if !slices.Equal(reset, []int{id}) {
		t.Fatalf("ResetStalled: got reset %v, want [%d]", reset, id)
	}
	wantNoToken(t, s, "first", "after a reset")
	mustDequeue(t, s, "q", "ex2", "second", at(time.Minute))
	wantNoToken(t, s, "first", "after re-dequeue")
	if o, err := s.TokenOwner(ctx, store.HashToken("second")); err != nil || o.JobID != id {
		t.Errorf("TokenOwner of the new token: got %+v, %v, want job %d", o, err, id)
	}

	// Every way out of processing deletes the token.
	for _, tc := range []struct {
		name string
		end  func(id int) error
	}{
		{"MarkComplete", func(id int) error { return s.MarkComplete(ctx, "t", id, "ex", t0) }},
		{"MarkErrored", func(id int) error { return s.MarkErrored(ctx, "t", id, "ex", "boom", time.Second, t0) }},
		{"MarkErrored to failed", func(id int) error { return s.MarkErrored(ctx, "t", id, "ex", "boom", time.Second, t0) }},
		{"MarkFailed", func(id int) error { return s.MarkFailed(ctx, "t", id, "ex", "boom", t0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			attempts := 3
			if strings.HasSuffix(tc.name, "failed") {
				attempts = 1
			}
			id := mustEnqueue(t, s, "t", store.Spec{}, attempts, t0)
			j := mustDequeue(t, s, "t", "ex", tc.name, t0)
			if j.ID != id {
				t.Fatalf("dequeued job %d, want %d", j.ID, id)
			}
			if _, err := s.TokenOwner(ctx, store.HashToken(tc.name)); err != nil {
				t.Fatalf("TokenOwner while processing: %v", err)
			}
			mustOK(t, tc.end(id))
			wantNoToken(t, s, tc.name, "after "+tc.name)
		})
	}
}

func wantNoToken(t *testing.T, s store.Store, token, when string) {
	t.Helper()
	o, err := s.TokenOwner(t.Context(), store.HashToken(token))
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TokenOwner %s: got %+v, %v, want ErrNotFound", when, o, err)
	}
}

func testOwnership(t *testing.T, s store.Store) {
	ctx := t.Context()
	entry := protocol.ExecutionLogEntry{Key: "k", Command: []string{"true"}, StartTime: t0}
	ops := []struct {
		name string
		do   func(queue string, id int, executor string) error
	}{
		{"AddLogEntry", func(q string, id int, ex string) error {
			_, err := s.AddLogEntry(ctx, q, id, ex, entry)
			return err
		}},
		{"UpdateLogEntry", func(q string, id int, ex string) error {
			return s.UpdateLogEntry(ctx, q, id, ex, 1, entry)
		}},
		{"AppendLogOutput", func(q string, id int, ex string) error {
			_, err := s.AppendLogOutput(ctx, q, id, ex, 1, 0, "x")
			return err
		}},
		{"FinishLogEntry", func(q string, id int, ex string) error {
			code := 0
			return s.FinishLogEntry(ctx, q, id, ex, 1, &code, &code)
		}},
		{"MarkComplete", func(q string, id int, ex string) error { return s.MarkComplete(ctx, q, id, ex, t0) }},
		{"MarkErrored", func(q string, id int, ex string) error {
			return s.MarkErrored(ctx, q, id, ex, "boom", time.Second, t0)
		}},
		{"MarkFailed", func(q string, id int, ex string) error { return s.MarkFailed(ctx, q, id, ex, "boom", t0) }},
	}
	// Each case makes a job on a queue of its own in some situation, and
	// says how to address it.
	cases := []struct {
		name  string
		setup func(t *testing.T, queue string) (q string, id int, executor string)
	}{
		{"another executor", func(t *testing.T, q string) (string, int, string) {
			return q, processingJob(t, s, q, "owner"), "intruder"
		}},
		{"another queue", func(t *testing.T, q string) (string, int, string) {
			return q + "-other", processingJob(t, s, q, "owner"), "owner"
		}},
		{"missing job", func(t *testing.T, q string) (string, int, string) {
			return q, mustEnqueue(t, s, q, store.Spec{}, 1, t0) + 100000, "owner"
		}},
		{"queued job", func(t *testing.T, q string) (string, int, string) {
			return q, mustEnqueue(t, s, q, store.Spec{}, 1, t0), "owner"
		}},
		{"completed job", func(t *testing.T, q string) (string, int, string) {
			id := processingJob(t, s, q, "owner")
			mustOK(t, s.MarkComplete(ctx, q, id, "owner", t0))
			return q, id, "owner"
		}},
		{"reset job", func(t *testing.T, q string) (string, int, string) {
			id := processingJob(t, s, q, "owner")
			if _, _, err := s.ResetStalled(ctx, q, store.ResetOptions{StalledBefore: at(time.Hour), MaxResets: 5}, at(time.Hour)); err != nil {
				t.Fatal(err)
			}
			return q, id, "owner"
		}},
	}
	for ci, c := range cases {
		for oi, op := range ops {
			t.Run(c.name+"/"+op.name, func(t *testing.T) {
				q, id, ex := c.setup(t, fmt.Sprintf("q%d-%d", ci, oi))
				wantErr(t, op.do(q, id, ex), store.ErrNotFound)
			})
		}
	}
}

// processingJob enqueues a job on queue and dequeues it as executor. The
// queue must hold no other eligible job.
func processingJob(t *testing.T, s store.Store, queue, executor string) int {
	t.Helper()
	id := mustEnqueue(t, s, queue, store.Spec{}, 1, t0)
	j := mustDequeue(t, s, queue, executor, fmt.Sprintf("%s-%d", queue, id), t0)
	if j.ID != id {
		t.Fatalf("dequeued job %d, want %d", j.ID, id)
	}
	return id
}

func testLogEntries(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := processingJob(t, s, "q", "ex")
	b := processingJob(t, s, "q", "ex")
	exit0, exit1, dur := 0, 1, 1500
	entries := []protocol.ExecutionLogEntry{
		{Key: "setup.git", Command: []string{"git", "init"}, StartTime: at(time.Second), ExitCode: &exit0, Out: "stdout: ok\n", DurationMs: &dur},
		{Key: "step.docker.0", Command: []string{"sh", "-c", "echo hi"}, StartTime: at(2 * time.Second)},
		{Key: "step.docker.1", Command: nil, StartTime: at(3 * time.Second)},
	}
	for i, e := range entries {
		id, err := s.AddLogEntry(ctx, "q", a, "ex", e)
		mustOK(t, err)
		if id != i+1 {
			t.Errorf("AddLogEntry #%d to job %d: got id %d, want %d", i+1, a, id, i+1)
		}
	}
	if id, err := s.AddLogEntry(ctx, "q", b, "ex", entries[0]); err != nil || id != 1 {
		t.Errorf("first AddLogEntry to another job: got %d, %v, want 1", id, err)
	}

	// Update replaces every field.
	updated := protocol.ExecutionLogEntry{Key: "step.docker.0b", Command: []string{"sh"}, StartTime: at(4 * time.Second), ExitCode: &exit1, Out: "stdout: hi\nstderr: bye\n", DurationMs: &dur}
	mustOK(t, s.UpdateLogEntry(ctx, "q", a, "ex", 2, updated))
	wantErr(t, s.UpdateLogEntry(ctx, "q", a, "ex", 4, updated), store.ErrNotFound)
	wantErr(t, s.UpdateLogEntry(ctx, "q", a, "ex", 0, updated), store.ErrNotFound)

	got, err := s.LogEntries(ctx, "q", a, store.LogRange{})
	mustOK(t, err)
	want := []store.LogEntry{{ID: 1, ExecutionLogEntry: entries[0]}, {ID: 2, ExecutionLogEntry: updated}, {ID: 3, ExecutionLogEntry: entries[2]}}
	if len(got) != len(want) {
		t.Fatalf("LogEntries: got %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		checkEntry(t, got[i], want[i])
	}

	if got, err := s.LogEntries(ctx, "other", a, store.LogRange{}); err != nil || len(got) != 0 {
		t.Errorf("LogEntries through the wrong queue: got %d entries, %v, want none", len(got), err)
	}

	// Entries stay readable once the job is finished, but are frozen.
	mustOK(t, s.MarkComplete(ctx, "q", a, "ex", at(5*time.Second)))
	if got, err := s.LogEntries(ctx, "q", a, store.LogRange{}); err != nil || len(got) != 3 {
		t.Errorf("LogEntries after completion: got %d entries, %v, want 3", len(got), err)
	}
	_, err = s.AddLogEntry(ctx, "q", a, "ex", entries[0])
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.UpdateLogEntry(ctx, "q", a, "ex", 1, updated), store.ErrNotFound)
}

func checkEntry(t *testing.T, got, want store.LogEntry) {
	t.Helper()
	if got.ID != want.ID || got.Key != want.Key || got.Out != want.Out ||
		!slices.Equal(got.Command, want.Command) || !equalIntPtr(got.ExitCode, want.ExitCode) ||
		!equalIntPtr(got.DurationMs, want.DurationMs) {
		t.Errorf("log entry %d:\ngot  %s\nwant %s", want.ID, fmtEntry(got), fmtEntry(want))
	}
	wantTime(t, fmt.Sprintf("start time of entry %d", want.ID), got.StartTime, want.StartTime)
}

func fmtEntry(e store.LogEntry) string {
	p := func(v *int) string {
		if v == nil {
			return "nil"
		}
		return fmt.Sprint(*v)
	}
	return fmt.Sprintf("{ID:%d Key:%q Command:%q Out:%q ExitCode:%s DurationMs:%s}", e.ID, e.Key, e.Command, e.Out, p(e.ExitCode), p(e.DurationMs))
}

func equalIntPtr(a, b *int) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func testLogEntriesClearedOnDequeue(t *testing.T, s store.Store) {
	ctx := t.Context()
	id := processingJob(t, s, "q", "ex")
	for range 2 {
		_, err := s.AddLogEntry(ctx, "q", id, "ex", protocol.ExecutionLogEntry{Key: "old", StartTime: t0})
		mustOK(t, err)
	}
	_, _, err := s.ResetStalled(ctx, "q", store.ResetOptions{StalledBefore: at(time.Hour), MaxResets: 3}, at(time.Hour))
	mustOK(t, err)
	if got, err := s.LogEntries(ctx, "q", id, store.LogRange{}); err != nil || len(got) != 2 {
		t.Errorf("LogEntries after a reset: got %d, %v, want the 2 entries until the next dequeue", len(got), err)
	}
	mustDequeue(t, s, "q", "ex2", "new", at(time.Hour))
	if got, err := s.LogEntries(ctx, "q", id, store.LogRange{}); err != nil || len(got) != 0 {
		t.Errorf("LogEntries after re-dequeue: got %d, %v, want none", len(got), err)
	}
	eid, err := s.AddLogEntry(ctx, "q", id, "ex2", protocol.ExecutionLogEntry{Key: "new", StartTime: t0})
	mustOK(t, err)
	if eid != 1 {
		t.Errorf("first entry id after re-dequeue: got %d, want 1", eid)
	}
}

func testSessions(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := store.Session{ID: store.HashToken("session-a"), CSRF: "csrf-a", TokenHash: store.HashToken("api-token"), Expires: at(time.Hour)}
	b := store.Session{ID: store.HashToken("session-b"), CSRF: "csrf-b", TokenHash: store.HashToken("api-token"), Expires: at(2 * time.Hour)}
	mustOK(t, s.CreateSession(ctx, a, at(0)))
	mustOK(t, s.CreateSession(ctx, b, at(0)))
	got, err := s.Session(ctx, a.ID, at(time.Minute))
	mustOK(t, err)
	if got.ID != a.ID || got.CSRF != a.CSRF || got.TokenHash != a.TokenHash || !got.Expires.Equal(a.Expires) {
		t.Errorf("Session: got %+v, want %+v", got, a)
	}
	_, err = s.Session(ctx, store.HashToken("unknown"), at(time.Minute))
	wantErr(t, err, store.ErrNotFound)
	_, err = s.Session(ctx, a.ID, at(time.Hour))
	wantErr(t, err, store.ErrNotFound) // expired
	// Creating a session deletes expired ones.
	c := store.Session{ID: store.HashToken("session-c"), CSRF: "csrf-c", TokenHash: store.HashToken("api-token"), Expires: at(3 * time.Hour)}
	mustOK(t, s.CreateSession(ctx, c, at(90*time.Minute)))
	if _, err := s.Session(ctx, a.ID, at(0)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired session after a new one: %v, want it deleted", err)
	}
	mustOK(t, s.DeleteSession(ctx, b.ID))
	_, err = s.Session(ctx, b.ID, at(time.Minute))
	wantErr(t, err, store.ErrNotFound)
	mustOK(t, s.DeleteSession(ctx, b.ID)) // again: not an error
	if _, err := s.Session(ctx, c.ID, at(time.Minute)); err != nil {
		t.Errorf("the other session: %v", err)
	}
}

// testLogRange reads parts of outputs made of a base output and chunks,
// with multi-byte characters across the pieces' edges.
func testLogRange(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := processingJob(t, s, "q", "ex")
	base := "héllo\n"                                                        // 7 bytes: é is 2
	pieces := []string{"wörld\n", "€uro\n", strings.Repeat("ab", 50) + "\n"} // € is 3 bytes
	whole := base + strings.Join(pieces, "")
	id, err := s.AddLogEntry(ctx, "q", a, "ex", protocol.ExecutionLogEntry{Key: "k", StartTime: at(time.Second), Out: base})
	mustOK(t, err)
	n := int64(len(base))
	for _, p := range pieces {
		n, err = s.AppendLogOutput(ctx, "q", a, "ex", id, n, p)
		mustOK(t, err)
	}
	plain, err := s.AddLogEntry(ctx, "q", a, "ex", protocol.ExecutionLogEntry{Key: "plain", StartTime: at(time.Second), Out: "only a base\n"})
	mustOK(t, err)
	total := int64(len(whole))

	tests := []struct {
		name     string
		r        store.LogRange
		wantFrom int64 // of entry id
	}{
		{"all", store.LogRange{}, 0},
		{"from a character's start", store.LogRange{From: map[int]int64{id: 3}}, 3},
		{"from inside é: the next character", store.LogRange{From: map[int]int64{id: 2}}, 3},
		{"from the base's end", store.LogRange{From: map[int]int64{id: 7}}, 7},
		{"from inside a chunk", store.LogRange{From: map[int]int64{id: 10}}, 10},
		{"from inside ö, in the first chunk", store.LogRange{From: map[int]int64{id: 9}}, 10},
		{"from inside €, in the second chunk", store.LogRange{From: map[int]int64{id: 15}}, 17},
		{"from the end", store.LogRange{From: map[int]int64{id: total}}, total},
		{"from past the end", store.LogRange{From: map[int]int64{id: total + 5}}, total},
		{"tail", store.LogRange{Tail: 110}, total - 110},
		{"tail starting inside €", store.LogRange{Tail: total - 15}, 17},
		{"tail longer than the output", store.LogRange{Tail: 1 << 20}, 0},
		{"tail after from", store.LogRange{From: map[int]int64{id: total - 3}, Tail: 50}, total - 3},
		{"only the other entry", store.LogRange{Only: plain}, total},
	}
	for _, tt := range tests {
		got, err := s.LogEntries(ctx, "q", a, tt.r)
		mustOK(t, err)
		if len(got) != 2 {
			t.Fatalf("%s: %d entries, want 2", tt.name, len(got))
		}
		e := got[id-1]
		if e.From != tt.wantFrom || e.Length != total || e.Out != whole[tt.wantFrom:] {
			t.Errorf("%s: From %d, Length %d, Out %q; want %d, %d, %q", tt.name, e.From, e.Length, e.Out, tt.wantFrom, total, whole[tt.wantFrom:])
		}
		p := got[plain-1]
		wantPlain := "only a base\n"
		if tt.r.Tail > 0 && tt.r.Tail < int64(len(wantPlain)) {
			wantPlain = wantPlain[len(wantPlain)-int(tt.r.Tail):]
		}
		if p.Out != wantPlain || p.Length != 12 {
			t.Errorf("%s: the other entry: Out %q, Length %d; want %q, 12", tt.name, p.Out, p.Length, wantPlain)
		}
	}
}

func testLogAppend(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := processingJob(t, s, "q", "ex")
	entry := protocol.ExecutionLogEntry{Key: "step.docker.0", Command: []string{"sh"}, StartTime: at(time.Second), Out: "stdout: héllo\n"}
	id, err := s.AddLogEntry(ctx, "q", a, "ex", entry)
	mustOK(t, err)
	other, err := s.AddLogEntry(ctx, "q", a, "ex", protocol.ExecutionLogEntry{Key: "other", StartTime: at(time.Second), Out: "o"})
	mustOK(t, err)

	wantOut := func(when, want string) {
		t.Helper()
		got, err := s.LogEntries(ctx, "q", a, store.LogRange{})
		mustOK(t, err)
		if len(got) != 2 || got[id-1].Out != want || got[other-1].Out != "o" {
			t.Fatalf("LogEntries %s: got %+v, want entry %d's out %q", when, got, id, want)
		}
	}
	appendOK := func(offset int64, chunk string, want int64) {
		t.Helper()
		n, err := s.AppendLogOutput(ctx, "q", a, "ex", id, offset, chunk)
		mustOK(t, err)
		if n != want {
			t.Fatalf("AppendLogOutput(%d, %q): got length %d, want %d", offset, chunk, n, want)
		}
	}
	base := int64(len(entry.Out)) // bytes, not runes
	appendOK(base, "stdout: one\n", base+12)
	appendOK(base+12, "", base+12)
	appendOK(base+12, "stdout: twö\n", base+25)
	wantOut("after appends", entry.Out+"stdout: one\nstdout: twö\n")

	for _, off := range []int64{0, base, base + 26} {
		n, err := s.AppendLogOutput(ctx, "q", a, "ex", id, off, "lost")
		wantErr(t, err, store.ErrOffsetMismatch)
		if n != base+25 {
			t.Errorf("AppendLogOutput at %d: got length %d with the mismatch, want %d", off, n, base+25)
		}
	}
	_, err = s.AppendLogOutput(ctx, "q", a, "ex", 99, 0, "x")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.AppendLogOutput(ctx, "q", a, "intruder", id, base+25, "x")
	wantErr(t, err, store.ErrNotFound)
	wantOut("after refused appends", entry.Out+"stdout: one\nstdout: twö\n")

	code, dur := 3, 1200
	mustOK(t, s.FinishLogEntry(ctx, "q", a, "ex", id, &code, &dur))
	wantErr(t, s.FinishLogEntry(ctx, "q", a, "ex", 99, &code, &dur), store.ErrNotFound)
	got, err := s.LogEntries(ctx, "q", a, store.LogRange{})
	mustOK(t, err)
	if e := got[id-1]; e.ExitCode == nil || *e.ExitCode != 3 || e.DurationMs == nil || *e.DurationMs != 1200 || e.Key != entry.Key {
		t.Errorf("after FinishLogEntry: got %+v", e)
	}

	// An update replaces the output, appended chunks too.
	updated := entry
	updated.Out = "replaced\n"
	mustOK(t, s.UpdateLogEntry(ctx, "q", a, "ex", id, updated))
	wantOut("after an update", "replaced\n")
	_, err = s.AppendLogOutput(ctx, "q", a, "ex", id, base+25, "x")
	wantErr(t, err, store.ErrOffsetMismatch)
	appendOK(9, "more\n", 14)
	wantOut("after an update and an append", "replaced\nmore\n")

	// Many appends stay in order.
	var want strings.Builder
	want.WriteString("replaced\nmore\n")
	for i := range 200 {
		chunk := fmt.Sprintf("line %d\n", i)
		appendOK(int64(want.Len()), chunk, int64(want.Len()+len(chunk)))
		want.WriteString(chunk)
	}
	wantOut("after many appends", want.String())
}

func testLogAppendClearedOnDequeue(t *testing.T, s store.Store) {
	ctx := t.Context()
	id := processingJob(t, s, "q", "ex")
	eid, err := s.AddLogEntry(ctx, "q", id, "ex", protocol.ExecutionLogEntry{Key: "old", StartTime: t0, Out: "a"})
	mustOK(t, err)
	_, err = s.AppendLogOutput(ctx, "q", id, "ex", eid, 1, "old output\n")
	mustOK(t, err)
	_, _, err = s.ResetStalled(ctx, "q", store.ResetOptions{StalledBefore: at(time.Hour), MaxResets: 3}, at(time.Hour))
	mustOK(t, err)
	mustDequeue(t, s, "q", "ex2", "new", at(time.Hour))
	eid, err = s.AddLogEntry(ctx, "q", id, "ex2", protocol.ExecutionLogEntry{Key: "new", StartTime: t0, Out: "b"})
	mustOK(t, err)
	n, err := s.AppendLogOutput(ctx, "q", id, "ex2", eid, 1, "new\n")
	mustOK(t, err)
	if n != 5 {
		t.Errorf("length after re-dequeue: got %d, want 5", n)
	}
	got, err := s.LogEntries(ctx, "q", id, store.LogRange{})
	mustOK(t, err)
	if len(got) != 1 || got[0].Out != "bnew\n" {
		t.Errorf("LogEntries after re-dequeue: got %+v, want one entry with out %q", got, "bnew\n")
	}
}

func testHeartbeat(t *testing.T, s store.Store) {
	ctx := t.Context()
	mine1 := processingJob(t, s, "q", "ex")
	mine2 := processingJob(t, s, "q", "ex")
	theirs := processingJob(t, s, "q", "other")
	done := processingJob(t, s, "q", "ex")
	mustOK(t, s.MarkComplete(ctx, "q", done, "ex", t0))
	otherQueue := processingJob(t, s, "r", "ex")
	queued := mustEnqueue(t, s, "q", store.Spec{}, 1, t0)
	mustOK(t, s.Cancel(ctx, "q", mine2, t0))

	e := store.Executor{Name: "ex", Queues: []string{"q"}}
	now := at(10 * time.Second)
	for _, tc := range []struct {
		name       string
		queue      string
		ids        []int
		wantKnown  []int
		wantCancel []int
	}{
		{"own processing jobs", "q", []int{mine1, mine2}, []int{mine1, mine2}, []int{mine2}},
		{"mixed", "q", []int{theirs, mine1, done, queued, otherQueue, 999999}, []int{mine1}, nil},
		{"other queue", "r", []int{mine1, otherQueue}, []int{otherQueue}, nil},
		{"no ids", "q", nil, nil, nil},
		{"no queue", "", nil, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			known, cancel, err := s.Heartbeat(ctx, e, tc.queue, tc.ids, now)
			mustOK(t, err)
			slices.Sort(known)
			slices.Sort(cancel)
			if !slices.Equal(known, tc.wantKnown) {
				t.Errorf("known: got %v, want %v", known, tc.wantKnown)
			}
			if !slices.Equal(cancel, tc.wantCancel) {
				t.Errorf("cancel: got %v, want %v", cancel, tc.wantCancel)
			}
		})
	}
	for _, tc := range []struct {
		id    int
		queue string
		want  time.Time
	}{
		{mine1, "q", now},
		{mine2, "q", now},
		{theirs, "q", t0},
		{otherQueue, "r", now},
	} {
		j, err := s.GetJob(ctx, tc.queue, tc.id)
		mustOK(t, err)
		if j.LastHeartbeatAt == nil || !j.LastHeartbeatAt.Equal(tc.want) {
			t.Errorf("last_heartbeat_at of job %d: got %v, want %v", tc.id, j.LastHeartbeatAt, tc.want)
		}
	}
}

func testHeartbeatExecutorUpsert(t *testing.T, s store.Store) {
	ctx := t.Context()
	first := store.Executor{
		Name: "host-1", Queues: []string{"batches", "codeintel"}, OS: "linux", Architecture: "amd64",
		DockerVersion: "20.10", ExecutorVersion: "5.0.0", GitVersion: "2.39", IgniteVersion: "", SrcCliVersion: "5.1",
		Runtime: "shell",
	}
	_, _, err := s.Heartbeat(ctx, first, "", nil, t0)
	mustOK(t, err)
	if ok, err := s.ExecutorExists(ctx, "host-1"); err != nil || !ok {
		t.Fatalf("ExecutorExists after a heartbeat: got %v, %v, want true", ok, err)
	}
	got := findExecutor(t, s, "host-1")
	want := first
	want.FirstSeenAt, want.LastSeenAt = t0, t0
	checkExecutor(t, got, want)

	second := first
	second.Queues = []string{"batches"}
	second.OS, second.ExecutorVersion, second.IgniteVersion, second.Runtime = "darwin", "5.1.0", "0.10", "gvisor"
	_, _, err = s.Heartbeat(ctx, second, "batches", nil, at(5*time.Second))
	mustOK(t, err)
	want = second
	want.FirstSeenAt, want.LastSeenAt = t0, at(5*time.Second)
	checkExecutor(t, findExecutor(t, s, "host-1"), want)

	// A heartbeat without queues keeps the known ones.
	third := second
	third.Queues = nil
	_, _, err = s.Heartbeat(ctx, third, "", nil, at(10*time.Second))
	mustOK(t, err)
	want.LastSeenAt = at(10 * time.Second)
	checkExecutor(t, findExecutor(t, s, "host-1"), want)
}

func checkExecutor(t *testing.T, got, want store.Executor) {
	t.Helper()
	g, w := got, want
	g.FirstSeenAt, g.LastSeenAt, w.FirstSeenAt, w.LastSeenAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	slices.Sort(g.Queues)
	w.Queues = slices.Sorted(slices.Values(w.Queues))
	if !reflect.DeepEqual(g, w) {
		t.Errorf("executor:\ngot  %+v\nwant %+v", g, w)
	}
	wantTime(t, "first_seen_at", got.FirstSeenAt, want.FirstSeenAt)
	wantTime(t, "last_seen_at", got.LastSeenAt, want.LastSeenAt)
}

func findExecutor(t *testing.T, s store.Store, name string) store.Executor {
	t.Helper()
	es, err := s.ListExecutors(t.Context())
	mustOK(t, err)
	for _, e := range es {
		if e.Name == name {
			return e
		}
	}
	t.Fatalf("executor %q not in ListExecutors", name)
	return store.Executor{}
}

func testRelease(t *testing.T, s store.Store) {
	ctx := t.Context()
	id := processingJob(t, s, "q", "ex")
	wantErr(t, s.Release(ctx, "q", id, "other"), store.ErrNotFound)
	mustOK(t, s.Release(ctx, "q", id, "ex"))
	j := mustGet(t, s, "q", id)
	if j.State != store.StateQueued || j.NumFailures != 0 || j.NumResets != 0 || j.WorkerHostname != "" {
		t.Errorf("after Release: state %q, failures %d, resets %d, worker %q; want queued, 0, 0, none", j.State, j.NumFailures, j.NumResets, j.WorkerHostname)
	}
	wantNoToken(t, s, fmt.Sprintf("q-%d", id), "after Release")
	wantErr(t, s.Release(ctx, "q", id, "ex"), store.ErrNotFound)
	again := mustDequeue(t, s, "q", "ex2", "q-again", t0)
	if again.ID != id {
		t.Errorf("dequeue after Release got job %d, want %d", again.ID, id)
	}
}

func testMarkComplete(t *testing.T, s store.Store) {
	ctx := t.Context()
	id := processingJob(t, s, "q", "ex")
	mustOK(t, s.MarkComplete(ctx, "q", id, "ex", at(time.Minute)))
	j := mustGet(t, s, "q", id)
	if j.State != store.StateCompleted {
		t.Errorf("state: got %q, want completed", j.State)
	}
	wantTimePtr(t, "finished_at", j.FinishedAt, at(time.Minute))
	wantErr(t, s.MarkComplete(ctx, "q", id, "ex", at(time.Minute)), store.ErrNotFound)
}

func testMarkErrored(t *testing.T, s store.Store) {
	ctx := t.Context()
	const delay = 30 * time.Second
	now := at(time.Minute)
	for _, tc := range []struct {
		name          string
		maxAttempts   int
		priorFailures int // failed attempts before this one
		cancel        bool
		wantState     string
	}{
		{"retried", 3, 0, false, store.StateErrored},
		{"retried again", 3, 1, false, store.StateErrored},
		{"last attempt", 3, 2, false, store.StateFailed},
		{"single attempt", 1, 0, false, store.StateFailed},
		{"cancel requested", 3, 0, true, store.StateCanceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			queue := "q-" + strings.ReplaceAll(tc.name, " ", "-")
			id := mustEnqueue(t, s, queue, store.Spec{}, tc.maxAttempts, t0)
			when := t0
			for i := range tc.priorFailures {
				mustDequeue(t, s, queue, "ex", fmt.Sprint(queue, i), when)
				mustOK(t, s.MarkErrored(ctx, queue, id, "ex", "earlier", delay, when))
				when = when.Add(delay)
			}
			mustDequeue(t, s, queue, "ex", queue, when)
			if tc.cancel {
				mustOK(t, s.Cancel(ctx, queue, id, when))
			}
			mustOK(t, s.MarkErrored(ctx, queue, id, "ex", "step 1 failed", delay, now))
			j := mustGet(t, s, queue, id)
			if j.State != tc.wantState {
				t.Errorf("state: got %q, want %q", j.State, tc.wantState)
			}
			if j.NumFailures != tc.priorFailures+1 {
				t.Errorf("num_failures: got %d, want %d", j.NumFailures, tc.priorFailures+1)
			}
			if j.FailureMessage != "step 1 failed" {
				t.Errorf("failure_message: got %q, want %q", j.FailureMessage, "step 1 failed")
			}
			wantTimePtr(t, "finished_at", j.FinishedAt, now)
			if tc.wantState == store.StateErrored {
				wantTimePtr(t, "process_after", j.ProcessAfter, now.Add(delay))
			}
		})
	}
}

func testMarkFailed(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, tc := range []struct {
		name      string
		cancel    bool
		wantState string
	}{
		{"failed", false, store.StateFailed},
		{"cancel requested", true, store.StateCanceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			queue := "q-" + strings.ReplaceAll(tc.name, " ", "-")
			id := mustEnqueue(t, s, queue, store.Spec{}, 5, t0)
			mustDequeue(t, s, queue, "ex", queue, t0)
			if tc.cancel {
				mustOK(t, s.Cancel(ctx, queue, id, t0))
			}
			mustOK(t, s.MarkFailed(ctx, queue, id, "ex", "fatal", at(time.Second)))
			j := mustGet(t, s, queue, id)
			if j.State != tc.wantState || j.FailureMessage != "fatal" {
				t.Errorf("got state %q message %q, want %q %q", j.State, j.FailureMessage, tc.wantState, "fatal")
			}
			wantTimePtr(t, "finished_at", j.FinishedAt, at(time.Second))
			if n, err := s.QueuedCount(ctx, queue, at(time.Hour)); err != nil || n != 0 {
				t.Errorf("QueuedCount after MarkFailed: got %d, %v, want 0 (not retried)", n, err)
			}
		})
	}
}

func testResetStalled(t *testing.T, s store.Store) {
	ctx := t.Context()
	const maxResets = 2
	stalledBefore := at(time.Minute)
	now := at(2 * time.Minute)

	// stalled makes a processing job of queue, reset `resets` times before,
	// whose last heartbeat is at t0+1s: stalled for the final pass, alive
	// for the passes (with a t0+1µs cutoff) that build the next job.
	stalled := func(t *testing.T, queue string, resets int) int {
		t.Helper()
		id := mustEnqueue(t, s, queue, store.Spec{}, 1, t0)
		for i := range resets + 1 {
			mustDequeue(t, s, queue, "ex", fmt.Sprint(queue, id, "-", i), t0)
			if i < resets {
				reset, _, err := s.ResetStalled(ctx, queue, store.ResetOptions{StalledBefore: at(time.Microsecond), MaxResets: 100}, t0)
				mustOK(t, err)
				if !slices.Equal(reset, []int{id}) {
					t.Fatalf("building job %d: ResetStalled reset %v, want [%d]", id, reset, id)
				}
			}
		}
		known, _, err := s.Heartbeat(ctx, store.Executor{Name: "ex"}, queue, []int{id}, at(time.Second))
		mustOK(t, err)
		if !slices.Equal(known, []int{id}) {
			t.Fatalf("building job %d: Heartbeat knows %v, want [%d]", id, known, id)
		}
		return id
	}

	q := "q"
	fresh := mustEnqueue(t, s, q, store.Spec{}, 1, t0)
	mustDequeue(t, s, q, "ex", "fresh", t0)
	_, _, err := s.Heartbeat(ctx, store.Executor{Name: "ex"}, q, []int{fresh}, stalledBefore) // not before: alive
	mustOK(t, err)
	tooMany := stalled(t, q, maxResets)
	twice := stalled(t, q, 1)
	once := stalled(t, q, 0)
	canceled := stalled(t, q, 0)
	mustOK(t, s.Cancel(ctx, q, canceled, t0))
	otherQueue := stalled(t, "other", 0)

	reset, failed, err := s.ResetStalled(ctx, q, store.ResetOptions{StalledBefore: stalledBefore, MaxResets: maxResets}, now)
	mustOK(t, err)
	slices.Sort(reset)
	slices.Sort(failed)
	if want := []int{twice, once}; !slices.Equal(reset, want) {
		t.Errorf("reset: got %v, want %v", reset, want)
	}
	if want := []int{tooMany, canceled}; !slices.Equal(failed, want) {
		t.Errorf("failed: got %v, want %v", failed, want)
	}

	for _, tc := range []struct {
		name       string
		queue      string
		id         int
		wantState  string
		wantResets int
	}{
		{"heartbeating", q, fresh, store.StateProcessing, 0},
		{"first reset", q, once, store.StateQueued, 1},
		{"second reset", q, twice, store.StateQueued, 2},
		{"too many resets", q, tooMany, store.StateFailed, maxResets},
		{"cancel requested", q, canceled, store.StateCanceled, 0},
		{"other queue", "other", otherQueue, store.StateProcessing, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := mustGet(t, s, tc.queue, tc.id)
			if j.State != tc.wantState || j.NumResets != tc.wantResets {
				t.Errorf("got state %q num_resets %d, want %q %d", j.State, j.NumResets, tc.wantState, tc.wantResets)
			}
			switch tc.wantState {
			case store.StateQueued:
				if j.WorkerHostname != "" || j.ProcessAfter != nil {
					t.Errorf("reset job: got worker %q process_after %v, want both cleared", j.WorkerHostname, j.ProcessAfter)
				}
			case store.StateFailed:
				if !strings.Contains(j.FailureMessage, "stalled") {
					t.Errorf("failure_message: got %q, want it to mention stalled", j.FailureMessage)
				}
				wantTimePtr(t, "finished_at", j.FinishedAt, now)
			case store.StateCanceled:
				wantTimePtr(t, "finished_at", j.FinishedAt, now)
			}
		})
	}

	// Reset jobs are eligible again, oldest first.
	if n, err := s.QueuedCount(ctx, q, now); err != nil || n != 2 {
		t.Errorf("QueuedCount after reset: got %d, %v, want 2", n, err)
	}
	if j := mustDequeue(t, s, q, "ex", "again", now); j.ID != twice {
		t.Errorf("dequeue after reset: got job %d, want %d", j.ID, twice)
	}
}

func testCancel(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := at(time.Hour)
	for _, tc := range []struct {
		name       string
		setup      func(t *testing.T, queue string) int
		wantErr    error
		wantState  string
		wantCancel bool
	}{
		{"queued", func(t *testing.T, q string) int { return mustEnqueue(t, s, q, store.Spec{}, 1, t0) },
			nil, store.StateCanceled, false},
		{"errored", func(t *testing.T, q string) int {
			id := mustEnqueue(t, s, q, store.Spec{}, 3, t0)
			mustDequeue(t, s, q, "ex", q, t0)
			mustOK(t, s.MarkErrored(ctx, q, id, "ex", "boom", time.Minute, t0))
			return id
		}, nil, store.StateCanceled, false},
		{"processing", func(t *testing.T, q string) int { return processingJob(t, s, q, "ex") },
			nil, store.StateProcessing, true},
		{"completed", func(t *testing.T, q string) int {
			id := processingJob(t, s, q, "ex")
			mustOK(t, s.MarkComplete(ctx, q, id, "ex", t0))
			return id
		}, store.ErrInvalidState, store.StateCompleted, false},
		{"failed", func(t *testing.T, q string) int {
			id := processingJob(t, s, q, "ex")
			mustOK(t, s.MarkFailed(ctx, q, id, "ex", "boom", t0))
			return id
		}, store.ErrInvalidState, store.StateFailed, false},
		{"canceled", func(t *testing.T, q string) int {
			id := mustEnqueue(t, s, q, store.Spec{}, 1, t0)
			mustOK(t, s.Cancel(ctx, q, id, t0))
			return id
		}, store.ErrInvalidState, store.StateCanceled, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := "q-" + tc.name
			id := tc.setup(t, q)
			err := s.Cancel(ctx, q, id, now)
			wantErr(t, err, tc.wantErr)
			j := mustGet(t, s, q, id)
			if j.State != tc.wantState || j.Cancel != tc.wantCancel {
				t.Errorf("got state %q cancel %v, want %q %v", j.State, j.Cancel, tc.wantState, tc.wantCancel)
			}
			if tc.wantErr == nil && tc.wantState == store.StateCanceled {
				wantTimePtr(t, "finished_at", j.FinishedAt, now)
			}
			if tc.wantState == store.StateCanceled {
				if n, err := s.QueuedCount(ctx, q, at(24*time.Hour)); err != nil || n != 0 {
					t.Errorf("QueuedCount of a canceled job: got %d, %v, want 0", n, err)
				}
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		wantErr(t, s.Cancel(ctx, "q", 987654, now), store.ErrNotFound)
	})
	t.Run("wrong queue", func(t *testing.T) {
		id := mustEnqueue(t, s, "mine", store.Spec{}, 1, t0)
		wantErr(t, s.Cancel(ctx, "theirs", id, now), store.ErrNotFound)
	})
}

func testRetry(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := at(time.Hour)
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, queue string) int
		wantErr error
	}{
		{"failed", func(t *testing.T, q string) int {
			id := processingJob(t, s, q, "ex")
			mustOK(t, s.MarkFailed(ctx, q, id, "ex", "boom", t0))
			return id
		}, nil},
		{"failed after resets", func(t *testing.T, q string) int {
			id := processingJob(t, s, q, "ex")
			if _, _, err := s.ResetStalled(ctx, q, store.ResetOptions{StalledBefore: at(time.Second), MaxResets: 1}, t0); err != nil {
				t.Fatal(err)
			}
			mustDequeue(t, s, q, "ex", q+"2", t0)
			if _, _, err := s.ResetStalled(ctx, q, store.ResetOptions{StalledBefore: at(time.Second), MaxResets: 1}, t0); err != nil {
				t.Fatal(err)
			}
			return id
		}, nil},
		{"errored", func(t *testing.T, q string) int {
			id := mustEnqueue(t, s, q, store.Spec{}, 3, t0)
			mustDequeue(t, s, q, "ex", q, t0)
			mustOK(t, s.MarkErrored(ctx, q, id, "ex", "boom", 24*time.Hour, t0))
			return id
		}, nil},
		{"canceled while processing", func(t *testing.T, q string) int {
			id := processingJob(t, s, q, "ex")
			mustOK(t, s.Cancel(ctx, q, id, t0))
			mustOK(t, s.MarkFailed(ctx, q, id, "ex", "canceled", t0))
			return id
		}, nil},
		{"queued", func(t *testing.T, q string) int { return mustEnqueue(t, s, q, store.Spec{}, 1, t0) },
			store.ErrInvalidState},
		{"processing", func(t *testing.T, q string) int { return processingJob(t, s, q, "ex") },
			store.ErrInvalidState},
		{"completed", func(t *testing.T, q string) int {
			id := processingJob(t, s, q, "ex")
			mustOK(t, s.MarkComplete(ctx, q, id, "ex", t0))
			return id
		}, store.ErrInvalidState},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := "q-" + strings.ReplaceAll(tc.name, " ", "-")
			id := tc.setup(t, q)
			before := mustGet(t, s, q, id)
			err := s.Retry(ctx, q, id, now)
			wantErr(t, err, tc.wantErr)
			j := mustGet(t, s, q, id)
			if tc.wantErr != nil {
				if j.State != before.State {
					t.Errorf("state after a refused retry: got %q, want %q", j.State, before.State)
				}
				return
			}
			if j.State != store.StateQueued || j.NumFailures != 0 || j.NumResets != 0 || j.Cancel || j.FailureMessage != "" {
				t.Errorf("retried job: got state %q failures %d resets %d cancel %v message %q, want queued 0 0 false \"\"",
					j.State, j.NumFailures, j.NumResets, j.Cancel, j.FailureMessage)
			}
			if n, err := s.QueuedCount(ctx, q, now); err != nil || n != 1 {
				t.Errorf("QueuedCount right after Retry: got %d, %v, want 1", n, err)
			}
			if got := mustDequeue(t, s, q, "ex", q+"-retry", now); got.ID != id {
				t.Errorf("dequeue after Retry: got job %d, want %d", got.ID, id)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		wantErr(t, s.Retry(ctx, "q", 987654, now), store.ErrNotFound)
	})
}

func testListJobs(t *testing.T, s store.Store) {
	ctx := t.Context()
	var all, repoA, completed []int // ids in enqueue order
	for i := range 130 {
		repo := "github.com/x/b"
		if i%3 == 0 {
			repo = "github.com/x/a"
		}
		id := mustEnqueue(t, s, "q", store.Spec{RepositoryName: repo}, 1, at(time.Duration(i)*time.Second))
		all = append(all, id)
		if repo == "github.com/x/a" {
			repoA = append(repoA, id)
		}
		mustEnqueue(t, s, "other", store.Spec{RepositoryName: repo}, 1, t0)
	}
	// Complete the first 10 jobs of q.
	for range 10 {
		j := mustDequeue(t, s, "q", "ex", fmt.Sprint("c", len(completed)), t0)
		mustOK(t, s.MarkComplete(ctx, "q", j.ID, "ex", t0))
		completed = append(completed, j.ID)
	}
	var completedA []int
	for _, id := range completed {
		if slices.Contains(repoA, id) {
			completedA = append(completedA, id)
		}
	}
	newest := func(ids []int, n int) []int {
		r := slices.Clone(ids)
		slices.Reverse(r)
		return r[:min(n, len(r))]
	}
	for _, tc := range []struct {
		name string
		opts store.ListOptions
		want []int
	}{
		{"default limit", store.ListOptions{}, newest(all, 100)},
		{"limit", store.ListOptions{Limit: 5}, newest(all, 5)},
		{"second page", store.ListOptions{Limit: 5, BeforeID: all[len(all)-5]}, newest(all[:len(all)-5], 5)},
		{"last page", store.ListOptions{Limit: 100, BeforeID: all[100]}, newest(all[:100], 100)},
		{"state", store.ListOptions{State: store.StateCompleted}, newest(completed, 100)},
		{"state none", store.ListOptions{State: store.StateFailed}, nil},
		{"repository", store.ListOptions{RepositoryName: "github.com/x/a"}, newest(repoA, 100)},
		{"repository and state", store.ListOptions{RepositoryName: "github.com/x/a", State: store.StateCompleted}, newest(completedA, 100)},
		{"repository page", store.ListOptions{RepositoryName: "github.com/x/a", Limit: 3, BeforeID: repoA[10]}, newest(repoA[:10], 3)},
		{"unknown repository", store.ListOptions{RepositoryName: "nope"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jobs, err := s.ListJobs(ctx, "q", tc.opts)
			mustOK(t, err)
			var got []int
			for _, j := range jobs {
				if j.Queue != "q" {
					t.Errorf("job %d of queue %q listed for queue q", j.ID, j.Queue)
				}
				got = append(got, j.ID)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("ids:\ngot  %v\nwant %v", got, tc.want)
			}
		})
	}
	jobs, err := s.ListJobs(ctx, "q", store.ListOptions{Limit: 1})
	mustOK(t, err)
	if len(jobs) != 1 || jobs[0].Spec.RepositoryName == "" || !jobs[0].QueuedAt.Equal(at(129*time.Second)) {
		t.Errorf("listed job: got %+v, want the full newest job", jobs)
	}
}

func testCountByState(t *testing.T, s store.Store) {
	ctx := t.Context()
	got, err := s.CountByState(ctx)
	mustOK(t, err)
	if len(got) != 0 {
		t.Errorf("CountByState of an empty store: got %v, want none", got)
	}
	for range 3 {
		mustEnqueue(t, s, "a", store.Spec{}, 1, t0)
	}
	processingJob(t, s, "b", "ex")
	c := processingJob(t, s, "b", "ex")
	mustOK(t, s.MarkComplete(ctx, "b", c, "ex", t0))
	mustEnqueue(t, s, "b", store.Spec{}, 1, t0)
	f := processingJob(t, s, "c", "ex")
	mustOK(t, s.MarkErrored(ctx, "c", f, "ex", "boom", time.Minute, t0))

	got, err = s.CountByState(ctx)
	mustOK(t, err)
	counts := make(map[[2]string]int)
	for _, qc := range got {
		if qc.Count == 0 {
			t.Errorf("CountByState returned a zero count for %s/%s", qc.Queue, qc.State)
		}
		counts[[2]string{qc.Queue, qc.State}] += qc.Count
	}
	want := map[[2]string]int{
		{"a", store.StateQueued}:     3,
		{"b", store.StateProcessing}: 1,
		{"b", store.StateCompleted}:  1,
		{"b", store.StateQueued}:     1,
		{"c", store.StateFailed}:     1,
	}
	if !reflect.DeepEqual(counts, want) {
		t.Errorf("CountByState:\ngot  %v\nwant %v", counts, want)
	}
}

func testQueuedCount(t *testing.T, s store.Store) {
	ctx := t.Context()
	if n, err := s.QueuedCount(ctx, "q", t0); err != nil || n != 0 {
		t.Errorf("QueuedCount of an empty queue: got %d, %v, want 0", n, err)
	}
	for range 4 {
		mustEnqueue(t, s, "q", store.Spec{}, 3, t0)
	}
	mustEnqueue(t, s, "other", store.Spec{}, 1, t0)
	j := mustDequeue(t, s, "q", "ex", "a", t0)
	mustOK(t, s.MarkErrored(ctx, "q", j.ID, "ex", "boom", time.Minute, t0))
	mustDequeue(t, s, "q", "ex", "b", t0)
	for _, tc := range []struct {
		now  time.Time
		want int
	}{
		{t0, 2},              // 2 queued; 1 processing; 1 errored not yet due
		{at(time.Minute), 3}, // the errored one is due
		{at(-time.Hour), 2},  // queued jobs have no process_after
		{at(time.Minute - time.Microsecond), 2},
	} {
		if n, err := s.QueuedCount(ctx, "q", tc.now); err != nil || n != tc.want {
			t.Errorf("QueuedCount at t0%+v: got %d, %v, want %d", tc.now.Sub(t0), n, err, tc.want)
		}
	}
}

func testListExecutors(t *testing.T, s store.Store) {
	ctx := t.Context()
	if es, err := s.ListExecutors(ctx); err != nil || len(es) != 0 {
		t.Errorf("ListExecutors of an empty store: got %v, %v, want none", es, err)
	}
	for i, name := range []string{"b", "c", "a"} {
		_, _, err := s.Heartbeat(ctx, store.Executor{Name: name, Queues: []string{"q"}}, "q", nil, at(time.Duration(i)*time.Second))
		mustOK(t, err)
	}
	_, _, err := s.Heartbeat(ctx, store.Executor{Name: "b", Queues: []string{"q"}}, "q", nil, at(time.Minute))
	mustOK(t, err)
	es, err := s.ListExecutors(ctx)
	mustOK(t, err)
	var got []string
	for _, e := range es {
		got = append(got, e.Name)
		if e.FirstSeenAt.Location() != time.UTC || e.LastSeenAt.Location() != time.UTC {
			t.Errorf("executor %q times: got locations %v, %v, want UTC", e.Name, e.FirstSeenAt.Location(), e.LastSeenAt.Location())
		}
	}
	if want := []string{"b", "a", "c"}; !slices.Equal(got, want) {
		t.Errorf("ListExecutors order: got %q, want %q (most recently seen first)", got, want)
	}
}

func testWake(t *testing.T, s store.Store) {
	ctx := t.Context()
	t.Run("enqueue wakes a waiter of its queue", func(t *testing.T) {
		ch, stop := s.Wake([]string{"other", "q"})
		defer stop()
		bystander, stop2 := s.Wake([]string{"unrelated"})
		defer stop2()
		mustEnqueue(t, s, "q", store.Spec{}, 1, t0)
		waitWoken(t, ch, "waiter after an enqueue")
		notWoken(t, bystander, "waiter of another queue")
	})
	t.Run("one waiter per job, oldest first", func(t *testing.T) {
		first, stop1 := s.Wake([]string{"one"})
		defer stop1()
		second, stop2 := s.Wake([]string{"one"})
		defer stop2()
		mustEnqueue(t, s, "one", store.Spec{}, 1, t0)
		waitWoken(t, first, "oldest waiter")
		notWoken(t, second, "second waiter after one enqueue")
		mustEnqueue(t, s, "one", store.Spec{}, 1, t0)
		waitWoken(t, second, "second waiter after a second enqueue")
	})
	t.Run("stopped waiters are skipped", func(t *testing.T) {
		gone, stop1 := s.Wake([]string{"s"})
		stop1()
		ch, stop2 := s.Wake([]string{"s"})
		defer stop2()
		mustEnqueue(t, s, "s", store.Spec{}, 1, t0)
		waitWoken(t, ch, "live waiter")
		notWoken(t, gone, "stopped waiter")
	})
	t.Run("retry wakes", func(t *testing.T) {
		id := processingJob(t, s, "r", "ex")
		mustOK(t, s.MarkFailed(ctx, "r", id, "ex", "boom", t0))
		ch, stop := s.Wake([]string{"r"})
		defer stop()
		mustOK(t, s.Retry(ctx, "r", id, t0))
		waitWoken(t, ch, "waiter after a retry")
	})
}

// wakeTimeout bounds waits for wake-ups, which may cross processes.
const wakeTimeout = 10 * time.Second

func waitWoken(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wakeTimeout):
		t.Fatalf("%s: not woken within %v", what, wakeTimeout)
	}
}

// notWoken checks that ch stays open for a moment: long enough for a
// wake-up that was on its way (a NOTIFY on the loopback) to arrive.
func notWoken(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Errorf("%s: woken, want not woken", what)
	case <-time.After(200 * time.Millisecond):
	}
}

func fullSpec() store.Spec {
	return store.Spec{
		RepositoryName:      "github.com/execd/example",
		RepositoryDirectory: "repo",
		Commit:              "0123456789abcdef0123456789abcdef01234567",
		FetchTags:           true,
		ShallowClone:        true,
		SparseCheckout:      []string{"dir/a", "dir/b"},
		Files: map[string]protocol.VirtualFile{
			"script.sh": {Content: []byte("#!/bin/sh\necho \x00 binary\n"), ModifiedAt: t0},
			"blob.bin":  {Bucket: "uploads", Key: "k/1", ModifiedAt: t0},
		},
		DockerSteps:      []protocol.DockerStep{{Key: "build", Image: "alpine:3", Commands: []string{"make"}, Dir: "src", Env: []string{"A=1"}}},
		CliSteps:         []protocol.CliStep{{Key: "cli", Commands: []string{"batch", "exec"}, Dir: ".", Env: []string{"B=2"}}},
		RedactedValues:   map[string]string{"s3cr3t": "******"},
		DockerAuthConfig: protocol.DockerAuthConfig{Auths: map[string]protocol.DockerAuth{"registry.example": {Auth: []byte("user:pass")}}},
	}
}

func mustEnqueue(t testing.TB, s store.Store, queue string, spec store.Spec, maxAttempts int, now time.Time) int {
	t.Helper()
	id, err := s.Enqueue(context.Background(), queue, spec, maxAttempts, now)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	return id
}

// mustDequeue dequeues a job that must be there, as executor with token.
func mustDequeue(t testing.TB, s store.Store, queue, executor, token string, now time.Time) store.Job {
	t.Helper()
	j, ok, err := s.Dequeue(context.Background(), queue, store.DequeueOptions{ExecutorName: executor, TokenHash: store.HashToken(token)}, now)
	if err != nil {
		t.Fatalf("Dequeue: %v", err)
	}
	if !ok {
		t.Fatalf("Dequeue from %q: got nothing, want a job", queue)
	}
	return j
}

func mustGet(t *testing.T, s store.Store, queue string, id int) store.Job {
	t.Helper()
	j, err := s.GetJob(t.Context(), queue, id)
	if err != nil {
		t.Fatalf("GetJob: %v", err)
	}
	return j
}

func mustOK(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, got, want error) {
	t.Helper()
	switch {
	case want == nil && got != nil:
		t.Errorf("error: got %v, want none", got)
	case want != nil && !errors.Is(got, want):
		t.Errorf("error: got %v, want %v", got, want)
	}
}

func wantTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
	if got.Location() != time.UTC {
		t.Errorf("%s: got location %v, want UTC", what, got.Location())
	}
}

func wantTimePtr(t *testing.T, what string, got *time.Time, want time.Time) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: got nil, want %v", what, want)
		return
	}
	wantTime(t, what, *got, want)
}
