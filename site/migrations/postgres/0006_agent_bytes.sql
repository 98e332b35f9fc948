-- rewind-site schema, version 6 (PostgreSQL): the bytes each group's agent reports (captured, handed
-- to the sender before compression, put on the link), so the console can draw churn against
-- bytes sent against bytes on the wire. migrations/sqlite/0006_agent_bytes.sql is the same.

-- Counters since the agent started, as last reported (-1: no report carried them). They restart
-- from 0 with the agent: a drop between two samples is a restart, not negative traffic.
ALTER TABLE groups ADD COLUMN agent_captured_bytes BIGINT NOT NULL DEFAULT -1;
ALTER TABLE groups ADD COLUMN agent_sent_bytes BIGINT NOT NULL DEFAULT -1;
ALTER TABLE groups ADD COLUMN agent_wire_bytes BIGINT NOT NULL DEFAULT -1;

-- The same counters at each sample (-1: unknown); the charts draw the differences per second.
-- Folding keeps the largest of a coarse bucket (the counter at its end).
ALTER TABLE group_samples ADD COLUMN captured_total BIGINT NOT NULL DEFAULT -1;
ALTER TABLE group_samples ADD COLUMN sent_total BIGINT NOT NULL DEFAULT -1;
ALTER TABLE group_samples ADD COLUMN wire_total BIGINT NOT NULL DEFAULT -1;
