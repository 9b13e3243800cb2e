-- An idempotency record names the case its response shows, so the erasure
-- of the case removes it; records expire after a day (purged by the timer).
ALTER TABLE idempotency ADD COLUMN case_id TEXT;
CREATE INDEX idempotency_case ON idempotency (case_id);
CREATE INDEX idempotency_created ON idempotency (created_at);
