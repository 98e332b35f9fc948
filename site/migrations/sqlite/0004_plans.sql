-- rewind-site schema, version 4 (SQLite): recovery plans kept by the site and the record of each
-- run across master targets. migrations/postgres/0004_plans.sql is the same in postgres's types.

-- A plan: its TOML text as given (validated when stored), the boot groups in order.
CREATE TABLE plans (
    name TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

-- One row per run. `state`: running, succeeded, failed, cleaned. `rto_ms` is -1 until every
-- machine of every boot group is healthy. `owner` is the instance that ran it (a new leader
-- fails the runs of the old one with the reason, never runs them twice). `job`: the site job.
CREATE TABLE plan_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plan TEXT NOT NULL,
    mode TEXT NOT NULL,
    point TEXT NOT NULL,
    job BIGINT NOT NULL,
    state TEXT NOT NULL,
    owner TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    ended_ms BIGINT NOT NULL,
    rto_ms BIGINT NOT NULL,
    targets TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX plan_runs_plan ON plan_runs (plan, id);

-- Every step of a run as its target reported it (hook, prepare, boot, health, cleanup), in order.
CREATE TABLE plan_steps (
    run BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    boot_group TEXT NOT NULL,
    machine TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    ended_ms BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (run, idx)
);
