-- The sequencer stops moving events. A change writes its event once, into
-- audit_entries (the former queue, kept), and a trigger marks it pending;
-- the sequencer reads pending entries in queue order and inserts one
-- narrow row per event into audit_leaves (sequence number, queue id, leaf
-- hash), then deletes the pending marks. The wide row and its indexes are
-- written by the change, never again by the sequencer. audit_events stays
-- the name readers use: a view.
ALTER TABLE audit_queue RENAME TO audit_entries;
DROP INDEX audit_queue_case;
CREATE INDEX audit_entries_case ON audit_entries (case_id, qid);

CREATE TABLE audit_pending (qid INTEGER PRIMARY KEY);
INSERT INTO audit_pending (qid) SELECT qid FROM audit_entries;

CREATE TABLE audit_leaves (
    seq INTEGER PRIMARY KEY,
    qid INTEGER NOT NULL,
    hash TEXT NOT NULL
);

-- Events already in the log keep their sequence number and hash. Those
-- written before the queue existed get queue ids above every id issued
-- so far, and queued_at -1 (the mark of a log that may predate the
-- Merkle tree); their canonical bytes are not kept (body '').
INSERT INTO audit_leaves (seq, qid, hash)
SELECT seq,
       COALESCE(qid, (SELECT MAX(
           (SELECT COALESCE(MAX(qid), 0) FROM audit_events),
           (SELECT COALESCE(MAX(qid), 0) FROM audit_entries),
           (SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'audit_entries'))) + seq),
       hash
FROM audit_events;
INSERT INTO audit_entries (qid, case_id, subject, kind, from_state, to_state, actor, at, detail, body, queued_at)
SELECT l.qid, e.case_id, e.subject, e.kind, e.from_state, e.to_state, e.actor, e.at, e.detail, '',
       CASE WHEN e.qid IS NULL THEN -1 ELSE 0 END
FROM audit_events e JOIN audit_leaves l ON l.seq = e.seq;
DROP TABLE audit_events;

CREATE UNIQUE INDEX audit_leaves_qid ON audit_leaves (qid);
CREATE INDEX audit_identity_failures ON audit_entries (actor, at) WHERE kind = 'case.identity_check_failed';

-- Every entry is pending until the sequencer integrates it, whoever wrote
-- it.
CREATE TRIGGER audit_entries_pending AFTER INSERT ON audit_entries
BEGIN
    INSERT INTO audit_pending (qid) VALUES (NEW.qid);
END;

CREATE VIEW audit_events AS
SELECT l.seq AS seq, e.case_id AS case_id, e.subject AS subject, e.kind AS kind,
       e.from_state AS from_state, e.to_state AS to_state, e.actor AS actor,
       e.at AS at, e.detail AS detail, l.hash AS hash, e.qid AS qid
FROM audit_leaves l JOIN audit_entries e ON e.qid = l.qid;
