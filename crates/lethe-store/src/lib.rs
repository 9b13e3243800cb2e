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
//!
//! This file holds the [`Store`] type and its opening (pools, migrations,
//! the writer); each aggregate has a module of its own with its rows and
//! its `impl Store` block: `cases` (commands and their effects, a case's
//! timeline), `jobs` (work queue, manual tasks, outbox), `codes`,
//! `idempotency`, `api_keys`, `identity_checks`, `log` and `audit` (the
//! audit log and its proofs), `exports`, `claims`, `console`, `deadlines`,
//! `drift`, `erased`, `events`, `purges`, `support`, `transparency`,
//! `vault`.

mod api_keys;
mod audit;
mod cases;
mod claims;
mod codes;
mod console;
mod deadlines;
mod drift;
mod erased;
mod events;
mod exports;
mod idempotency;
mod identity_checks;
mod jobs;
mod log;
mod purges;
mod support;
mod transparency;
mod tx;
mod vault;
mod writer;

pub use audit::ProofError;
pub use claims::ClaimRow;
pub use codes::CodePurpose;
pub use console::AgentRow;
pub use deadlines::{Alert, DeadlineRow, MetricsSnapshot, NotificationRow};
pub use drift::{DATAMAP_CHECK, DriftFinding, NewFinding};
pub use erased::{ErasedMatch, MATCH_CHUNK, ReapplyRun};
pub use events::CaseEvent;
pub use exports::{ExportRow, NewExport};
pub use idempotency::{IDEMPOTENCY_TTL_HOURS, Idem, IdemRecord};
pub use identity_checks::IDENTITY_CHECK_FAILED;
pub use jobs::{Job, JobInfo, ManualTask, OutboxDraft, OutboxMessage};
pub use purges::{NewPurge, PendingSubject, PurgeEntry, PurgeOutcome, PurgeRow};
pub use support::{
    MAX_QUEUE as MAX_SUPPORT_QUEUE, NewSupport, SupportLimits, SupportRow, Throttled,
};
pub use transparency::{MAX_LISTED_REPORTS, NewReport, PublishedReport};
// What the aggregates' modules share inside the crate (each module has
// `use super::*`).
pub(crate) use {cases::*, idempotency::*, jobs::*, tx::*};

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
pub(crate) use log::{insert_event, insert_events, perfect_node, row_to_event};
pub use writer::{
    MAX_BATCH, MAX_DEFERRED, MAX_DEFERRED_ARGS, MAX_WRITE_CONNECTIONS, NewJob, QUEUE_DEPTH,
    WriteCtx,
};
pub(crate) use writer::{Stmt, Then};

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
                        .execute(ctx.conn().await?)
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
}

/// Builds the receipt from the erased case, the per-system outcomes and the
/// case's audit events; runs inside the transaction that closes the case.
pub type ReceiptBuilder =
    fn(&Case, &[(String, serde_json::Value)], &[RecordedEvent], Timestamp) -> String;

/// Wall-clock time for leases and job scheduling: never the demo clock.
pub fn now_wall() -> Timestamp {
    Timestamp::now()
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s)
        .map_err(|e| StoreError::Corrupt(format!("case record: {}", e.classify() as u8)))
}

#[cfg(test)]
mod tests;
