-- Failed hotline and counter checks are counted per agent across cases
-- (an agent trying ID numbers one after another is an oracle); the count
-- reads the audit log by actor and kind.
CREATE INDEX audit_actor_kind ON audit_events (actor, kind, seq);

-- A deadline computed over days the calendar does not cover yet (weekends
-- and the certain statutory holidays only): recomputed when it does.
ALTER TABLE deadlines ADD COLUMN provisional BIGINT NOT NULL DEFAULT 0;
