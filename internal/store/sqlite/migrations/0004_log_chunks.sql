-- Appended log output (our append form of log streaming): an entry's
-- output is its out column followed by its chunks in seq order, and
-- out_len is the whole output's length in bytes.
ALTER TABLE execution_logs ADD COLUMN out_len INTEGER NOT NULL DEFAULT 0;
UPDATE execution_logs SET out_len = length(CAST(out AS BLOB));

CREATE TABLE execution_log_chunks (
    job_id   INTEGER NOT NULL,
    entry_id INTEGER NOT NULL,
    seq      INTEGER NOT NULL, -- 1-based within the entry
    data     TEXT    NOT NULL,
    PRIMARY KEY (job_id, entry_id, seq),
    FOREIGN KEY (job_id, entry_id) REFERENCES execution_logs (job_id, entry_id) ON DELETE CASCADE
) WITHOUT ROWID;
