-- A request may be opened from the cancellation centre before any case
-- exists (a question before starting): case_id becomes optional, and the
-- per-receipt key becomes a per-key limit (the receipt's digest, the live
-- case, or a keyed hash of the signed-in account). Limit keys and client
-- hashes are emptied by the worker once they no longer count (after a
-- day), through the partial index below.
ALTER TABLE support_requests ALTER COLUMN case_id DROP NOT NULL;
ALTER TABLE support_requests RENAME COLUMN receipt_digest TO limit_key;
ALTER INDEX support_requests_receipt RENAME TO support_requests_limit;
CREATE INDEX support_requests_scrub ON support_requests (created_at) WHERE client_hash <> '';
