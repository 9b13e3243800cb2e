-- Data exports: a copy of a subject's data, sealed on disk until its link
-- is used or expires, deleted before the subject's erasure completes.
CREATE TABLE exports (
    id TEXT PRIMARY KEY,
    -- The subject id while the export can still be built; NULL once over.
    subject_id TEXT,
    -- Keyed pseudonym of the subject (audit, deletion at erasure).
    subject_ref TEXT NOT NULL,
    case_id TEXT,
    -- The platform (API key name) the export belongs to.
    principal TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    state TEXT NOT NULL,
    progress TEXT NOT NULL,
    single_use BIGINT NOT NULL,
    -- Keyed hash of the platform and its Idempotency-Key: a retried
    -- request finds the export it made.
    idem_key TEXT NOT NULL UNIQUE,
    -- The archive key, sealed by the vault under the export's own subject.
    key_sealed TEXT,
    bytes BIGINT,
    summary TEXT,
    downloads BIGINT NOT NULL DEFAULT 0,
    attempts BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    run_at BIGINT NOT NULL,
    lease_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    ready_at BIGINT,
    expires_at BIGINT NOT NULL,
    closed_at BIGINT,
    -- Set once the file and the key are gone (after a terminal state).
    cleaned_at BIGINT
);
CREATE INDEX exports_claim ON exports (state, run_at);
CREATE INDEX exports_subject ON exports (subject_ref);
CREATE INDEX exports_case ON exports (case_id);
CREATE INDEX exports_expiry ON exports (expires_at);
