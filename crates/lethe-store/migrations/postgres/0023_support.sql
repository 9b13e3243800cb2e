-- Support after erasure: requests a (former) holder opens with the
-- deletion receipt, or from the cancellation centre while the case is
-- live. The message, the one-time contact and the answer are sealed under
-- the request's own vault key, destroyed (and the columns emptied) when
-- the request closes. No subject id is ever stored here: a request points
-- at the case's non-personal record.
CREATE TABLE support_requests (
    id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    principal TEXT NOT NULL,
    -- receipt or live.
    origin TEXT NOT NULL,
    topic TEXT NOT NULL,
    -- open, answered or closed.
    state TEXT NOT NULL,
    message_sealed TEXT,
    contact_sealed TEXT,
    -- phone or email, and the hint an agent sees (last digits, domain).
    contact_kind TEXT,
    contact_hint TEXT,
    answer_sealed TEXT,
    due_at BIGINT NOT NULL,
    provisional BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    answered_at BIGINT,
    answered_by TEXT,
    closed_at BIGINT,
    closed_by TEXT,
    -- Abuse limits: the receipt's digest and a keyed hash of the client
    -- address (never the address).
    receipt_digest TEXT,
    client_hash TEXT NOT NULL
);
CREATE INDEX support_requests_queue ON support_requests (state, due_at);
CREATE INDEX support_requests_case ON support_requests (case_id);
CREATE INDEX support_requests_receipt ON support_requests (receipt_digest, created_at);
CREATE INDEX support_requests_client ON support_requests (client_hash, created_at);
