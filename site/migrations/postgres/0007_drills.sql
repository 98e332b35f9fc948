-- rewind-site schema, version 7 (PostgreSQL): each group's last drill as its target reports it
-- (GET /v1/groups, `drill`), for the drill_failed and drill_overdue alerts.
-- migrations/sqlite/0007_drills.sql is the same.

-- The last drill: 1 passed, 0 failed, -1 none known; when it ended (ms since 1970; 0: none).
ALTER TABLE groups ADD COLUMN drill_last_ok BIGINT NOT NULL DEFAULT -1;
ALTER TABLE groups ADD COLUMN drill_last_ms BIGINT NOT NULL DEFAULT 0;
-- When the last passing drill ended (0: none), and the seq it proved (-1: none).
ALTER TABLE groups ADD COLUMN drill_ok_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE groups ADD COLUMN drill_verified_seq BIGINT NOT NULL DEFAULT -1;
-- The target's drill period from the group's policy (0: not scheduled).
ALTER TABLE groups ADD COLUMN drill_every_secs BIGINT NOT NULL DEFAULT 0;
-- The last drill in one line ('' when none).
ALTER TABLE groups ADD COLUMN drill_summary TEXT NOT NULL DEFAULT '';
