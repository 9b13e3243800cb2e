-- Wrapped data keys of the crypto-shredding vault. `subject` is the vault's
-- keyed reference of the subject, never the subject id.
CREATE TABLE vault_keys (
    subject TEXT NOT NULL,
    version INTEGER NOT NULL,
    kek_version INTEGER NOT NULL,
    wrapped BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (subject, version)
);
CREATE INDEX vault_keys_kek ON vault_keys (kek_version);

-- Subjects whose keys were destroyed, so decryption says "erased".
CREATE TABLE vault_tombstones (
    subject TEXT PRIMARY KEY,
    destroyed_at TEXT NOT NULL,
    versions INTEGER NOT NULL
);
