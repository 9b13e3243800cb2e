-- Schema drift: the findings of the scheduled data-map check. A finding is
-- open until the next check no longer finds it (the map or the schema was
-- fixed: gone) or someone accepts it with a reason (accepted, audited).
-- breaking: erasure in the system would fail on it (a dropped column, a
-- reference that blocks deletion).
CREATE TABLE drift_findings (
    id TEXT PRIMARY KEY,
    system TEXT NOT NULL,
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    severity TEXT NOT NULL,
    breaking INTEGER NOT NULL,
    message TEXT NOT NULL,
    fix TEXT NOT NULL,
    state TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    accepted_by TEXT,
    accepted_reason TEXT,
    accepted_at INTEGER
);
CREATE INDEX drift_findings_state ON drift_findings (state, system);

-- Scheduled work (the data-map check, purge rules): when each last ran.
-- Instances claim a due run with a conditional update, so one runs it.
CREATE TABLE schedules (
    name TEXT PRIMARY KEY,
    last_run_at INTEGER NOT NULL,
    last_error TEXT
);
