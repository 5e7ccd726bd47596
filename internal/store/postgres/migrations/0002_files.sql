-- File blobs that jobs' files entries name by bucket and key.

CREATE TABLE files (
    bucket      text        NOT NULL,
    key         text        NOT NULL,
    content     bytea       NOT NULL,
    modified_at timestamptz NOT NULL,
    PRIMARY KEY (bucket, key)
);
