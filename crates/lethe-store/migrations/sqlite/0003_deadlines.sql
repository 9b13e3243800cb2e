-- Deadlines per case, recomputed with every change of the case and when the
-- calendar changes. Times in ms since the epoch, UTC.
CREATE TABLE deadlines (
    case_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    starts_at INTEGER NOT NULL,
    due_at INTEGER,
    warn_at INTEGER,
    paused INTEGER NOT NULL,
    met_at INTEGER,
    problem TEXT,
    warned_at INTEGER,
    escalated_at INTEGER,
    PRIMARY KEY (case_id, kind)
);
CREATE INDEX deadlines_open ON deadlines (met_at, due_at);

-- Notifications for the platform (freeze, restore, deadlines...), written in
-- the transaction of the change that caused them, delivered by webhook.
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    case_id TEXT,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    last_error TEXT,
    delivered_at INTEGER
);
CREATE INDEX notifications_due ON notifications (state, next_at);

-- Identifier tombstones: keyed hashes of an erased account's phone, email
-- and ID number, enforcing the platform's re-registration rule.
CREATE TABLE tombstones (
    kind TEXT NOT NULL,
    hash TEXT NOT NULL,
    case_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    released_at INTEGER,
    PRIMARY KEY (kind, hash)
);
CREATE INDEX tombstones_expiry ON tombstones (expires_at);
