-- rewind-site schema, version 2 (SQLite): alerts the site evaluates itself, where they are sent
-- (webhooks, email) and each delivery's state; what polls learn of each group's agent and each
-- target's capacity; refusals the targets report. migrations/postgres/0002_alerts.sql is the same.

-- One row per firing: `state` is `firing` until the condition clears (`resolved`). At most one
-- firing row per (kind, subject): the partial unique index refuses a second one, so two leaders
-- in a race cannot both fire it.
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    summary TEXT NOT NULL,
    fired_ms BIGINT NOT NULL,
    resolved_ms BIGINT NOT NULL,
    acked_by TEXT NOT NULL,
    acked_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX alerts_one_firing ON alerts (kind, subject) WHERE state = 'firing';
CREATE INDEX alerts_fired ON alerts (fired_ms);

-- Where alerts go: `webhook` (url, optional HMAC secret) or `email` (url smtp://..., from, to).
CREATE TABLE channels (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    mail_to TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

-- One message (an alert fired or resolved) to one channel: `pending` (retried at next_ms),
-- `delivered` or `failed` (gave up after the last attempt).
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id BIGINT NOT NULL,
    transition TEXT NOT NULL,
    channel TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    last_error TEXT NOT NULL,
    next_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (state, next_ms);

-- Sessions a target refused or ended with an ERROR code (from its event stream).
CREATE TABLE refusals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms BIGINT NOT NULL,
    target TEXT NOT NULL,
    group_name TEXT NOT NULL,
    agent TEXT NOT NULL,
    code TEXT NOT NULL
);
CREATE INDEX refusals_at ON refusals (at_ms);

-- From the inventory: whether the group's agent is connected (-1: the target never saw one) and
-- when it last was; the target's file system size (-1: not reported).
ALTER TABLE groups ADD COLUMN agent_connected BIGINT NOT NULL DEFAULT -1;
ALTER TABLE groups ADD COLUMN agent_seen_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE targets ADD COLUMN capacity_bytes BIGINT NOT NULL DEFAULT -1;
