-- Erased-subject tombstones: for every system a subject was erased from,
-- the keyed pseudonym of its id (never the id) and when. After a platform
-- restores a backup, reapply finds the erased subjects that came back.
-- The case's platform is kept so one platform matches only its own.
CREATE TABLE erased_subjects (
    system TEXT NOT NULL,
    subject_hash TEXT NOT NULL,
    case_id TEXT NOT NULL,
    principal TEXT,
    erased_at INTEGER NOT NULL,
    PRIMARY KEY (system, subject_hash)
);
CREATE INDEX erased_subjects_time ON erased_subjects (system, erased_at);
-- Erasures recorded before this table existed get their tombstones too.
INSERT INTO erased_subjects (system, subject_hash, case_id, principal, erased_at)
SELECT e.system, c.subject_pseudonym, MAX(c.id), MAX(c.principal), MAX(e.recorded_at)
FROM erasure_results e JOIN cases c ON c.id = e.case_id
GROUP BY e.system, c.subject_pseudonym;

-- Runs of reapply (after a restore): running, done (with the signed
-- report, counts only) or failed (with the reason).
CREATE TABLE reapply_runs (
    id TEXT PRIMARY KEY,
    system TEXT NOT NULL,
    principal TEXT,
    since_at INTEGER NOT NULL,
    dry_run INTEGER NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    finished_at INTEGER,
    report TEXT,
    error TEXT
);
CREATE INDEX reapply_runs_created ON reapply_runs (created_at);
