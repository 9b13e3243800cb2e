-- The audit log is a Merkle tree: audit_events.hash is each event's RFC 6962
-- leaf hash; audit_nodes holds every completed perfect subtree (level >= 1,
-- index = first leaf >> level), so proofs read O(log n) rows.
CREATE TABLE audit_nodes (
    level BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Signed tree heads (Ed25519), on a schedule and on demand.
CREATE TABLE tree_heads (
    tree_size BIGINT PRIMARY KEY,
    root_hash TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    signature TEXT NOT NULL
);

ALTER TABLE receipts ADD COLUMN signed BIGINT NOT NULL DEFAULT 0;
