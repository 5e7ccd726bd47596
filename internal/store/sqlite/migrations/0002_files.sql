-- File blobs that jobs' files entries name by bucket and key.
-- A rowid table (not WITHOUT ROWID): rows hold large blobs.

CREATE TABLE files (
    bucket      TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    content     BLOB    NOT NULL,
    modified_at INTEGER NOT NULL, -- unix nanoseconds
    PRIMARY KEY (bucket, key)
);
