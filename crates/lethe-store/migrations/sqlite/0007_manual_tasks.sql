-- Manual tasks: erasure in a system an operator handles by hand.
CREATE TABLE manual_tasks (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL UNIQUE,
    case_id TEXT NOT NULL,
    system TEXT NOT NULL,
    instructions TEXT NOT NULL,
    due_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    completed_at INTEGER,
    completed_by TEXT,
    note TEXT,
    records INTEGER
);
CREATE INDEX manual_tasks_open ON manual_tasks (completed_at, due_at);
