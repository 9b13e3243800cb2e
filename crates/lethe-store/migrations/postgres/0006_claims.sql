-- Identity claims (real-name disputes): a person says their ID card was
-- used on an account they do not control. The ID number and the documents
-- are sealed by the vault under a per-claim key, destroyed when the claim
-- closes.
CREATE TABLE claims (
    id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    -- Keyed pseudonym of the ID number (audit subject).
    subject TEXT NOT NULL,
    -- The ID number, sealed by the vault.
    id_number_sealed TEXT,
    state TEXT NOT NULL,
    decision_reason TEXT,
    accounts_notified BIGINT,
    created_at BIGINT NOT NULL,
    closed_at BIGINT,
    documents_destroyed_at TEXT
);

CREATE TABLE claim_documents (
    claim_id TEXT NOT NULL,
    n BIGINT NOT NULL,
    kind TEXT NOT NULL,
    sealed TEXT NOT NULL,
    PRIMARY KEY (claim_id, n)
);
