-- Case events for the platform's services (published to NATS JetStream):
-- written in the transaction of the change that causes them, published at
-- least once, each with a de-duplication id.
CREATE TABLE case_events (
    id INTEGER PRIMARY KEY,
    dedupe_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    system TEXT,
    case_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    published_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX case_events_pending ON case_events (published_at, id);
