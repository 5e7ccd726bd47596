-- Sessions of the admin UI, in the database so that every coordinator
-- sharing it knows them. Only the hash of a session's id is stored.
CREATE TABLE ui_sessions (
    id_sha256    BLOB    PRIMARY KEY,
    csrf         TEXT    NOT NULL,
    token_sha256 BLOB    NOT NULL, -- of the api.accessToken signed in with
    expires_at   INTEGER NOT NULL  -- unix nanoseconds
) WITHOUT ROWID;
CREATE INDEX ui_sessions_expires ON ui_sessions (expires_at);
