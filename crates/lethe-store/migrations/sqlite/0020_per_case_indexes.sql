-- Found by the soak (operations per second fell as history grew): reads a
-- change makes per case scanned whole tables that keep every case's rows.
-- A case's jobs (the unique key leads with the kind, so it did not serve).
CREATE INDEX jobs_case ON jobs (case_id, state);
-- A case's notifications (the settlement and freeze messages of a case).
CREATE INDEX notifications_case ON notifications (case_id);
-- Released identifier tombstones, purged each tick with the expired ones.
CREATE INDEX tombstones_released ON tombstones (released_at) WHERE released_at IS NOT NULL;

-- Job claims and their heartbeats. A running job's lease is renewed every
-- few seconds; with lease_until in an index every renewal left a new index
-- entry behind (on PostgreSQL, until vacuum), and a claim's bitmap scan
-- waded through hundreds of thousands of them (243 ms a claim after six
-- minutes of the soak). The indexes now hold only the rows a claim looks
-- for, and lease_until is in none of them.
DROP INDEX jobs_ready;
DROP INDEX jobs_leased;
CREATE INDEX jobs_ready ON jobs (run_at, id) WHERE state = 'ready';
CREATE INDEX jobs_leased ON jobs (id) WHERE state = 'leased';
