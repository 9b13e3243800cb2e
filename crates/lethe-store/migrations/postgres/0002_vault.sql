-- Wrapped data keys of the crypto-shredding vault. `subject` is the vault's
-- keyed reference of the subject, never the subject id.
CREATE TABLE vault_keys (
    subject TEXT NOT NULL,
    version BIGINT NOT NULL,
    kek_version BIGINT NOT NULL,
    wrapped BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (subject, version)
);
CREATE INDEX vault_keys_kek ON vault_keys (kek_version);

-- Subjects whose keys were destroyed, so decryption says "erased".
CREATE TABLE vault_tombstones (
    subject TEXT PRIMARY KEY,
    destroyed_at TEXT NOT NULL,
    versions BIGINT NOT NULL
);
