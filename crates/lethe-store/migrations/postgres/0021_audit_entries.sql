-- The sequencer stops moving events. A change writes its event once, into
-- audit_entries (the former queue, kept), and a trigger marks it pending;
-- the sequencer reads pending entries in queue order and inserts one
-- narrow row per event into audit_leaves (sequence number, queue id, leaf
-- hash), then deletes the pending marks. The wide row and its indexes are
-- written by the change, in parallel with other changes, never again by
-- the sequencer. audit_events stays the name readers use: a view.
ALTER TABLE audit_queue RENAME TO audit_entries;
ALTER INDEX audit_queue_case RENAME TO audit_entries_case;

CREATE TABLE audit_pending (qid BIGINT PRIMARY KEY);
INSERT INTO audit_pending (qid) SELECT qid FROM audit_entries;
ALTER TABLE audit_pending SET (autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE audit_entries RESET (autovacuum_vacuum_scale_factor);

CREATE TABLE audit_leaves (
    seq BIGINT PRIMARY KEY,
    qid BIGINT NOT NULL,
    hash TEXT NOT NULL
);

-- Events already in the log keep their sequence number and hash. Those
-- written before the queue existed get queue ids above every id issued
-- so far, and queued_at -1 (the mark of a log that may predate the
-- Merkle tree); their canonical bytes are not kept (body '').
INSERT INTO audit_leaves (seq, qid, hash)
SELECT seq,
       COALESCE(qid, (SELECT GREATEST(
           (SELECT COALESCE(MAX(qid), 0) FROM audit_events),
           (SELECT COALESCE(MAX(qid), 0) FROM audit_entries),
           (SELECT last_value FROM audit_queue_qid_seq))) + seq),
       hash
FROM audit_events;
INSERT INTO audit_entries (qid, case_id, subject, kind, from_state, to_state, actor, at, detail, body, queued_at)
SELECT l.qid, e.case_id, e.subject, e.kind, e.from_state, e.to_state, e.actor, e.at, e.detail, '',
       CASE WHEN e.qid IS NULL THEN -1 ELSE 0 END
FROM audit_events e JOIN audit_leaves l ON l.seq = e.seq;
SELECT setval('audit_queue_qid_seq', GREATEST((SELECT COALESCE(MAX(qid), 1) FROM audit_entries), (SELECT last_value FROM audit_queue_qid_seq)));
DROP TABLE audit_events;

CREATE INDEX audit_identity_failures ON audit_entries (actor, at) WHERE kind = 'case.identity_check_failed';

-- Every entry is pending until the sequencer integrates it, whoever wrote
-- it (one statement-level trigger: a multi-row insert marks its rows in
-- one statement).
CREATE FUNCTION audit_entries_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_pending (qid) SELECT qid FROM new_entries;
    RETURN NULL;
END
$$;
CREATE TRIGGER audit_entries_pending AFTER INSERT ON audit_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_pending();

CREATE VIEW audit_events AS
SELECT l.seq AS seq, e.case_id AS case_id, e.subject AS subject, e.kind AS kind,
       e.from_state AS from_state, e.to_state AS to_state, e.actor AS actor,
       e.at AS at, e.detail AS detail, l.hash AS hash, e.qid AS qid
FROM audit_leaves l JOIN audit_entries e ON e.qid = l.qid;

-- A case's events find their leaves by queue id (a case's timeline, a
-- receipt's final event): a B-tree, so the lookup does not grow with the
-- log (a block-range index was cheaper to keep up but is scanned whole).
CREATE UNIQUE INDEX audit_leaves_qid ON audit_leaves (qid);

-- A case's events are a handful of rows: never a parallel plan for them,
-- whatever stale statistics suggest (a worker's start-up alone costs more
-- than the read).
ALTER TABLE audit_entries SET (parallel_workers = 0, autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE audit_leaves SET (parallel_workers = 0);
