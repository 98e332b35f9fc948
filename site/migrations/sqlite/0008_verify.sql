-- rewind-site schema, version 8 (SQLite): each group's last online verify as its target reports
-- it (GET /v1/groups, `verify`), for the verify_mismatch alert, which stays while the last
-- verify found differences it did not repair.
-- migrations/postgres/0008_verify.sql is the same.

-- When the last verify ended (ms since 1970; 0: none known) and its job on the target.
ALTER TABLE groups ADD COLUMN verify_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE groups ADD COLUMN verify_job BIGINT NOT NULL DEFAULT 0;
-- Bytes it found differing and left unrepaired (0: none, or repaired), in how many ranges.
ALTER TABLE groups ADD COLUMN verify_differs_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE groups ADD COLUMN verify_ranges BIGINT NOT NULL DEFAULT 0;
