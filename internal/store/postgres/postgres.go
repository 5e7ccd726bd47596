// Package postgres implements [store.Store] on PostgreSQL (pgx), for one or
// several coordinators sharing a database.
//
// Dequeue takes a row with FOR UPDATE SKIP LOCKED, so concurrent dequeues,
// from any process, never hand one job out twice. Hot operations are single
// statements (data-modifying CTEs), one round trip each. Enqueue and Retry
// send NOTIFY execd_jobs with the queue name in their transaction; every
// store LISTENs on a dedicated connection and turns notifications from
// other processes into wake-ups of its local waiters.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/store"
)

var _ store.Store = (*Store)(nil)

// channel is the NOTIFY channel; payloads are queue names (a job became
// eligible) and store.CancelKey (a processing job was canceled).
const channel = "execd_jobs"

// defaultMaxConns is the pool size when the URL sets no pool_max_conns:
// enough connections for PostgreSQL to group the commits of many
// concurrent executors into one WAL flush.
const defaultMaxConns = 32

// Store is a [store.Store] backed by a PostgreSQL database.
type Store struct {
	pool  *pgxpool.Pool
	waker store.Waker

	mu      sync.Mutex
	ownPIDs map[uint32]bool     // backend pids of the pool: our own NOTIFYs
	queues  map[string]struct{} // queues seen, to wake after the listener was away

	stopListen context.CancelFunc
	listenDone chan struct{}
}

// Open connects to the database at url, brings its schema up to date and
// starts listening for notifications. The URL may set pgxpool options
// such as pool_max_conns.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = defaultMaxConns
	}
	s := &Store{
		ownPIDs: make(map[uint32]bool),
		queues:  make(map[string]struct{}),
	}
	cfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		s.mu.Lock()
		s.ownPIDs[c.PgConn().PID()] = true
		s.mu.Unlock()
		return nil
	}
	cfg.BeforeClose = func(c *pgx.Conn) {
		s.mu.Lock()
		delete(s.ownPIDs, c.PgConn().PID())
		s.mu.Unlock()
	}
	s.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	if err := migrate(ctx, s.pool, time.Now()); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("migrate postgres store: %w", err)
	}

	// Listen before returning, so that no enqueue after Open goes unheard.
	listenCfg := cfg.ConnConfig.Copy()
	conn, err := listenConn(ctx, listenCfg)
	if err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("open postgres store: listen: %w", err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	s.stopListen, s.listenDone = cancel, make(chan struct{})
	go s.listen(lctx, listenCfg, conn)
	return s, nil
}

// Close stops the listener and closes the pool.
func (s *Store) Close() error {
	s.stopListen()
	<-s.listenDone
	s.pool.Close()
	return nil
}

// Wake returns a channel closed when queues may have work (see
// [store.Store]).
func (s *Store) Wake(queues []string) (<-chan struct{}, func()) {
	s.see(queues...)
	return s.waker.Wake(queues)
}

// WakeOnCancel returns a channel closed when Cancel flags one of jobs, in
// this process or another sharing the database (see [store.Store]).
func (s *Store) WakeOnCancel(jobs []store.JobRef) (<-chan struct{}, func()) {
	keys := make([]string, len(jobs))
	for i, j := range jobs {
		keys[i] = store.CancelKey(j)
	}
	return s.waker.Wake(keys)
}

func (s *Store) see(queues ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range queues {
		s.queues[q] = struct{}{}
	}
}

func (s *Store) ownPID(pid uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ownPIDs[pid]
}

// logger is looked up at each use, so that it follows slog.SetDefault.
func logger() *slog.Logger { return slog.Default().With("component", "store/postgres") }

func listenConn(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// Listener timing: how often an idle listener checks its connection, and
// the bounds of the reconnection backoff.
const (
	listenPing       = 30 * time.Second
	listenBackoff    = 100 * time.Millisecond
	listenMaxBackoff = 10 * time.Second
)

// listen turns notifications into wake-ups until ctx is done, reconnecting
// with backoff when the connection drops.
func (s *Store) listen(ctx context.Context, cfg *pgx.ConnConfig, conn *pgx.Conn) {
	defer close(s.listenDone)
	for {
		err := s.receive(ctx, conn)
		conn.Close(context.Background())
		if ctx.Err() != nil {
			return
		}
		logger().Warn("notification listener lost its connection; reconnecting", "err", err)
		for backoff := listenBackoff; ; backoff = min(2*backoff, listenMaxBackoff) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			if conn, err = listenConn(ctx, cfg); err == nil {
				break
			}
			logger().Warn("notification listener cannot reconnect", "err", err, "retry_in", min(2*backoff, listenMaxBackoff))
		}
		logger().Info("notification listener reconnected")
		// Notifications sent while away are lost: every waiter re-checks.
		s.mu.Lock()
		queues := make([]string, 0, len(s.queues))
		for q := range s.queues {
			queues = append(queues, q)
		}
		s.mu.Unlock()
		for _, q := range queues {
			s.waker.Notify(q, -1)
		}
	}
}

// receive handles notifications on conn until it fails or ctx is done.
func (s *Store) receive(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, listenPing)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			// Idle: make sure the connection still works. A timeout
			// leaves a pgx connection usable.
			pctx, cancel := context.WithTimeout(ctx, listenPing)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
			continue
		case err != nil:
			return err
		}
		// Our own enqueues and cancels notified local waiters directly.
		switch {
		case s.ownPID(n.PID):
		case store.IsCancelKey(n.Payload):
			s.waker.Notify(n.Payload, -1)
		default:
			s.see(n.Payload)
			s.waker.Notify(n.Payload, 1)
		}
	}
}

// jobColumns are the columns scanJob reads, in order.
const jobColumns = `id, queue, state, spec, failure_message, num_failures, num_resets, max_attempts, cancel,
	queued_at, process_after, started_at, finished_at, last_heartbeat_at, worker_hostname`

func scanJob(row pgx.Row) (store.Job, error) {
	var (
		j    store.Job
		spec string
	)
	err := row.Scan(&j.ID, &j.Queue, &j.State, &spec, &j.FailureMessage, &j.NumFailures, &j.NumResets,
		&j.MaxAttempts, &j.Cancel, &j.QueuedAt, &j.ProcessAfter, &j.StartedAt, &j.FinishedAt,
		&j.LastHeartbeatAt, &j.WorkerHostname)
	if err != nil {
		return store.Job{}, err
	}
	if err := json.Unmarshal([]byte(spec), &j.Spec); err != nil {
		return store.Job{}, fmt.Errorf("job %d: decode spec: %w", j.ID, err)
	}
	j.QueuedAt = j.QueuedAt.UTC()
	for _, p := range []*time.Time{j.ProcessAfter, j.StartedAt, j.FinishedAt, j.LastHeartbeatAt} {
		if p != nil {
			*p = p.UTC()
		}
	}
	return j, nil
}

// Enqueue stores a new queued job and wakes one waiter of its queue, here
// directly and in other processes through NOTIFY.
func (s *Store) Enqueue(ctx context.Context, queue string, spec store.Spec, maxAttempts int, now time.Time) (int, error) {
	if queue == "" {
		return 0, errors.New("enqueue: empty queue name")
	}
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return 0, fmt.Errorf("enqueue to %q: encode spec: %w", queue, err)
	}
	var id int
	err = s.pool.QueryRow(ctx, `
		WITH j AS (
			INSERT INTO jobs (queue, spec, repository_name, max_attempts, queued_at)
			VALUES ($1, $2, $3, $4, $5)
			RETURNING id, queue
		)
		SELECT j.id FROM j, LATERAL pg_notify('`+channel+`', j.queue) AS n`,
		queue, string(specJSON), spec.RepositoryName, max(maxAttempts, 1), now).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("enqueue to %q: %w", queue, err)
	}
	s.see(queue)
	s.waker.Notify(queue, 1)
	return id, nil
}

// dequeueSQL takes the oldest eligible job, skipping rows other dequeues
// hold, clears its old log entries and records the executor as seen, in
// one statement.
const dequeueSQL = `
	WITH j AS (
		UPDATE jobs
		SET state = 'processing', started_at = $2, last_heartbeat_at = $2, finished_at = NULL,
			worker_hostname = $3, token_sha256 = $4, log_entries = 0
		WHERE id = (
			SELECT id FROM jobs
			WHERE queue = $1 AND state IN ('queued', 'errored') AND (process_after IS NULL OR process_after <= $2)
			ORDER BY id
			LIMIT 1
			FOR UPDATE SKIP LOCKED
		)
		RETURNING ` + jobColumns + `
	), cleared AS (
		DELETE FROM execution_logs WHERE job_id IN (SELECT id FROM j)
	), seen AS (
		INSERT INTO executors (name, queues, first_seen_at, last_seen_at)
		SELECT $3, jsonb_build_array($1::text), $2, $2 FROM j
		ON CONFLICT (name) DO UPDATE SET
			last_seen_at = excluded.last_seen_at,
			queues = CASE
				WHEN executors.queues @> excluded.queues THEN executors.queues
				ELSE executors.queues || excluded.queues
			END
	)
	SELECT ` + jobColumns + ` FROM j`

// Dequeue hands the oldest eligible job of queue to opts.ExecutorName.
func (s *Store) Dequeue(ctx context.Context, queue string, opts store.DequeueOptions, now time.Time) (store.Job, bool, error) {
	j, err := scanJob(s.pool.QueryRow(ctx, dequeueSQL, queue, now, opts.ExecutorName, opts.TokenHash[:]))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Job{}, false, nil
	}
	if err != nil {
		return store.Job{}, false, fmt.Errorf("dequeue from %q: %w", queue, err)
	}
	return j, true, nil
}

const queuedCountSQL = `
	SELECT count(*) FROM jobs
	WHERE queue = $1 AND state IN ('queued', 'errored') AND (process_after IS NULL OR process_after <= $2)`

// QueuedCount counts the jobs of queue that Dequeue could take now.
func (s *Store) QueuedCount(ctx context.Context, queue string, now time.Time) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, queuedCountSQL, queue, now).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count queued jobs of %q: %w", queue, err)
	}
	return n, nil
}

// heartbeatSQL bumps the executor's jobs, then upserts the executor. Job
// rows are locked before the executor row, as in Dequeue, so the two
// cannot deadlock. An empty queue list keeps the queues already known.
const heartbeatSQL = `
	WITH beat AS (
		UPDATE jobs SET last_heartbeat_at = $1
		WHERE id = ANY($2) AND queue = $3 AND state = 'processing' AND worker_hostname = $4
		RETURNING id, cancel
	), seen AS (
		INSERT INTO executors (name, queues, os, architecture, docker_version, executor_version,
			git_version, ignite_version, src_cli_version, first_seen_at, last_seen_at, runtime)
		VALUES ($4, $5, $6, $7, $8, $9, $10, $11, $12, $1, $1, $13)
		ON CONFLICT (name) DO UPDATE SET
			queues = CASE WHEN excluded.queues = '[]' THEN executors.queues ELSE excluded.queues END,
			os = excluded.os, architecture = excluded.architecture,
			docker_version = excluded.docker_version, executor_version = excluded.executor_version,
			git_version = excluded.git_version, ignite_version = excluded.ignite_version,
			src_cli_version = excluded.src_cli_version, last_seen_at = excluded.last_seen_at,
			runtime = excluded.runtime
	)
	SELECT id, cancel FROM beat ORDER BY id`

// Heartbeat upserts the executor and keeps its processing jobs of queue alive.
func (s *Store) Heartbeat(ctx context.Context, e store.Executor, queue string, ids []int, now time.Time) (known, cancel []int, err error) {
	queues, err := json.Marshal(nonNil(e.Queues))
	if err != nil {
		return nil, nil, fmt.Errorf("heartbeat of %q: %w", e.Name, err)
	}
	rows, err := s.pool.Query(ctx, heartbeatSQL, now, nonNil(ids), queue, e.Name, string(queues),
		e.OS, e.Architecture, e.DockerVersion, e.ExecutorVersion, e.GitVersion, e.IgniteVersion, e.SrcCliVersion, e.Runtime)
	if err != nil {
		return nil, nil, fmt.Errorf("heartbeat of %q: %w", e.Name, err)
	}
	var (
		id int
		c  bool
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &c}, func() error {
		known = append(known, id)
		if c {
			cancel = append(cancel, id)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("heartbeat of %q: %w", e.Name, err)
	}
	return known, cancel, nil
}

// addLogSQL takes the next entry id from the job row: the row lock
// serialises concurrent appends, which max(entry_id)+1 would not.
const addLogSQL = `
	WITH j AS (
		UPDATE jobs SET log_entries = log_entries + 1
		WHERE ` + ownedBy + `
		RETURNING id, log_entries
	)
	INSERT INTO execution_logs (job_id, entry_id, key, command, start_time, exit_code, out, duration_ms, out_len)
	SELECT id, log_entries, $4, $5, $6, $7, $8, $9, $10 FROM j
	RETURNING entry_id`

// AddLogEntry appends a log entry to a processing job owned by executor.
func (s *Store) AddLogEntry(ctx context.Context, queue string, jobID int, executor string, entry protocol.ExecutionLogEntry) (int, error) {
	cmd, err := json.Marshal(nonNil(entry.Command))
	if err != nil {
		return 0, fmt.Errorf("add log entry to job %d: %w", jobID, err)
	}
	var id int
	err = s.pool.QueryRow(ctx, addLogSQL, jobID, queue, executor,
		entry.Key, string(cmd), entry.StartTime, entry.ExitCode, entry.Out, entry.DurationMs, len(entry.Out)).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("add log entry to job %d of %q: %w", jobID, queue, err)
	}
	return id, nil
}

// updateLogSQL commits without waiting for the WAL flush (synchronous_commit
// off for this transaction only): executors re-send an entry's whole output
// every second, and the next synchronous commit (the job's mark, at the
// latest) flushes it anyway, so a crash can only lose the last fraction of
// a second of progress, never a state change. It saves an fsync per update.
const updateLogSQL = `
	WITH async AS (SELECT set_config('synchronous_commit', 'off', true))
	, u AS (
		UPDATE execution_logs l
		SET key = $5, command = $6, start_time = $7, exit_code = $8, out = $9, duration_ms = $10, out_len = $11
		FROM jobs j, async
		WHERE l.job_id = $1 AND l.entry_id = $4
			AND j.id = $1 AND j.queue = $2 AND j.state = 'processing' AND j.worker_hostname = $3
		RETURNING l.job_id, l.entry_id
	), cleared AS (
		-- The new output replaces any appended to the entry.
		DELETE FROM execution_log_chunks c USING u WHERE c.job_id = u.job_id AND c.entry_id = u.entry_id
	)
	SELECT count(*) FROM u`

// UpdateLogEntry replaces a log entry of a processing job owned by executor.
func (s *Store) UpdateLogEntry(ctx context.Context, queue string, jobID int, executor string, entryID int, entry protocol.ExecutionLogEntry) error {
	cmd, err := json.Marshal(nonNil(entry.Command))
	if err != nil {
		return fmt.Errorf("update log entry %d of job %d: %w", entryID, jobID, err)
	}
	var n int
	err = s.pool.QueryRow(ctx, updateLogSQL,
		jobID, queue, executor, entryID, entry.Key, string(cmd), entry.StartTime, entry.ExitCode, entry.Out, entry.DurationMs, len(entry.Out)).Scan(&n)
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("update log entry %d of job %d of %q: %w", entryID, jobID, queue, err)
	}
	return nil
}

// AppendLogOutput appends chunk to a log entry's output if offset is its
// current length: one new row in execution_log_chunks, never a rewrite.
// The entry's row is locked, so concurrent appends serialise.
func (s *Store) AppendLogOutput(ctx context.Context, queue string, jobID int, executor string, entryID int, offset int64, chunk string) (int64, error) {
	var length int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Unlike updates, appends wait for the WAL flush: the executor
		// lets go of output once an append of it is acknowledged. They
		// come once a second per entry, so the wait costs little.
		err := tx.QueryRow(ctx, `
			SELECT l.out_len FROM execution_logs l JOIN jobs j ON j.id = l.job_id
			WHERE l.job_id = $1 AND l.entry_id = $4
				AND j.queue = $2 AND j.state = 'processing' AND j.worker_hostname = $3
			FOR UPDATE OF l`, jobID, queue, executor, entryID).Scan(&length)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		if offset != length {
			return fmt.Errorf("offset %d, length %d: %w", offset, length, store.ErrOffsetMismatch)
		}
		if chunk == "" {
			return nil
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO execution_log_chunks (job_id, entry_id, seq, data)
			VALUES ($1, $2, coalesce((SELECT max(seq) FROM execution_log_chunks WHERE job_id = $1 AND entry_id = $2), 0) + 1, $3)`,
			jobID, entryID, chunk); err != nil {
			return err
		}
		length += int64(len(chunk))
		_, err = tx.Exec(ctx, `UPDATE execution_logs SET out_len = $3 WHERE job_id = $1 AND entry_id = $2`, jobID, entryID, length)
		return err
	})
	if err != nil {
		return length, fmt.Errorf("append to log entry %d of job %d of %q: %w", entryID, jobID, queue, err)
	}
	return length, nil
}

// FinishLogEntry sets a log entry's exit code and duration.
func (s *Store) FinishLogEntry(ctx context.Context, queue string, jobID int, executor string, entryID int, exitCode, durationMs *int) error {
	err := s.execOne(ctx, `
		UPDATE execution_logs l SET exit_code = $5, duration_ms = $6
		FROM jobs j
		WHERE l.job_id = $1 AND l.entry_id = $4
			AND j.id = $1 AND j.queue = $2 AND j.state = 'processing' AND j.worker_hostname = $3`,
		jobID, queue, executor, entryID, exitCode, durationMs)
	if err != nil {
		return fmt.Errorf("finish log entry %d of job %d of %q: %w", entryID, jobID, queue, err)
	}
	return nil
}

// ownedBy is the condition every executor-side write puts on the job row.
const ownedBy = `id = $1 AND queue = $2 AND state = 'processing' AND worker_hostname = $3`

// MarkComplete moves a processing job owned by executor to completed.
func (s *Store) MarkComplete(ctx context.Context, queue string, jobID int, executor string, now time.Time) error {
	err := s.execOne(ctx, `
		UPDATE jobs SET state = 'completed', finished_at = $4, token_sha256 = NULL
		WHERE `+ownedBy,
		jobID, queue, executor, now)
	if err != nil {
		return fmt.Errorf("mark job %d of %q complete: %w", jobID, queue, err)
	}
	return nil
}

// MarkErrored records a failed attempt of a processing job owned by executor.
func (s *Store) MarkErrored(ctx context.Context, queue string, jobID int, executor, message string, retryDelay time.Duration, now time.Time) error {
	// SET expressions see the row as it was before the update.
	err := s.execOne(ctx, `
		UPDATE jobs SET
			state = CASE
				WHEN cancel THEN 'canceled'
				WHEN num_failures + 1 >= max_attempts THEN 'failed'
				ELSE 'errored'
			END,
			process_after = CASE
				WHEN cancel OR num_failures + 1 >= max_attempts THEN process_after
				ELSE $6::timestamptz
			END,
			num_failures = num_failures + 1,
			failure_message = $4, finished_at = $5, token_sha256 = NULL
		WHERE `+ownedBy,
		jobID, queue, executor, message, now, now.Add(retryDelay))
	if err != nil {
		return fmt.Errorf("mark job %d of %q errored: %w", jobID, queue, err)
	}
	return nil
}

// MarkFailed moves a processing job owned by executor to failed, or to
// canceled if a cancel was requested.
func (s *Store) MarkFailed(ctx context.Context, queue string, jobID int, executor, message string, now time.Time) error {
	err := s.execOne(ctx, `
		UPDATE jobs SET
			state = CASE WHEN cancel THEN 'canceled' ELSE 'failed' END,
			num_failures = num_failures + 1,
			failure_message = $4, finished_at = $5, token_sha256 = NULL
		WHERE `+ownedBy,
		jobID, queue, executor, message, now)
	if err != nil {
		return fmt.Errorf("mark job %d of %q failed: %w", jobID, queue, err)
	}
	return nil
}

// Release requeues a processing job owned by executor without counting
// an attempt.
func (s *Store) Release(ctx context.Context, queue string, jobID int, executor string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE jobs SET state = 'queued', started_at = NULL, last_heartbeat_at = NULL,
				worker_hostname = '', token_sha256 = NULL
			WHERE `+ownedBy,
			jobID, queue, executor)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify('`+channel+`', $1)`, queue)
		return err
	})
	if err != nil {
		return fmt.Errorf("release job %d of %q: %w", jobID, queue, err)
	}
	s.see(queue)
	s.waker.Notify(queue, 1)
	return nil
}

// stalledMessage is the failure message of a job reset too many times.
const stalledMessage = "job stalled too many times"

// ResetStalled requeues, fails or cancels the stalled processing jobs of
// queue. Rows that another transaction holds (a job being marked right
// now) are left for the next pass.
func (s *Store) ResetStalled(ctx context.Context, queue string, opts store.ResetOptions, now time.Time) (reset, failed []int, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		reset, failed = nil, nil
		rows, err := tx.Query(ctx, `
			WITH stalled AS (
				SELECT id FROM jobs
				WHERE queue = $1 AND state = 'processing' AND last_heartbeat_at < $2
				FOR UPDATE SKIP LOCKED
			)
			UPDATE jobs SET
				state = CASE
					WHEN cancel THEN 'canceled'
					WHEN num_resets >= $3 THEN 'failed'
					ELSE 'queued'
				END,
				failure_message = CASE
					WHEN cancel THEN failure_message
					WHEN num_resets >= $3 THEN $5
					ELSE failure_message
				END,
				finished_at = CASE WHEN cancel OR num_resets >= $3 THEN $4 ELSE finished_at END,
				worker_hostname = CASE WHEN cancel OR num_resets >= $3 THEN worker_hostname ELSE '' END,
				process_after = CASE WHEN cancel OR num_resets >= $3 THEN process_after ELSE NULL END,
				num_resets = CASE WHEN cancel OR num_resets >= $3 THEN num_resets ELSE num_resets + 1 END,
				token_sha256 = NULL
			FROM stalled
			WHERE jobs.id = stalled.id
			RETURNING jobs.id, jobs.state`,
			queue, opts.StalledBefore, opts.MaxResets, now, stalledMessage)
		if err != nil {
			return err
		}
		var (
			id    int
			state string
		)
		_, err = pgx.ForEachRow(rows, []any{&id, &state}, func() error {
			if state == store.StateQueued {
				reset = append(reset, id)
			} else {
				failed = append(failed, id)
			}
			return nil
		})
		if err != nil || len(reset) == 0 {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify('`+channel+`', $1)`, queue)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("reset stalled jobs of %q: %w", queue, err)
	}
	slices.Sort(reset)
	slices.Sort(failed)
	if len(reset) > 0 {
		s.waker.Notify(queue, len(reset))
	}
	return reset, failed, nil
}

const tokenOwnerSQL = `SELECT id, queue, repository_name FROM jobs WHERE token_sha256 = $1 AND state = 'processing'`

// TokenOwner returns the processing job holding the token hash.
func (s *Store) TokenOwner(ctx context.Context, hash store.TokenHash) (store.TokenOwner, error) {
	var o store.TokenOwner
	err := s.pool.QueryRow(ctx, tokenOwnerSQL, hash[:]).Scan(&o.JobID, &o.Queue, &o.RepositoryName)
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.TokenOwner{}, fmt.Errorf("look up job token: %w", err)
	}
	return o, nil
}

// ExecutorExists reports whether the executor has a row.
func (s *Store) ExecutorExists(ctx context.Context, name string) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM executors WHERE name = $1)`, name).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look up executor %q: %w", name, err)
	}
	return ok, nil
}

// GetJob returns one job of queue.
func (s *Store) GetJob(ctx context.Context, queue string, id int) (store.Job, error) {
	j, err := scanJob(s.pool.QueryRow(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = $1 AND queue = $2`, id, queue))
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Job{}, fmt.Errorf("get job %d of %q: %w", id, queue, err)
	}
	return j, nil
}

// LogEntries returns a job's entries, each with the part of its output
// that r chooses, from one snapshot of the database: only the pieces of
// output that hold that part are read.
func (s *Store) LogEntries(ctx context.Context, queue string, id int, r store.LogRange) ([]store.LogEntry, error) {
	var entries []store.LogEntry
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		entries, err = logEntries(ctx, tx, queue, id, r)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("log entries of job %d of %q: %w", id, queue, err)
	}
	return entries, nil
}

// logChunk is the seq and the length in bytes of one appended chunk of an
// entry's output, which follows the entry's out column.
type logChunk struct {
	Seq int
	Len int64
}

// chunkSpan returns the seqs of the first and last of chunks, which follow
// base bytes of output, that hold bytes at or after start, and how many
// bytes of the first to skip; first is 0 when none does.
func chunkSpan(chunks []logChunk, base, start int64) (first, last int, skip int64) {
	off := base
	for _, c := range chunks {
		if first == 0 && off+c.Len > start {
			first, skip = c.Seq, max(start-off, 0)
		}
		off += c.Len
		last = c.Seq
	}
	return first, last, skip
}

func logEntries(ctx context.Context, tx pgx.Tx, queue string, id int, r store.LogRange) ([]store.LogEntry, error) {
	rows, err := tx.Query(ctx, `
		SELECT l.entry_id, l.key, l.command, l.start_time, l.exit_code, l.duration_ms, octet_length(l.out)
		FROM execution_logs l JOIN jobs j ON j.id = l.job_id
		WHERE j.id = $1 AND j.queue = $2
		ORDER BY l.entry_id`, id, queue)
	if err != nil {
		return nil, err
	}
	var (
		entries []store.LogEntry
		baseLen []int64 // of each entry's out column
		e       store.LogEntry
		cmd     string
		n       int64
	)
	_, err = pgx.ForEachRow(rows, []any{&e.ID, &e.Key, &cmd, &e.StartTime, &e.ExitCode, &e.DurationMs, &n}, func() error {
		e.Command = nil
		if err := json.Unmarshal([]byte(cmd), &e.Command); err != nil {
			return fmt.Errorf("decode command: %w", err)
		}
		e.StartTime = e.StartTime.UTC()
		entries = append(entries, e)
		baseLen = append(baseLen, n)
		// Scan reuses e: the next row must not write into this entry's pointers.
		e.ExitCode, e.DurationMs = nil, nil
		return nil
	})
	if err != nil || len(entries) == 0 {
		return entries, err
	}
	// An entry's output is its out column followed by its chunks in seq
	// order; octet_length reads a value's size, not the value.
	rows, err = tx.Query(ctx, `
		SELECT entry_id, seq, octet_length(data) FROM execution_log_chunks WHERE job_id = $1 ORDER BY entry_id, seq`, id)
	if err != nil {
		return nil, err
	}
	chunks := map[int][]logChunk{}
	var (
		entryID int
		c       logChunk
	)
	_, err = pgx.ForEachRow(rows, []any{&entryID, &c.Seq, &c.Len}, func() error {
		chunks[entryID] = append(chunks[entryID], c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range entries {
		e := &entries[i]
		total := baseLen[i]
		for _, c := range chunks[e.ID] {
			total += c.Len
		}
		start := r.Start(e.ID, total)
		out := make([]byte, 0, total-start)
		if start < baseLen[i] {
			var b []byte
			err := tx.QueryRow(ctx, `
				SELECT substring(convert_to(out, 'UTF8') FROM $3::integer) FROM execution_logs WHERE job_id = $1 AND entry_id = $2`,
				id, e.ID, start+1).Scan(&b)
			if err != nil {
				return nil, err
			}
			out = append(out, b...)
		}
		first, last, skip := chunkSpan(chunks[e.ID], baseLen[i], start)
		if first > 0 {
			rows, err := tx.Query(ctx, `
				SELECT data FROM execution_log_chunks WHERE job_id = $1 AND entry_id = $2 AND seq BETWEEN $3 AND $4 ORDER BY seq`,
				id, e.ID, first, last)
			if err != nil {
				return nil, err
			}
			var data string
			_, err = pgx.ForEachRow(rows, []any{&data}, func() error {
				out = append(out, data[min(skip, int64(len(data))):]...)
				skip = 0
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
		k := 0
		if start > 0 {
			k = store.AlignStart(out)
		}
		e.Out, e.From, e.Length = string(out[k:]), start+int64(k), total
	}
	return entries, nil
}

// ListJobs lists jobs of queue, newest first.
func (s *Store) ListJobs(ctx context.Context, queue string, opts store.ListOptions) ([]store.Job, error) {
	query, args := listJobsQuery(queue, opts)
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list jobs of %q: %w", queue, err)
	}
	defer rows.Close()
	var jobs []store.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("list jobs of %q: %w", queue, err)
		}
		jobs = append(jobs, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list jobs of %q: %w", queue, err)
	}
	return jobs, nil
}

// listJobsQuery builds the ListJobs query. Only the filters in use go
// into it, so that the planner picks the index that matches them.
func listJobsQuery(queue string, opts store.ListOptions) (string, []any) {
	var q strings.Builder
	args := []any{queue}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	q.WriteString(`SELECT ` + jobColumns + ` FROM jobs WHERE queue = $1`)
	if opts.State != "" {
		q.WriteString(` AND state = ` + arg(opts.State))
	}
	if opts.RepositoryName != "" {
		q.WriteString(` AND repository_name = ` + arg(opts.RepositoryName))
	}
	if opts.BeforeID > 0 {
		q.WriteString(` AND id < ` + arg(opts.BeforeID))
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = 100
	}
	q.WriteString(` ORDER BY id DESC LIMIT ` + arg(limit))
	return q.String(), args
}

// Cancel cancels a queued or errored job, or flags a processing one.
func (s *Store) Cancel(ctx context.Context, queue string, id int, now time.Time) error {
	key := store.CancelKey(store.JobRef{Queue: queue, ID: id})
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE jobs SET
				state = CASE WHEN state = 'processing' THEN state ELSE 'canceled' END,
				finished_at = CASE WHEN state = 'processing' THEN finished_at ELSE $3 END,
				cancel = cancel OR state = 'processing'
			WHERE id = $1 AND queue = $2 AND state IN ('queued', 'errored', 'processing')`,
			id, queue, now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return existsErr(ctx, tx, queue, id)
		}
		// The executor of a processing job may wait for this in a
		// heartbeat on another coordinator.
		_, err = tx.Exec(ctx, `SELECT pg_notify('`+channel+`', $1)`, key)
		return err
	})
	if err != nil {
		return fmt.Errorf("cancel job %d of %q: %w", id, queue, err)
	}
	s.waker.Notify(key, -1)
	return nil
}

// Retry requeues a failed, errored or canceled job.
func (s *Store) Retry(ctx context.Context, queue string, id int, now time.Time) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE jobs SET
				state = 'queued', queued_at = $3, process_after = NULL, finished_at = NULL,
				num_failures = 0, num_resets = 0, cancel = false, failure_message = '',
				worker_hostname = ''
			WHERE id = $1 AND queue = $2 AND state IN ('failed', 'errored', 'canceled')`,
			id, queue, now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return existsErr(ctx, tx, queue, id)
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify('`+channel+`', $1)`, queue)
		return err
	})
	if err != nil {
		return fmt.Errorf("retry job %d of %q: %w", id, queue, err)
	}
	s.see(queue)
	s.waker.Notify(queue, 1)
	return nil
}

// existsErr tells why an update by id matched nothing: ErrInvalidState
// when the job exists (in the wrong state), ErrNotFound otherwise.
func existsErr(ctx context.Context, tx pgx.Tx, queue string, id int) error {
	var exists bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND queue = $2)`, id, queue).Scan(&exists)
	switch {
	case err != nil:
		return err
	case exists:
		return store.ErrInvalidState
	default:
		return store.ErrNotFound
	}
}

// ListExecutors lists executors, most recently seen first.
func (s *Store) ListExecutors(ctx context.Context) ([]store.Executor, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT name, queues, os, architecture, docker_version, executor_version, git_version,
			ignite_version, src_cli_version, first_seen_at, last_seen_at, runtime
		FROM executors
		ORDER BY last_seen_at DESC, name`)
	if err != nil {
		return nil, fmt.Errorf("list executors: %w", err)
	}
	var (
		out []store.Executor
		e   store.Executor
	)
	_, err = pgx.ForEachRow(rows, []any{&e.Name, &e.Queues, &e.OS, &e.Architecture, &e.DockerVersion,
		&e.ExecutorVersion, &e.GitVersion, &e.IgniteVersion, &e.SrcCliVersion, &e.FirstSeenAt, &e.LastSeenAt, &e.Runtime},
		func() error {
			e.FirstSeenAt, e.LastSeenAt = e.FirstSeenAt.UTC(), e.LastSeenAt.UTC()
			out = append(out, e)
			e.Queues = nil // decoded afresh for each row
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("list executors: %w", err)
	}
	return out, nil
}

const countByStateSQL = `SELECT queue, state, count(*) FROM jobs GROUP BY queue, state ORDER BY queue, state`

// CountByState counts jobs per queue and state, omitting zero counts.
func (s *Store) CountByState(ctx context.Context) ([]store.QueueCount, error) {
	rows, err := s.pool.Query(ctx, countByStateSQL)
	if err != nil {
		return nil, fmt.Errorf("count jobs by state: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.QueueCount, error) {
		var c store.QueueCount
		err := row.Scan(&c.Queue, &c.State, &c.Count)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("count jobs by state: %w", err)
	}
	return out, nil
}

// execOne runs an update that must match one row, else store.ErrNotFound.
func (s *Store) execOne(ctx context.Context, sql string, args ...any) error {
	tag, err := s.pool.Exec(ctx, sql, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// nonNil makes a nil slice encode as an empty array rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
