-- rewind-site schema, version 1 (SQLite). migrations/postgres/0001_init.sql is the same schema in
-- PostgreSQL's types: keep the two in step, same version numbers, same tables and columns.
-- Times are milliseconds since the UNIX epoch (UTC), stored as integers on both backends.

CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT,
    created_ms BIGINT NOT NULL
);

CREATE TABLE tokens (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_by TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms BIGINT NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    result TEXT NOT NULL
);

CREATE TABLE targets (
    name TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    agent_addr TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    version TEXT NOT NULL,
    journal_bytes BIGINT NOT NULL,
    free_bytes BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    added_ms BIGINT NOT NULL
);

CREATE TABLE groups (
    name TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    generation BIGINT NOT NULL,
    durable_seq BIGINT NOT NULL,
    journal_bytes BIGINT NOT NULL,
    retention TEXT NOT NULL,
    running_policy TEXT NOT NULL,
    running_version BIGINT NOT NULL,
    seen_ms BIGINT NOT NULL
);

CREATE TABLE disks (
    group_name TEXT NOT NULL,
    name TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    PRIMARY KEY (group_name, name)
);

CREATE TABLE agents (
    name TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    group_name TEXT NOT NULL,
    version TEXT NOT NULL,
    host TEXT NOT NULL,
    last_seen_ms BIGINT NOT NULL
);

CREATE TABLE group_labels (
    group_name TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (group_name, key)
);

CREATE TABLE policies (
    name TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    body TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);

CREATE TABLE assignments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    policy TEXT NOT NULL REFERENCES policies(name),
    selector TEXT NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL
);

CREATE TABLE pushes (
    group_name TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    policy TEXT NOT NULL,
    version BIGINT NOT NULL,
    error TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);

CREATE TABLE protections (
    host TEXT NOT NULL,
    group_name TEXT NOT NULL,
    target TEXT NOT NULL,
    policy TEXT NOT NULL,
    bundle TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (group_name)
);

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    state TEXT NOT NULL,
    done BIGINT NOT NULL,
    total BIGINT NOT NULL,
    detail TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);

CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);

CREATE INDEX audit_at ON audit (at_ms);
CREATE INDEX groups_target ON groups (target);
CREATE INDEX events_at ON events (at_ms);
