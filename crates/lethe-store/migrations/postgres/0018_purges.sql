-- Purges: many subjects erased on one legal basis (retention ended,
-- dormant accounts), without a case each. A purge waits out its notice
-- period (noticing), then runs (one instance holds its lease), then is
-- done with its signed report. Each subject's id is kept only until it is
-- erased or skipped; its pseudonym stays for the report and objections.
CREATE TABLE purges (
    id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    legal_basis TEXT NOT NULL,
    rule TEXT,
    notice_until BIGINT,
    state TEXT NOT NULL,
    requested BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    lease_until BIGINT,
    -- The instance run holding the lease: only it renews, records, closes.
    lease_owner TEXT,
    -- Runs that failed in a row; at the limit the purge fails.
    failures BIGINT NOT NULL DEFAULT 0,
    report TEXT,
    error TEXT
);
CREATE INDEX purges_state ON purges (state, created_at);

CREATE TABLE purge_subjects (
    purge_id TEXT NOT NULL,
    n BIGINT NOT NULL,
    subject TEXT,
    subject_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    rows_erased BIGINT,
    PRIMARY KEY (purge_id, n)
);
CREATE INDEX purge_subjects_pending ON purge_subjects (purge_id, state, n);
CREATE INDEX purge_subjects_hash ON purge_subjects (purge_id, subject_hash);
