package worker_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/execd/execd/internal/coordinator"
	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/queueclient"
	"github.com/execd/execd/internal/store"
	"github.com/execd/execd/internal/worker"
)

const execSecret = "executor-secret-0123456789"

// runnerFunc is a JobRunner made of a function.
type runnerFunc func(ctx context.Context, job protocol.Job, exec context.Context) error

func (f runnerFunc) Run(ctx context.Context, job protocol.Job, exec context.Context) error {
	return f(ctx, job, exec)
}

type env struct {
	t      *testing.T
	c      *coordinator.Coordinator
	client *queueclient.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`{"executors.accessToken": %q, "executors.queueSettings": {"batches": {"maxAttempts": 1}}}`, execSecret)
	os.WriteFile(filepath.Join(dir, "site-config.json"), []byte(cfg), 0o600)
	c, err := coordinator.New(context.Background(), coordinator.Options{DataDir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(func() { srv.Close(); c.Close() })
	return &env{t: t, c: c, client: &queueclient.Client{BaseURL: srv.URL, Secret: execSecret, ExecutorName: "w-test"}}
}

func (e *env) enqueue(n int) []int {
	e.t.Helper()
	var ids []int
	for range n {
		id, err := e.c.Store().Enqueue(context.Background(), "batches", store.Spec{}, 1, time.Now())
		if err != nil {
			e.t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func (e *env) job(id int) store.Job {
	e.t.Helper()
	j, err := e.c.Store().GetJob(context.Background(), "batches", id)
	if err != nil {
		e.t.Fatal(err)
	}
	return j
}

func (e *env) waitState(id int, state string) store.Job {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j := e.job(id)
		if j.State == state {
			return j
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("job %d is %s, want %s", id, j.State, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) options() worker.Options {
	return worker.Options{
		Queues: []string{"batches"}, MaxJobs: 2, LongPoll: time.Second, PollInterval: 10 * time.Millisecond,
		HeartbeatInterval: 50 * time.Millisecond, Dequeue: queueclient.DequeueOptions{Version: "5.0.0"},
		StopGrace: 2 * time.Second,
	}
}

// run starts the worker; the returned channel closes when Run returns.
func run(w *worker.Worker, drain, hard context.Context) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(drain, hard)
	}()
	return done
}

func TestWorker_NumTotalJobs(t *testing.T) {
	e := newEnv(t)
	ids := e.enqueue(5)
	var ran atomic.Int32
	opts := e.options()
	opts.NumTotalJobs = 3
	w := worker.New(e.client, runnerFunc(func(ctx context.Context, j protocol.Job, exec context.Context) error {
		ran.Add(1)
		return nil
	}), opts)
	select {
	case <-run(w, context.Background(), context.Background()):
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after EXECUTOR_NUM_TOTAL_JOBS jobs")
	}
	if ran.Load() != 3 {
		t.Errorf("ran %d jobs, want 3", ran.Load())
	}
	for i, id := range ids {
		want := store.StateCompleted
		if i >= 3 {
			want = store.StateQueued
		}
		if got := e.job(id).State; got != want {
			t.Errorf("job %d: %s, want %s", id, got, want)
		}
	}
}

func TestWorker_MaxActiveTime(t *testing.T) {
	e := newEnv(t)
	opts := e.options()
	opts.MaxActiveTime = 300 * time.Millisecond
	start := time.Now()
	select {
	case <-run(worker.New(e.client, runnerFunc(func(context.Context, protocol.Job, context.Context) error { return nil }), opts), context.Background(), context.Background()):
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after EXECUTOR_MAX_ACTIVE_TIME")
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("returned after %v, before the active time", d)
	}
}

// blocking returns a runner that signals started and blocks until exec ends.
func blocking(started chan<- int) runnerFunc {
	return func(ctx context.Context, j protocol.Job, exec context.Context) error {
		started <- j.ID
		<-exec.Done()
		return exec.Err()
	}
}

func TestWorker_Outcomes(t *testing.T) {
	tests := []struct {
		name        string
		act         func(e *env, id int, drain, hard context.CancelFunc)
		maxRuntime  time.Duration
		wantState   string
		wantMessage string
	}{
		{
			name: "canceled through the API",
			act: func(e *env, id int, _, _ context.CancelFunc) {
				e.c.Store().Cancel(context.Background(), "batches", id, time.Now())
			},
			wantState:   store.StateCanceled,
			wantMessage: "canceled",
		},
		{
			name:        "maximum runtime",
			act:         func(*env, int, context.CancelFunc, context.CancelFunc) {},
			maxRuntime:  200 * time.Millisecond,
			wantState:   store.StateFailed, // maxAttempts 1
			wantMessage: "job exceeded maximum execution time",
		},
		{
			name:        "second signal stops the executor",
			act:         func(_ *env, _ int, drain, hard context.CancelFunc) { drain(); hard() },
			wantState:   store.StateFailed,
			wantMessage: "executor was stopped",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			id := e.enqueue(1)[0]
			started := make(chan int, 1)
			opts := e.options()
			opts.MaxRuntime = tt.maxRuntime
			drain, stopDrain := context.WithCancel(context.Background())
			hard, stopHard := context.WithCancel(context.Background())
			defer stopHard()
			done := run(worker.New(e.client, blocking(started), opts), drain, hard)
			<-started
			tt.act(e, id, stopDrain, stopHard)
			j := e.waitState(id, tt.wantState)
			if !strings.Contains(j.FailureMessage, tt.wantMessage) {
				t.Errorf("failure message %q, want it to contain %q", j.FailureMessage, tt.wantMessage)
			}
			stopDrain()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return")
			}
		})
	}
}

// TestWorker_CancelDuringWaitingHeartbeat: with long-polling, a job's
// heartbeat waits for its cancellation, so a cancel reaches the job long
// before the next heartbeat interval (a minute here).
func TestWorker_CancelDuringWaitingHeartbeat(t *testing.T) {
	e := newEnv(t)
	id := e.enqueue(1)[0]
	started := make(chan int, 1)
	opts := e.options()
	opts.HeartbeatInterval = time.Minute
	drain, stopDrain := context.WithCancel(context.Background())
	defer stopDrain()
	done := run(worker.New(e.client, blocking(started), opts), drain, context.Background())
	<-started
	time.Sleep(200 * time.Millisecond) // the job's heartbeat is waiting now
	if err := e.c.Store().Cancel(context.Background(), "batches", id, time.Now()); err != nil {
		t.Fatal(err)
	}
	e.waitState(id, store.StateCanceled) // within 10s
	stopDrain()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}

// TestWorker_CancelOfJobStartedDuringWaitingHeartbeat: a job that starts
// while another job's heartbeat waits ends that wait, so its own cancel
// too reaches it long before the next interval.
func TestWorker_CancelOfJobStartedDuringWaitingHeartbeat(t *testing.T) {
	e := newEnv(t)
	first := e.enqueue(1)[0]
	started := make(chan int, 2)
	opts := e.options()
	opts.HeartbeatInterval = time.Minute
	drain, stopDrain := context.WithCancel(context.Background())
	defer stopDrain()
	done := run(worker.New(e.client, blocking(started), opts), drain, context.Background())
	<-started
	time.Sleep(200 * time.Millisecond) // the first job's heartbeat is waiting now
	second := e.enqueue(1)[0]
	if id := <-started; id != second {
		t.Fatalf("started job %d, want %d", id, second)
	}
	time.Sleep(200 * time.Millisecond)
	if err := e.c.Store().Cancel(context.Background(), "batches", second, time.Now()); err != nil {
		t.Fatal(err)
	}
	e.waitState(second, store.StateCanceled) // within 10s
	if j := e.job(first); j.State != store.StateProcessing {
		t.Errorf("the first job is %s, want still processing", j.State)
	}
	stopDrain()
	e.c.Store().Cancel(context.Background(), "batches", first, time.Now())
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}

func TestWorker_DrainFinishesRunningJobs(t *testing.T) {
	e := newEnv(t)
	ids := e.enqueue(3)
	started := make(chan int, 3)
	release := make(chan struct{})
	opts := e.options()
	opts.MaxJobs = 1
	w := worker.New(e.client, runnerFunc(func(ctx context.Context, j protocol.Job, exec context.Context) error {
		started <- j.ID
		<-release
		return nil
	}), opts)
	drain, stopDrain := context.WithCancel(context.Background())
	done := run(w, drain, context.Background())
	first := <-started
	stopDrain()
	time.Sleep(100 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("Run returned while a job was running")
	default:
	}
	close(release)
	<-done
	if got := e.job(first).State; got != store.StateCompleted {
		t.Errorf("the running job is %s, want completed", got)
	}
	queued := 0
	for _, id := range ids {
		if e.job(id).State == store.StateQueued {
			queued++
		}
	}
	if queued != 2 {
		t.Errorf("%d jobs still queued, want 2: a draining executor takes no new jobs", queued)
	}
}

func TestWorker_DropsJobsTheCoordinatorForgot(t *testing.T) {
	e := newEnv(t)
	id := e.enqueue(1)[0]
	started := make(chan int, 1)
	var cause atomic.Value
	var runs atomic.Int32
	w := worker.New(e.client, runnerFunc(func(ctx context.Context, j protocol.Job, exec context.Context) error {
		if runs.Add(1) > 1 {
			return nil // the requeued job, taken again
		}
		started <- j.ID
		<-exec.Done()
		cause.Store(context.Cause(exec).Error())
		return exec.Err()
	}), e.options())
	drain, stopDrain := context.WithCancel(context.Background())
	done := run(w, drain, context.Background())
	<-started
	// The coordinator gives the job to someone else (as the resetter would).
	if err := e.c.Store().Release(context.Background(), "batches", id, "w-test"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for cause.Load() == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stopDrain()
	<-done
	if c, _ := cause.Load().(string); !strings.Contains(c, "no longer assigns") {
		t.Errorf("job stopped with cause %q, want it dropped", c)
	}
	if j := e.job(id); j.State == store.StateFailed || j.State == store.StateErrored {
		t.Errorf("a dropped job was marked %s", j.State)
	}
}

// TestWorker_UsesOfferedExtensions: against our coordinator, which names
// its extensions on every answer, the client first learns them through a
// route of the reference; then dequeues long-poll and ask for version 2
// payloads, and heartbeats with a job running wait for cancellations.
func TestWorker_UsesOfferedExtensions(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var seen []string // "<route> wait=<header>"
	inner := e.c.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]+" wait="+r.Header.Get(protocol.WaitHeader)+" v="+r.Header.Get(protocol.JobVersionHeader))
		mu.Unlock()
		inner.ServeHTTP(w, r)
	}))
	defer srv.Close()
	e.client = &queueclient.Client{BaseURL: srv.URL, Secret: execSecret, ExecutorName: "w-ext"}
	if e.client.Supports(protocol.ExtLongPoll) {
		t.Fatal("a client that heard nothing yet says the coordinator long-polls")
	}
	ids := e.enqueue(1)
	drain, stop := context.WithCancel(context.Background())
	defer stop()
	w := worker.New(e.client, runnerFunc(func(ctx context.Context, j protocol.Job, exec context.Context) error {
		time.Sleep(300 * time.Millisecond)
		return nil
	}), e.options())
	done := run(w, drain, context.Background())
	e.waitState(ids[0], "completed")
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		got := slices.Clone(seen)
		mu.Unlock()
		dequeues := slices.DeleteFunc(slices.Clone(got), func(s string) bool { return !strings.HasPrefix(s, "dequeue ") })
		if len(dequeues) >= 2 && slices.Contains(got, "heartbeat wait=50ms v=") {
			if first := slices.IndexFunc(got, func(s string) bool { return strings.HasPrefix(s, "dequeue ") }); !slices.Contains(got[:first], "auth wait= v=") {
				t.Errorf("requests %q: the first dequeue came before GET /test/auth told what the coordinator offers", got)
			}
			for _, d := range dequeues {
				if d != "dequeue wait=1s v=2" {
					t.Errorf("a dequeue was %q, want it to long-poll for 1s and ask for version 2", d)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("requests %q: want two dequeues and a heartbeat waiting 50ms", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, ext := range protocol.Extensions {
		if !e.client.Supports(ext) {
			t.Errorf("the client does not know that our coordinator offers %s", ext)
		}
	}
	stop()
	<-done
}

// TestWorker_DequeueFailureBacksOff: a coordinator that fails dequeues is
// asked again only after a backoff (at least 125 ms the first time), not
// in a loop. (A client that has heard nothing yet asks GET /test/auth
// before its dequeue: either is the loop's request.)
func TestWorker_DequeueFailureBacksOff(t *testing.T) {
	var mu sync.Mutex
	var dequeues []time.Time
	enough := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/dequeue") || strings.HasSuffix(r.URL.Path, "/test/auth") {
			mu.Lock()
			if dequeues = append(dequeues, time.Now()); len(dequeues) == 3 {
				close(enough)
			}
			mu.Unlock()
		}
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	client := &queueclient.Client{BaseURL: srv.URL, Secret: execSecret, ExecutorName: "w-test"}
	drain, stop := context.WithCancel(context.Background())
	defer stop()
	w := worker.New(client, runnerFunc(func(context.Context, protocol.Job, context.Context) error { return nil }),
		worker.Options{Queues: []string{"batches"}, LongPoll: time.Second})
	done := make(chan error, 1)
	go func() { done <- w.Run(drain, context.Background()) }()
	select {
	case <-enough:
	case <-time.After(time.Minute):
		t.Fatal("fewer than 3 dequeues in a minute")
	}
	stop()
	<-done
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < 3; i++ {
		if gap := dequeues[i].Sub(dequeues[i-1]); gap < 125*time.Millisecond {
			t.Errorf("dequeue %d came %v after a failed one, want a backoff of at least 125ms", i+1, gap)
		}
	}
}
