-- Public transparency: the compliance reports published for anyone to read
-- (made each month, or on demand; signed; aggregate figures only) and the
-- witnesses' cosignatures of the log's checkpoints.
CREATE TABLE published_reports (
    id TEXT PRIMARY KEY,
    -- '' for the whole installation, else the platform (API key name).
    platform TEXT NOT NULL,
    -- monthly or on-demand.
    kind TEXT NOT NULL,
    period_from BIGINT NOT NULL,
    period_to BIGINT NOT NULL,
    -- The period's name as the page lists it (2026-11, or from..to).
    label TEXT NOT NULL,
    -- The signed public report, JSON.
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
-- One monthly report per platform and month, however many instances try.
CREATE UNIQUE INDEX published_reports_period ON published_reports (platform, kind, period_from, period_to);
CREATE INDEX published_reports_created ON published_reports (created_at);

-- A witness's cosignature of the checkpoint of size tree_size: the note
-- signature line it answered (c2sp.org/tlog-witness).
CREATE TABLE checkpoint_cosignatures (
    tree_size BIGINT NOT NULL,
    witness TEXT NOT NULL,
    line TEXT NOT NULL,
    cosigned_at BIGINT NOT NULL,
    PRIMARY KEY (tree_size, witness)
);
CREATE INDEX checkpoint_cosignatures_witness ON checkpoint_cosignatures (witness, tree_size);
