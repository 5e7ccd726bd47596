-- Jobs, their execution logs and the executors table.
-- Times are integer unix nanoseconds (UTC).

CREATE TABLE jobs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    queue             TEXT    NOT NULL,
    state             TEXT    NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'processing', 'completed', 'errored', 'failed', 'canceled')),
    spec              TEXT    NOT NULL, -- store.Spec as JSON
    repository_name   TEXT    NOT NULL DEFAULT '', -- copied from spec, for filtering
    failure_message   TEXT    NOT NULL DEFAULT '',
    num_failures      INTEGER NOT NULL DEFAULT 0,
    num_resets        INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL DEFAULT 1,
    cancel            INTEGER NOT NULL DEFAULT 0, -- boolean
    queued_at         INTEGER NOT NULL,
    process_after     INTEGER,
    started_at        INTEGER,
    finished_at       INTEGER,
    last_heartbeat_at INTEGER,
    worker_hostname   TEXT    NOT NULL DEFAULT '',
    token_sha256      BLOB UNIQUE -- NULL unless processing
);

-- Dequeue and QueuedCount: the eligible jobs of a queue in id order, with
-- process_after in the index so the eligibility test needs no table lookup.
CREATE INDEX jobs_dequeue ON jobs (queue, id, process_after) WHERE state IN ('queued', 'errored');
-- ListJobs by queue, by state (and CountByState, ResetStalled), by repository.
CREATE INDEX jobs_queue_id ON jobs (queue, id);
CREATE INDEX jobs_queue_state ON jobs (queue, state, id);
CREATE INDEX jobs_queue_repository ON jobs (queue, repository_name, id);

CREATE TABLE execution_logs (
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    entry_id    INTEGER NOT NULL, -- 1-based within the job
    key         TEXT    NOT NULL,
    command     TEXT    NOT NULL, -- JSON array of strings
    start_time  INTEGER NOT NULL,
    exit_code   INTEGER,
    out         TEXT    NOT NULL DEFAULT '',
    duration_ms INTEGER,
    PRIMARY KEY (job_id, entry_id)
) WITHOUT ROWID;

CREATE TABLE executors (
    name             TEXT    PRIMARY KEY,
    queues           TEXT    NOT NULL DEFAULT '[]', -- JSON array of strings
    os               TEXT    NOT NULL DEFAULT '',
    architecture     TEXT    NOT NULL DEFAULT '',
    docker_version   TEXT    NOT NULL DEFAULT '',
    executor_version TEXT    NOT NULL DEFAULT '',
    git_version      TEXT    NOT NULL DEFAULT '',
    ignite_version   TEXT    NOT NULL DEFAULT '',
    src_cli_version  TEXT    NOT NULL DEFAULT '',
    first_seen_at    INTEGER NOT NULL,
    last_seen_at     INTEGER NOT NULL
);
