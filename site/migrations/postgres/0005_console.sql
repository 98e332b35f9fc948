-- rewind-site schema, version 5 (PostgreSQL): the web console's sessions and the per-group time
-- series its charts draw. migrations/sqlite/0005_console.sql is the same in SQLite's types.

-- A browser's login: the cookie holds a random id, the table only its SHA-256 (a database
-- dump opens no session). `csrf` is the token every state-changing request from the console
-- must carry in a header (or form field); the role is read from `users` on every request.
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_ms);

-- One sample per group per `res_s` seconds (10: the last day; 300: older, downsampled, kept 30
-- days), taken by the leader after its inventory poll. `rpo_ms` is the RPO as the alerts reckon it
-- (the agent's, or the site's bound), `rpo_target_ms` the policy's (0: none); `journal_bytes` and `durable_seq` are the
-- target's figures at `at_ms`; `applied_bytes` the journal's growth and `records` the records
-- made durable since the previous sample (both 0 at the first).
CREATE TABLE group_samples (
    group_name TEXT NOT NULL,
    res_s BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    rpo_ms BIGINT NOT NULL,
    rpo_target_ms BIGINT NOT NULL,
    journal_bytes BIGINT NOT NULL,
    durable_seq BIGINT NOT NULL,
    applied_bytes BIGINT NOT NULL,
    records BIGINT NOT NULL,
    PRIMARY KEY (group_name, res_s, at_ms)
);
CREATE INDEX group_samples_at ON group_samples (res_s, at_ms);
