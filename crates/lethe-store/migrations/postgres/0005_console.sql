-- Agent console: local accounts (argon2id password, TOTP second factor),
-- sessions stored hashed, and inbound callback ids for replay protection.
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    -- The TOTP secret, sealed by the vault (never stored in the clear).
    totp_secret TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    disabled BIGINT NOT NULL DEFAULT 0,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT,
    last_totp_step BIGINT
);

CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    role TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE callback_ids (
    id TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
