-- Named leases (store.Leaser): one holder at a time, until expires_at.
CREATE TABLE leases (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL -- unix nanoseconds
) WITHOUT ROWID;
