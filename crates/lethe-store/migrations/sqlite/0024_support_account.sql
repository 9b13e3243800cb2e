-- A request may be opened from the cancellation centre before any case
-- exists (a question before starting): case_id becomes optional, and the
-- per-receipt key becomes a per-key limit (the receipt's digest, the live
-- case, or a keyed hash of the signed-in account). Limit keys and client
-- hashes are emptied by the worker once they no longer count (after a
-- day), through the partial index below.
CREATE TABLE support_requests_v2 (
    id TEXT PRIMARY KEY,
    case_id TEXT,
    principal TEXT NOT NULL,
    -- receipt, live or account.
    origin TEXT NOT NULL,
    topic TEXT NOT NULL,
    -- open, answered or closed.
    state TEXT NOT NULL,
    message_sealed TEXT,
    contact_sealed TEXT,
    contact_kind TEXT,
    contact_hint TEXT,
    answer_sealed TEXT,
    due_at INTEGER NOT NULL,
    provisional INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    answered_at INTEGER,
    answered_by TEXT,
    closed_at INTEGER,
    closed_by TEXT,
    limit_key TEXT,
    client_hash TEXT NOT NULL
);
INSERT INTO support_requests_v2 (id, case_id, principal, origin, topic, state, message_sealed, contact_sealed, contact_kind, contact_hint, answer_sealed, due_at, provisional, created_at, answered_at, answered_by, closed_at, closed_by, limit_key, client_hash)
    SELECT id, case_id, principal, origin, topic, state, message_sealed, contact_sealed, contact_kind, contact_hint, answer_sealed, due_at, provisional, created_at, answered_at, answered_by, closed_at, closed_by, receipt_digest, client_hash FROM support_requests;
DROP TABLE support_requests;
ALTER TABLE support_requests_v2 RENAME TO support_requests;
CREATE INDEX support_requests_queue ON support_requests (state, due_at);
CREATE INDEX support_requests_case ON support_requests (case_id);
CREATE INDEX support_requests_limit ON support_requests (limit_key, created_at);
CREATE INDEX support_requests_client ON support_requests (client_hash, created_at);
CREATE INDEX support_requests_scrub ON support_requests (created_at) WHERE client_hash <> '';
