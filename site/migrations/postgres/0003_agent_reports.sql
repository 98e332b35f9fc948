-- rewind-site schema, version 3 (PostgreSQL): what each group's agent last reported to its
-- target (CONTROL op report, frame version 2): its mode, its RPO at the source, how its sync
-- moves. migrations/sqlite/0003_agent_reports.sql is the same.

-- '' when no report is known; else streaming, bitmap, initial-sync or resync.
ALTER TABLE groups ADD COLUMN agent_mode TEXT NOT NULL DEFAULT '';
-- The RPO the agent measured (ms; -1: no report).
ALTER TABLE groups ADD COLUMN agent_rpo_ms BIGINT NOT NULL DEFAULT -1;
-- When the agent made its report (ms since 1970; 0: none).
ALTER TABLE groups ADD COLUMN agent_report_ms BIGINT NOT NULL DEFAULT 0;
-- The running sync's progress in tenths of a percent (-1: none runs), and since when it last
-- moved forward (or the sync began): a sync that does not move is not converging.
ALTER TABLE groups ADD COLUMN agent_sync_permille BIGINT NOT NULL DEFAULT -1;
ALTER TABLE groups ADD COLUMN agent_progress_ms BIGINT NOT NULL DEFAULT 0;

-- The login for an email channel's SMTP server ('' for none; its password is the channel's
-- secret, never shown back).
ALTER TABLE channels ADD COLUMN smtp_user TEXT NOT NULL DEFAULT '';
