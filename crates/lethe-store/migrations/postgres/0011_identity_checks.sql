-- Failed hotline and counter checks are counted per agent across cases
-- (an agent trying ID numbers one after another is an oracle); the count
-- reads the audit log by actor and kind.
CREATE INDEX audit_actor_kind ON audit_events (actor, kind, seq);
