-- Lethe's own store. Portable SQL: the same schema exists for PostgreSQL.
-- Times are integer milliseconds since the Unix epoch, UTC.

CREATE TABLE cases (
    id TEXT PRIMARY KEY,
    -- The platform's subject id is needed until erasure; it is replaced by
    -- the pseudonym when the case closes.
    subject TEXT NOT NULL,
    subject_pseudonym TEXT NOT NULL,
    principal TEXT NOT NULL,
    channel TEXT NOT NULL,
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    cooling_off_ends_at INTEGER,
    body TEXT NOT NULL
);
CREATE INDEX cases_state ON cases (state, cooling_off_ends_at);
CREATE INDEX cases_subject ON cases (subject_pseudonym);

CREATE TABLE audit_events (
    seq INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    kind TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    detail TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_case ON audit_events (case_id, seq);

CREATE TABLE idempotency (
    principal TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (principal, key)
);

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE otp_codes (
    case_id TEXT PRIMARY KEY,
    code_hash TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    lockouts INTEGER NOT NULL,
    locked_until INTEGER,
    sent_at INTEGER NOT NULL
);

-- Messages for the platform's gateways. In demo mode this is the dev outbox.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    destination TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX outbox_case ON outbox (case_id);

-- Durable background work. Wall-clock times; a lease that expires makes the
-- job claimable again, which is how work survives a crash.
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    case_id TEXT NOT NULL,
    system TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    run_at INTEGER NOT NULL,
    lease_until INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (kind, case_id, system)
);
CREATE INDEX jobs_ready ON jobs (state, run_at);

CREATE TABLE erasure_results (
    case_id TEXT NOT NULL,
    system TEXT NOT NULL,
    outcome TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (case_id, system)
);

CREATE TABLE receipts (
    case_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- One open case per account and platform.
CREATE UNIQUE INDEX cases_open_subject ON cases (principal, subject)
    WHERE state NOT IN ('erased', 'withdrawn', 'rejected');
