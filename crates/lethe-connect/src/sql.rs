//! The SQL connector: SQLite, PostgreSQL and MySQL/MariaDB through sqlx.
//!
//! Erasure of a batch of subjects in one system is one transaction on that
//! system, set-based (one statement per table for the whole batch), which
//! also writes per-case counts into a record table in the same database.
//! A re-run (after a crash, a retry) finds the record rows and returns the
//! recorded counts without touching anything: results are idempotent and
//! never double-counted.

use hmac::{Hmac, Mac};
use jiff::Timestamp;
use sha2::Sha256;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, ConnectOptions, Row};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::datamap::{Action, BlockerRule, Dialect, Ident, Ownership, System, Table};
use crate::planner::{Plan, plan_for};
use crate::schema::{self, Schema};
use crate::sqlgen::{Path, Sql, Val, json_set};
use crate::{ConnectError, SystemOutcome, TableOutcome};
use crate::{ExportStream, RowJson};
use lethe_domain::{Blocker, SubjectId};

/// The table Lethe keeps in each SQL system it erases from: per case, the
/// counts per table and what verification needs (parent keys of child
/// tables, keyed hashes written). No personal data.
pub const RECORD_TABLE: &str = "lethe_erasures";
/// Kept rows: per case and kept table, the subject id (the platform's own
/// id, already in the kept rows) and the expiry, for the purge.
pub const RETENTION_TABLE: &str = "lethe_retention";

/// One kept table of one case: until when, and whether it was purged.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Retention {
    pub case_id: String,
    pub table: String,
    pub legal_basis: Option<String>,
    pub retain_until: Option<Timestamp>,
    pub purged_at: Option<String>,
    pub purged_rows: Option<u64>,
}

/// Sampled values per (table, column), and the columns that could not be
/// read: (table, column, type, why).
pub type Samples = (
    BTreeMap<(String, String), Vec<String>>,
    Vec<(String, String, String, String)>,
);

/// A table referencing a `referenced_by` table: (table, its columns, the
/// referenced columns).
type Referrer = (Ident, Vec<Ident>, Vec<Ident>);

/// Values of a kept-hash set or a scope stored per case and table.
const MAX_SCOPE: usize = 100_000;
/// Tuples per verification statement.
const VERIFY_CHUNK: usize = 500;
/// Distinct values hashed per column and batch.
const MAX_HASH_VALUES: usize = 100_000;

pub struct SqlSystem {
    name: String,
    d: Dialect,
    pool: AnyPool,
    plan: Plan,
    /// The join path of each table to the subject id.
    paths: BTreeMap<Ident, Path>,
    /// Whether each table's root owner column is an integer column.
    int_owner: BTreeMap<Ident, bool>,
    /// Tables mapped with `referenced_by`: every (table, columns,
    /// referenced columns) that references them, from the live schema's
    /// foreign keys and the data map's link. A row is erased only when none
    /// of these still points at it.
    referenced: BTreeMap<Ident, Vec<Referrer>>,
    /// Materialised views refreshed after each erasure.
    refresh: Vec<Ident>,
    /// Stub tables (`keep` with `stub_for`): the foreign keys of the kept
    /// table that reference them. A stub row no kept row references is
    /// deleted at erasure.
    stub_refs: BTreeMap<Ident, Vec<Referrer>>,
    hash_key: Option<Vec<u8>>,
    batch_size: usize,
    phone_query: Option<String>,
    identities: BTreeMap<String, String>,
    accounts_by_phone: Option<String>,
    accounts_by_id_number: Option<String>,
    schema: Schema,
    /// Whether DELETE ... RETURNING is available (PostgreSQL, SQLite,
    /// MariaDB; not MySQL).
    returning: bool,
    /// Set once Lethe's record tables exist in the platform's database:
    /// made at the first erasure or purge (or by `lethe datamap install`),
    /// never by a connection that only reads (`check`, `plan`).
    record_ready: tokio::sync::OnceCell<()>,
    /// The live schema as last read, and when (see [`Self::live_schema`]).
    live: std::sync::Mutex<Option<(std::time::Instant, std::sync::Arc<schema::Schema>)>>,
}

impl std::fmt::Debug for SqlSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSystem")
            .field("name", &self.name)
            .field("dialect", &self.d)
            .finish()
    }
}

/// Errors from sqlx can quote SQL but never bound values; keep only the
/// database's message, cut to a bounded length.
pub(crate) fn db_err(system: &str, action: &'static str, e: sqlx::Error) -> ConnectError {
    let mut message = match &e {
        sqlx::Error::Database(d) => d.message().to_owned(),
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection".into(),
        sqlx::Error::Io(_) => "I/O error talking to the database (connection lost?)".into(),
        sqlx::Error::Protocol(_) => "protocol error talking to the database".into(),
        other => other.to_string(),
    };
    message.truncate(300);
    ConnectError::Db {
        system: system.to_owned(),
        action,
        message,
    }
}

/// A rule query as written in the data map (`$1` = the subject) for the
/// system's dialect, with how many times to bind the subject.
fn rule_sql(d: Dialect, q: &str) -> (String, usize) {
    match d {
        Dialect::Mysql => (q.replace("$1", "?"), q.matches("$1").count().max(1)),
        _ => (q.to_owned(), 1),
    }
}

fn read_val(r: &AnyRow, i: usize) -> Option<Val> {
    if let Ok(v) = r.try_get::<Option<i64>, _>(i) {
        return v.map(Val::I);
    }
    if let Ok(v) = r.try_get::<Option<String>, _>(i) {
        return v.map(Val::S);
    }
    if let Ok(v) = r.try_get::<Option<Vec<u8>>, _>(i) {
        return v.map(|b| Val::S(String::from_utf8_lossy(&b).into_owned()));
    }
    r.try_get::<Option<f64>, _>(i)
        .ok()
        .flatten()
        .map(|v| Val::S(v.to_string()))
}

fn first_text(r: &AnyRow) -> Option<String> {
    read_val(r, 0).map(|v| v.text())
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    binds: &'q [Val],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for b in binds {
        q = match b {
            Val::I(i) => q.bind(*i),
            Val::S(s) => q.bind(s.as_str()),
        };
    }
    // Statements carry their batch's keys, so each is new: not worth a
    // place in the prepared-statement cache (and a round trip to prepare).
    q.persistent(false)
}

fn count(r: &AnyRow, i: usize) -> u64 {
    r.try_get::<i64, _>(i)
        .ok()
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0)
}

/// What a case's batch member needs: its case id and subject.
#[derive(Debug, Clone)]
pub struct BatchItem {
    pub case_id: String,
    pub subject: SubjectId,
}

/// The verification scope of one case and table, stored in the record.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Scope {
    /// Parent key tuples (child tables).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parents: Vec<Vec<Val>>,
    /// Keyed hashes written, per column.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    hashes: BTreeMap<String, Vec<String>>,
    /// Referenced tables: the subject's referenced rows kept because other
    /// rows still reference them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shared: Option<u64>,
    /// Stub tables: the subject's rows deleted because no kept row
    /// references them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stub_deleted: Option<u64>,
}

impl SqlSystem {
    /// Connects using the URL in the system's environment variable.
    pub async fn connect_from_env(system: &System) -> Result<Self, ConnectError> {
        let url = std::env::var(&system.url_env).map_err(|_| ConnectError::MissingUrl {
            system: system.name.to_string(),
            var: system.url_env.clone(),
        })?;
        Self::connect(system, &url).await
    }

    pub async fn connect(system: &System, url: &str) -> Result<Self, ConnectError> {
        sqlx::any::install_default_drivers();
        let name = system.name.to_string();
        let d = system.kind.dialect().ok_or_else(|| ConnectError::Config {
            system: name.clone(),
            message: format!("kind {} is not a SQL kind", system.kind.as_str()),
        })?;
        let expected = match d {
            Dialect::Sqlite => "sqlite:",
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql:",
        };
        let url_ok =
            url.starts_with(expected) || (d == Dialect::Mysql && url.starts_with("mariadb:"));
        if !url_ok {
            return Err(ConnectError::Config {
                system: name,
                message: format!(
                    "the URL in {} does not start with {expected} (the system's kind is {})",
                    system.url_env,
                    system.kind.as_str()
                ),
            });
        }
        let url = url.replacen("mariadb:", "mysql:", 1);
        let hash_key = match &system.hash_key_env {
            Some(var) => {
                let v = std::env::var(var).map_err(|_| ConnectError::MissingUrl {
                    system: name.clone(),
                    var: var.clone(),
                })?;
                let key = hex_or_bytes(&v);
                if key.len() < 32 {
                    return Err(ConnectError::Config {
                        system: name,
                        message: format!(
                            "the hash key in {var} is shorter than 32 bytes; use e.g. `openssl rand -hex 32`"
                        ),
                    });
                }
                Some(key)
            }
            None => None,
        };
        // Statements carry the batch's subject keys as literals: sqlx must
        // not log them (personal data never reaches the logs).
        let opts = <sqlx::any::AnyConnectOptions as std::str::FromStr>::from_str(&url)
            .map_err(|e| db_err(&name, "parse the connection URL", e))?
            .disable_statement_logging();
        let pool = AnyPoolOptions::new()
            .max_connections(system.max_connections)
            .acquire_timeout(Duration::from_secs(15))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    let set = match d {
                        Dialect::Sqlite => "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON",
                        Dialect::Postgres => {
                            "SET statement_timeout = '300s'; SET lock_timeout = '30s'"
                        }
                        Dialect::Mysql => "SET SESSION innodb_lock_wait_timeout = 30",
                    };
                    sqlx::raw_sql(AssertSqlSafe(set))
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(|e| db_err(&name, "connect", e))?;
        let mut c = pool
            .acquire()
            .await
            .map_err(|e| db_err(&name, "connect", e))?;
        let schema = schema::read(&mut c, d, |_, _| {})
            .await
            .map_err(|e| db_err(&name, "read the schema", e))?;
        let returning = match d {
            Dialect::Mysql => {
                let v: String = sqlx::query_scalar("SELECT VERSION()")
                    .fetch_one(&mut *c)
                    .await
                    .map_err(|e| db_err(&name, "read the server version", e))?;
                v.contains("MariaDB")
            }
            _ => true,
        };
        drop(c);
        let mut s = Self::with_schema(system, d, pool, schema, hash_key)?;
        s.returning = returning;
        Ok(s)
    }

    fn with_schema(
        system: &System,
        d: Dialect,
        pool: AnyPool,
        schema: Schema,
        hash_key: Option<Vec<u8>>,
    ) -> Result<Self, ConnectError> {
        let name = system.name.to_string();
        // The same planning as `lethe datamap plan`: the data map's links
        // plus the live schema's foreign keys between mapped tables.
        let system =
            &crate::planner::resolve(system, &schema).map_err(|source| ConnectError::Plan {
                system: name.clone(),
                source: Box::new(source),
            })?;
        let plan = plan_for(system, Some(&schema)).map_err(|source| ConnectError::Plan {
            system: name.clone(),
            source: Box::new(source),
        })?;
        let by_name: BTreeMap<&Ident, &Table> =
            system.tables.iter().map(|t| (&t.name, t)).collect();
        let mut paths = BTreeMap::new();
        let mut int_owner = BTreeMap::new();
        for t in &system.tables {
            let path = Path::of(t, &by_name).ok_or_else(|| ConnectError::Config {
                system: name.clone(),
                message: format!("table {} has no path to the subject id", t.name),
            })?;
            let is_int = path.owner_path.is_none()
                && schema
                    .table(path.root().as_str())
                    .and_then(|st| st.column(path.owner.as_str()))
                    .map(|c| schema::is_integer(&c.data_type))
                    .unwrap_or(false);
            int_owner.insert(t.name.clone(), is_int);
            paths.insert(t.name.clone(), path);
        }
        let mut referenced = BTreeMap::new();
        for t in &system.tables {
            let Ownership::Referenced(r) = &t.ownership else {
                continue;
            };
            let mut refs: Vec<Referrer> =
                vec![(r.table.clone(), r.columns.clone(), r.references.clone())];
            for (tname, st) in &schema.tables {
                for fk in st.fks.iter().filter(|fk| fk.parent == t.name.as_str()) {
                    let parsed = (
                        Ident::parse(tname),
                        fk.columns
                            .iter()
                            .map(|c| Ident::parse(c))
                            .collect::<Result<Vec<_>, _>>(),
                        fk.parent_columns
                            .iter()
                            .map(|c| Ident::parse(c))
                            .collect::<Result<Vec<_>, _>>(),
                    );
                    let (Ok(rt), Ok(rc), Ok(pc)) = parsed else {
                        return Err(ConnectError::Config {
                            system: name.clone(),
                            message: format!(
                                "a foreign key references {} from a table or column whose name Lethe cannot quote; rows of {} cannot be checked for other references",
                                t.name, t.name
                            ),
                        });
                    };
                    let e = (rt, rc, pc);
                    if !refs.contains(&e) {
                        refs.push(e);
                    }
                }
            }
            referenced.insert(t.name.clone(), refs);
        }
        let mut stub_refs = BTreeMap::new();
        for t in &system.tables {
            let Action::Keep {
                stub_for: Some(of), ..
            } = &t.action
            else {
                continue;
            };
            let refs: Vec<Referrer> = schema
                .table(of.as_str())
                .map(|st| {
                    st.fks
                        .iter()
                        .filter(|fk| fk.parent == t.name.as_str())
                        .filter_map(|fk| {
                            let cols: Result<Vec<Ident>, _> =
                                fk.columns.iter().map(|c| Ident::parse(c)).collect();
                            let pcols: Result<Vec<Ident>, _> =
                                fk.parent_columns.iter().map(|c| Ident::parse(c)).collect();
                            Some((of.clone(), cols.ok()?, pcols.ok()?))
                        })
                        .collect()
                })
                .unwrap_or_default();
            if refs.is_empty() {
                return Err(ConnectError::Config {
                    system: name.clone(),
                    message: format!(
                        "table {} is a stub for {of}, but {of} has no foreign key to {}: a stub keeps only the rows the kept rows reference, so it needs that key (or keep {} with a legal basis of its own)",
                        t.name, t.name, t.name
                    ),
                });
            }
            stub_refs.insert(t.name.clone(), refs);
        }
        Ok(Self {
            name,
            d,
            pool,
            plan,
            paths,
            referenced,
            stub_refs,
            refresh: system.refresh.clone(),
            int_owner,
            hash_key,
            batch_size: system.batch_size as usize,
            phone_query: system.phone_query.clone(),
            identities: system.identities.clone(),
            accounts_by_phone: system.accounts_by_phone.clone(),
            accounts_by_id_number: system.accounts_by_id_number.clone(),
            schema,
            returning: true,
            record_ready: tokio::sync::OnceCell::new(),
            live: std::sync::Mutex::new(None),
        })
    }

    /// Creates Lethe's record tables in the platform's database if they are
    /// missing (`lethe_erasures`, `lethe_retention`). Erasure and purge
    /// call it; a read-only check never does.
    pub async fn install(&self) -> Result<(), ConnectError> {
        self.record_ready
            .get_or_try_init(|| async {
                let mut c = self
                    .pool
                    .acquire()
                    .await
                    .map_err(|e| db_err(&self.name, "connect", e))?;
                create_record(&mut c, self.d, &self.name).await
            })
            .await
            .map(|_| ())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dialect(&self) -> Dialect {
        self.d
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The live schema read at connection.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Up to `per_column` non-null values of each column (for the check's
    /// personal-data detection). `progress(done, total)` is called per column.
    pub async fn sample(
        &self,
        columns: &[(String, String)],
        per_column: u32,
        progress: impl FnMut(usize, usize),
    ) -> Result<BTreeMap<(String, String), Vec<String>>, ConnectError> {
        Ok(self.sample_all(columns, per_column, progress).await?.0)
    }

    /// Like [`Self::sample`], also returning the columns that could not be
    /// read (table, column, type, why), for the check to name.
    pub async fn sample_all(
        &self,
        columns: &[(String, String)],
        per_column: u32,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Samples, ConnectError> {
        let mut out = BTreeMap::new();
        let mut unreadable = vec![];
        for (i, (t, c)) in columns.iter().enumerate() {
            let (Ok(ti), Ok(ci)) = (Ident::parse(t), Ident::parse(c)) else {
                continue; // names Lethe cannot quote safely are not sampled
            };
            // Read as text by the database: no column type can stop the
            // check. A column it still cannot read is a warning, not an end.
            let data_type = self
                .schema
                .table(t)
                .and_then(|st| st.column(c))
                .map(|c| c.data_type.clone())
                .unwrap_or_default();
            let q = format!(
                "SELECT {} FROM {t} WHERE {c} IS NOT NULL LIMIT {}",
                schema::as_text(self.d, &ci.q(self.d), &data_type),
                per_column.min(100),
                c = ci.q(self.d),
                t = ti.q(self.d)
            );
            match sqlx::query(AssertSqlSafe(q)).fetch_all(&self.pool).await {
                Ok(rows) => {
                    out.insert(
                        (t.clone(), c.clone()),
                        rows.iter().filter_map(first_text).collect(),
                    );
                }
                Err(e) => {
                    let e = db_err(&self.name, "sample a column", e);
                    unreadable.push((t.clone(), c.clone(), data_type, e.to_string()));
                }
            }
            progress(i + 1, columns.len());
        }
        Ok((out, unreadable))
    }

    /// Subjects per set-based statement.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The connection pool (for the demo platform's own endpoints).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The subject as bound for a table: integers for integer owner
    /// columns (`None` when the id is not a number: no rows can match).
    fn key_for(&self, table: &Ident, s: &SubjectId) -> Option<Val> {
        let form = self
            .paths
            .get(table)
            .map(|p| p.owner_form)
            .unwrap_or_default();
        let id = form.apply(s.expose());
        if self.int_owner.get(table).copied().unwrap_or(false) {
            id.parse::<i64>().ok().map(Val::I)
        } else {
            Some(Val::S(id.to_owned()))
        }
    }

    async fn rule_rows(
        &self,
        q: &str,
        value: &str,
        action: &'static str,
    ) -> Result<Vec<AnyRow>, ConnectError> {
        let (text, n) = rule_sql(self.d, q);
        let mut query = sqlx::query(AssertSqlSafe(text));
        for _ in 0..n {
            query = query.bind(value.to_owned());
        }
        query
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_err(&self.name, action, e))
    }

    /// The subject's registered phone, for delivering a one-time code.
    pub async fn phone(&self, subject: &SubjectId) -> Result<Option<String>, ConnectError> {
        let Some(q) = &self.phone_query else {
            return Ok(None);
        };
        let rows = self
            .rule_rows(q, subject.expose(), "look up the phone")
            .await?;
        Ok(rows.first().and_then(first_text))
    }

    /// The subject's identifiers (kind, value) for tombstones. Read before
    /// erasure; values never leave this call except as keyed hashes.
    pub async fn identifiers(
        &self,
        subject: &SubjectId,
    ) -> Result<Vec<(String, String)>, ConnectError> {
        let mut out = vec![];
        for (kind, q) in &self.identities {
            let rows = self
                .rule_rows(q, subject.expose(), "read identifiers")
                .await?;
            out.extend(
                rows.iter()
                    .filter_map(first_text)
                    .take(10)
                    .map(|v| (kind.clone(), v)),
            );
        }
        Ok(out)
    }

    /// Live accounts whose real-name identity has this ID number (up to 100).
    pub async fn accounts_with_id_number(
        &self,
        id_number: &str,
    ) -> Result<Vec<String>, ConnectError> {
        let Some(q) = &self.accounts_by_id_number else {
            return Ok(vec![]);
        };
        let rows = self
            .rule_rows(q, id_number, "look up accounts by ID number")
            .await?;
        Ok(rows.iter().filter_map(first_text).take(100).collect())
    }

    /// Live accounts bound to a phone number (up to 100).
    pub async fn accounts_with_phone(&self, phone: &str) -> Result<Vec<String>, ConnectError> {
        let Some(q) = &self.accounts_by_phone else {
            return Ok(vec![]);
        };
        let rows = self
            .rule_rows(q, phone, "look up accounts by phone")
            .await?;
        Ok(rows.iter().filter_map(first_text).take(100).collect())
    }

    /// The subject ids a purge rule selects (its first column, as text), at
    /// most `max`; more is an error that says so.
    pub async fn select_subjects(
        &self,
        query: &str,
        max: usize,
    ) -> Result<Vec<String>, ConnectError> {
        use futures_util::TryStreamExt;
        let mut rows = sqlx::query(AssertSqlSafe(query.to_owned())).fetch(&self.pool);
        let mut out = vec![];
        while let Some(r) = rows
            .try_next()
            .await
            .map_err(|e| db_err(&self.name, "run the purge rule", e))?
        {
            if let Some(v) = first_text(&r) {
                out.push(v);
            }
            if out.len() > max {
                return Err(self.db_problem(
                    "run the purge rule",
                    format!(
                        "the rule selects more than {max} accounts: narrow it and purge in steps"
                    ),
                ));
            }
        }
        Ok(out)
    }

    /// The platform's schema as the database reports it now, read afresh
    /// at most once per `max_age` (the drift check before each erasure
    /// reads it through here: [`crate::check::breaking_drift`]).
    pub async fn live_schema(
        &self,
        max_age: Duration,
    ) -> Result<std::sync::Arc<schema::Schema>, ConnectError> {
        if let Ok(g) = self.live.lock()
            && let Some((at, live)) = g.as_ref()
            && at.elapsed() < max_age
        {
            return Ok(live.clone());
        }
        let mut c = self
            .pool
            .acquire()
            .await
            .map_err(|e| db_err(&self.name, "connect", e))?;
        let live = schema::read(&mut c, self.d, |_, _| {})
            .await
            .map_err(|e| db_err(&self.name, "read the schema", e))?;
        drop(c);
        let live = std::sync::Arc::new(live);
        if let Ok(mut g) = self.live.lock() {
            *g = Some((std::time::Instant::now(), live.clone()));
        }
        Ok(live)
    }

    /// The tables whose owner column holds whole subject ids: directly
    /// owned, not kept (kept rows stay by design), the id as it is. After a
    /// backup restore, a returned subject shows up in at least one of them.
    pub fn subject_tables(&self) -> Vec<String> {
        self.scan_sources().map(|(t, _)| t.to_string()).collect()
    }

    fn scan_sources(&self) -> impl Iterator<Item = (&Ident, &Path)> {
        self.plan
            .steps
            .iter()
            .filter(|s| s.depth == 0 && !matches!(s.action, Action::Keep { .. }))
            .filter_map(|s| self.paths.get(&s.table).map(|p| (&s.table, p)))
            .filter(|(_, p)| {
                p.tables.len() == 1 && p.owner_form == crate::datamap::OwnerForm::Exact
            })
    }

    /// Streams the distinct subject ids of every subject table into `tx`,
    /// in chunks of `chunk` ids (a bounded channel: the reader waits for the
    /// consumer). Returns the number of ids sent. Reads only.
    pub async fn scan_subjects(
        &self,
        chunk: usize,
        tx: tokio::sync::mpsc::Sender<Vec<String>>,
    ) -> Result<u64, ConnectError> {
        use futures_util::TryStreamExt;
        let chunk = chunk.clamp(1, 100_000);
        let mut sent = 0u64;
        for (table, path) in self.scan_sources() {
            let owner = path.owner_expr(self.d, None);
            // Text and integer columns are read as they are (the driver
            // decodes both), so the database can use the column's index for
            // DISTINCT; other types are read as text in the database.
            let ty = self
                .schema
                .table(table.as_str())
                .and_then(|t| t.columns.iter().find(|c| c.name == path.owner.as_str()))
                .map(|c| c.data_type.to_ascii_lowercase())
                .unwrap_or_default();
            let plain = path.owner_path.is_none()
                && ["char", "text", "int", "string"]
                    .iter()
                    .any(|k| ty.contains(k));
            let text = if plain {
                owner.clone()
            } else {
                schema::as_text(self.d, &owner, &ty)
            };
            let sql = format!(
                "SELECT DISTINCT {text} FROM {} WHERE {owner} IS NOT NULL",
                table.q(self.d)
            );
            let mut rows = sqlx::query(AssertSqlSafe(sql)).fetch(&self.pool);
            let mut buf = Vec::with_capacity(chunk);
            while let Some(r) = rows
                .try_next()
                .await
                .map_err(|e| db_err(&self.name, "list subjects", e))?
            {
                if let Some(v) = first_text(&r) {
                    buf.push(v);
                }
                if buf.len() >= chunk {
                    sent += buf.len() as u64;
                    if tx
                        .send(std::mem::replace(&mut buf, Vec::with_capacity(chunk)))
                        .await
                        .is_err()
                    {
                        return Ok(sent);
                    }
                }
            }
            if !buf.is_empty() {
                sent += buf.len() as u64;
                if tx.send(buf).await.is_err() {
                    return Ok(sent);
                }
            }
        }
        Ok(sent)
    }

    /// Whether the subject exists in this system at all (a row in any table
    /// owned directly by the subject).
    pub async fn subject_exists(&self, subject: &SubjectId) -> Result<bool, ConnectError> {
        for step in self.plan.steps.iter().filter(|s| s.depth == 0) {
            let Some(key) = self.key_for(&step.table, subject) else {
                continue;
            };
            let path = &self.paths[&step.table];
            let sql = path.count_by_subject(self.d, &[key], None);
            let rows = bind_all(sqlx::query(AssertSqlSafe(sql.text.clone())), &sql.binds)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| db_err(&self.name, "look up the subject", e))?;
            if rows.iter().any(|r| count(r, 1) > 0) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub async fn blocker(
        &self,
        rule: &BlockerRule,
        subject: &SubjectId,
    ) -> Result<Option<Blocker>, ConnectError> {
        let rows = self
            .rule_rows(&rule.query, subject.expose(), "run a blocker rule")
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(Blocker {
            code: rule.code.to_string(),
            system: self.name.clone(),
            message_zh: rule.message_zh.clone(),
            message_en: rule.message_en.clone(),
            items: rows.iter().filter_map(first_text).take(50).collect(),
        }))
    }

    /// Assets from a SQL rule; columns are read by name.
    pub async fn assets(
        &self,
        rule: &crate::datamap::AssetRule,
        subject: &SubjectId,
    ) -> Result<Vec<lethe_domain::asset::Asset>, ConnectError> {
        let kind =
            lethe_domain::asset::AssetKind::parse(&rule.kind).ok_or_else(|| ConnectError::Db {
                system: self.name.clone(),
                action: "read assets",
                message: format!("unknown asset kind {}", rule.kind),
            })?;
        let rows = self
            .rule_rows(&rule.query, subject.expose(), "run an asset rule")
            .await?;
        let col = |r: &AnyRow, c: &str| -> Option<Val> {
            let i = r
                .columns()
                .iter()
                .position(|x| sqlx::Column::name(x) == c)?;
            read_val(r, i)
        };
        let text = |r: &AnyRow, c: &str| col(r, c).map(|v| v.text());
        let int = |r: &AnyRow, c: &str| match col(r, c) {
            Some(Val::I(i)) => Some(i),
            Some(Val::S(s)) => s.parse().ok(),
            None => None,
        };
        Ok(rows
            .iter()
            .take(200)
            .filter_map(|r| {
                Some(lethe_domain::asset::Asset {
                    id: text(r, "id")?,
                    kind,
                    source: self.name.clone(),
                    label: text(r, "label").unwrap_or_else(|| kind.as_str().to_owned()),
                    amount: int(r, "amount_minor")
                        .and_then(|v| lethe_domain::MinorUnits::new(v).ok()),
                    quantity: int(r, "quantity").and_then(|v| u64::try_from(v).ok()),
                    period_start: text(r, "period_start").and_then(|d| d.get(..10)?.parse().ok()),
                    period_end: text(r, "period_end").and_then(|d| d.get(..10)?.parse().ok()),
                    auto_renew: int(r, "auto_renew").unwrap_or(0) != 0,
                    settlement: None,
                })
            })
            .collect())
    }

    /// The first column of the first row of a consequence query, as text.
    pub async fn value(
        &self,
        query: &str,
        subject: &SubjectId,
    ) -> Result<Option<String>, ConnectError> {
        let rows = self
            .rule_rows(query, subject.expose(), "run a consequence rule")
            .await?;
        Ok(rows.first().and_then(first_text))
    }

    /// Counts, per table, the subject's rows (a dry run of the erasure).
    pub async fn dry_run(
        &self,
        subject: &SubjectId,
    ) -> Result<Vec<(String, String, u64)>, ConnectError> {
        let mut out = vec![];
        for step in &self.plan.steps {
            let rows = match self.key_for(&step.table, subject) {
                Some(k) => {
                    let sql = self.paths[&step.table].count_by_subject(self.d, &[k], None);
                    bind_all(sqlx::query(AssertSqlSafe(sql.text.clone())), &sql.binds)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(|e| db_err(&self.name, "count rows", e))?
                        .iter()
                        .map(|r| count(r, 1))
                        .sum()
                }
                None => 0,
            };
            out.push((step.table.to_string(), step.action.name().to_owned(), rows));
        }
        Ok(out)
    }

    /// The datasets of the subject's export: every mapped table (deleted,
    /// updated or kept) with its columns and the subject's row count.
    pub async fn export_plan(
        &self,
        subject: &SubjectId,
    ) -> Result<Vec<crate::ExportDataset>, ConnectError> {
        let counts = self.dry_run(subject).await?;
        Ok(counts
            .into_iter()
            .map(|(table, _, rows)| crate::ExportDataset {
                columns: self.export_columns(&table),
                name: table,
                rows,
            })
            .collect())
    }

    fn export_columns(&self, table: &str) -> Vec<String> {
        self.schema
            .table(table)
            .map(|t| {
                t.columns
                    .iter()
                    .filter(|c| Ident::parse(&c.name).is_ok())
                    .map(|c| c.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The subject's rows of one mapped table as a stream of JSON objects
    /// (column name to value), read as the consumer pulls them, never held:
    /// the database builds each row's JSON (`row_to_json`, `JSON_OBJECT`,
    /// `json_object`), so every column type comes out, not only those the
    /// driver decodes.
    pub fn export_rows(
        &self,
        subject: &SubjectId,
        table: &str,
    ) -> Result<ExportStream<'_>, ConnectError> {
        use futures_util::StreamExt;
        let d = self.d;
        let Some(step) = self.plan.steps.iter().find(|s| s.table.as_str() == table) else {
            return Err(self.db_problem(
                "export rows",
                format!("table {table} is not in the data map"),
            ));
        };
        let empty = || -> ExportStream<'_> { Box::pin(futures_util::stream::empty()) };
        let Some(key) = self.key_for(&step.table, subject) else {
            return Ok(empty());
        };
        let path = &self.paths[&step.table];
        let obj = match d {
            Dialect::Postgres => "row_to_json(t0)::text".to_owned(),
            Dialect::Mysql | Dialect::Sqlite => {
                let f = if d == Dialect::Mysql {
                    "JSON_OBJECT"
                } else {
                    "json_object"
                };
                let pairs: Vec<String> = self
                    .export_columns(table)
                    .iter()
                    .filter_map(|c| Ident::parse(c).ok())
                    .map(|c| format!("'{}', t0.{}", c.as_str(), c.q(d)))
                    .collect();
                if pairs.is_empty() {
                    return Ok(empty());
                }
                format!("{f}({})", pairs.join(", "))
            }
        };
        let mut sql = Sql::new(d);
        let pred = path.pred(&mut sql, &[key]);
        sql.text = format!("SELECT {obj} FROM {} WHERE {pred}", path.from_clause(d, 0));
        let mut q = sqlx::query(AssertSqlSafe(sql.text));
        for b in sql.binds {
            q = match b {
                Val::I(i) => q.bind(i),
                Val::S(s) => q.bind(s),
            };
        }
        let (system, table) = (self.name.clone(), table.to_owned());
        let mut n = 0u64;
        Ok(Box::pin(q.fetch(&self.pool).map(move |r| {
            n += 1;
            let r = r.map_err(|e| db_err(&system, "export rows", e))?;
            // The archive parses the object as it writes it; here only
            // what is plainly not one is refused.
            match first_text(&r) {
                Some(t) if t.trim_start().starts_with('{') => Ok(RowJson(t)),
                _ => Err(ConnectError::Db {
                    system: system.clone(),
                    action: "export rows",
                    message: format!("row {n} of table {table} did not come out as a JSON object"),
                }),
            }
        })))
    }

    /// The subject's rows, per mapped table, at most `limit` rows per table,
    /// in memory (for checks and tests; the export itself streams with
    /// [`Self::export_rows`]).
    pub async fn export(
        &self,
        subject: &SubjectId,
        limit: u32,
    ) -> Result<Vec<(String, Vec<serde_json::Value>)>, ConnectError> {
        let mut out = vec![];
        for step in &self.plan.steps {
            use futures_util::{StreamExt, TryStreamExt};
            let rows: Vec<RowJson> = self
                .export_rows(subject, step.table.as_str())?
                .take(limit as usize)
                .try_collect()
                .await?;
            let mut values = Vec::with_capacity(rows.len());
            for (n, r) in rows.iter().enumerate() {
                let m = r.to_object().ok_or_else(|| ConnectError::Db {
                    system: self.name.clone(),
                    action: "export rows",
                    message: format!(
                        "row {} of table {} did not come out as a JSON object",
                        n + 1,
                        step.table
                    ),
                })?;
                values.push(serde_json::Value::Object(m));
            }
            out.push((step.table.to_string(), values));
        }
        Ok(out)
    }

    /// Erases one subject (a batch of one).
    pub async fn erase(
        &self,
        case_id: &str,
        subject: &SubjectId,
        now: Timestamp,
    ) -> Result<SystemOutcome, ConnectError> {
        let item = BatchItem {
            case_id: case_id.to_owned(),
            subject: subject.clone(),
        };
        let mut out = self.erase_batch(std::slice::from_ref(&item), now).await?;
        out.pop()
            .map(|(_, o)| o)
            .ok_or_else(|| self.no_outcome("erase"))
    }

    fn no_outcome(&self, action: &'static str) -> ConnectError {
        self.db_problem(action, "no outcome for the case".into())
    }

    fn db_problem(&self, action: &'static str, message: String) -> ConnectError {
        ConnectError::Db {
            system: self.name.clone(),
            action,
            message,
        }
    }

    /// Erases a batch of subjects, children first, set-based, in one
    /// transaction per chunk of `batch_size` that also records the per-case
    /// counts. Cases already recorded are replayed from the record,
    /// untouched. One outcome per item, in order.
    pub async fn erase_batch(
        &self,
        items: &[BatchItem],
        now: Timestamp,
    ) -> Result<Vec<(String, SystemOutcome)>, ConnectError> {
        Ok(self
            .erase_inner(items, now, false)
            .await?
            .into_iter()
            .map(|e| (e.case_id, e.outcome))
            .collect())
    }

    /// Erases a batch and verifies it, with the verification scopes kept
    /// in memory (the record has them too, for a later re-verification).
    pub async fn erase_verify_batch(
        &self,
        items: &[BatchItem],
        now: Timestamp,
    ) -> Result<Vec<(String, SystemOutcome)>, ConnectError> {
        let done = self.erase_inner(items, now, true).await?;
        // Cases replayed from the record are verified again now.
        let replayed: Vec<Erased> = done
            .iter()
            .filter(|e| e.outcome.replayed)
            .cloned()
            .collect();
        if !replayed.is_empty() {
            let mut conn = self
                .pool
                .acquire()
                .await
                .map_err(|e| db_err(&self.name, "connect", e))?;
            self.verify_in(&mut conn, &replayed).await?;
        }
        Ok(verified(done))
    }

    async fn erase_inner(
        &self,
        items: &[BatchItem],
        now: Timestamp,
        verify: bool,
    ) -> Result<Vec<Erased>, ConnectError> {
        let n = &self.name;
        self.install().await?;
        let mut results: BTreeMap<String, Erased> = BTreeMap::new();
        for chunk in items.chunks(self.batch_size.max(1)) {
            let mut tx = match self.d {
                Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
                _ => self.pool.begin().await,
            }
            .map_err(|e| db_err(n, "begin", e))?;
            let ids: Vec<Val> = chunk.iter().map(|i| Val::S(i.case_id.clone())).collect();
            let recorded = self.read_record(&mut tx, &ids).await?;
            let todo: Vec<&BatchItem> = chunk
                .iter()
                .filter(|i| !recorded.contains_key(&i.case_id))
                .collect();
            for it in chunk {
                if let Some((outcome, scopes)) = recorded.get(&it.case_id) {
                    results.insert(
                        it.case_id.clone(),
                        Erased {
                            case_id: it.case_id.clone(),
                            subject: it.subject.clone(),
                            outcome: outcome.clone(),
                            scopes: scopes.clone(),
                        },
                    );
                }
            }
            if todo.is_empty() {
                tx.rollback().await.map_err(|e| db_err(n, "rollback", e))?;
                continue;
            }
            // Per case: per table, (rows, scope).
            let mut per_case: BTreeMap<String, Vec<(u64, Scope)>> = BTreeMap::new();
            let mut captured = std::collections::HashMap::new();
            // Rows the subject's rows reference are found through those rows,
            // which are erased first: capture their keys before anything goes.
            for step in &self.plan.steps {
                if self.referenced.contains_key(&step.table) {
                    self.capture_parent_keys(&mut tx, step, &todo, &mut captured)
                        .await?;
                }
            }
            for step in &self.plan.steps {
                let (counts, scopes) = self
                    .erase_table(&mut tx, step, &todo, &mut captured)
                    .await?;
                for it in &todo {
                    let k = self.key_for(&step.table, &it.subject);
                    let rows = k.as_ref().and_then(|k| counts.get(k)).copied().unwrap_or(0);
                    let scope = k
                        .as_ref()
                        .and_then(|k| scopes.get(k))
                        .cloned()
                        .unwrap_or_default();
                    per_case
                        .entry(it.case_id.clone())
                        .or_default()
                        .push((rows, scope));
                }
            }
            let mut done = vec![];
            for it in &todo {
                let rows = per_case.remove(&it.case_id).unwrap_or_default();
                let mut tables = vec![];
                let mut scopes = BTreeMap::new();
                for (step, (n_rows, scope)) in self.plan.steps.iter().zip(rows) {
                    // A kept table names its legal basis even with no rows;
                    // the retention (and its purge) needs rows.
                    let (legal_basis, retain_until) = match &step.action {
                        Action::Keep {
                            legal_basis,
                            retention_days,
                            ..
                        } => (
                            Some(legal_basis.clone()),
                            (n_rows > 0)
                                .then(|| {
                                    now.checked_add(jiff::SignedDuration::from_hours(
                                        24 * i64::from(*retention_days),
                                    ))
                                    .ok()
                                })
                                .flatten(),
                        ),
                        // Referenced rows still referenced by the subject's
                        // own kept rows stay as long as those: recorded for
                        // the purge, with their retention.
                        _ => match self.kept_through(step) {
                            Some((_, basis, days)) if scope.shared.unwrap_or(0) > 0 => (
                                Some(basis.to_owned()),
                                now.checked_add(jiff::SignedDuration::from_hours(
                                    24 * i64::from(days),
                                ))
                                .ok(),
                            ),
                            _ => (None, None),
                        },
                    };
                    tables.push(self.table_outcome(
                        step,
                        n_rows,
                        legal_basis,
                        retain_until,
                        &scope,
                    ));
                    if !scope.parents.is_empty()
                        || !scope.hashes.is_empty()
                        || scope.shared.is_some()
                    {
                        scopes.insert(step.table.to_string(), scope);
                    }
                }
                done.push(Erased {
                    case_id: it.case_id.clone(),
                    subject: it.subject.clone(),
                    outcome: SystemOutcome {
                        system: n.clone(),
                        tables,
                        replayed: false,
                    },
                    scopes,
                });
            }
            if verify {
                // Verified before commit: a failure rolls the whole batch
                // back and the job retries; nothing is left half-done.
                self.verify_in(&mut tx, &done).await?;
            }
            self.write_record(&mut tx, &done, now).await?;
            // Materialised views drop their copies of what was erased, in
            // the same transaction: a failed refresh rolls the batch back
            // and the job retries it, refresh included.
            for mv in &self.refresh {
                let sql = Sql {
                    d: self.d,
                    text: format!("REFRESH MATERIALIZED VIEW {}", mv.q(self.d)),
                    binds: vec![],
                };
                run_exec(&mut *tx, &sql, n, "refresh a materialised view").await?;
            }
            tx.commit().await.map_err(|e| db_err(n, "commit", e))?;
            for e in done {
                results.insert(e.case_id.clone(), e);
            }
        }
        Ok(items
            .iter()
            .filter_map(|i| results.get(&i.case_id).cloned())
            .collect())
    }

    /// For a referenced table whose referencing table is kept: that table,
    /// its legal basis and retention.
    fn kept_through(&self, step: &crate::planner::PlannedTable) -> Option<(&Ident, &str, u32)> {
        let (rt, _, _) = self.referenced.get(&step.table)?.first()?;
        let via = self.plan.steps.iter().find(|s| &s.table == rt)?;
        match &via.action {
            Action::Keep {
                legal_basis,
                retention_days,
                ..
            } => Some((rt, legal_basis.as_str(), *retention_days)),
            _ => None,
        }
    }

    /// For a stub table: the condition (on `t0`) of a row no kept row
    /// references.
    fn stub_guard(&self, step: &crate::planner::PlannedTable) -> Option<String> {
        let refs = self.stub_refs.get(&step.table)?;
        Some(not_referenced(self.d, refs, "t0", "s"))
    }

    /// The parent key tuples of a table's subjects (hop 1 of its path),
    /// with the subject key of each; asked once per batch and question
    /// (sibling tables under one parent, and referenced tables captured
    /// before their referencing rows are erased).
    async fn capture_parent_keys(
        &self,
        tx: &mut sqlx::AnyConnection,
        step: &crate::planner::PlannedTable,
        todo: &[&BatchItem],
        captured: &mut std::collections::HashMap<String, Vec<(Val, Vec<Val>)>>,
    ) -> Result<Vec<(Val, Vec<Val>)>, ConnectError> {
        let path = &self.paths[&step.table];
        let keys: Vec<Val> = todo
            .iter()
            .filter_map(|it| self.key_for(&step.table, &it.subject))
            .collect::<BTreeSet<Val>>()
            .into_iter()
            .collect();
        let Some(sql) = (!keys.is_empty())
            .then(|| path.parent_keys(self.d, &keys))
            .flatten()
        else {
            return Ok(vec![]);
        };
        let key = format!("{}|{:?}", sql.text, sql.binds);
        if let Some(p) = captured.get(&key) {
            return Ok(p.clone());
        }
        let mut pairs = vec![];
        for r in run_rows(&mut *tx, &sql, &self.name, "capture the parent keys").await? {
            let Some(k) = read_val(&r, 0).and_then(|v| normalise(&v, &keys)) else {
                continue;
            };
            let tuple: Vec<Val> = (1..r.len()).filter_map(|i| read_val(&r, i)).collect();
            // A NULL reference (a customer without an address) is no row.
            if tuple.len() + 1 == r.len() {
                pairs.push((k, tuple));
            }
        }
        captured.insert(key, pairs.clone());
        Ok(pairs)
    }

    /// Applies one table's action to the batch; returns the rows per
    /// subject key and the verification scope per subject key.
    async fn erase_table(
        &self,
        tx: &mut sqlx::AnyConnection,
        step: &crate::planner::PlannedTable,
        todo: &[&BatchItem],
        captured: &mut std::collections::HashMap<String, Vec<(Val, Vec<Val>)>>,
    ) -> Result<(BTreeMap<Val, u64>, BTreeMap<Val, Scope>), ConnectError> {
        let n = &self.name;
        let d = self.d;
        let path = &self.paths[&step.table];
        let keys: Vec<Val> = todo
            .iter()
            .filter_map(|it| self.key_for(&step.table, &it.subject))
            .collect::<BTreeSet<Val>>()
            .into_iter()
            .collect();
        let mut counts: BTreeMap<Val, u64> = BTreeMap::new();
        let mut scopes: BTreeMap<Val, Scope> = BTreeMap::new();
        if keys.is_empty() {
            return Ok((counts, scopes));
        }
        // The parent keys tying a child table's rows to each subject: the
        // delete uses them, and so does verification once parents are gone.
        let mut owner_of: std::collections::HashMap<Vec<String>, Val> = Default::default();
        let mut tuples: Vec<Vec<Val>> = vec![];
        let referenced = self.referenced.get(&step.table);
        for (k, tuple) in self
            .capture_parent_keys(&mut *tx, step, todo, captured)
            .await?
        {
            // A referenced table's scope is what was deleted (shared rows
            // stay by design); it is filled below.
            if referenced.is_none() {
                let sc = scopes.entry(k.clone()).or_default();
                if sc.parents.len() < MAX_SCOPE {
                    sc.parents.push(tuple.clone());
                }
            }
            owner_of.insert(tuple.iter().map(Val::text).collect(), k);
            tuples.push(tuple);
        }
        let tally = |counts: &mut BTreeMap<Val, u64>, rows: &[AnyRow], by_tuple: bool| {
            for r in rows {
                let k = if by_tuple {
                    let t: Vec<String> = (0..r.len())
                        .filter_map(|i| read_val(r, i))
                        .map(|v| v.text())
                        .collect();
                    owner_of.get(&t).cloned()
                } else {
                    read_val(r, 0).and_then(|v| normalise(&v, &keys))
                };
                if let Some(k) = k {
                    *counts.entry(k).or_default() += 1;
                }
            }
        };
        match &step.action {
            Action::Delete if let Some(refs) = referenced => {
                // Only rows nothing else references any more: after the
                // subject's referencing rows went, any row of any table
                // still pointing at one (another account, a store, staff)
                // keeps it.
                let cols: Vec<String> = path.links[0].columns.iter().map(|c| c.q(d)).collect();
                let lhs = |alias: &str| {
                    let c: Vec<String> = cols.iter().map(|c| format!("{alias}.{c}")).collect();
                    if c.len() == 1 {
                        c[0].clone()
                    } else {
                        format!("({})", c.join(", "))
                    }
                };
                let t = step.table.q(d);
                let mut distinct: Vec<Vec<Val>> = tuples.clone();
                distinct.sort();
                distinct.dedup();
                let mut deleted: Vec<Vec<Val>> = vec![];
                for chunk in distinct.chunks(1000) {
                    let mut sql = Sql::new(d);
                    let list = tuple_list(&mut sql, chunk);
                    let cond = format!(
                        "{} IN ({list}) AND {}",
                        lhs("x"),
                        not_referenced(d, refs, "x", "r")
                    );
                    let mut sel = sql.clone();
                    let xcols: Vec<String> = cols.iter().map(|c| format!("x.{c}")).collect();
                    sel.text = format!("SELECT {} FROM {t} x WHERE {cond}", xcols.join(", "));
                    let rows = run_rows(&mut *tx, &sel, n, "find unshared referenced rows").await?;
                    let free: Vec<Vec<Val>> = rows
                        .iter()
                        .map(|r| (0..r.len()).filter_map(|i| read_val(r, i)).collect())
                        .collect();
                    if free.is_empty() {
                        continue;
                    }
                    let mut del = Sql::new(d);
                    let list = tuple_list(&mut del, &free);
                    let bare = if cols.len() == 1 {
                        cols[0].clone()
                    } else {
                        format!("({})", cols.join(", "))
                    };
                    del.text = format!("DELETE FROM {t} WHERE {bare} IN ({list})");
                    let done = run_exec(&mut *tx, &del, n, "erase referenced rows").await?;
                    if done != free.len() as u64 {
                        return Err(self.db_problem(
                            "erase rows",
                            format!(
                                "{} changed during erasure ({} found, {done} deleted); rolled back, will retry",
                                step.table,
                                free.len()
                            ),
                        ));
                    }
                    deleted.extend(free);
                }
                let gone: std::collections::HashSet<Vec<String>> = deleted
                    .iter()
                    .map(|tp| tp.iter().map(Val::text).collect())
                    .collect();
                // Per subject: deleted rows, and the shared ones kept.
                let mut seen: std::collections::HashSet<(Val, Vec<String>)> = Default::default();
                for tp in &tuples {
                    let key: Vec<String> = tp.iter().map(Val::text).collect();
                    let Some(k) = owner_of.get(&key).cloned() else {
                        continue;
                    };
                    if !seen.insert((k.clone(), key.clone())) {
                        continue;
                    }
                    if gone.contains(&key) {
                        *counts.entry(k.clone()).or_default() += 1;
                        let sc = scopes.entry(k).or_default();
                        if sc.parents.len() < MAX_SCOPE {
                            sc.parents.push(tp.clone());
                        }
                    } else {
                        *scopes.entry(k).or_default().shared.get_or_insert(0) += 1;
                    }
                }
            }
            Action::Delete if path.depth() == 0 => {
                let mut sql = Sql::new(d);
                let list = sql.list(&keys);
                let (t, o) = (step.table.q(d), path.owner_expr(d, None));
                if self.returning {
                    sql.text = format!("DELETE FROM {t} WHERE {o} IN {list} RETURNING {o}");
                    let rows = run_rows(&mut *tx, &sql, n, "erase rows").await?;
                    tally(&mut counts, &rows, false);
                } else {
                    let c = path.count_by_subject(d, &keys, None);
                    for r in run_rows(&mut *tx, &c, n, "count rows").await? {
                        if let Some(k) = read_val(&r, 0).and_then(|v| normalise(&v, &keys)) {
                            *counts.entry(k).or_default() += count(&r, 1);
                        }
                    }
                    sql.text = format!("DELETE FROM {t} WHERE {o} IN {list}");
                    let done = run_exec(&mut *tx, &sql, n, "erase rows").await?;
                    self.same_count(&step.table, counts.values().sum(), done)?;
                }
            }
            Action::Delete if d == Dialect::Postgres => {
                // A join with the parent chain, as a hand-written statement
                // would do, returning the subject of each row deleted.
                let mut sql = path.write(d, None, vec![], &keys, None);
                sql.text
                    .push_str(&format!(" RETURNING {}", path.owner_col(d)));
                let rows = run_rows(&mut *tx, &sql, n, "erase rows").await?;
                tally(&mut counts, &rows, false);
            }
            Action::Delete if d == Dialect::Sqlite => {
                // `(cols) IN (SELECT parent keys ...)`, returning the keys:
                // each maps back to its subject through the captured tuples.
                let cols: Vec<String> = path.links[0].columns.iter().map(|c| c.q(d)).collect();
                let mut sql = path.write(d, None, vec![], &keys, None);
                sql.text
                    .push_str(&format!(" RETURNING {}", cols.join(", ")));
                let rows = run_rows(&mut *tx, &sql, n, "erase rows").await?;
                tally(&mut counts, &rows, true);
            }
            Action::Delete => {
                // MySQL/MariaDB: by the captured parent keys, one indexed
                // lookup per key (a single-table DELETE with a subquery is
                // not planned as a join there).
                let link = &path.links[0];
                let cols: Vec<String> = link.columns.iter().map(|c| c.q(d)).collect();
                let lhs = if cols.len() == 1 {
                    cols[0].clone()
                } else {
                    format!("({})", cols.join(", "))
                };
                let t = step.table.q(d);
                for chunk in tuples.chunks(1000) {
                    let mut sql = Sql::new(d);
                    let list = tuple_list(&mut sql, chunk);
                    let cond = format!("{lhs} IN ({list})");
                    if self.returning {
                        sql.text =
                            format!("DELETE FROM {t} WHERE {cond} RETURNING {}", cols.join(", "));
                        let rows = run_rows(&mut *tx, &sql, n, "erase rows").await?;
                        tally(&mut counts, &rows, true);
                    } else {
                        let mut c = sql.clone();
                        c.text = format!("SELECT {} FROM {t} WHERE {cond}", cols.join(", "));
                        let rows = run_rows(&mut *tx, &c, n, "count rows").await?;
                        let before: u64 = counts.values().sum();
                        tally(&mut counts, &rows, true);
                        sql.text = format!("DELETE FROM {t} WHERE {cond}");
                        let done = run_exec(&mut *tx, &sql, n, "erase rows").await?;
                        self.same_count(&step.table, counts.values().sum::<u64>() - before, done)?;
                    }
                }
            }
            Action::Redact { with_hash } => {
                // Counted, then the id inside the JSON is replaced, row by
                // subject (the hash differs per subject).
                let c = path.count_by_subject(d, &keys, None);
                for r in run_rows(&mut *tx, &c, n, "count rows").await? {
                    if let Some(k) = read_val(&r, 0).and_then(|v| normalise(&v, &keys)) {
                        *counts.entry(k).or_default() += count(&r, 1);
                    }
                }
                let Some(jp) = &path.owner_path else {
                    return Err(
                        self.db_problem("redact", format!("{} has no owner_path", step.table))
                    );
                };
                let data_type = self
                    .schema
                    .table(path.tables[0].as_str())
                    .and_then(|st| st.column(path.owner.as_str()))
                    .map(|c| c.data_type.clone())
                    .unwrap_or_default();
                // The column is referred to unqualified in SET's value on
                // every dialect (single-table updates: the path's root).
                let col_ref = if d == Dialect::Mysql {
                    format!("t0.{}", path.owner.q(d))
                } else {
                    path.owner.q(d)
                };
                let present: Vec<Val> = counts.keys().cloned().collect();
                if *with_hash {
                    let Some(key) = &self.hash_key else {
                        return Err(ConnectError::Config {
                            system: n.clone(),
                            message: "redact_with = \"hash\" needs hash_key_env".into(),
                        });
                    };
                    for k in present {
                        let h = keyed_hash(key, &k.text());
                        let set = format!(
                            "{} = {}",
                            path.owner.q(d),
                            json_set(d, &col_ref, jp, Some(&d.ph(1)), &data_type)
                        );
                        let sql = path.write(d, Some(&set), vec![Val::S(h)], &[k], None);
                        run_exec(&mut *tx, &sql, n, "redact ids in JSON").await?;
                    }
                } else if !present.is_empty() {
                    let set = format!(
                        "{} = {}",
                        path.owner.q(d),
                        json_set(d, &col_ref, jp, None, &data_type)
                    );
                    let sql = path.write(d, Some(&set), vec![], &present, None);
                    run_exec(&mut *tx, &sql, n, "redact ids in JSON").await?;
                }
            }
            Action::Update { .. } | Action::Keep { .. } => {
                // A stub keeps only what the kept rows reference: the rest
                // of the subject's rows go now.
                if let Some(guard) = self.stub_guard(step) {
                    let mut gone: BTreeMap<Val, u64> = BTreeMap::new();
                    let c = path.count_by_subject(d, &keys, Some(&guard));
                    for r in run_rows(&mut *tx, &c, n, "count unreferenced stub rows").await? {
                        if let Some(k) = read_val(&r, 0).and_then(|v| normalise(&v, &keys)) {
                            *gone.entry(k).or_default() += count(&r, 1);
                        }
                    }
                    if gone.values().sum::<u64>() > 0 {
                        let sql = path.write(d, None, vec![], &keys, Some((&guard, vec![])));
                        let done =
                            run_exec(&mut *tx, &sql, n, "erase unreferenced stub rows").await?;
                        self.same_count(&step.table, gone.values().sum(), done)?;
                    }
                    for (k, g) in gone {
                        scopes.entry(k).or_default().stub_deleted = Some(g);
                    }
                }
                let c = path.count_by_subject(d, &keys, None);
                for r in run_rows(&mut *tx, &c, n, "count rows").await? {
                    if let Some(k) = read_val(&r, 0).and_then(|v| normalise(&v, &keys)) {
                        *counts.entry(k).or_default() += count(&r, 1);
                    }
                }
                let (set_null, hash) = step.action.pseudonymised();
                if counts.values().sum::<u64>() > 0 {
                    // Hashes first: nulling may clear the very column that
                    // ties the rows to the subject.
                    for col in hash {
                        let written = self.hash_column(&mut *tx, path, col, &keys).await?;
                        for (k, hs) in written {
                            scopes
                                .entry(k)
                                .or_default()
                                .hashes
                                .insert(col.to_string(), hs);
                        }
                    }
                    if !set_null.is_empty() {
                        let set: Vec<String> = set_null
                            .iter()
                            .map(|c| format!("{} = NULL", c.q(d)))
                            .collect();
                        let sql = path.write(d, Some(&set.join(", ")), vec![], &keys, None);
                        run_exec(&mut *tx, &sql, n, "nullify columns").await?;
                    }
                }
            }
        }
        Ok((counts, scopes))
    }

    fn same_count(&self, table: &Ident, counted: u64, done: u64) -> Result<(), ConnectError> {
        if counted == done {
            return Ok(());
        }
        // A concurrent write changed the rows between the count and the
        // delete: the transaction rolls back and the job retries.
        Err(ConnectError::Db {
            system: self.name.clone(),
            action: "erase rows",
            message: format!(
                "{table} changed during erasure ({counted} counted, {done} deleted); rolled back, will retry"
            ),
        })
    }

    /// Replaces a column's values by their keyed hash for the subjects'
    /// rows; returns the hashes written per subject.
    async fn hash_column(
        &self,
        tx: &mut sqlx::AnyConnection,
        path: &Path,
        col: &Ident,
        keys: &[Val],
    ) -> Result<BTreeMap<Val, Vec<String>>, ConnectError> {
        let n = &self.name;
        let Some(key) = &self.hash_key else {
            return Err(ConnectError::Config {
                system: n.clone(),
                message: "hash columns need hash_key_env".into(),
            });
        };
        let d = self.d;
        // Read and compared as text by the database (char(n), citext and
        // domains are not types the driver decodes).
        let data_type = self
            .schema
            .table(path.tables[0].as_str())
            .and_then(|st| st.column(col.as_str()))
            .map(|c| c.data_type.clone())
            .unwrap_or_default();
        let as_text = schema::as_text(d, &format!("t0.{}", col.q(d)), &data_type);
        let mut sql = Sql::new(d);
        let pred = path.pred(&mut sql, keys);
        sql.text = format!(
            "SELECT DISTINCT {}, {as_text} FROM {} WHERE {pred} AND t0.{c} IS NOT NULL",
            path.owner_col(d),
            path.from_clause(d, 0),
            c = col.q(d)
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql.text.clone())), &sql.binds)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| db_err(n, "read values to hash", e))?;
        let mut per_subject: BTreeMap<Val, Vec<String>> = BTreeMap::new();
        let mut values: BTreeSet<Val> = BTreeSet::new();
        for r in rows.iter().take(MAX_HASH_VALUES) {
            if let (Some(k), Some(v)) = (
                read_val(r, 0).and_then(|v| normalise(&v, keys)),
                read_val(r, 1),
            ) {
                per_subject
                    .entry(k)
                    .or_default()
                    .push(keyed_hash(key, &v.text()));
                values.insert(v);
            }
        }
        for v in values {
            let h = keyed_hash(key, &v.text());
            let set = format!("{} = {}", col.q(d), d.ph(1));
            let sql = path.write(
                d,
                Some(&set),
                vec![Val::S(h)],
                keys,
                Some((&format!("{as_text} = {{}}"), vec![v])),
            );
            bind_all(sqlx::query(AssertSqlSafe(sql.text.clone())), &sql.binds)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err(n, "hash column values", e))?;
        }
        Ok(per_subject)
    }
    /// Counts what is left of the subjects in every mapped table, using the
    /// scopes in the record. Fills `remaining`; errors if a deleted or
    /// updated table still holds a subject's data.
    pub async fn verify_batch(
        &self,
        outcomes: Vec<(String, SubjectId, SystemOutcome)>,
    ) -> Result<Vec<(String, SystemOutcome)>, ConnectError> {
        self.install().await?;
        let ids: Vec<Val> = outcomes.iter().map(|(c, _, _)| Val::S(c.clone())).collect();
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| db_err(&self.name, "connect", e))?;
        let mut recorded = BTreeMap::new();
        for chunk in ids.chunks(VERIFY_CHUNK) {
            recorded.extend(self.read_record(&mut conn, chunk).await?);
        }
        drop(conn);
        let done = outcomes
            .into_iter()
            .map(|(case_id, subject, outcome)| Erased {
                scopes: recorded
                    .get(&case_id)
                    .map(|(_, s)| s.clone())
                    .unwrap_or_default(),
                case_id,
                subject,
                outcome,
            })
            .collect();
        self.verify_scoped(done).await
    }

    /// The verification pass: one round trip per chunk, a `COUNT(*)` per
    /// table of what is left of the batch's subjects.
    async fn verify_scoped(
        &self,
        done: Vec<Erased>,
    ) -> Result<Vec<(String, SystemOutcome)>, ConnectError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| db_err(&self.name, "connect", e))?;
        self.verify_in(&mut conn, &done).await?;
        Ok(verified(done))
    }

    /// Runs the verification counts on `conn` (inside the erasure's own
    /// transaction, or after it); an error names the first table with
    /// something left.
    async fn verify_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        done: &[Erased],
    ) -> Result<(), ConnectError> {
        let d = self.d;
        let mut checks: Vec<(String, Sql)> = vec![];
        for step in &self.plan.steps {
            // Kept rows stay; only their pseudonymised columns are checked.
            let stub = self.stub_guard(step);
            if matches!(step.action, Action::Keep { .. })
                && step.action.pseudonymised() == (&[][..], &[][..])
                && stub.is_none()
            {
                continue;
            }
            let path = &self.paths[&step.table];
            let t = step.table.q(d);
            let mut scope = Scope::default();
            for e in done {
                if let Some(s) = e.scopes.get(step.table.as_str()) {
                    scope.parents.extend(s.parents.iter().cloned());
                    for (c, hs) in &s.hashes {
                        scope
                            .hashes
                            .entry(c.clone())
                            .or_default()
                            .extend(hs.iter().cloned());
                    }
                }
            }
            if path.depth() == 0 {
                let keys: Vec<Val> = done
                    .iter()
                    .filter_map(|e| self.key_for(&step.table, &e.subject))
                    .collect();
                for chunk in keys.chunks(VERIFY_CHUNK * 2) {
                    let mut sql = Sql::new(d);
                    let pred = path.pred(&mut sql, chunk);
                    let ex = with_stub(update_filter(&mut sql, &step.action, &scope), &stub);
                    sql.text = format!("SELECT COUNT(*) FROM {t} t0 WHERE {pred}{ex}");
                    checks.push((step.table.to_string(), sql));
                }
            } else if let Some(link) = path.links.first() {
                let cols: Vec<String> = link
                    .columns
                    .iter()
                    .map(|c| format!("t0.{}", c.q(d)))
                    .collect();
                for chunk in scope.parents.chunks(VERIFY_CHUNK * 2) {
                    let mut sql = Sql::new(d);
                    let tuples: Vec<String> = chunk
                        .iter()
                        .filter(|t| t.len() == cols.len())
                        .map(|t| {
                            if t.len() == 1 {
                                sql.p(t[0].clone())
                            } else {
                                sql.list(t)
                            }
                        })
                        .collect();
                    if tuples.is_empty() {
                        continue;
                    }
                    let lhs = if cols.len() == 1 {
                        cols[0].clone()
                    } else {
                        format!("({})", cols.join(", "))
                    };
                    let ex = with_stub(update_filter(&mut sql, &step.action, &scope), &stub);
                    sql.text = format!(
                        "SELECT COUNT(*) FROM {t} t0 WHERE {lhs} IN ({}){ex}",
                        tuples.join(", ")
                    );
                    checks.push((step.table.to_string(), sql));
                }
            }
        }
        // Many counts per statement: `SELECT (SELECT COUNT(*) ...), ...`.
        let mut i = 0;
        while i < checks.len() {
            let mut combined = Sql::new(d);
            let mut parts = vec![];
            let start = i;
            while i < checks.len()
                && parts.len() < 32
                && combined.binds.len() + checks[i].1.binds.len() <= 20_000
            {
                let (_, c) = &checks[i];
                parts.push(format!("({})", renumber(d, &c.text, combined.binds.len())));
                combined.binds.extend(c.binds.iter().cloned());
                i += 1;
            }
            if parts.is_empty() {
                // One check alone above the bind budget: run it by itself.
                parts.push(format!("({})", checks[i].1.text));
                combined.binds = checks[i].1.binds.clone();
                i += 1;
            }
            combined.text = format!("SELECT {}", parts.join(", "));
            let rows = run_rows(&mut *conn, &combined, &self.name, "verify").await?;
            let Some(r) = rows.first() else {
                return Err(self.no_outcome("verify"));
            };
            for (j, (table, _)) in checks[start..i].iter().enumerate() {
                let remaining = count(r, j);
                if remaining > 0 {
                    return Err(ConnectError::NotErased {
                        system: self.name.clone(),
                        table: table.clone(),
                        remaining,
                    });
                }
            }
        }
        Ok(())
    }

    /// Verifies one case.
    pub async fn verify(
        &self,
        case_id: &str,
        subject: &SubjectId,
        outcome: SystemOutcome,
    ) -> Result<SystemOutcome, ConnectError> {
        let mut v = self
            .verify_batch(vec![(case_id.to_owned(), subject.clone(), outcome)])
            .await?;
        v.pop()
            .map(|(_, o)| o)
            .ok_or_else(|| self.no_outcome("verify"))
    }

    /// Purges kept rows whose retention ended (children first within a
    /// case), at most `limit` retention rows per call. Returns (case id,
    /// table, rows purged).
    pub async fn purge_expired(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(String, String, u64)>, ConnectError> {
        self.install().await?;
        self.purge(now, limit, true).await
    }

    /// What the purge at `now` would remove, without removing anything:
    /// the purge itself, run in a transaction that is rolled back, so the
    /// counts are exact (shared rows that would stay are not counted).
    pub async fn purge_dry_run(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(String, String, u64)>, ConnectError> {
        if !self.has_records().await? {
            return Ok(vec![]);
        }
        self.purge(now, limit, false).await
    }

    /// Purges each due case in one transaction, as an erasure of its kept
    /// tables: children first, the keys of referenced rows captured before
    /// the rows that reference them go, those rows deleted only where
    /// nothing else references them. `commit`: record and commit, else roll
    /// back (a dry run).
    async fn purge(
        &self,
        now: Timestamp,
        limit: u32,
        commit: bool,
    ) -> Result<Vec<(String, String, u64)>, ConnectError> {
        let n = &self.name;
        let d = self.d;
        let due = self.due_retentions(now, limit).await?;
        let mut by_case: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
        for (case, table, subject) in due {
            let e = by_case.entry(case).or_insert_with(|| (subject, vec![]));
            e.1.push(table);
        }
        let mut out = vec![];
        for (case, (subject, tables)) in by_case {
            let Ok(subject) = SubjectId::parse(&subject) else {
                continue;
            };
            // The due tables still in the data map, in plan order, as
            // deletions (a stub's rows all go now).
            let steps: Vec<crate::planner::PlannedTable> = self
                .plan
                .steps
                .iter()
                .filter(|s| tables.iter().any(|t| t == s.table.as_str()))
                .map(|s| crate::planner::PlannedTable {
                    action: Action::Delete,
                    ..s.clone()
                })
                .collect();
            let item = BatchItem {
                case_id: case.clone(),
                subject: subject.clone(),
            };
            let todo = [&item];
            let mut tx = match d {
                Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
                _ => self.pool.begin().await,
            }
            .map_err(|e| db_err(n, "begin", e))?;
            let mut captured = std::collections::HashMap::new();
            for step in &steps {
                if self.referenced.contains_key(&step.table) {
                    self.capture_parent_keys(&mut tx, step, &todo, &mut captured)
                        .await?;
                }
            }
            let mut done = vec![];
            for step in &steps {
                let (counts, _) = self
                    .erase_table(&mut tx, step, &todo, &mut captured)
                    .await?;
                let rows: u64 = counts.values().sum();
                done.push((step.table.to_string(), rows));
            }
            if commit {
                for (table, rows) in &done {
                    let mut sql = Sql::new(d);
                    let a = sql.p(Val::S(now.to_string()));
                    let b = sql.p(Val::I(i64::try_from(*rows).unwrap_or(i64::MAX)));
                    let c = sql.p(Val::S(case.clone()));
                    let t = sql.p(Val::S(table.clone()));
                    sql.text = format!(
                        "UPDATE {RETENTION_TABLE} SET purged_at = {a}, purged_rows = {b}, subject = NULL WHERE case_id = {c} AND table_name = {t}"
                    );
                    run_exec(&mut *tx, &sql, n, "record the purge").await?;
                }
                for mv in &self.refresh {
                    let sql = Sql {
                        d,
                        text: format!("REFRESH MATERIALIZED VIEW {}", mv.q(d)),
                        binds: vec![],
                    };
                    run_exec(&mut *tx, &sql, n, "refresh a materialised view").await?;
                }
                tx.commit().await.map_err(|e| db_err(n, "commit", e))?;
            } else {
                tx.rollback().await.map_err(|e| db_err(n, "rollback", e))?;
            }
            out.extend(done.into_iter().map(|(t, r)| (case.clone(), t, r)));
        }
        Ok(out)
    }

    /// One table's line of an outcome.
    fn table_outcome(
        &self,
        step: &crate::planner::PlannedTable,
        rows: u64,
        legal_basis: Option<String>,
        retain_until: Option<Timestamp>,
        scope: &Scope,
    ) -> TableOutcome {
        let names = |v: &[Ident]| v.iter().map(|c| c.to_string()).collect();
        let (set_null, hashed) = step.action.pseudonymised();
        let (set_null, hashed) = (names(set_null), names(hashed));
        let stub_for = match &step.action {
            Action::Keep { stub_for, .. } => stub_for.as_ref().map(|t| t.to_string()),
            _ if retain_until.is_some() => self.kept_through(step).map(|(t, _, _)| t.to_string()),
            _ => None,
        };
        TableOutcome {
            table: step.table.to_string(),
            action: step.action.name().to_owned(),
            rows,
            remaining: None,
            legal_basis,
            retain_until,
            shared_kept: scope.shared.unwrap_or(0),
            set_null,
            hashed,
            stub_for,
            stub_deleted: scope.stub_deleted.unwrap_or(0),
            labels: None,
        }
    }

    /// Retention records whose time is up at `now` and not yet purged, in
    /// purge order: (case id, table, subject).
    async fn due_retentions(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(String, String, String)>, ConnectError> {
        let mut sql = Sql::new(self.d);
        let p = sql.p(Val::I(now.as_second()));
        sql.text = format!(
            "SELECT case_id, table_name, subject FROM {RETENTION_TABLE} WHERE retain_until_s <= {p} AND purged_at IS NULL ORDER BY retain_until_s, case_id LIMIT {}",
            limit.min(1000)
        );
        let due = run_rows(&self.pool, &sql, &self.name, "read expired retentions").await?;
        let mut due: Vec<(String, String, String)> = due
            .iter()
            .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?, r.try_get(2).ok()?)))
            .collect();
        // A case is never split between two purges: its stubs go after
        // the kept rows that reference them, in the same run.
        if due.len() == limit.min(1000) as usize
            && let Some(last) = due.last().map(|(c, _, _)| c.clone())
            && due.iter().any(|(c, _, _)| c != &last)
        {
            due.retain(|(c, _, _)| c != &last);
        }
        let order = |t: &str| self.plan.steps.iter().position(|s| s.table.as_str() == t);
        due.sort_by_key(|(c, t, _)| (c.clone(), order(t)));
        Ok(due)
    }

    /// Whether Lethe's record tables exist (read-only: `information_schema`
    /// or `sqlite_master`, never a write).
    async fn has_records(&self) -> Result<bool, ConnectError> {
        let q = match self.d {
            Dialect::Sqlite => format!(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '{RETENTION_TABLE}'"
            ),
            Dialect::Postgres => format!(
                "SELECT COUNT(*)::int8 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = '{RETENTION_TABLE}'"
            ),
            Dialect::Mysql => format!(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{RETENTION_TABLE}'"
            ),
        };
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(q))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| db_err(&self.name, "look for the retention record", e))?;
        Ok(n > 0)
    }

    /// What is kept and until when, per case and table, purged or not
    /// (read-only; empty before the first erasure). At most `limit` rows,
    /// the soonest expiry first.
    pub async fn retention_list(&self, limit: u32) -> Result<Vec<Retention>, ConnectError> {
        if !self.has_records().await? {
            return Ok(vec![]);
        }
        let sql = Sql {
            d: self.d,
            text: format!(
                "SELECT case_id, table_name, retain_until_s, purged_at, purged_rows FROM {RETENTION_TABLE} ORDER BY retain_until_s, case_id, table_name LIMIT {}",
                limit.min(100_000)
            ),
            binds: vec![],
        };
        let rows = run_rows(&self.pool, &sql, &self.name, "read the retention record").await?;
        Ok(rows
            .iter()
            .map(|r| Retention {
                case_id: r.try_get(0).unwrap_or_default(),
                table: r.try_get(1).unwrap_or_default(),
                retain_until: r
                    .try_get::<i64, _>(2)
                    .ok()
                    .and_then(|s| Timestamp::from_second(s).ok()),
                purged_at: r.try_get::<Option<String>, _>(3).ok().flatten(),
                purged_rows: r
                    .try_get::<Option<i64>, _>(4)
                    .ok()
                    .flatten()
                    .and_then(|n| u64::try_from(n).ok()),
                legal_basis: self.plan.steps.iter().find_map(|s| match &s.action {
                    Action::Keep { legal_basis, .. }
                        if s.table.as_str() == r.try_get::<String, _>(1).unwrap_or_default() =>
                    {
                        Some(legal_basis.clone())
                    }
                    _ => None,
                }),
            })
            .collect())
    }

    /// The recorded outcomes and scopes of these cases.
    async fn read_record(
        &self,
        conn: &mut sqlx::AnyConnection,
        ids: &[Val],
    ) -> Result<BTreeMap<String, (SystemOutcome, BTreeMap<String, Scope>)>, ConnectError> {
        let mut sql = Sql::new(self.d);
        let list = sql.list(ids);
        sql.text =
            format!("SELECT case_id, outcome, scope FROM {RECORD_TABLE} WHERE case_id IN {list}");
        let rows = run_rows(&mut *conn, &sql, &self.name, "read the erasure record").await?;
        let mut out = BTreeMap::new();
        for r in rows {
            let case: String = r.try_get(0).unwrap_or_default();
            let scopes: BTreeMap<String, Scope> = r
                .try_get::<Option<String>, _>(2)
                .ok()
                .flatten()
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default();
            let counts: BTreeMap<String, Count> = r
                .try_get::<String, _>(1)
                .ok()
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default();
            let tables = self
                .plan
                .steps
                .iter()
                .map(|step| {
                    let (rows, until) = match counts.get(step.table.as_str()) {
                        Some(Count::N(n)) => (*n, None),
                        Some(Count::Kept(n, u)) => (*n, Timestamp::from_second(*u).ok()),
                        None => (0, None),
                    };
                    let legal_basis = match (&step.action, self.kept_through(step)) {
                        (Action::Keep { legal_basis, .. }, _) => Some(legal_basis.clone()),
                        (_, Some((_, basis, _))) if until.is_some() => Some(basis.to_owned()),
                        _ => None,
                    };
                    let scope = scopes.get(step.table.as_str()).cloned().unwrap_or_default();
                    self.table_outcome(step, rows, legal_basis, until, &scope)
                })
                .collect();
            out.insert(
                case,
                (
                    SystemOutcome {
                        system: self.name.clone(),
                        tables,
                        replayed: true,
                    },
                    scopes,
                ),
            );
        }
        Ok(out)
    }

    async fn write_record(
        &self,
        tx: &mut sqlx::AnyConnection,
        done: &[Erased],
        now: Timestamp,
    ) -> Result<(), ConnectError> {
        let stamp = now.to_string();
        for chunk in done.chunks(200) {
            let mut sql = Sql::new(self.d);
            let mut values = vec![];
            for e in chunk {
                let counts: BTreeMap<&str, Count> = e
                    .outcome
                    .tables
                    .iter()
                    .map(|t| {
                        (
                            t.table.as_str(),
                            match t.retain_until {
                                Some(u) => Count::Kept(t.rows, u.as_second()),
                                None => Count::N(t.rows),
                            },
                        )
                    })
                    .collect();
                let outcome = serde_json::to_string(&counts).unwrap_or_else(|_| "{}".into());
                let scope = serde_json::to_string(&e.scopes).unwrap_or_else(|_| "{}".into());
                let ps: Vec<String> = [
                    Val::S(e.case_id.clone()),
                    Val::S(outcome),
                    Val::S(scope),
                    Val::S(stamp.clone()),
                ]
                .into_iter()
                .map(|v| sql.p(v))
                .collect();
                values.push(format!("({})", ps.join(", ")));
            }
            sql.text = format!(
                "INSERT INTO {RECORD_TABLE} (case_id, outcome, scope, recorded_at) VALUES {}",
                values.join(", ")
            );
            run_exec(&mut *tx, &sql, &self.name, "write the erasure record").await?;
        }
        // Kept rows: the subject and the expiry, for the purge.
        let kept: Vec<(&Erased, &TableOutcome)> = done
            .iter()
            .flat_map(|e| e.outcome.tables.iter().map(move |t| (e, t)))
            .filter(|(_, t)| t.retain_until.is_some())
            .collect();
        for chunk in kept.chunks(200) {
            let mut sql = Sql::new(self.d);
            let mut values = vec![];
            for (e, t) in chunk {
                let until = t.retain_until.map(|x| x.as_second()).unwrap_or(0);
                let ps: Vec<String> = [
                    Val::S(e.case_id.clone()),
                    Val::S(t.table.clone()),
                    Val::S(e.subject.expose().to_owned()),
                    Val::I(until),
                ]
                .into_iter()
                .map(|v| sql.p(v))
                .collect();
                values.push(format!("({})", ps.join(", ")));
            }
            sql.text = format!(
                "INSERT INTO {RETENTION_TABLE} (case_id, table_name, subject, retain_until_s) VALUES {}",
                values.join(", ")
            );
            run_exec(&mut *tx, &sql, &self.name, "write the retention record").await?;
        }
        Ok(())
    }
}

/// Outcomes with `remaining` filled in after a verification that passed:
/// 0 for erased tables, the rows kept for kept ones.
fn verified(done: Vec<Erased>) -> Vec<(String, SystemOutcome)> {
    done.into_iter()
        .map(|e| {
            let mut o = e.outcome;
            for t in &mut o.tables {
                t.remaining = Some(if t.action == "keep" { t.rows } else { 0 });
            }
            (e.case_id, o)
        })
        .collect()
}

/// A table's count in the record: rows, or rows and the retention's end
/// (Unix seconds) for kept rows.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Count {
    N(u64),
    Kept(u64, i64),
}

/// One case's erasure in a system: the outcome, and what verification
/// needs (per table: parent keys, hashes written).
#[derive(Debug, Clone)]
struct Erased {
    case_id: String,
    subject: SubjectId,
    outcome: SystemOutcome,
    scopes: BTreeMap<String, Scope>,
}

async fn run_rows<'c, E>(
    ex: E,
    sql: &Sql,
    system: &str,
    action: &'static str,
) -> Result<Vec<AnyRow>, ConnectError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    if sql.binds.is_empty() {
        // Keys are inlined: the text protocol takes one round trip, with
        // nothing to prepare.
        return sqlx::raw_sql(AssertSqlSafe(sql.text.clone()))
            .fetch_all(ex)
            .await
            .map_err(|e| db_err(system, action, e));
    }
    bind_all(sqlx::query(AssertSqlSafe(sql.text.clone())), &sql.binds)
        .fetch_all(ex)
        .await
        .map_err(|e| db_err(system, action, e))
}

async fn run_exec<'c, E>(
    ex: E,
    sql: &Sql,
    system: &str,
    action: &'static str,
) -> Result<u64, ConnectError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    if sql.binds.is_empty() {
        return sqlx::raw_sql(AssertSqlSafe(sql.text.clone()))
            .execute(ex)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| db_err(system, action, e));
    }
    bind_all(sqlx::query(AssertSqlSafe(sql.text.clone())), &sql.binds)
        .execute(ex)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| db_err(system, action, e))
}

/// Shifts `$n` placeholders by `by` (for statements combined into one);
/// MySQL's `?` are positional and need nothing.
fn renumber(d: Dialect, text: &str, by: usize) -> String {
    if d == Dialect::Mysql || by == 0 {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match after[..digits].parse::<usize>() {
            Ok(n) => {
                out.push('$');
                out.push_str(&(n + by).to_string());
            }
            Err(_) => out.push('$'),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// For an updated table, the condition of a row not done yet: a column to
/// null still set, or a hashed column holding something other than a hash
/// written by the erasure.
fn update_filter(sql: &mut Sql, action: &Action, scope: &Scope) -> String {
    let (set_null, hash) = action.pseudonymised();
    if set_null.is_empty() && hash.is_empty() {
        return String::new();
    }
    let d = sql.d;
    let mut parts: Vec<String> = set_null
        .iter()
        .map(|c| format!("t0.{} IS NOT NULL", c.q(d)))
        .collect();
    for h in hash {
        let written: Vec<Val> = scope
            .hashes
            .get(h.as_str())
            .map(|v| v.iter().take(1000).map(|s| Val::S(s.clone())).collect())
            .unwrap_or_default();
        if written.is_empty() {
            parts.push(format!("t0.{} IS NOT NULL", h.q(d)));
        } else {
            let l = sql.list(&written);
            parts.push(format!(
                "(t0.{c} IS NOT NULL AND t0.{c} NOT IN {l})",
                c = h.q(d)
            ));
        }
    }
    format!(" AND ({})", parts.join(" OR "))
}

/// The condition that no row of the `refs` tables points at the row
/// aliased `alias` (their aliases are `prefix0`, `prefix1`, ...).
fn not_referenced(d: Dialect, refs: &[Referrer], alias: &str, prefix: &str) -> String {
    let parts: Vec<String> = refs
        .iter()
        .enumerate()
        .map(|(i, (rt, rcols, pcols))| {
            let on: Vec<String> = rcols
                .iter()
                .zip(pcols)
                .map(|(rc, pc)| format!("{prefix}{i}.{} = {alias}.{}", rc.q(d), pc.q(d)))
                .collect();
            format!(
                "NOT EXISTS (SELECT 1 FROM {} {prefix}{i} WHERE {})",
                rt.q(d),
                on.join(" AND ")
            )
        })
        .collect();
    parts.join(" AND ")
}

/// `a, b` or `(a, b), (c, d)`: placeholders of key tuples, one value or
/// several each, for `... IN (here)`.
fn tuple_list(sql: &mut Sql, tuples: &[Vec<Val>]) -> String {
    let parts: Vec<String> = tuples
        .iter()
        .map(|tp| {
            if tp.len() == 1 {
                sql.p(tp[0].clone())
            } else {
                sql.list(tp)
            }
        })
        .collect();
    parts.join(", ")
}

/// A verification filter widened for a stub table: a row left is one not
/// pseudonymised, or one no kept row references.
fn with_stub(filter: String, stub: &Option<String>) -> String {
    match (stub, filter.strip_prefix(" AND ")) {
        (None, _) => filter,
        (Some(g), None) => format!(" AND ({g})"),
        (Some(g), Some(f)) => format!(" AND (({g}) OR {f})"),
    }
}

/// Maps a value read back from the database to the key it was bound as
/// (an integer column may come back as text on some drivers, and the
/// other way round).
fn normalise(v: &Val, keys: &[Val]) -> Option<Val> {
    if keys.contains(v) {
        return Some(v.clone());
    }
    let t = v.text();
    keys.iter().find(|k| k.text() == t).cloned()
}

/// HMAC-SHA-256 of a value under the system's hash key, hex.
pub fn keyed_hash(key: &[u8], value: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(value.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

fn hex_or_bytes(v: &str) -> Vec<u8> {
    hex::decode(v.trim()).unwrap_or_else(|_| v.as_bytes().to_vec())
}

async fn create_record(
    c: &mut sqlx::AnyConnection,
    d: Dialect,
    name: &str,
) -> Result<(), ConnectError> {
    let (text, long) = match d {
        Dialect::Mysql => ("VARCHAR(255)", "LONGTEXT"),
        _ => ("TEXT", "TEXT"),
    };
    for ddl in [
        format!(
            "CREATE TABLE IF NOT EXISTS {RECORD_TABLE} (
                case_id VARCHAR(64) NOT NULL PRIMARY KEY,
                outcome {long} NOT NULL,
                scope {long},
                recorded_at VARCHAR(40) NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {RETENTION_TABLE} (
                case_id VARCHAR(64) NOT NULL,
                table_name VARCHAR(64) NOT NULL,
                subject {text},
                retain_until_s BIGINT NOT NULL,
                purged_at VARCHAR(40),
                purged_rows BIGINT,
                PRIMARY KEY (case_id, table_name))"
        ),
    ] {
        sqlx::query(AssertSqlSafe(ddl))
            .execute(&mut *c)
            .await
            .map_err(|e| db_err(name, "create the erasure record", e))?;
    }
    Ok(())
}

/// Ownership of a table, for callers that print plans.
pub fn describe_ownership(t: &Table) -> String {
    match &t.ownership {
        Ownership::Column(c) => format!("owner column {c}"),
        Ownership::Parent(p) => format!("belongs to {} via {:?}", p.table, p.columns),
        Ownership::Referenced(r) => format!("referenced by {} via {:?}", r.table, r.columns),
    }
}
