-- Failed console sign-ins, counted in the store so every instance sees them:
-- per client address (key 'addr:<keyed hash>', a sliding window), and per
-- account from one address (key 'acct:<agent id>:<keyed hash>', a lockout
-- that only that address suffers).
CREATE TABLE login_throttle (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    locked_until INTEGER
);

-- Cancellation-centre sessions signed out before they expired (the session
-- is a sealed cookie; its id is a hash of its secret). Purged at expiry.
CREATE TABLE signed_out (
    sid TEXT PRIMARY KEY,
    until_at INTEGER NOT NULL
);
