-- The audit log off the request path (queue, then sequence). A change
-- writes its event here, in its own transaction, without a global lock;
-- one sequencer (the holder of the 'audit.sequencer' lease) moves queued
-- events into audit_events in queue order, assigning sequence numbers and
-- extending the Merkle tree in batches. qid is never reused
-- (a sequence), so a receipt can name its final event before it has a
-- sequence number.
CREATE TABLE audit_queue (
    qid BIGSERIAL PRIMARY KEY,
    case_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    kind TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    detail TEXT NOT NULL,
    -- The event's canonical JSON after its sequence number (what the
    -- sequencer hashes with the number it assigns).
    body TEXT NOT NULL,
    queued_at BIGINT NOT NULL
);
CREATE INDEX audit_queue_case ON audit_queue (case_id, qid);

-- The queue id an event had (NULL for events written before the queue).
ALTER TABLE audit_events ADD COLUMN qid BIGINT;
-- The queue id of a receipt's final event, to find its sequence number
-- when the receipt is signed.
ALTER TABLE receipts ADD COLUMN final_qid BIGINT;

-- Leases one instance holds at a time (the sequencer). epoch grows at
-- every change of holder: a fencing token.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    epoch BIGINT NOT NULL
);

-- Events by kind, kept by the sequencer (metrics read this instead of
-- counting the whole log).
CREATE TABLE audit_kind_counts (
    kind TEXT PRIMARY KEY,
    n BIGINT NOT NULL
);
INSERT INTO audit_kind_counts (kind, n) SELECT kind, COUNT(*) FROM audit_events GROUP BY kind;

-- The log's actor index served one query: an agent's failed identity
-- checks within the hour. Kept for those events only, every other event is
-- sequenced with one index fewer to maintain.
DROP INDEX audit_actor_kind;
CREATE INDEX audit_identity_failures ON audit_events (actor, at) WHERE kind = 'case.identity_check_failed';
