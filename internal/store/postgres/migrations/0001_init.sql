-- Jobs, their execution logs and the executors table.

CREATE TABLE jobs (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue             text        NOT NULL,
    state             text        NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'processing', 'completed', 'errored', 'failed', 'canceled')),
    spec              json        NOT NULL, -- store.Spec, kept as written
    repository_name   text        NOT NULL DEFAULT '', -- copied from spec, for filtering
    failure_message   text        NOT NULL DEFAULT '',
    num_failures      integer     NOT NULL DEFAULT 0,
    num_resets        integer     NOT NULL DEFAULT 0,
    max_attempts      integer     NOT NULL DEFAULT 1,
    cancel            boolean     NOT NULL DEFAULT false,
    queued_at         timestamptz NOT NULL,
    process_after     timestamptz,
    started_at        timestamptz,
    finished_at       timestamptz,
    last_heartbeat_at timestamptz,
    worker_hostname   text        NOT NULL DEFAULT '',
    token_sha256      bytea       UNIQUE, -- NULL unless processing
    -- The last execution log entry id handed out in this attempt. Bumping it
    -- locks the row, which serialises concurrent AddLogEntry calls of a job.
    log_entries       integer     NOT NULL DEFAULT 0
) WITH (fillfactor = 85); -- room for HOT updates (heartbeats, log entry ids)

-- Dequeue and QueuedCount: the eligible jobs of a queue in id order, with
-- process_after in the index so the eligibility test needs no heap lookup.
CREATE INDEX jobs_dequeue ON jobs (queue, id) INCLUDE (process_after) WHERE state IN ('queued', 'errored');
-- ListJobs by queue, by state (and CountByState, ResetStalled), by repository.
CREATE INDEX jobs_queue_id ON jobs (queue, id);
CREATE INDEX jobs_queue_state ON jobs (queue, state, id);
CREATE INDEX jobs_queue_repository ON jobs (queue, repository_name, id);

CREATE TABLE execution_logs (
    job_id      bigint      NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    entry_id    integer     NOT NULL, -- 1-based within the job
    key         text        NOT NULL,
    command     json        NOT NULL, -- array of strings
    start_time  timestamptz NOT NULL,
    exit_code   integer,
    out         text        NOT NULL DEFAULT '',
    duration_ms integer,
    PRIMARY KEY (job_id, entry_id)
);

CREATE TABLE executors (
    name             text        PRIMARY KEY,
    queues           jsonb       NOT NULL DEFAULT '[]', -- array of strings
    os               text        NOT NULL DEFAULT '',
    architecture     text        NOT NULL DEFAULT '',
    docker_version   text        NOT NULL DEFAULT '',
    executor_version text        NOT NULL DEFAULT '',
    git_version      text        NOT NULL DEFAULT '',
    ignite_version   text        NOT NULL DEFAULT '',
    src_cli_version  text        NOT NULL DEFAULT '',
    first_seen_at    timestamptz NOT NULL,
    last_seen_at     timestamptz NOT NULL
);
