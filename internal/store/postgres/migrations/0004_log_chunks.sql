-- Appended log output (our append form of log streaming): an entry's
-- output is its out column followed by its chunks in seq order, and
-- out_len is the whole output's length in bytes.
ALTER TABLE execution_logs ADD COLUMN out_len bigint NOT NULL DEFAULT 0;
UPDATE execution_logs SET out_len = octet_length(out);

CREATE TABLE execution_log_chunks (
    job_id   bigint  NOT NULL,
    entry_id integer NOT NULL,
    seq      integer NOT NULL, -- 1-based within the entry
    data     text    NOT NULL,
    PRIMARY KEY (job_id, entry_id, seq),
    FOREIGN KEY (job_id, entry_id) REFERENCES execution_logs (job_id, entry_id) ON DELETE CASCADE
);
