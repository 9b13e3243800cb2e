-- Found by the soak (operations per second fell as history grew): reads a
-- change makes per case scanned whole tables that keep every case's rows.
-- A case's jobs (the unique key leads with the kind, so it did not serve).
CREATE INDEX jobs_case ON jobs (case_id, state);
-- A case's notifications (the settlement and freeze messages of a case).
CREATE INDEX notifications_case ON notifications (case_id);
-- Released identifier tombstones, purged each tick with the expired ones.
CREATE INDEX tombstones_released ON tombstones (released_at) WHERE released_at IS NOT NULL;
