-- Named leases (store.Leaser): one holder at a time, until expires_at.
CREATE TABLE leases (
    name       text        PRIMARY KEY,
    holder     text        NOT NULL,
    expires_at timestamptz NOT NULL
);
