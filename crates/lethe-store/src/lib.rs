//! Lethe's own storage on SQLite (sqlx).
//!
//! All writes go through one writer task that commits in groups: it takes up
//! to [`MAX_BATCH`] operations from a bounded queue, runs each inside its own
//! savepoint, and commits them together with `synchronous = FULL`. Each
//! operation's reply is sent only after the commit is durable. An operation
//! that fails rolls back to its savepoint without touching the others.
//!
//! Every state change of a case is applied in one operation that also
//! appends its audit event: they commit together or not at all.
//!
//! SQLite-specific SQL lives only in this crate.

mod audit;
mod claims;
mod console;
mod deadlines;
mod drift;
mod erased;
mod events;
mod exports;
mod log;
mod purges;
mod support;
mod transparency;
mod vault;
mod writer;

pub use audit::ProofError;
pub use claims::ClaimRow;
pub use console::AgentRow;
pub use deadlines::{Alert, DeadlineRow, MetricsSnapshot, NotificationRow};
pub use drift::{DATAMAP_CHECK, DriftFinding, NewFinding};
pub use erased::{ErasedMatch, MATCH_CHUNK, ReapplyRun};
pub use events::CaseEvent;
pub use exports::{ExportRow, NewExport};
pub use purges::{NewPurge, PendingSubject, PurgeEntry, PurgeOutcome, PurgeRow};
pub use support::{
    MAX_QUEUE as MAX_SUPPORT_QUEUE, NewSupport, SupportLimits, SupportRow, Throttled,
};
pub use transparency::{MAX_LISTED_REPORTS, NewReport, PublishedReport};

use jiff::Timestamp;
use lethe_domain::{Case, CaseCommand, CaseId, CaseState, Change, TransitionError};
use lethe_ledger::{AuditEvent, RecordedEvent};
use sqlx::{Connection, Row};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use log::{
    FinalEventState, LEASE_TTL_MS, MAX_MERGE_DELAY, MAX_SEQUENCE_BATCH, SEQUENCER_LEASE,
    SequenceOutcome,
};
pub(crate) use log::{insert_event, insert_events, perfect_node};
pub use writer::{MAX_BATCH, MAX_WRITE_CONNECTIONS, QUEUE_DEPTH, WriteCtx};

/// The store's connections go through sqlx's `Any` driver: the SQL is
/// written once, for both backends (integers and text only, `$n`
/// placeholders), and the migrations exist for each.
pub(crate) type DbConn = sqlx::AnyConnection;
pub(crate) type DbPool = sqlx::AnyPool;
pub(crate) type DbRow = sqlx::any::AnyRow;

/// Where Lethe keeps its own data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file (the default): one instance.
    Sqlite,
    /// A PostgreSQL database, which several instances can share.
    Postgres,
}

/// SQLite settings of every connection: durable WAL, deleted content
/// overwritten, foreign keys on, a writer waited for.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA secure_delete = ON; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
/// The same schema for PostgreSQL (checked column for column against the
/// SQLite one by a test); the store's PostgreSQL backend runs on it.
pub static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error during {action}: {message}")]
    Db {
        action: &'static str,
        message: String,
    },
    #[error("the store is shutting down")]
    Closed,
    #[error("no case with id {0}")]
    NotFound(CaseId),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error(
        "the idempotency key was already used; retry with a new key or repeat the original request"
    )]
    IdempotencyConflict,
    #[error("no code was sent for this case; request a code first")]
    NoCode,
    #[error("the code has expired; request a new code")]
    CodeExpired,
    #[error("the code is wrong; {attempts_left} attempt(s) left")]
    WrongCode { attempts_left: u32 },
    #[error("too many wrong codes; request a new code after {until}")]
    CodeLocked { until: Timestamp },
    #[error("a code was sent less than {wait_secs} s ago; wait before asking again")]
    ResendTooSoon { wait_secs: i64 },
    #[error("stored data is unreadable ({0}); restore from a backup")]
    Corrupt(String),
    /// The request conflicts with the state of the data (the message says
    /// what to do instead).
    #[error("{0}")]
    Refused(String),
}

impl StoreError {
    /// Whether the writes an operation made before failing must still be
    /// committed (a wrong code counts as an attempt).
    pub(crate) fn keeps_writes(&self) -> bool {
        matches!(self, Self::WrongCode { .. } | Self::CodeLocked { .. })
    }
}

/// Tables vacuumed at most per [`Store::vacuum_if_needed`] call.
pub const VACUUM_TABLES: i64 = 8;

pub(crate) fn db(action: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| {
        let mut message = match &e {
            sqlx::Error::Database(d) => d.message().to_owned(),
            other => other.to_string(),
        };
        message.truncate(300);
        StoreError::Db { action, message }
    }
}

/// Whether a value is a keyed hash (hexadecimal, 1 to 64 characters), and
/// may so be inlined in SQL text as a literal.
pub(crate) fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The keyed hashes among `items` as a SQL list of literals (`'ab','cd'`):
/// the others are left out, so nothing else reaches the text. None when
/// none is a hash.
pub(crate) fn hex_literals<'a>(items: impl IntoIterator<Item = &'a String>) -> Option<String> {
    let list: Vec<String> = items
        .into_iter()
        .filter(|h| is_hex(h))
        .map(|h| format!("'{h}'"))
        .collect();
    (!list.is_empty()).then(|| list.join(","))
}

pub(crate) fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

pub(crate) fn from_ms(v: i64) -> Timestamp {
    Timestamp::from_millisecond(v).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A row of a console queue.
#[derive(Debug, Clone)]
pub struct QueueRow {
    pub id: String,
    pub state: String,
    pub channel: String,
    pub created_at: Timestamp,
    /// The nearest open deadline and its kind.
    pub due_at: Option<Timestamp>,
    pub due_kind: Option<String>,
}

/// Computes a case's deadlines (the server binds the calendar and time zone).
pub type DeadlineFn =
    std::sync::Arc<dyn Fn(&Case) -> Vec<lethe_domain::deadline::Deadline> + Send + Sync>;

/// Settings for opening the store.
#[derive(Clone)]
pub struct StoreOptions {
    pub read_connections: u32,
    /// PostgreSQL: writer connections, each committing one operation at a
    /// time (1 to [`writer::MAX_WRITE_CONNECTIONS`]). SQLite has one writer.
    pub write_connections: u32,
    /// When set, every change of a case recomputes and stores its deadlines.
    pub deadlines: Option<DeadlineFn>,
    /// Record case events for the platform's services (NATS).
    pub case_events: bool,
    /// The jobs of an erasure (one per system, and the vault's shredding),
    /// enqueued in the transaction that starts it.
    pub erasure_jobs: Vec<NewJob>,
    /// Attempts of a settlement instruction before the user is asked to
    /// choose again.
    pub settle_attempts: u32,
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("read_connections", &self.read_connections)
            .field("write_connections", &self.write_connections)
            .finish_non_exhaustive()
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            read_connections: 4,
            write_connections: 4,
            deadlines: None,
            case_events: false,
            erasure_jobs: Vec::new(),
            settle_attempts: 10,
        }
    }
}

/// An idempotency record to write in the same transaction as the change.
#[derive(Debug, Clone)]
pub struct Idem {
    pub principal: String,
    pub key: String,
    pub request_hash: String,
    pub status: u16,
    /// Renders the response body from the case after the change.
    pub render: fn(&Case) -> String,
}

#[derive(Debug, Clone)]
pub struct IdemRecord {
    pub request_hash: String,
    pub status: u16,
    pub body: String,
}

/// Work to enqueue in the same transaction as a case change.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub system: String,
    pub max_attempts: u32,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub case_id: CaseId,
    pub system: String,
    pub attempts: u32,
    pub max_attempts: u32,
}

/// A task an operator does by hand (a manual system of the data map).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ManualTask {
    pub id: i64,
    pub case_id: String,
    pub system: String,
    pub instructions: String,
    pub due_at: Timestamp,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    pub completed_by: Option<String>,
    pub note: Option<String>,
    pub records: Option<u64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct OutboxMessage {
    pub id: i64,
    pub case_id: String,
    pub channel: String,
    pub destination: String,
    pub body: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct JobInfo {
    pub kind: String,
    pub system: String,
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    read: DbPool,
    backend: Backend,
    /// This instance's name on the leases it takes: host/pid/random.
    instance: Arc<str>,
    writer: Arc<writer::Writer>,
    /// The audit log's Merkle frontier as this instance last sequenced it
    /// (checked against the log's size in every batch).
    sequencer: Arc<std::sync::Mutex<Option<lethe_ledger::merkle::Frontier>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (creating if needed) the SQLite store at `path` and applies
    /// migrations.
    pub async fn open(path: &Path, opts: StoreOptions) -> Result<Self, StoreError> {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Self::open_url(&url, opts).await
    }

    /// Opens the store a URL names: `sqlite://PATH?mode=rwc` or
    /// `postgres://...`; applies the backend's migrations.
    pub async fn open_url(url: &str, opts: StoreOptions) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::Db {
                action: "open the store",
                message: "the store URL must start with sqlite:// or postgres://".into(),
            });
        };
        let mut wconn = DbConn::connect(url).await.map_err(db("open the store"))?;
        if backend == Backend::Sqlite {
            sqlx::raw_sql(SQLITE_PRAGMAS)
                .execute(&mut wconn)
                .await
                .map_err(db("set up the store"))?;
        }
        let migrator = match backend {
            Backend::Sqlite => &MIGRATOR,
            Backend::Postgres => &PG_MIGRATOR,
        };
        migrator.run(&mut wconn).await.map_err(|e| StoreError::Db {
            action: "migrate",
            message: e.to_string(),
        })?;
        let read = sqlx::any::AnyPoolOptions::new()
            .max_connections(opts.read_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        sqlx::raw_sql(SQLITE_PRAGMAS).execute(&mut *conn).await?;
                        sqlx::raw_sql("PRAGMA query_only = ON")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(db("open read connections"))?;
        // A log written before the Merkle tree existed is upgraded.
        log::load_head(&mut wconn).await?;
        let mut conns = vec![wconn];
        if backend == Backend::Postgres {
            let lanes = opts
                .write_connections
                .clamp(1, writer::MAX_WRITE_CONNECTIONS);
            for _ in 1..lanes {
                conns.push(DbConn::connect(url).await.map_err(db("open the store"))?);
            }
        }
        let writer = writer::Writer::start(conns, url.to_owned(), backend, &opts);
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        // The PID namespace beside the host name: two containers sharing a
        // host name but not their process ids are told apart (a holder's
        // pid is only looked up on the same host and namespace).
        let pidns = std::fs::read_link("/proc/self/ns/pid")
            .ok()
            .map(|l| {
                l.to_string_lossy()
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect::<String>()
            })
            .filter(|d| !d.is_empty())
            .map(|d| format!(":{d}"))
            .unwrap_or_default();
        let instance = format!(
            "{host}{pidns}/{}/{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        Ok(Self {
            read,
            backend,
            instance: instance.into(),
            writer: Arc::new(writer),
            sequencer: Arc::default(),
        })
    }

    /// Whether `sql` (a `SELECT 1 … LIMIT 1` with the time as `$1`) finds
    /// a row, on the read pool: the cheap look before a claim, so that an
    /// idle timer or deliverer does not write.
    pub(crate) async fn any_due(
        &self,
        sql: &'static str,
        now: Timestamp,
        action: &'static str,
    ) -> Result<bool, StoreError> {
        let row: Option<i64> = sqlx::query_scalar(sql)
            .bind(ms(now))
            .fetch_optional(&self.read)
            .await
            .map_err(db(action))?;
        Ok(row.is_some())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This instance's name on the job leases it holds
    /// (`host/pid/random`).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Moves the WAL into the database file and truncates it, so deleted
    /// (and, with secure_delete, overwritten) content leaves the WAL too.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        self.writer
            .run_outside_tx(|ctx| {
                Box::pin(async move {
                    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                        .execute(&mut ctx.conn)
                        .await
                        .map_err(db("checkpoint"))?;
                    Ok(())
                })
            })
            .await
    }

    /// Checks that the store answers (for readiness probes).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map_err(db("ping"))?;
        Ok(())
    }

    // ---------------------------------------------------------------- cases

    /// Stores a newly opened case and its creation event.
    pub async fn create_case(
        &self,
        case: Case,
        change: Change,
        pseudonym: String,
        principal: String,
        idem: Option<Idem>,
    ) -> Result<Case, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    claim_idem(ctx, idem.as_ref()).await?;
                    sqlx::query(
                        "INSERT INTO cases (id, subject, subject_pseudonym, principal, channel, state, version, created_at, updated_at, cooling_off_ends_at, body)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    )
                    .bind(case.id.to_string())
                    .bind(case.subject.expose().to_owned())
                    .bind(pseudonym.clone())
                    .bind(principal.clone())
                    .bind(case.channel.as_str())
                    .bind(case.state.as_str())
                    .bind(i64::try_from(case.version).unwrap_or(i64::MAX))
                    .bind(ms(case.created_at))
                    .bind(ms(case.updated_at))
                    .bind(case.cooling_off_ends_at.map(ms))
                    .bind(to_json(&case)?)
                    .execute(&mut ctx.conn)
                    .await
                    .map_err(db("insert case"))?;
                    append_audit(ctx, &case, &pseudonym, &change, &principal).await?;
                    write_effects(ctx, &case, &change).await?;
                    finish_idem(ctx, idem.as_ref(), &case).await?;
                    Ok(case)
                })
            })
            .await
    }

    /// Applies a command to a case: loads it, runs the state machine, writes
    /// the new state, its audit event, any jobs and the idempotency record,
    /// all in one transaction.
    pub async fn apply(
        &self,
        id: CaseId,
        cmd: CaseCommand,
        now: Timestamp,
        actor: String,
        jobs: Vec<NewJob>,
        idem: Option<Idem>,
    ) -> Result<Case, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    claim_idem(ctx, idem.as_ref()).await?;
                    let case = apply_in(ctx, id, &cmd, now, &actor).await?;
                    for j in &jobs {
                        enqueue(ctx, &case.id, j, now_wall()).await?;
                    }
                    finish_idem(ctx, idem.as_ref(), &case).await?;
                    Ok(case)
                })
            })
            .await
    }

    pub async fn get_case(&self, id: CaseId) -> Result<Option<Case>, StoreError> {
        let row = sqlx::query("SELECT body FROM cases WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(db("read case"))?;
        row.map(|r| from_json(&r.get::<String, _>(0))).transpose()
    }

    /// The erased case of an account (by its pseudonym), if it was erased:
    /// the case id and its platform.
    pub async fn erased_case_of(
        &self,
        pseudonym: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let r = sqlx::query(
            "SELECT id, principal FROM cases WHERE subject_pseudonym = $1 AND state = 'erased' ORDER BY created_at DESC LIMIT 1",
        )
        .bind(pseudonym.to_owned())
        .fetch_optional(&self.read)
        .await
        .map_err(db("find an erased case"))?;
        Ok(r.map(|r| (r.get(0), r.get(1))))
    }

    /// The principal (API key name) that opened the case.
    pub async fn case_principal(&self, id: CaseId) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT principal FROM cases WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(db("read case"))
    }

    /// Starts the erasure of up to `limit` cases whose cooling-off has ended
    /// at `now`, each with its `jobs`, and returns what happened to each.
    /// The due cases are claimed with `FOR UPDATE SKIP LOCKED` on
    /// PostgreSQL, so instances running this timer at once take different
    /// cases. A case that cannot start is reported and leaves the others
    /// untouched (a savepoint of its own).
    pub async fn start_due_erasures(
        &self,
        now: Timestamp,
        today: jiff::civil::Date,
        limit: u32,
        actor: String,
    ) -> Result<Vec<(CaseId, Result<Case, StoreError>)>, StoreError> {
        let sql =
            "SELECT 1 FROM cases WHERE state = 'cooling_off' AND cooling_off_ends_at <= $1 LIMIT 1";
        if !self.any_due(sql, now, "find due cases").await? {
            return Ok(vec![]);
        }
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT id FROM cases WHERE state = 'cooling_off' AND cooling_off_ends_at <= $1 ORDER BY cooling_off_ends_at LIMIT $2 {}",
                        ctx.skip_locked()
                    )))
                    .bind(ms(now))
                    .bind(i64::from(limit.min(1000)))
                    .fetch_all(&mut ctx.conn)
                    .await
                    .map_err(db("claim due cases"))?;
                    let mut out = Vec::with_capacity(ids.len());
                    for id in ids {
                        let id = CaseId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                        sqlx::query("SAVEPOINT due_case")
                            .execute(&mut ctx.conn)
                            .await
                            .map_err(db("transaction control"))?;
                        // The settlement or erasure jobs are written with the
                        // change (see `write_effects`).
                        let r = apply_in(ctx, id, &CaseCommand::StartErasure { today }, now, &actor).await;
                        let undo = if r.is_err() { "ROLLBACK TO due_case" } else { "RELEASE due_case" };
                        sqlx::query(undo)
                            .execute(&mut ctx.conn)
                            .await
                            .map_err(db("transaction control"))?;
                        out.push((id, r));
                    }
                    Ok(out)
                })
            })
            .await
    }

    /// The open case of a subject (not erased, withdrawn or rejected), the
    /// newest if several; for the user's pages, which find the case of the
    /// account the platform handed over.
    /// `principals`: the platform's and the console's (agents open cases
    /// that continue in the platform's app).
    pub async fn open_case_of(
        &self,
        principal: &str,
        subject: &str,
    ) -> Result<Option<CaseId>, StoreError> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM cases WHERE principal = $1 AND subject = $2 AND state NOT IN ('erased', 'withdrawn', 'rejected') ORDER BY created_at DESC LIMIT 1",
        )
        .bind(principal)
        .bind(subject)
        .fetch_optional(&self.read)
        .await
        .map_err(db("find the open case"))?;
        id.map(|i| CaseId::parse(&i).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    /// A console queue: cases in the given states, oldest first, each with
    /// its nearest open deadline.
    /// Only the cases of `platform` when it is given.
    pub async fn queue(
        &self,
        states: &[&'static str],
        limit: u32,
        platform: Option<&str>,
    ) -> Result<Vec<QueueRow>, StoreError> {
        if states.is_empty() {
            return Ok(vec![]);
        }
        let marks: Vec<String> = (0..states.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "SELECT c.id, c.state, c.channel, c.created_at, \
             (SELECT MIN(d.due_at) FROM deadlines d WHERE d.case_id = c.id AND d.met_at IS NULL AND d.due_at IS NOT NULL), \
             (SELECT d.kind FROM deadlines d WHERE d.case_id = c.id AND d.met_at IS NULL AND d.due_at IS NOT NULL ORDER BY d.due_at LIMIT 1) \
             FROM cases c WHERE c.state IN ({}) AND ($2 IS NULL OR c.principal = $2) ORDER BY c.created_at LIMIT $1",
            marks.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(limit))
            .bind(platform.map(str::to_owned));
        for s in states {
            q = q.bind(*s);
        }
        let rows = q.fetch_all(&self.read).await.map_err(db("read a queue"))?;
        Ok(rows
            .iter()
            .map(|r| QueueRow {
                id: r.get(0),
                state: r.get(1),
                channel: r.get(2),
                created_at: from_ms(r.get(3)),
                due_at: r.get::<Option<i64>, _>(4).map(from_ms),
                due_kind: r.get(5),
            })
            .collect())
    }

    /// Cases per state; only `platform`'s when given.
    pub async fn count_by_state(
        &self,
        platform: Option<&str>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) FROM cases WHERE ($1 IS NULL OR principal = $1) GROUP BY state",
        )
        .bind(platform.map(str::to_owned))
        .fetch_all(&self.read)
        .await
        .map_err(db("count cases"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    // ---------------------------------------------------------------- audit

    pub async fn audit_for_case(&self, id: CaseId) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut conn = self.read.acquire().await.map_err(db("read audit"))?;
        case_events(&mut conn, &id.to_string()).await
    }

    /// Events `from_seq..` in order, at most `limit`.
    pub async fn audit_range(
        &self,
        from_seq: u64,
        limit: u32,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.seq, e.case_id, e.subject, e.kind, e.from_state, e.to_state, e.actor, e.at, e.detail, l.hash FROM audit_leaves l JOIN audit_entries e ON e.qid = l.qid WHERE l.seq >= $1 ORDER BY l.seq LIMIT $2",
        )
        .bind(i64::try_from(from_seq).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db("read audit"))?;
        rows.iter().map(row_to_event).collect()
    }

    // ---------------------------------------------------------- idempotency

    pub async fn idem_get(
        &self,
        principal: &str,
        key: &str,
    ) -> Result<Option<IdemRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT request_hash, status, body FROM idempotency WHERE principal = $1 AND key = $2 AND created_at >= $3",
        )
        .bind(principal.to_owned())
        .bind(key.to_owned())
        .bind(idem_cutoff())
        .fetch_optional(&self.read)
        .await
        .map_err(db("read idempotency record"))?;
        Ok(row.map(|r| IdemRecord {
            request_hash: r.get(0),
            status: u16::try_from(r.get::<i64, _>(1)).unwrap_or(500),
            body: r.get(2),
        }))
    }

    /// Stores the idempotency record of a request that changed no case
    /// (`case_id`: the case its response shows, if any).
    pub async fn idem_put(
        &self,
        principal: String,
        key: String,
        request_hash: String,
        status: u16,
        body: String,
        case_id: Option<String>,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    drop_expired_idem(ctx, &principal, &key).await?;
                    sqlx::query("INSERT INTO idempotency (principal, key, request_hash, status, body, created_at, case_id) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                        .bind(principal)
                        .bind(key)
                        .bind(request_hash)
                        .bind(i64::from(status))
                        .bind(body)
                        .bind(ms(now_wall()))
                        .bind(case_id)
                        .execute(&mut ctx.conn)
                        .await
                        .map_err(|e| unique_to_conflict(e, "store idempotency record"))?;
                    Ok(())
                })
            })
            .await
    }

    /// Deletes expired idempotency records, at most `limit`; returns how
    /// many went.
    pub async fn purge_idempotency(&self, limit: u32) -> Result<u64, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let n = sqlx::query(
                        "DELETE FROM idempotency WHERE (principal, key) IN (SELECT principal, key FROM idempotency WHERE created_at < $1 LIMIT $2)",
                    )
                    .bind(idem_cutoff())
                    .bind(i64::from(limit))
                    .execute(&mut ctx.conn)
                    .await
                    .map_err(db("purge idempotency records"))?
                    .rows_affected();
                    Ok(n)
                })
            })
            .await
    }

    /// On a PostgreSQL whose autovacuum is off (some installations turn it
    /// off), the dead rows that queues, job leases and idempotency records
    /// leave behind are never reclaimed and statistics never refreshed:
    /// every scan slows down as history grows and plans go stale. Then
    /// Lethe vacuums and analyzes its own tables whose dead or changed rows
    /// passed autovacuum's default thresholds: 50 rows plus a fifth of the
    /// live ones dead, or 50 plus a tenth changed since the last analyze —
    /// so a table analyzed while nearly empty is analyzed again soon after
    /// it grows, before prepared statements settle on plans that scan it.
    /// At most [`VACUUM_TABLES`] a call, busiest first, skipping a table
    /// another session is vacuuming. With autovacuum on it leaves that to
    /// PostgreSQL. Returns the tables vacuumed.
    pub async fn vacuum_if_needed(&self) -> Result<Vec<String>, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(vec![]);
        }
        let setting: String = sqlx::query_scalar("SELECT current_setting('autovacuum')")
            .fetch_one(&self.read)
            .await
            .map_err(db("read the autovacuum setting"))?;
        if setting != "off" {
            return Ok(vec![]);
        }
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(relname AS TEXT) FROM pg_stat_user_tables WHERE schemaname = current_schema() \
             AND (n_dead_tup > 50 + n_live_tup / 5 OR n_mod_since_analyze > 50 + n_live_tup / 10) \
             ORDER BY n_dead_tup + n_mod_since_analyze DESC LIMIT $1",
        )
        .bind(VACUUM_TABLES)
        .fetch_all(&self.read)
        .await
        .map_err(db("read table statistics"))?;
        let mut done = Vec::with_capacity(tables.len());
        for t in tables {
            // Names from the catalogue, inlined: only plain identifiers.
            if t.is_empty()
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                continue;
            }
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "VACUUM (ANALYZE, SKIP_LOCKED) {t}"
            )))
            .execute(&self.read)
            .await
            .map_err(db("vacuum"))?;
            done.push(t);
        }
        Ok(done)
    }

    // ------------------------------------------------------------- api keys

    pub async fn insert_api_key(&self, name: String, key_hash: String) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO api_keys (name, key_hash, created_at) VALUES ($1, $2, $3)",
                    )
                    .bind(name)
                    .bind(key_hash)
                    .bind(ms(now_wall()))
                    .execute(&mut ctx.conn)
                    .await
                    .map_err(db("insert API key"))?;
                    Ok(())
                })
            })
            .await
    }

    /// The name of the live API key with this hash.
    pub async fn api_key_name(&self, key_hash: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT name FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
            .bind(key_hash.to_owned())
            .fetch_optional(&self.read)
            .await
            .map_err(db("read API key"))
    }

    /// The platforms of the installation: the names of its API keys, live
    /// or revoked (a revoked key's cases stay its platform's), sorted.
    pub async fn platforms(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT name FROM api_keys ORDER BY name LIMIT 10000")
            .fetch_all(&self.read)
            .await
            .map_err(db("read platforms"))
    }

    /// The platforms with a live API key.
    pub async fn live_platforms(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT name FROM api_keys WHERE revoked_at IS NULL ORDER BY name LIMIT 10000",
        )
        .fetch_all(&self.read)
        .await
        .map_err(db("read platforms"))
    }

    pub async fn revoke_api_key(&self, name: String) -> Result<bool, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let n = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
                        .bind(ms(now_wall()))
                        .bind(name)
                        .execute(&mut ctx.conn)
                        .await
                        .map_err(db("revoke API key"))?
                        .rows_affected();
                    Ok(n > 0)
                })
            })
            .await
    }

    // ------------------------------------------------ agents' identity checks

    /// Records a failed hotline or counter check as an audit event of the
    /// case (`case.identity_check_failed`, actor the agent, detail the
    /// method only: never what was said), whatever state the case is in.
    pub async fn record_identity_failure(
        &self,
        id: CaseId,
        method: &'static str,
        actor: String,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let case = load_case(ctx, id).await?;
                    let change = Change {
                        kind: IDENTITY_CHECK_FAILED.into(),
                        from: Some(case.state),
                        to: case.state,
                        at: now,
                        detail: serde_json::json!({ "method": method }),
                    };
                    let pseudo = pseudonym_of(ctx, id).await?;
                    append_audit(ctx, &case, &pseudo, &change, &actor).await
                })
            })
            .await
    }

    /// Failed identity checks since `since`: on this case, and by this
    /// agent on any case. Read from the audit log, so every instance sees
    /// the same counts.
    pub async fn identity_failures(
        &self,
        id: CaseId,
        actor: &str,
        since: Timestamp,
    ) -> Result<(u32, u32), StoreError> {
        let since = since.to_string();
        let count = |r: Option<i64>| u32::try_from(r.unwrap_or(0)).unwrap_or(u32::MAX);
        let on_case: Option<i64> = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_entries WHERE case_id = $1 AND kind = $2 AND at >= $3",
        )
        .bind(id.to_string())
        .bind(IDENTITY_CHECK_FAILED)
        .bind(since.clone())
        .fetch_one(&self.read)
        .await
        .map_err(db("count identity check failures"))?;
        // The kind as a literal: the partial index on these events serves.
        let by_agent: Option<i64> = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_entries WHERE actor = $1 AND kind = 'case.identity_check_failed' AND at >= $2",
        )
        .bind(actor.to_owned())
        .bind(since)
        .fetch_one(&self.read)
        .await
        .map_err(db("count identity check failures"))?;
        Ok((count(on_case), count(by_agent)))
    }

    // -------------------------------------------------------- one-time codes

    /// Stores a fresh code (hashed) and the message for the SMS gateway, and
    /// audits the sending. Refuses while a lockout or the resend interval runs.
    /// Wrong attempts count per case across resends: a new code does not
    /// give new attempts (only a lockout served does).
    #[allow(clippy::too_many_arguments)]
    pub async fn send_code(
        &self,
        id: CaseId,
        code_hash: String,
        message: OutboxDraft,
        now: Timestamp,
        ttl: jiff::SignedDuration,
        resend_after: jiff::SignedDuration,
        actor: String,
        idem: Option<Idem>,
    ) -> Result<Case, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    claim_idem(ctx, idem.as_ref()).await?;
                    let case = load_case(ctx, id).await?;
                    if !matches!(case.state, CaseState::Submitted | CaseState::CoolingOff) {
                        return Err(TransitionError::Illegal { command: "send a code for", state: case.state, next: case.state.next_step() }.into());
                    }
                    let prev = sqlx::query("SELECT sent_at, locked_until, lockouts FROM otp_codes WHERE case_id = $1")
                        .bind(id.to_string())
                        .fetch_optional(&mut ctx.conn)
                        .await
                        .map_err(db("read code"))?;
                    let mut lockouts = 0i64;
                    if let Some(p) = prev {
                        let sent_at = from_ms(p.get(0));
                        if let Some(lu) = p.get::<Option<i64>, _>(1).map(from_ms)
                            && lu > now
                        {
                            return Err(StoreError::CodeLocked { until: lu });
                        }
                        lockouts = p.get(2);
                        let next_ok = sent_at.checked_add(resend_after).unwrap_or(sent_at);
                        if next_ok > now {
                            return Err(StoreError::ResendTooSoon { wait_secs: (next_ok.as_second() - now.as_second()).max(1) });
                        }
                    }
                    sqlx::query(
                        "INSERT INTO otp_codes (case_id, code_hash, expires_at, attempts, lockouts, locked_until, sent_at) VALUES ($1, $2, $3, 0, $4, NULL, $5)
                         ON CONFLICT (case_id) DO UPDATE SET code_hash = excluded.code_hash, expires_at = excluded.expires_at,
                           attempts = CASE WHEN otp_codes.locked_until IS NULL THEN otp_codes.attempts ELSE 0 END,
                           locked_until = NULL, sent_at = excluded.sent_at",
                    )
                    .bind(id.to_string())
                    .bind(code_hash)
                    .bind(ms(now.checked_add(ttl).unwrap_or(now)))
                    .bind(lockouts)
                    .bind(ms(now))
                    .execute(&mut ctx.conn)
                    .await
                    .map_err(db("store code"))?;
                    sqlx::query("INSERT INTO outbox (case_id, channel, destination, body, created_at) VALUES ($1, $2, $3, $4, $5)")
                        .bind(id.to_string())
                        .bind(message.channel)
                        .bind(message.destination)
                        .bind(message.body)
                        .bind(ms(now))
                        .execute(&mut ctx.conn)
                        .await
                        .map_err(db("queue message"))?;
                    let change = Change {
                        kind: "case.code_sent".into(),
                        from: Some(case.state),
                        to: case.state,
                        at: now,
                        detail: serde_json::json!({ "channel": "sms" }),
                    };
                    let pseudo = pseudonym_of(ctx, id).await?;
                    append_audit(ctx, &case, &pseudo, &change, &actor).await?;
                    finish_idem(ctx, idem.as_ref(), &case).await?;
                    Ok(case)
                })
            })
            .await
    }

    /// Checks a code in constant time. A wrong code is counted (and the count
    /// committed); after `max_attempts` wrong codes the code is locked for a
    /// period that doubles with each lockout. A right code is consumed and
    /// verifies the identity, in the same transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn verify_code(
        &self,
        id: CaseId,
        purpose: CodePurpose,
        candidate_hash: String,
        now: Timestamp,
        max_attempts: u32,
        base_lockout: jiff::SignedDuration,
        actor: String,
        idem: Option<Idem>,
    ) -> Result<Case, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    claim_idem(ctx, idem.as_ref()).await?;
                    let case = load_case(ctx, id).await?;
                    let (expected, then) = match purpose {
                        CodePurpose::Verify => (CaseState::Submitted, CaseCommand::VerifyIdentity { method: "sms_code".into(), level: lethe_domain::AssuranceLevel::PHONE }),
                        CodePurpose::Restore => (CaseState::CoolingOff, CaseCommand::Withdraw),
                    };
                    if case.state != expected {
                        let command = match purpose {
                            CodePurpose::Verify => "verify a code for",
                            CodePurpose::Restore => "restore with a code",
                        };
                        return Err(TransitionError::Illegal { command, state: case.state, next: case.state.next_step() }.into());
                    }
                    let row = sqlx::query("SELECT code_hash, expires_at, attempts, lockouts, locked_until FROM otp_codes WHERE case_id = $1")
                        .bind(id.to_string())
                        .fetch_optional(&mut ctx.conn)
                        .await
                        .map_err(db("read code"))?
                        .ok_or(StoreError::NoCode)?;
                    let stored: String = row.get(0);
                    let expires_at = from_ms(row.get(1));
                    let attempts: i64 = row.get(2);
                    let lockouts: i64 = row.get(3);
                    if let Some(lu) = row.get::<Option<i64>, _>(4).map(from_ms) {
                        if lu > now {
                            return Err(StoreError::CodeLocked { until: lu });
                        }
                        // A lockout that ended leaves no usable code.
                        return Err(StoreError::NoCode);
                    }
                    if now > expires_at {
                        return Err(StoreError::CodeExpired);
                    }
                    let ok: bool = subtle::ConstantTimeEq::ct_eq(stored.as_bytes(), candidate_hash.as_bytes()).into();
                    if !ok {
                        let attempts = attempts + 1;
                        if attempts >= i64::from(max_attempts) {
                            let factor = 1i64 << lockouts.clamp(0, 10);
                            let until = now
                                .checked_add(jiff::SignedDuration::from_secs(base_lockout.as_secs().saturating_mul(factor)))
                                .unwrap_or(now);
                            sqlx::query("UPDATE otp_codes SET attempts = $1, lockouts = lockouts + 1, locked_until = $2 WHERE case_id = $3")
                                .bind(attempts)
                                .bind(ms(until))
                                .bind(id.to_string())
                                .execute(&mut ctx.conn)
                                .await
                                .map_err(db("lock code"))?;
                            let pseudo = pseudonym_of(ctx, id).await?;
                            let change = Change { kind: "case.code_locked".into(), from: Some(case.state), to: case.state, at: now, detail: serde_json::json!({ "attempts": attempts }) };
                            append_audit(ctx, &case, &pseudo, &change, &actor).await?;
                            return Err(StoreError::CodeLocked { until });
                        }
                        sqlx::query("UPDATE otp_codes SET attempts = $1 WHERE case_id = $2")
                            .bind(attempts)
                            .bind(id.to_string())
                            .execute(&mut ctx.conn)
                            .await
                            .map_err(db("count attempt"))?;
                        let left = u32::try_from(i64::from(max_attempts) - attempts).unwrap_or(0);
                        return Err(StoreError::WrongCode { attempts_left: left });
                    }
                    sqlx::query("DELETE FROM otp_codes WHERE case_id = $1")
                        .bind(id.to_string())
                        .execute(&mut ctx.conn)
                        .await
                        .map_err(db("consume code"))?;
                    let case = apply_in(ctx, id, &then, now, &actor).await?;
                    finish_idem(ctx, idem.as_ref(), &case).await?;
                    Ok(case)
                })
            })
            .await
    }

    /// Messages queued for a case (the dev outbox in demo mode).
    pub async fn outbox_for(&self, id: CaseId) -> Result<Vec<OutboxMessage>, StoreError> {
        let rows = sqlx::query("SELECT id, case_id, channel, destination, body, created_at FROM outbox WHERE case_id = $1 ORDER BY id")
            .bind(id.to_string())
            .fetch_all(&self.read)
            .await
            .map_err(db("read outbox"))?;
        Ok(rows
            .iter()
            .map(|r| OutboxMessage {
                id: r.get(0),
                case_id: r.get(1),
                channel: r.get(2),
                destination: r.get(3),
                body: r.get(4),
                created_at: from_ms(r.get(5)),
            })
            .collect())
    }

    // ------------------------------------------------------------------ jobs

    /// Whether a job is ready to be claimed at `now` (a cheap read, so idle
    /// workers do not write).
    pub async fn job_ready(&self, now: Timestamp) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT CASE WHEN EXISTS(SELECT 1 FROM jobs WHERE state = 'ready' AND run_at <= $1) OR EXISTS(SELECT 1 FROM jobs WHERE state = 'leased' AND lease_until <= $1) THEN 1 ELSE 0 END",
        )
        .bind(ms(now))
        .fetch_one(&self.read)
        .await
        .map_err(db("look for jobs"))?;
        Ok(n != 0)
    }

    /// Claims the oldest ready job (or one whose lease expired) for `lease`.
    pub async fn claim_job(
        &self,
        now: Timestamp,
        lease: jiff::SignedDuration,
    ) -> Result<Option<Job>, StoreError> {
        let owner = self.instance.to_string();
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let until = now.checked_add(lease).unwrap_or(now);
                    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE jobs SET state = 'leased', lease_until = $1, attempts = attempts + 1, lease_owner = $3
                         WHERE id = (SELECT id FROM jobs WHERE (state = 'ready' AND run_at <= $2) OR (state = 'leased' AND lease_until <= $2) ORDER BY run_at, id LIMIT 1 {})
                         RETURNING id, kind, case_id, system, attempts, max_attempts",
                        ctx.skip_locked()
                    )))
                    .bind(ms(until))
                    .bind(ms(now))
                    .bind(owner)
                    .fetch_optional(&mut ctx.conn)
                    .await
                    .map_err(db("claim job"))?;
                    row.as_ref().map(job_of).transpose()
                })
            })
            .await
    }

    /// Extends the leases of jobs while they run, all in one transaction;
    /// each `(id, attempt)` only while that claim still holds the job (a
    /// job taken over by another instance keeps its new lease).
    pub async fn heartbeat(
        &self,
        jobs: Vec<(i64, u32)>,
        until: Timestamp,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    for (job_id, attempt) in &jobs {
                        // A job row another transaction holds (recording the
                        // job's result) is passed over, not waited for.
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "UPDATE jobs SET lease_until = $1 WHERE id IN (SELECT id FROM jobs WHERE id = $2 AND state = 'leased' AND attempts = $3 {})",
                            ctx.skip_locked()
                        )))
                        .bind(ms(until))
                        .bind(*job_id)
                        .bind(i64::from(*attempt))
                        .execute(&mut ctx.conn)
                        .await
                        .map_err(db("heartbeat"))?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Marks a job done without a result of its own (its work was found
    /// done already, or there is none), with the reason as its last note;
    /// only while claim `attempt` still holds it.
    pub async fn finish_job(
        &self,
        job_id: i64,
        attempt: u32,
        note: String,
    ) -> Result<(), StoreError> {
        self.end_attempt(
            job_id,
            Some(attempt),
            "done",
            now_wall(),
            note,
            "finish job",
        )
        .await
    }

    /// Puts a failed job back with a later `run_at`, or marks it dead.
    /// `attempt`: the claim that failed; its report counts only while that
    /// claim still holds the job (after a lease ran out and another
    /// instance took the job, the late report is dropped). `None` for a
    /// report that comes with no claim (a callback).
    pub async fn retry_job(
        &self,
        job_id: i64,
        attempt: Option<u32>,
        error: String,
        run_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let (state, at) = match run_at {
            Some(t) => ("ready", t),
            None => ("dead", now_wall()),
        };
        self.end_attempt(job_id, attempt, state, at, error, "reschedule job")
            .await
    }

    /// Ends a claim of a job: the job's new `state`, `run_at` and note, the
    /// lease released; fenced by the claim's `attempt` when there is one.
    async fn end_attempt(
        &self,
        job_id: i64,
        attempt: Option<u32>,
        state: &'static str,
        run_at: Timestamp,
        note: String,
        action: &'static str,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("UPDATE jobs SET state = $1, run_at = $2, lease_until = NULL, last_error = $3 WHERE id = $4 AND ($5 < 0 OR (state = 'leased' AND attempts = $5))")
                        .bind(state)
                        .bind(ms(run_at))
                        .bind(note)
                        .bind(job_id)
                        .bind(attempt.map_or(-1, i64::from))
                        .execute(&mut ctx.conn)
                        .await
                        .map_err(db(action))?;
                    Ok(())
                })
            })
            .await
    }

    /// Puts a claimed job back to wait until `run_at` without using up an
    /// attempt (its system cannot take it now: schema drift), with the
    /// reason as its note.
    pub async fn defer_job(
        &self,
        job_id: i64,
        attempt: u32,
        note: String,
        run_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("UPDATE jobs SET state = 'ready', run_at = $1, lease_until = NULL, last_error = $2, attempts = attempts - 1 WHERE id = $3 AND state = 'leased' AND attempts = $4")
                        .bind(ms(run_at))
                        .bind(note)
                        .bind(job_id)
                        .bind(i64::from(attempt))
                        .execute(&mut ctx.conn)
                        .await
                        .map_err(db("defer job"))?;
                    Ok(())
                })
            })
            .await
    }

    pub async fn jobs_for_case(&self, id: CaseId) -> Result<Vec<JobInfo>, StoreError> {
        let rows = sqlx::query("SELECT kind, system, state, attempts, last_error FROM jobs WHERE case_id = $1 ORDER BY id")
            .bind(id.to_string())
            .fetch_all(&self.read)
            .await
            .map_err(db("read jobs"))?;
        Ok(rows
            .iter()
            .map(|r| JobInfo {
                kind: r.get(0),
                system: r.get(1),
                state: r.get(2),
                attempts: u32::try_from(r.get::<i64, _>(3)).unwrap_or(0),
                last_error: r.get(4),
            })
            .collect())
    }

    /// Records one system's erasure outcome and marks its job done. When
    /// every erase job of the case is done, `finish` builds the receipt from
    /// all outcomes and the case moves to `erased`, in the same transaction.
    pub async fn record_erasure(
        &self,
        job_id: i64,
        id: CaseId,
        system: String,
        outcome: serde_json::Value,
        now: Timestamp,
        finish: ReceiptBuilder,
    ) -> Result<Case, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    record_erasure_in(ctx, job_id, id, system, outcome, now, finish).await
                })
            })
            .await
    }

    /// Parks an erase job while an operator does the work by hand: opens
    /// the manual task (once per job) due at `due`, and sets the job to
    /// `waiting` (never claimed by workers; completing the task completes
    /// it). Returns the task id.
    pub async fn open_manual_task(
        &self,
        job_id: i64,
        id: CaseId,
        system: String,
        instructions: String,
        due: Timestamp,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO manual_tasks (job_id, case_id, system, instructions, due_at, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (job_id) DO NOTHING")
                        .bind(job_id)
                        .bind(id.to_string())
                        .bind(system)
                        .bind(instructions)
                        .bind(ms(due))
                        .bind(ms(now))
                        .execute(&mut ctx.conn)
                        .await
                        .map_err(db("open manual task"))?;
                    let task: i64 = sqlx::query_scalar("SELECT id FROM manual_tasks WHERE job_id = $1")
                        .bind(job_id)
                        .fetch_one(&mut ctx.conn)
                        .await
                        .map_err(db("read manual task"))?;
                    sqlx::query("UPDATE jobs SET state = 'waiting', lease_until = NULL, run_at = $1, last_error = $2 WHERE id = $3")
                        .bind(ms(due))
                        .bind(format!("waiting for manual task {task}, due {due}"))
                        .bind(job_id)
                        .execute(&mut ctx.conn)
                        .await
                        .map_err(db("park job"))?;
                    Ok(task)
                })
            })
            .await
    }

    /// Manual tasks, open ones first (oldest due first), at most `limit`.
    pub async fn manual_tasks(
        &self,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<ManualTask>, StoreError> {
        self.manual_tasks_of(None, open_only, limit).await
    }

    /// Manual tasks of the cases a principal opened (`None`: every case,
    /// for agents).
    pub async fn manual_tasks_of(
        &self,
        principal: Option<&str>,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<ManualTask>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, case_id, system, instructions, due_at, created_at, completed_at, completed_by, note, records FROM manual_tasks
             WHERE ($1 = 0 OR completed_at IS NULL)
               AND ($3 = '' OR case_id IN (SELECT id FROM cases WHERE principal = $3))
             ORDER BY completed_at IS NOT NULL, due_at, id LIMIT $2",
        )
        .bind(i64::from(open_only))
        .bind(i64::from(limit.min(1000)))
        .bind(principal.unwrap_or("").to_owned())
        .fetch_all(&self.read)
        .await
        .map_err(db("read manual tasks"))?;
        Ok(rows
            .iter()
            .map(|r| ManualTask {
                id: r.get(0),
                case_id: r.get(1),
                system: r.get(2),
                instructions: r.get(3),
                due_at: from_ms(r.get(4)),
                created_at: from_ms(r.get(5)),
                completed_at: r.get::<Option<i64>, _>(6).map(from_ms),
                completed_by: r.get(7),
                note: r.get(8),
                records: r
                    .get::<Option<i64>, _>(9)
                    .and_then(|v| u64::try_from(v).ok()),
            })
            .collect())
    }

    /// Completes a manual task with the operator's note and count, and
    /// records the system's outcome in the same transaction (which closes
    /// the case when it was the last system). `None` when the task does not
    /// exist or is already completed.
    #[allow(clippy::too_many_arguments)]
    pub async fn complete_manual_task(
        &self,
        task_id: i64,
        agent: String,
        note: String,
        records: u64,
        outcome: serde_json::Value,
        now: Timestamp,
        finish: ReceiptBuilder,
    ) -> Result<Option<Case>, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let actor = agent.clone();
                    let row = sqlx::query("UPDATE manual_tasks SET completed_at = $1, completed_by = $2, note = $3, records = $4 WHERE id = $5 AND completed_at IS NULL RETURNING job_id, case_id, system")
                        .bind(ms(now))
                        .bind(agent)
                        .bind(note)
                        .bind(i64::try_from(records).unwrap_or(i64::MAX))
                        .bind(task_id)
                        .fetch_optional(&mut ctx.conn)
                        .await
                        .map_err(db("complete manual task"))?;
                    let Some(row) = row else {
                        return Ok(None);
                    };
                    let id = CaseId::parse(&row.get::<String, _>(1)).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    let system: String = row.get(2);
                    // Who completed it, and what they claimed: an audit
                    // event of the case, in the same transaction.
                    let case = load_case(ctx, id).await?;
                    let change = Change {
                        kind: "case.manual_task_completed".into(),
                        from: Some(case.state),
                        to: case.state,
                        at: now,
                        detail: serde_json::json!({ "task": task_id, "system": system, "records": records }),
                    };
                    let pseudo = pseudonym_of(ctx, id).await?;
                    append_audit(ctx, &case, &pseudo, &change, &actor).await?;
                    record_erasure_in(ctx, row.get(0), id, system, outcome, now, finish).await.map(Some)
                })
            })
            .await
    }

    /// The open erase job of a case in a system (for an HTTP callback).
    pub async fn open_erase_job(
        &self,
        id: CaseId,
        system: &str,
    ) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar("SELECT id FROM jobs WHERE case_id = $1 AND system = $2 AND kind = 'erase' AND state <> 'done' AND state <> 'dead'")
            .bind(id.to_string())
            .bind(system.to_owned())
            .fetch_optional(&self.read)
            .await
            .map_err(db("find the erase job"))
    }

    /// Claims up to `limit` more ready jobs of one kind and system (an
    /// erasure batch), leased like [`Store::claim_job`].
    pub async fn claim_more_jobs(
        &self,
        kind: &str,
        system: &str,
        now: Timestamp,
        lease: jiff::SignedDuration,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        let (kind, system) = (kind.to_owned(), system.to_owned());
        let owner = self.instance.to_string();
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let until = now.checked_add(lease).unwrap_or(now);
                    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE jobs SET state = 'leased', lease_until = $1, attempts = attempts + 1, lease_owner = $6
                         WHERE id IN (SELECT id FROM jobs WHERE kind = $2 AND system = $3 AND ((state = 'ready' AND run_at <= $4) OR (state = 'leased' AND lease_until <= $4)) ORDER BY run_at, id LIMIT $5 {})
                         RETURNING id, kind, case_id, system, attempts, max_attempts",
                        ctx.skip_locked()
                    )))
                    .bind(ms(until))
                    .bind(kind)
                    .bind(system)
                    .bind(ms(now))
                    .bind(i64::from(limit.min(1000)))
                    .bind(owner)
                    .fetch_all(&mut ctx.conn)
                    .await
                    .map_err(db("claim jobs"))?;
                    rows.iter().map(job_of).collect()
                })
            })
            .await
    }

    pub async fn receipt(&self, id: CaseId) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT body FROM receipts WHERE case_id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(db("read receipt"))
    }

    /// Applies a command and marks a job done, in one transaction (a
    /// settlement result and the end of its instruction job).
    pub async fn apply_completing_job(
        &self,
        job_id: i64,
        id: CaseId,
        cmd: CaseCommand,
        now: Timestamp,
        actor: String,
    ) -> Result<Case, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("UPDATE jobs SET state = 'done', lease_until = NULL, last_error = NULL WHERE id = $1")
                        .bind(job_id)
                        .execute(&mut ctx.conn)
                        .await
                        .map_err(db("complete job"))?;
                    apply_in(ctx, id, &cmd, now, &actor).await
                })
            })
            .await
    }

    /// Marks the case failed (needs an operator) and its job dead, when
    /// claim `attempt` still holds the job (not when its lease ran out and
    /// another instance took the job over).
    pub async fn fail_erasure(
        &self,
        job_id: i64,
        attempt: u32,
        id: CaseId,
        reason: String,
        now: Timestamp,
    ) -> Result<Case, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let case = load_case(ctx, id).await?;
                    let n = sqlx::query("UPDATE jobs SET state = 'dead', lease_until = NULL, last_error = $1 WHERE id = $2 AND state = 'leased' AND attempts = $3")
                        .bind(reason.clone())
                        .bind(job_id)
                        .bind(i64::from(attempt))
                        .execute(&mut ctx.conn)
                        .await
                        .map_err(db("fail job"))?
                        .rows_affected();
                    if n == 0 || case.state != CaseState::Erasing {
                        return Ok(case);
                    }
                    apply_in(ctx, id, &CaseCommand::FailErasure { reason }, now, "worker").await
                })
            })
            .await
    }

    /// An operator's retry of a failed case: dead erase jobs are re-armed.
    pub async fn retry_erasure(
        &self,
        id: CaseId,
        now: Timestamp,
        actor: String,
        idem: Option<Idem>,
    ) -> Result<Case, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    claim_idem(ctx, idem.as_ref()).await?;
                    let case = apply_in(ctx, id, &CaseCommand::RetryErasure, now, &actor).await?;
                    sqlx::query("UPDATE jobs SET state = 'ready', attempts = 0, run_at = $1, lease_until = NULL WHERE case_id = $2 AND state = 'dead'")
                        .bind(ms(now_wall()))
                        .bind(id.to_string())
                        .execute(&mut ctx.conn)
                        .await
                        .map_err(db("re-arm jobs"))?;
                    finish_idem(ctx, idem.as_ref(), &case).await?;
                    Ok(case)
                })
            })
            .await
    }
}

/// Builds the receipt from the erased case, the per-system outcomes and the
/// case's audit events; runs inside the transaction that closes the case.
pub type ReceiptBuilder =
    fn(&Case, &[(String, serde_json::Value)], &[RecordedEvent], Timestamp) -> String;

/// What a one-time code proves: the identity at the start of a case, or the
/// holder's wish to restore the account during cooling-off (one verified step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodePurpose {
    Verify,
    Restore,
}

/// A message for a gateway. `destination` is masked (no full phone number
/// is stored); the gateway resolves the subject's number itself.
#[derive(Debug, Clone)]
pub struct OutboxDraft {
    pub channel: String,
    pub destination: String,
    pub body: String,
}

/// Wall-clock time for leases and job scheduling: never the demo clock.
pub fn now_wall() -> Timestamp {
    Timestamp::now()
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s)
        .map_err(|e| StoreError::Corrupt(format!("case record: {}", e.classify() as u8)))
}

fn unique_to_conflict(e: sqlx::Error, action: &'static str) -> StoreError {
    if let sqlx::Error::Database(d) = &e
        && d.is_unique_violation()
    {
        return StoreError::IdempotencyConflict;
    }
    db(action)(e)
}

/// Records one system's erasure outcome and marks its job done; closes the
/// case (receipt built by `finish`) when it was the last open job.
async fn record_erasure_in(
    ctx: &mut WriteCtx,
    job_id: i64,
    id: CaseId,
    system: String,
    outcome: serde_json::Value,
    now: Timestamp,
    finish: ReceiptBuilder,
) -> Result<Case, StoreError> {
    // The case first: two instances recording a case's last two systems at
    // once would each still see the other's job open, and neither would
    // close the case. Locked, the second sees the first's commit.
    load_case(ctx, id).await?;
    let system_name = system.clone();
    sqlx::query("INSERT INTO erasure_results (case_id, system, outcome, recorded_at) VALUES ($1, $2, $3, $4) ON CONFLICT (case_id, system) DO UPDATE SET outcome = excluded.outcome")
        .bind(id.to_string())
        .bind(system)
        .bind(outcome.to_string())
        .bind(ms(now))
        .execute(&mut ctx.conn)
        .await
        .map_err(db("record erasure result"))?;
    erased::keep_tombstone(ctx, &id.to_string(), &system_name, now).await?;
    sqlx::query(
        "UPDATE jobs SET state = 'done', lease_until = NULL, last_error = NULL WHERE id = $1",
    )
    .bind(job_id)
    .execute(&mut ctx.conn)
    .await
    .map_err(db("complete job"))?;
    let open: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE case_id = $1 AND state <> 'done'")
            .bind(id.to_string())
            .fetch_one(&mut ctx.conn)
            .await
            .map_err(db("count open jobs"))?;
    let case = load_case(ctx, id).await?;
    if open > 0 || case.state != CaseState::Erasing {
        return Ok(case);
    }
    let case = apply_in(ctx, id, &CaseCommand::CompleteErasure, now, "worker").await?;
    let outcomes: Vec<(String, serde_json::Value)> = sqlx::query(
        "SELECT system, outcome FROM erasure_results WHERE case_id = $1 ORDER BY system",
    )
    .bind(id.to_string())
    .fetch_all(&mut ctx.conn)
    .await
    .map_err(db("read erasure results"))?
    .iter()
    .map(|r| {
        (
            r.get::<String, _>(0),
            serde_json::from_str(&r.get::<String, _>(1)).unwrap_or(serde_json::Value::Null),
        )
    })
    .collect();
    let events = case_events(&mut ctx.conn, &id.to_string()).await?;
    let receipt = finish(&case, &outcomes, &events, now);
    // The final event is sequenced after this commit: the receipt names
    // it by queue id and is signed once it is in the tree.
    sqlx::query(
        "INSERT INTO receipts (case_id, body, created_at, final_qid) VALUES ($1, $2, $3, $4)",
    )
    .bind(id.to_string())
    .bind(receipt)
    .bind(ms(now))
    .bind(ctx.last_qid)
    .execute(&mut ctx.conn)
    .await
    .map_err(db("store receipt"))?;
    forget_subject(ctx, &case).await?;
    Ok(case)
}

/// The subject id is no longer needed once the case is erased: everything
/// Lethe kept of the case keeps the pseudonym instead (the case row and its
/// body, notification and case-event payloads), and what only served the
/// flow goes (messages sent, idempotency records showing the case).
async fn forget_subject(ctx: &mut WriteCtx, case: &Case) -> Result<(), StoreError> {
    let id = case.id.to_string();
    let pseudo = pseudonym_of(ctx, case.id).await?;
    let mut forgotten = case.clone();
    forgotten.subject =
        lethe_domain::SubjectId::parse(&pseudo).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query("UPDATE cases SET subject = subject_pseudonym, body = $2 WHERE id = $1")
        .bind(id.clone())
        .bind(to_json(&forgotten)?)
        .execute(&mut ctx.conn)
        .await
        .map_err(db("forget subject id"))?;
    for table in ["notifications", "case_events"] {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, payload FROM {table} WHERE case_id = $1"
        )))
        .bind(id.clone())
        .fetch_all(&mut ctx.conn)
        .await
        .map_err(db("read payloads to forget"))?;
        for r in rows {
            let Ok(mut payload) = serde_json::from_str::<serde_json::Value>(&r.get::<String, _>(1))
            else {
                continue;
            };
            let Some(obj) = payload.as_object_mut() else {
                continue;
            };
            if obj.remove("subject_id").is_none() {
                continue;
            }
            obj.insert("subject_ref".into(), pseudo.clone().into());
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET payload = $1 WHERE id = $2"
            )))
            .bind(payload.to_string())
            .bind(r.get::<i64, _>(0))
            .execute(&mut ctx.conn)
            .await
            .map_err(db("forget payload"))?;
        }
    }
    for sql in [
        "DELETE FROM outbox WHERE case_id = $1",
        "DELETE FROM idempotency WHERE case_id = $1",
    ] {
        sqlx::query(sql)
            .bind(id.clone())
            .execute(&mut ctx.conn)
            .await
            .map_err(db("forget the case's messages"))?;
    }
    Ok(())
}

/// A job from `RETURNING id, kind, case_id, system, attempts, max_attempts`.
fn job_of(r: &crate::DbRow) -> Result<Job, StoreError> {
    Ok(Job {
        id: r.get(0),
        kind: r.get(1),
        case_id: CaseId::parse(&r.get::<String, _>(2))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        system: r.get(3),
        attempts: u32::try_from(r.get::<i64, _>(4)).unwrap_or(u32::MAX),
        max_attempts: u32::try_from(r.get::<i64, _>(5)).unwrap_or(1),
    })
}

/// Loads a case to change it. On PostgreSQL the row stays locked until the
/// transaction ends, so a change made by another instance at the same time
/// waits and then sees this one's result.
pub(crate) async fn load_case(ctx: &mut WriteCtx, id: CaseId) -> Result<Case, StoreError> {
    let body: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT body FROM cases WHERE id = $1 {}",
        ctx.for_update()
    )))
    .bind(id.to_string())
    .fetch_optional(&mut ctx.conn)
    .await
    .map_err(db("load case"))?;
    from_json(&body.ok_or(StoreError::NotFound(id))?)
}

async fn pseudonym_of(ctx: &mut WriteCtx, id: CaseId) -> Result<String, StoreError> {
    sqlx::query_scalar("SELECT subject_pseudonym FROM cases WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut ctx.conn)
        .await
        .map_err(db("load case"))?
        .ok_or(StoreError::NotFound(id))
}

/// Loads, applies, writes and audits one command inside the current
/// transaction. The update checks the version it read (optimistic lock).
async fn apply_in(
    ctx: &mut WriteCtx,
    id: CaseId,
    cmd: &CaseCommand,
    now: Timestamp,
    actor: &str,
) -> Result<Case, StoreError> {
    let case = load_case(ctx, id).await?;
    let (next, change) = case.apply(cmd, now)?;
    let n = sqlx::query("UPDATE cases SET state = $1, version = $2, updated_at = $3, cooling_off_ends_at = $4, body = $5 WHERE id = $6 AND version = $7")
        .bind(next.state.as_str())
        .bind(i64::try_from(next.version).unwrap_or(i64::MAX))
        .bind(ms(next.updated_at))
        .bind(next.cooling_off_ends_at.map(ms))
        .bind(to_json(&next)?)
        .bind(id.to_string())
        .bind(i64::try_from(case.version).unwrap_or(i64::MAX))
        .execute(&mut ctx.conn)
        .await
        .map_err(db("update case"))?
        .rows_affected();
    if n != 1 {
        return Err(StoreError::Db {
            action: "update case",
            message: "the case changed concurrently; retry".into(),
        });
    }
    let pseudo = pseudonym_of(ctx, id).await?;
    append_audit(ctx, &next, &pseudo, &change, actor).await?;
    write_effects(ctx, &next, &change).await?;
    Ok(next)
}

/// The notifications, deadlines and jobs that follow from a change, in its
/// transaction.
async fn write_effects(ctx: &mut WriteCtx, case: &Case, change: &Change) -> Result<(), StoreError> {
    // Settlement instructions go out when they become pending: when the
    // cancellation became final, or at once for an early settlement or a
    // choice made again after a refusal. One job per instruction id.
    if matches!(
        change.kind.as_str(),
        "case.settlement_chosen" | "case.settlement_started"
    ) {
        let pending: Vec<String> = case
            .assets
            .iter()
            .filter_map(|a| a.settlement.as_ref())
            .filter(|s| s.status == lethe_domain::asset::SettlementStatus::Pending)
            .map(|s| s.instruction_id.clone())
            .collect();
        for instruction in pending {
            let job = NewJob {
                kind: "settle".into(),
                system: instruction,
                max_attempts: ctx.settle_attempts,
            };
            enqueue(ctx, &case.id, &job, now_wall()).await?;
        }
    }
    if change.to == CaseState::Erasing
        && matches!(
            change.from,
            Some(CaseState::CoolingOff | CaseState::Settling)
        )
    {
        let jobs = ctx.erasure_jobs.clone();
        for j in jobs.iter() {
            enqueue(ctx, &case.id, j, now_wall()).await?;
        }
    }
    for n in case.notices(change) {
        if ctx.case_events
            && let Some(kind) = events::kind_of_notice(n.kind)
        {
            events::insert(ctx, case, kind, None, change.at).await?;
        }
        insert_notification(
            ctx,
            n.kind,
            Some(&case.id.to_string()),
            &n.payload,
            change.at,
        )
        .await?;
    }
    if let Some(f) = ctx.deadlines.clone() {
        upsert_deadlines(ctx, case, &f(case)).await?;
    }
    Ok(())
}

pub(crate) async fn insert_notification(
    ctx: &mut WriteCtx,
    kind: &str,
    case_id: Option<&str>,
    payload: &serde_json::Value,
    at: Timestamp,
) -> Result<(), StoreError> {
    insert_notification_for(ctx, kind, case_id, None, payload, at).await
}

/// A notification for one platform (`principal`), when no case says whose
/// it is.
pub(crate) async fn insert_notification_for(
    ctx: &mut WriteCtx,
    kind: &str,
    case_id: Option<&str>,
    principal: Option<&str>,
    payload: &serde_json::Value,
    at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO notifications (kind, case_id, payload, created_at, state, next_at, principal) VALUES ($1, $2, $3, $4, 'pending', $5, $6)")
        .bind(kind.to_owned())
        .bind(case_id.map(str::to_owned))
        .bind(payload.to_string())
        .bind(ms(at))
        .bind(ms(now_wall()))
        .bind(principal.map(str::to_owned))
        .execute(&mut ctx.conn)
        .await
        .map_err(db("queue notification"))?;
    Ok(())
}

async fn upsert_deadlines(
    ctx: &mut WriteCtx,
    case: &Case,
    ds: &[lethe_domain::deadline::Deadline],
) -> Result<(), StoreError> {
    let id = case.id;
    for d in ds {
        sqlx::query(
            "INSERT INTO deadlines (case_id, kind, starts_at, due_at, warn_at, paused, met_at, problem, provisional) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (case_id, kind) DO UPDATE SET starts_at = excluded.starts_at, due_at = excluded.due_at, warn_at = excluded.warn_at,
               paused = excluded.paused, met_at = excluded.met_at, problem = excluded.problem, provisional = excluded.provisional,
               warned_at = CASE WHEN excluded.due_at > deadlines.due_at THEN NULL ELSE deadlines.warned_at END,
               escalated_at = CASE WHEN excluded.due_at > deadlines.due_at THEN NULL ELSE deadlines.escalated_at END",
        )
        .bind(id.to_string())
        .bind(d.kind.as_str())
        .bind(ms(d.starts_at))
        .bind(d.due_at.map(ms))
        .bind(d.warn_at().map(ms))
        .bind(i64::from(d.paused))
        .bind(d.met_at.map(ms))
        .bind(d.problem.clone())
        .bind(i64::from(d.provisional))
        .execute(&mut ctx.conn)
        .await
        .map_err(db("store deadline"))?;
    }
    // A closed case (erased, withdrawn, rejected) leaves no deadline open,
    // including one computed before it closed that no longer applies (the
    // erasure start of a case restored in cooling-off).
    if case.state.is_terminal()
        && let Some(closed) = case.closed_at
    {
        sqlx::query("UPDATE deadlines SET met_at = $1 WHERE case_id = $2 AND met_at IS NULL")
            .bind(ms(closed))
            .bind(id.to_string())
            .execute(&mut ctx.conn)
            .await
            .map_err(db("close deadlines"))?;
    }
    Ok(())
}

async fn append_audit(
    ctx: &mut WriteCtx,
    case: &Case,
    pseudonym: &str,
    change: &Change,
    actor: &str,
) -> Result<(), StoreError> {
    let event = AuditEvent {
        seq: 0,
        case_id: case.id.to_string(),
        subject: pseudonym.to_owned(),
        kind: change.kind.clone(),
        from_state: change.from.map(|s| s.as_str().to_owned()),
        to_state: change.to.as_str().to_owned(),
        actor: actor.to_owned(),
        at: change.at.to_string(),
        detail: change.detail.clone(),
    };
    insert_event(ctx, event).await.map(drop)
}

/// The audit event of a failed hotline or counter check.
pub const IDENTITY_CHECK_FAILED: &str = "case.identity_check_failed";

/// How long an idempotency record answers retries; older ones are purged.
pub const IDEMPOTENCY_TTL_HOURS: i64 = 24;

/// Records created before this (wall clock, ms) have expired.
fn idem_cutoff() -> i64 {
    ms(now_wall()) - IDEMPOTENCY_TTL_HOURS * 3_600_000
}

/// An expired record of this key goes, so the key may be used again.
async fn drop_expired_idem(
    ctx: &mut WriteCtx,
    principal: &str,
    key: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM idempotency WHERE principal = $1 AND key = $2 AND created_at < $3")
        .bind(principal.to_owned())
        .bind(key.to_owned())
        .bind(idem_cutoff())
        .execute(&mut ctx.conn)
        .await
        .map_err(db("expire idempotency record"))?;
    Ok(())
}

/// Reserves the idempotency key inside the transaction: a concurrent request
/// with the same key that committed first makes this one a conflict.
async fn claim_idem(ctx: &mut WriteCtx, idem: Option<&Idem>) -> Result<(), StoreError> {
    let Some(i) = idem else { return Ok(()) };
    drop_expired_idem(ctx, &i.principal, &i.key).await?;
    let existing: Option<String> = sqlx::query_scalar(
        "SELECT request_hash FROM idempotency WHERE principal = $1 AND key = $2",
    )
    .bind(i.principal.clone())
    .bind(i.key.clone())
    .fetch_optional(&mut ctx.conn)
    .await
    .map_err(db("read idempotency record"))?;
    if existing.is_some() {
        return Err(StoreError::IdempotencyConflict);
    }
    Ok(())
}

async fn finish_idem(
    ctx: &mut WriteCtx,
    idem: Option<&Idem>,
    case: &Case,
) -> Result<(), StoreError> {
    let Some(i) = idem else { return Ok(()) };
    sqlx::query("INSERT INTO idempotency (principal, key, request_hash, status, body, created_at, case_id) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(i.principal.clone())
        .bind(i.key.clone())
        .bind(i.request_hash.clone())
        .bind(i64::from(i.status))
        .bind((i.render)(case))
        .bind(ms(now_wall()))
        .bind(case.id.to_string())
        .execute(&mut ctx.conn)
        .await
        .map_err(|e| unique_to_conflict(e, "store idempotency record"))?;
    Ok(())
}

async fn enqueue(
    ctx: &mut WriteCtx,
    id: &CaseId,
    j: &NewJob,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO jobs (kind, case_id, system, state, attempts, max_attempts, run_at, created_at) VALUES ($1, $2, $3, 'ready', 0, $4, $5, $5) ON CONFLICT (kind, case_id, system) DO NOTHING")
        .bind(j.kind.clone())
        .bind(id.to_string())
        .bind(j.system.clone())
        .bind(i64::from(j.max_attempts))
        .bind(ms(now))
        .execute(&mut ctx.conn)
        .await
        .map_err(db("enqueue job"))?;
    if ctx.case_events && j.kind == "erase" {
        events::erasure_requested(ctx, id, &j.system, now).await?;
    }
    Ok(())
}

/// A case's events in the order they happened: those in the tree by
/// sequence number, then those still queued (sequence number 0, no hash
/// yet) by queue id.
pub(crate) async fn case_events(
    conn: &mut DbConn,
    case_id: &str,
) -> Result<Vec<RecordedEvent>, StoreError> {
    // One statement, one snapshot: each event with its leaf if it has one.
    let rows = sqlx::query("SELECT COALESCE(l.seq, 0), e.case_id, e.subject, e.kind, e.from_state, e.to_state, e.actor, e.at, e.detail, COALESCE(l.hash, ''), CAST(CASE WHEN l.seq IS NULL THEN 1 ELSE 0 END AS BIGINT), COALESCE(l.seq, e.qid) FROM audit_entries e LEFT JOIN audit_leaves l ON l.qid = e.qid WHERE e.case_id = $1")
        .bind(case_id.to_owned())
        .fetch_all(&mut *conn)
        .await
        .map_err(db("read audit"))?;
    let mut keyed = Vec::with_capacity(rows.len());
    for r in &rows {
        keyed.push(((r.get::<i64, _>(10), r.get::<i64, _>(11)), row_to_event(r)?));
    }
    // Sequenced first by sequence number, then queued by queue id.
    keyed.sort_unstable_by_key(|(k, _)| *k);
    Ok(keyed.into_iter().map(|(_, e)| e).collect())
}

pub(crate) fn row_to_event(r: &crate::DbRow) -> Result<RecordedEvent, StoreError> {
    Ok(RecordedEvent {
        event: AuditEvent {
            seq: u64::try_from(r.get::<i64, _>(0)).unwrap_or(0),
            case_id: r.get(1),
            subject: r.get(2),
            kind: r.get(3),
            from_state: r.get(4),
            to_state: r.get(5),
            actor: r.get(6),
            at: r.get(7),
            detail: serde_json::from_str(&r.get::<String, _>(8))
                .map_err(|_| StoreError::Corrupt("audit detail".into()))?,
        },
        hash: r.get(9),
        redacted: false,
    })
}

#[cfg(test)]
mod tests;
