-- Limits that hold across instances. Each instance says it is alive here
-- every few seconds; per-key request rates are shared out among the live
-- ones.
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    seen_at INTEGER NOT NULL
);

-- One row per one-time code sent, under each quota key it counts against
-- (a keyed hash of the phone number, of the client address): the hourly
-- SMS quotas are counted here, so every instance sees every code.
CREATE TABLE sms_sent (
    quota_key TEXT NOT NULL,
    sent_at INTEGER NOT NULL
);
CREATE INDEX sms_sent_key ON sms_sent (quota_key, sent_at);
CREATE INDEX sms_sent_at ON sms_sent (sent_at);

-- The platform a notification of no case is for (an export an agent made
-- without a case); NULL: the case's platform, or the whole installation.
ALTER TABLE notifications ADD COLUMN principal TEXT;
