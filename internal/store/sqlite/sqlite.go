// Package sqlite implements [store.Store] on an embedded SQLite database
// (the pure Go modernc.org/sqlite driver), for a single coordinator process.
//
// SQLite has one writer at a time, so the store keeps one write connection,
// whose transactions begin IMMEDIATE (taking the write lock up front rather
// than failing to upgrade a read lock), and a separate pool of read-only
// connections that WAL mode lets run beside the writer. Times are stored as
// integer unix nanoseconds.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/store"
)

var _ store.Store = (*Store)(nil)

// Store is a [store.Store] backed by one SQLite database file.
type Store struct {
	write *sql.DB // exactly one connection: SQLite has one writer
	read  *sql.DB // query_only connections for reads beside the writer
	waker store.Waker

	// Prepared statements of the hot paths.
	dequeue, clearLogs, seenByDequeue *sql.Stmt // on write
	addLog, updateLog, markComplete   *sql.Stmt // on write
	tokenOwner, executorExists        *sql.Stmt // on read
}

// Open opens (creating it if needed) the database file at path and brings
// its schema up to date.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open sqlite store: invalid path %q", path)
	}
	const common = "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
	write, err := sql.Open("sqlite", path+"?"+common+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)

	s := &Store{write: write}
	if err := migrate(ctx, write, time.Now()); err != nil {
		write.Close()
		return nil, fmt.Errorf("migrate sqlite store %s: %w", path, err)
	}

	// The read pool is opened after migrating so that journal_mode=WAL is
	// already set in the file.
	read, err := sql.Open("sqlite", path+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)
	s.read = read

	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) prepare(ctx context.Context) error {
	for _, p := range []struct {
		db    *sql.DB
		stmt  **sql.Stmt
		query string
	}{
		{s.write, &s.dequeue, dequeueSQL},
		{s.write, &s.clearLogs, `DELETE FROM execution_logs WHERE job_id = ?`},
		{s.write, &s.seenByDequeue, seenByDequeueSQL},
		{s.write, &s.addLog, addLogSQL},
		{s.write, &s.updateLog, updateLogSQL},
		{s.write, &s.markComplete, markCompleteSQL},
		{s.read, &s.tokenOwner, tokenOwnerSQL},
		{s.read, &s.executorExists, `SELECT EXISTS (SELECT 1 FROM executors WHERE name = ?)`},
	} {
		st, err := p.db.PrepareContext(ctx, p.query)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", p.query, err)
		}
		*p.stmt = st
	}
	return nil
}

// Close closes both connection pools.
func (s *Store) Close() error {
	return errors.Join(s.read.Close(), s.write.Close())
}

// Wake delegates to the store's [store.Waker]; SQLite has one coordinator,
// so every enqueue is seen in this process.
func (s *Store) Wake(queues []string) (<-chan struct{}, func()) {
	return s.waker.Wake(queues)
}

// WakeOnCancel returns a channel closed when Cancel flags one of jobs.
func (s *Store) WakeOnCancel(jobs []store.JobRef) (<-chan struct{}, func()) {
	keys := make([]string, len(jobs))
	for i, j := range jobs {
		keys[i] = store.CancelKey(j)
	}
	return s.waker.Wake(keys)
}

// jobColumns are the columns scanJob reads, in order.
const jobColumns = `id, queue, state, spec, failure_message, num_failures, num_resets, max_attempts, cancel,
	queued_at, process_after, started_at, finished_at, last_heartbeat_at, worker_hostname`

type scanner interface{ Scan(dest ...any) error }

func scanJob(sc scanner) (store.Job, error) {
	var (
		j                                                  store.Job
		spec                                               string
		queuedAt                                           int64
		processAfter, startedAt, finishedAt, lastHeartbeat sql.NullInt64
	)
	err := sc.Scan(&j.ID, &j.Queue, &j.State, &spec, &j.FailureMessage, &j.NumFailures, &j.NumResets,
		&j.MaxAttempts, &j.Cancel, &queuedAt, &processAfter, &startedAt, &finishedAt, &lastHeartbeat,
		&j.WorkerHostname)
	if err != nil {
		return store.Job{}, err
	}
	if err := json.Unmarshal([]byte(spec), &j.Spec); err != nil {
		return store.Job{}, fmt.Errorf("job %d: decode spec: %w", j.ID, err)
	}
	j.QueuedAt = fromNanos(queuedAt)
	j.ProcessAfter = nullTime(processAfter)
	j.StartedAt = nullTime(startedAt)
	j.FinishedAt = nullTime(finishedAt)
	j.LastHeartbeatAt = nullTime(lastHeartbeat)
	return j, nil
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

func nullTime(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromNanos(n.Int64)
	return &t
}

// Enqueue stores a new queued job and wakes one waiter of its queue.
func (s *Store) Enqueue(ctx context.Context, queue string, spec store.Spec, maxAttempts int, now time.Time) (int, error) {
	if queue == "" {
		return 0, errors.New("enqueue: empty queue name")
	}
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return 0, fmt.Errorf("enqueue to %q: encode spec: %w", queue, err)
	}
	var id int
	err = s.write.QueryRowContext(ctx, `
		INSERT INTO jobs (queue, state, spec, repository_name, max_attempts, queued_at)
		VALUES (?, 'queued', ?, ?, ?, ?)
		RETURNING id`,
		queue, string(specJSON), spec.RepositoryName, max(maxAttempts, 1), now.UnixNano()).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("enqueue to %q: %w", queue, err)
	}
	s.waker.Notify(queue, 1)
	return id, nil
}

// dequeueSQL names its index: without statistics SQLite prefers
// jobs_queue_id, which walks every finished job at the head of the queue.
const dequeueSQL = `
	UPDATE jobs
	SET state = 'processing', started_at = ?3, last_heartbeat_at = ?3, finished_at = NULL,
		worker_hostname = ?4, token_sha256 = ?5
	WHERE id = (
		SELECT id FROM jobs INDEXED BY jobs_dequeue
		WHERE queue = ?1 AND state IN ('queued', 'errored') AND (process_after IS NULL OR process_after <= ?2)
		ORDER BY id
		LIMIT 1
	)
	RETURNING ` + jobColumns

// seenByDequeueSQL records that the executor is alive and serves queue ?2.
const seenByDequeueSQL = `
	INSERT INTO executors (name, queues, first_seen_at, last_seen_at)
	VALUES (?1, json_array(?2), ?3, ?3)
	ON CONFLICT (name) DO UPDATE SET
		last_seen_at = excluded.last_seen_at,
		queues = CASE
			WHEN EXISTS (SELECT 1 FROM json_each(executors.queues) WHERE value = ?2) THEN executors.queues
			ELSE json_insert(executors.queues, '$[#]', ?2)
		END`

// Dequeue hands the oldest eligible job of queue to opts.ExecutorName.
func (s *Store) Dequeue(ctx context.Context, queue string, opts store.DequeueOptions, now time.Time) (job store.Job, ok bool, err error) {
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		nowNS := now.UnixNano()
		j, err := scanJob(tx.StmtContext(ctx, s.dequeue).QueryRowContext(ctx,
			queue, nowNS, nowNS, opts.ExecutorName, opts.TokenHash[:]))
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := tx.StmtContext(ctx, s.clearLogs).ExecContext(ctx, j.ID); err != nil {
			return err
		}
		if _, err := tx.StmtContext(ctx, s.seenByDequeue).ExecContext(ctx, opts.ExecutorName, queue, nowNS); err != nil {
			return err
		}
		job, ok = j, true
		return nil
	})
	if err != nil {
		return store.Job{}, false, fmt.Errorf("dequeue from %q: %w", queue, err)
	}
	return job, ok, nil
}

const queuedCountSQL = `
	SELECT count(*) FROM jobs INDEXED BY jobs_dequeue
	WHERE queue = ?1 AND state IN ('queued', 'errored') AND (process_after IS NULL OR process_after <= ?2)`

// QueuedCount counts the jobs of queue that Dequeue could take now.
func (s *Store) QueuedCount(ctx context.Context, queue string, now time.Time) (int, error) {
	var n int
	err := s.read.QueryRowContext(ctx, queuedCountSQL, queue, now.UnixNano()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count queued jobs of %q: %w", queue, err)
	}
	return n, nil
}

// Heartbeat upserts the executor and keeps its processing jobs of queue alive.
func (s *Store) Heartbeat(ctx context.Context, e store.Executor, queue string, ids []int, now time.Time) (known, cancel []int, err error) {
	queues, err := json.Marshal(nonNil(e.Queues))
	if err != nil {
		return nil, nil, fmt.Errorf("heartbeat of %q: %w", e.Name, err)
	}
	idsJSON, err := json.Marshal(nonNil(ids))
	if err != nil {
		return nil, nil, fmt.Errorf("heartbeat of %q: %w", e.Name, err)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		known, cancel = nil, nil
		if len(ids) > 0 {
			rows, err := tx.QueryContext(ctx, `
				UPDATE jobs SET last_heartbeat_at = ?1
				WHERE id IN (SELECT value FROM json_each(?2)) AND queue = ?3
					AND state = 'processing' AND worker_hostname = ?4
				RETURNING id, cancel`,
				now.UnixNano(), string(idsJSON), queue, e.Name)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var id int
				var c bool
				if err := rows.Scan(&id, &c); err != nil {
					return err
				}
				known = append(known, id)
				if c {
					cancel = append(cancel, id)
				}
			}
			if err := rows.Close(); err != nil {
				return err
			}
		}
		// An empty queue list keeps the queues the executor was seen with.
		_, err := tx.ExecContext(ctx, `
			INSERT INTO executors (name, queues, os, architecture, docker_version, executor_version,
				git_version, ignite_version, src_cli_version, first_seen_at, last_seen_at, runtime)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11)
			ON CONFLICT (name) DO UPDATE SET
				queues = CASE WHEN excluded.queues = '[]' THEN executors.queues ELSE excluded.queues END,
				os = excluded.os, architecture = excluded.architecture,
				docker_version = excluded.docker_version, executor_version = excluded.executor_version,
				git_version = excluded.git_version, ignite_version = excluded.ignite_version,
				src_cli_version = excluded.src_cli_version, last_seen_at = excluded.last_seen_at,
				runtime = excluded.runtime`,
			e.Name, string(queues), e.OS, e.Architecture, e.DockerVersion, e.ExecutorVersion,
			e.GitVersion, e.IgniteVersion, e.SrcCliVersion, now.UnixNano(), e.Runtime)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("heartbeat of %q: %w", e.Name, err)
	}
	slices.Sort(known)
	slices.Sort(cancel)
	return known, cancel, nil
}

const addLogSQL = `
	INSERT INTO execution_logs (job_id, entry_id, key, command, start_time, exit_code, out, duration_ms, out_len)
	SELECT id, coalesce((SELECT max(entry_id) FROM execution_logs WHERE job_id = ?1), 0) + 1,
		?4, ?5, ?6, ?7, ?8, ?9, ?10
	FROM jobs
	WHERE id = ?1 AND queue = ?2 AND state = 'processing' AND worker_hostname = ?3
	RETURNING entry_id`

// AddLogEntry appends a log entry to a processing job owned by executor.
// The single writer connection makes max(entry_id)+1 race-free.
func (s *Store) AddLogEntry(ctx context.Context, queue string, jobID int, executor string, entry protocol.ExecutionLogEntry) (int, error) {
	cmd, err := json.Marshal(nonNil(entry.Command))
	if err != nil {
		return 0, fmt.Errorf("add log entry to job %d: %w", jobID, err)
	}
	var id int
	err = s.addLog.QueryRowContext(ctx, jobID, queue, executor,
		entry.Key, string(cmd), entry.StartTime.UnixNano(), entry.ExitCode, entry.Out, entry.DurationMs, len(entry.Out)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("add log entry to job %d of %q: %w", jobID, queue, err)
	}
	return id, nil
}

const updateLogSQL = `
	UPDATE execution_logs
	SET key = ?5, command = ?6, start_time = ?7, exit_code = ?8, out = ?9, duration_ms = ?10, out_len = ?11
	WHERE job_id = ?1 AND entry_id = ?4 AND EXISTS (
		SELECT 1 FROM jobs
		WHERE id = ?1 AND queue = ?2 AND state = 'processing' AND worker_hostname = ?3
	)`

// UpdateLogEntry replaces a log entry of a processing job owned by executor.
func (s *Store) UpdateLogEntry(ctx context.Context, queue string, jobID int, executor string, entryID int, entry protocol.ExecutionLogEntry) error {
	cmd, err := json.Marshal(nonNil(entry.Command))
	if err != nil {
		return fmt.Errorf("update log entry %d of job %d: %w", entryID, jobID, err)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, s.updateLog).ExecContext(ctx, jobID, queue, executor, entryID,
			entry.Key, string(cmd), entry.StartTime.UnixNano(), entry.ExitCode, entry.Out, entry.DurationMs, len(entry.Out))
		if err == nil {
			err = mustAffect(res)
		}
		if err != nil {
			return err
		}
		// The new output replaces any appended to the entry.
		_, err = tx.ExecContext(ctx, `DELETE FROM execution_log_chunks WHERE job_id = ? AND entry_id = ?`, jobID, entryID)
		return err
	})
	if err != nil {
		return fmt.Errorf("update log entry %d of job %d of %q: %w", entryID, jobID, queue, err)
	}
	return nil
}

const ownedLogSQL = `
	SELECT l.out_len FROM execution_logs l JOIN jobs j ON j.id = l.job_id
	WHERE l.job_id = ?1 AND l.entry_id = ?4
		AND j.queue = ?2 AND j.state = 'processing' AND j.worker_hostname = ?3`

// AppendLogOutput appends chunk to a log entry's output if offset is its
// current length: one new row in execution_log_chunks, never a rewrite.
func (s *Store) AppendLogOutput(ctx context.Context, queue string, jobID int, executor string, entryID int, offset int64, chunk string) (int64, error) {
	var length int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, ownedLogSQL, jobID, queue, executor, entryID).Scan(&length)
		if errors.Is(err, sql.ErrNoRows) {
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
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO execution_log_chunks (job_id, entry_id, seq, data)
			VALUES (?1, ?2, coalesce((SELECT max(seq) FROM execution_log_chunks WHERE job_id = ?1 AND entry_id = ?2), 0) + 1, ?3)`,
			jobID, entryID, chunk); err != nil {
			return err
		}
		length += int64(len(chunk))
		_, err = tx.ExecContext(ctx, `UPDATE execution_logs SET out_len = ?3 WHERE job_id = ?1 AND entry_id = ?2`, jobID, entryID, length)
		return err
	})
	if err != nil {
		return length, fmt.Errorf("append to log entry %d of job %d of %q: %w", entryID, jobID, queue, err)
	}
	return length, nil
}

// FinishLogEntry sets a log entry's exit code and duration.
func (s *Store) FinishLogEntry(ctx context.Context, queue string, jobID int, executor string, entryID int, exitCode, durationMs *int) error {
	res, err := s.write.ExecContext(ctx, `
		UPDATE execution_logs SET exit_code = ?5, duration_ms = ?6
		WHERE job_id = ?1 AND entry_id = ?4 AND EXISTS (
			SELECT 1 FROM jobs
			WHERE id = ?1 AND queue = ?2 AND state = 'processing' AND worker_hostname = ?3
		)`, jobID, queue, executor, entryID, exitCode, durationMs)
	if err == nil {
		err = mustAffect(res)
	}
	if err != nil {
		return fmt.Errorf("finish log entry %d of job %d of %q: %w", entryID, jobID, queue, err)
	}
	return nil
}

// ownedBy is the condition every executor-side write puts on the job row.
const ownedBy = `id = ?1 AND queue = ?2 AND state = 'processing' AND worker_hostname = ?3`

const markCompleteSQL = `
	UPDATE jobs SET state = 'completed', finished_at = ?4, token_sha256 = NULL
	WHERE ` + ownedBy

// MarkComplete moves a processing job owned by executor to completed.
func (s *Store) MarkComplete(ctx context.Context, queue string, jobID int, executor string, now time.Time) error {
	res, err := s.markComplete.ExecContext(ctx, jobID, queue, executor, now.UnixNano())
	if err == nil {
		err = mustAffect(res)
	}
	if err != nil {
		return fmt.Errorf("mark job %d of %q complete: %w", jobID, queue, err)
	}
	return nil
}

// MarkErrored records a failed attempt of a processing job owned by executor.
func (s *Store) MarkErrored(ctx context.Context, queue string, jobID int, executor, message string, retryDelay time.Duration, now time.Time) error {
	// SET expressions see the row as it was before the update.
	res, err := s.write.ExecContext(ctx, `
		UPDATE jobs SET
			state = CASE
				WHEN cancel THEN 'canceled'
				WHEN num_failures + 1 >= max_attempts THEN 'failed'
				ELSE 'errored'
			END,
			process_after = CASE
				WHEN cancel OR num_failures + 1 >= max_attempts THEN process_after
				ELSE ?6
			END,
			num_failures = num_failures + 1,
			failure_message = ?4, finished_at = ?5, token_sha256 = NULL
		WHERE `+ownedBy,
		jobID, queue, executor, message, now.UnixNano(), now.Add(retryDelay).UnixNano())
	if err == nil {
		err = mustAffect(res)
	}
	if err != nil {
		return fmt.Errorf("mark job %d of %q errored: %w", jobID, queue, err)
	}
	return nil
}

// MarkFailed moves a processing job owned by executor to failed, or to
// canceled if a cancel was requested.
func (s *Store) MarkFailed(ctx context.Context, queue string, jobID int, executor, message string, now time.Time) error {
	res, err := s.write.ExecContext(ctx, `
		UPDATE jobs SET
			state = CASE WHEN cancel THEN 'canceled' ELSE 'failed' END,
			num_failures = num_failures + 1,
			failure_message = ?4, finished_at = ?5, token_sha256 = NULL
		WHERE `+ownedBy,
		jobID, queue, executor, message, now.UnixNano())
	if err == nil {
		err = mustAffect(res)
	}
	if err != nil {
		return fmt.Errorf("mark job %d of %q failed: %w", jobID, queue, err)
	}
	return nil
}

// Release requeues a processing job owned by executor without counting
// an attempt.
func (s *Store) Release(ctx context.Context, queue string, jobID int, executor string) error {
	res, err := s.write.ExecContext(ctx, `
		UPDATE jobs SET state = 'queued', started_at = NULL, last_heartbeat_at = NULL,
			worker_hostname = '', token_sha256 = NULL
		WHERE `+ownedBy,
		jobID, queue, executor)
	if err == nil {
		err = mustAffect(res)
	}
	if err != nil {
		return fmt.Errorf("release job %d of %q: %w", jobID, queue, err)
	}
	s.waker.Notify(queue, 1)
	return nil
}

// stalledMessage is the failure message of a job reset too many times.
const stalledMessage = "job stalled too many times"

// ResetStalled requeues, fails or cancels the stalled processing jobs of queue.
func (s *Store) ResetStalled(ctx context.Context, queue string, opts store.ResetOptions, now time.Time) (reset, failed []int, err error) {
	rows, err := s.write.QueryContext(ctx, `
		UPDATE jobs SET
			state = CASE
				WHEN cancel THEN 'canceled'
				WHEN num_resets >= ?3 THEN 'failed'
				ELSE 'queued'
			END,
			failure_message = CASE
				WHEN cancel THEN failure_message
				WHEN num_resets >= ?3 THEN ?5
				ELSE failure_message
			END,
			finished_at = CASE WHEN cancel OR num_resets >= ?3 THEN ?4 ELSE finished_at END,
			worker_hostname = CASE WHEN cancel OR num_resets >= ?3 THEN worker_hostname ELSE '' END,
			process_after = CASE WHEN cancel OR num_resets >= ?3 THEN process_after ELSE NULL END,
			num_resets = CASE WHEN cancel OR num_resets >= ?3 THEN num_resets ELSE num_resets + 1 END,
			token_sha256 = NULL
		WHERE queue = ?1 AND state = 'processing' AND last_heartbeat_at < ?2
		RETURNING id, state`,
		queue, opts.StalledBefore.UnixNano(), opts.MaxResets, now.UnixNano(), stalledMessage)
	if err != nil {
		return nil, nil, fmt.Errorf("reset stalled jobs of %q: %w", queue, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int
		var state string
		if err := rows.Scan(&id, &state); err != nil {
			return nil, nil, fmt.Errorf("reset stalled jobs of %q: %w", queue, err)
		}
		if state == store.StateQueued {
			reset = append(reset, id)
		} else {
			failed = append(failed, id)
		}
	}
	if err := rows.Close(); err != nil {
		return nil, nil, fmt.Errorf("reset stalled jobs of %q: %w", queue, err)
	}
	slices.Sort(reset)
	slices.Sort(failed)
	if len(reset) > 0 {
		s.waker.Notify(queue, len(reset))
	}
	return reset, failed, nil
}

const tokenOwnerSQL = `SELECT id, queue, repository_name FROM jobs WHERE token_sha256 = ? AND state = 'processing'`

// TokenOwner returns the processing job holding the token hash.
func (s *Store) TokenOwner(ctx context.Context, hash store.TokenHash) (store.TokenOwner, error) {
	var o store.TokenOwner
	err := s.tokenOwner.QueryRowContext(ctx, hash[:]).Scan(&o.JobID, &o.Queue, &o.RepositoryName)
	if errors.Is(err, sql.ErrNoRows) {
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
	if err := s.executorExists.QueryRowContext(ctx, name).Scan(&ok); err != nil {
		return false, fmt.Errorf("look up executor %q: %w", name, err)
	}
	return ok, nil
}

// GetJob returns one job of queue.
func (s *Store) GetJob(ctx context.Context, queue string, id int) (store.Job, error) {
	j, err := scanJob(s.read.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = ? AND queue = ?`, id, queue))
	if errors.Is(err, sql.ErrNoRows) {
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
	tx, err := s.read.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("log entries of job %d of %q: %w", id, queue, err)
	}
	defer tx.Rollback()
	entries, err := logEntries(ctx, tx, queue, id, r)
	if err != nil {
		return nil, fmt.Errorf("log entries of job %d of %q: %w", id, queue, err)
	}
	return entries, nil
}

func logEntries(ctx context.Context, tx *sql.Tx, queue string, id int, r store.LogRange) ([]store.LogEntry, error) {
	rows, err := tx.QueryContext(ctx, `
		SELECT l.entry_id, l.key, l.command, l.start_time, l.exit_code, l.duration_ms, l.out_len
		FROM execution_logs l JOIN jobs j ON j.id = l.job_id
		WHERE j.id = ? AND j.queue = ?
		ORDER BY l.entry_id`, id, queue)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var entries []store.LogEntry
	for rows.Next() {
		var (
			e         store.LogEntry
			cmd       string
			start     int64
			exitCode  sql.NullInt64
			durationM sql.NullInt64
		)
		if err := rows.Scan(&e.ID, &e.Key, &cmd, &start, &exitCode, &durationM, &e.Length); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(cmd), &e.Command); err != nil {
			return nil, fmt.Errorf("decode command: %w", err)
		}
		e.StartTime = fromNanos(start)
		e.ExitCode = nullInt(exitCode)
		e.DurationMs = nullInt(durationM)
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range entries {
		if err := readOutput(ctx, tx, id, &entries[i], r); err != nil {
			return nil, err
		}
	}
	return entries, nil
}

// readOutput reads the part of e's output that r chooses. An output is
// its out column followed by its chunks in seq order, e.Length bytes in
// all; the part wanted is always its end, so chunks are read from the last
// back until they hold it (SQLite reads a value's whole content even to
// measure it, so only chunks that are needed are touched), then the out
// column if they do not.
func readOutput(ctx context.Context, tx *sql.Tx, id int, e *store.LogEntry, r store.LogRange) error {
	start := r.Start(e.ID, e.Length)
	want := e.Length - start
	var pieces [][]byte // the last pieces, newest first
	var have int64
	if want > 0 {
		rows, err := tx.QueryContext(ctx, `
			SELECT data FROM execution_log_chunks WHERE job_id = ? AND entry_id = ? ORDER BY seq DESC`, id, e.ID)
		if err != nil {
			return err
		}
		for have < want && rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				rows.Close()
				return err
			}
			pieces = append(pieces, b)
			have += int64(len(b))
		}
		if err := rows.Close(); err != nil {
			return err
		}
	}
	out := make([]byte, 0, max(have, want))
	if have < want {
		// The chunks are all read: the rest is the out column from start.
		var b []byte
		err := tx.QueryRowContext(ctx, `SELECT substr(CAST(out AS BLOB), ?3) FROM execution_logs WHERE job_id = ?1 AND entry_id = ?2`,
			id, e.ID, start+1).Scan(&b)
		if err != nil {
			return err
		}
		out = append(out, b...)
	}
	for i := len(pieces) - 1; i >= 0; i-- {
		out = append(out, pieces[i]...)
	}
	out = out[max(int64(len(out))-want, 0):]
	k := 0
	if start > 0 {
		k = store.AlignStart(out)
	}
	e.Out, e.From = string(out[k:]), start+int64(k)
	return nil
}

// ListJobs lists jobs of queue, newest first.
func (s *Store) ListJobs(ctx context.Context, queue string, opts store.ListOptions) ([]store.Job, error) {
	query, args := listJobsQuery(queue, opts)
	rows, err := s.read.QueryContext(ctx, query, args...)
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
// into it, so that SQLite picks the index that matches them.
func listJobsQuery(queue string, opts store.ListOptions) (string, []any) {
	var q strings.Builder
	q.WriteString(`SELECT ` + jobColumns + ` FROM jobs WHERE queue = ?`)
	args := []any{queue}
	if opts.State != "" {
		q.WriteString(` AND state = ?`)
		args = append(args, opts.State)
	}
	if opts.RepositoryName != "" {
		q.WriteString(` AND repository_name = ?`)
		args = append(args, opts.RepositoryName)
	}
	if opts.BeforeID > 0 {
		q.WriteString(` AND id < ?`)
		args = append(args, opts.BeforeID)
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = 100
	}
	q.WriteString(` ORDER BY id DESC LIMIT ?`)
	args = append(args, limit)
	return q.String(), args
}

// Cancel cancels a queued or errored job, or flags a processing one.
func (s *Store) Cancel(ctx context.Context, queue string, id int, now time.Time) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `
			UPDATE jobs SET
				state = CASE WHEN state = 'processing' THEN state ELSE 'canceled' END,
				finished_at = CASE WHEN state = 'processing' THEN finished_at ELSE ?3 END,
				cancel = CASE WHEN state = 'processing' THEN 1 ELSE cancel END
			WHERE id = ?1 AND queue = ?2 AND state IN ('queued', 'errored', 'processing')`,
			id, queue, now.UnixNano())
		if err == nil {
			err = mustAffect(res)
		}
		if errors.Is(err, store.ErrNotFound) {
			return s.existsErr(ctx, tx, queue, id)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("cancel job %d of %q: %w", id, queue, err)
	}
	// The executor of a processing job hears it at its next heartbeat, or
	// at once when one waits (WakeOnCancel).
	s.waker.Notify(store.CancelKey(store.JobRef{Queue: queue, ID: id}), -1)
	return nil
}

// Retry requeues a failed, errored or canceled job.
func (s *Store) Retry(ctx context.Context, queue string, id int, now time.Time) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `
			UPDATE jobs SET
				state = 'queued', queued_at = ?3, process_after = NULL, finished_at = NULL,
				num_failures = 0, num_resets = 0, cancel = 0, failure_message = '',
				worker_hostname = ''
			WHERE id = ?1 AND queue = ?2 AND state IN ('failed', 'errored', 'canceled')`,
			id, queue, now.UnixNano())
		if err == nil {
			err = mustAffect(res)
		}
		if errors.Is(err, store.ErrNotFound) {
			return s.existsErr(ctx, tx, queue, id)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("retry job %d of %q: %w", id, queue, err)
	}
	s.waker.Notify(queue, 1)
	return nil
}

// existsErr tells why an update by id matched nothing: ErrInvalidState
// when the job exists (in the wrong state), ErrNotFound otherwise.
func (s *Store) existsErr(ctx context.Context, tx *sql.Tx, queue string, id int) error {
	var exists bool
	err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM jobs WHERE id = ? AND queue = ?)`, id, queue).Scan(&exists)
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
	rows, err := s.read.QueryContext(ctx, `
		SELECT name, queues, os, architecture, docker_version, executor_version, git_version,
			ignite_version, src_cli_version, first_seen_at, last_seen_at, runtime
		FROM executors
		ORDER BY last_seen_at DESC, name`)
	if err != nil {
		return nil, fmt.Errorf("list executors: %w", err)
	}
	defer rows.Close()
	var out []store.Executor
	for rows.Next() {
		var (
			e               store.Executor
			queues          string
			first, lastSeen int64
		)
		if err := rows.Scan(&e.Name, &queues, &e.OS, &e.Architecture, &e.DockerVersion, &e.ExecutorVersion,
			&e.GitVersion, &e.IgniteVersion, &e.SrcCliVersion, &first, &lastSeen, &e.Runtime); err != nil {
			return nil, fmt.Errorf("list executors: %w", err)
		}
		if err := json.Unmarshal([]byte(queues), &e.Queues); err != nil {
			return nil, fmt.Errorf("list executors: executor %q: decode queues: %w", e.Name, err)
		}
		e.FirstSeenAt, e.LastSeenAt = fromNanos(first), fromNanos(lastSeen)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list executors: %w", err)
	}
	return out, nil
}

const countByStateSQL = `SELECT queue, state, count(*) FROM jobs GROUP BY queue, state ORDER BY queue, state`

// CountByState counts jobs per queue and state, omitting zero counts.
func (s *Store) CountByState(ctx context.Context) ([]store.QueueCount, error) {
	rows, err := s.read.QueryContext(ctx, countByStateSQL)
	if err != nil {
		return nil, fmt.Errorf("count jobs by state: %w", err)
	}
	defer rows.Close()
	var out []store.QueueCount
	for rows.Next() {
		var c store.QueueCount
		if err := rows.Scan(&c.Queue, &c.State, &c.Count); err != nil {
			return nil, fmt.Errorf("count jobs by state: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count jobs by state: %w", err)
	}
	return out, nil
}

// inTx runs fn in a write transaction (BEGIN IMMEDIATE, see Open).
func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// mustAffect turns an update that matched no row into store.ErrNotFound.
func mustAffect(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

func nullInt(n sql.NullInt64) *int {
	if !n.Valid {
		return nil
	}
	v := int(n.Int64)
	return &v
}

// nonNil makes a nil slice encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
