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
use sqlx::{AnyPool, AssertSqlSafe, Row};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::datamap::{Action, BlockerRule, Dialect, Ident, Ownership, System, Table};
use crate::planner::{Plan, plan_with};
use crate::schema::{self, Schema};
use crate::sqlgen::{Path, Sql, Val};
use crate::{ConnectError, SystemOutcome, TableOutcome};
use lethe_domain::{Blocker, SubjectId};

/// The table Lethe keeps in each SQL system it erases from. It holds case
/// ids, table names, counts, the parent keys needed by verification and,
/// for kept tables, the subject id and the expiry (the platform's own id,
/// already in the kept rows): what the purge at expiry needs.
pub const RECORD_TABLE: &str = "lethe_erasure_record";

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
    hash_key: Option<Vec<u8>>,
    batch_size: usize,
    phone_query: Option<String>,
    identities: BTreeMap<String, String>,
    accounts_by_phone: Option<String>,
    accounts_by_id_number: Option<String>,
    schema: Schema,
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
    q
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
            .connect(&url)
            .await
            .map_err(|e| db_err(&name, "connect", e))?;
        let mut c = pool
            .acquire()
            .await
            .map_err(|e| db_err(&name, "connect", e))?;
        let schema = schema::read(&mut c, d, |_, _| {})
            .await
            .map_err(|e| db_err(&name, "read the schema", e))?;
        create_record(&mut c, d, &name).await?;
        drop(c);
        Self::with_schema(system, d, pool, schema, hash_key)
    }

    fn with_schema(
        system: &System,
        d: Dialect,
        pool: AnyPool,
        schema: Schema,
        hash_key: Option<Vec<u8>>,
    ) -> Result<Self, ConnectError> {
        let name = system.name.to_string();
        // Foreign keys of the live schema between mapped tables order the
        // erasure too.
        let mapped: BTreeSet<&str> = system.tables.iter().map(|t| t.name.as_str()).collect();
        let mut fks = Vec::new();
        for t in &system.tables {
            if let Some(st) = schema.table(t.name.as_str()) {
                for fk in &st.fks {
                    if mapped.contains(fk.parent.as_str())
                        && let Ok(p) = Ident::parse(&fk.parent)
                    {
                        fks.push((t.name.clone(), p));
                    }
                }
            }
        }
        let plan = plan_with(system, &fks).map_err(|source| ConnectError::Plan {
            system: name.clone(),
            source,
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
            let is_int = schema
                .table(path.root().as_str())
                .and_then(|st| st.column(path.owner.as_str()))
                .map(|c| schema::is_integer(&c.data_type))
                .unwrap_or(false);
            int_owner.insert(t.name.clone(), is_int);
            paths.insert(t.name.clone(), path);
        }
        Ok(Self {
            name,
            d,
            pool,
            plan,
            paths,
            int_owner,
            hash_key,
            batch_size: system.batch_size as usize,
            phone_query: system.phone_query.clone(),
            identities: system.identities.clone(),
            accounts_by_phone: system.accounts_by_phone.clone(),
            accounts_by_id_number: system.accounts_by_id_number.clone(),
            schema,
        })
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
        mut progress: impl FnMut(usize, usize),
    ) -> Result<BTreeMap<(String, String), Vec<String>>, ConnectError> {
        let mut out = BTreeMap::new();
        for (i, (t, c)) in columns.iter().enumerate() {
            let (Ok(ti), Ok(ci)) = (Ident::parse(t), Ident::parse(c)) else {
                continue; // names Lethe cannot quote safely are not sampled
            };
            let q = format!(
                "SELECT {c} FROM {t} WHERE {c} IS NOT NULL LIMIT {}",
                per_column.min(100),
                c = ci.q(self.d),
                t = ti.q(self.d)
            );
            let rows = sqlx::query(AssertSqlSafe(q))
                .fetch_all(&self.pool)
                .await
                .map_err(|e| db_err(&self.name, "sample a column", e))?;
            out.insert(
                (t.clone(), c.clone()),
                rows.iter().filter_map(first_text).collect(),
            );
            progress(i + 1, columns.len());
        }
        Ok(out)
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
        if self.int_owner.get(table).copied().unwrap_or(false) {
            s.expose().parse::<i64>().ok().map(Val::I)
        } else {
            Some(Val::S(s.expose().to_owned()))
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
        out.pop().map(|(_, o)| o).ok_or_else(|| ConnectError::Db {
            system: self.name.clone(),
            action: "erase",
            message: "no outcome for the case".into(),
        })
    }

    /// Erases a batch of subjects, children first, one set-based statement
    /// per table, in one transaction that also records the per-case counts.
    /// Cases already recorded are replayed from the record, untouched.
    /// Returns one outcome per item, in order.
    pub async fn erase_batch(
        &self,
        items: &[BatchItem],
        now: Timestamp,
    ) -> Result<Vec<(String, SystemOutcome)>, ConnectError> {
        let n = &self.name;
        let mut results: BTreeMap<String, SystemOutcome> = BTreeMap::new();
        for chunk in items.chunks(self.batch_size.max(1)) {
            let mut tx = match self.d {
                Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
                _ => self.pool.begin().await,
            }
            .map_err(|e| db_err(n, "begin", e))?;
            let ids: Vec<Val> = chunk.iter().map(|i| Val::S(i.case_id.clone())).collect();
            let recorded = self.record_rows(&mut tx, &ids).await?;
            let todo: Vec<&BatchItem> = chunk
                .iter()
                .filter(|i| !recorded.contains_key(&i.case_id))
                .collect();
            for (case, rows) in &recorded {
                results.insert(case.clone(), self.outcome_from_record(rows, true));
            }
            if todo.is_empty() {
                tx.rollback().await.map_err(|e| db_err(n, "rollback", e))?;
                continue;
            }
            let mut new_rows: BTreeMap<String, Vec<RecordRow>> = BTreeMap::new();
            for step in &self.plan.steps {
                let path = &self.paths[&step.table];
                // The subjects as bound for this table, and back.
                let mut keyed: BTreeMap<Val, Vec<&BatchItem>> = BTreeMap::new();
                for it in &todo {
                    if let Some(k) = self.key_for(&step.table, &it.subject) {
                        keyed.entry(k).or_default().push(it);
                    }
                }
                let keys: Vec<Val> = keyed.keys().cloned().collect();
                let mut counts: BTreeMap<Val, u64> = BTreeMap::new();
                let mut scopes: BTreeMap<Val, Scope> = BTreeMap::new();
                if !keys.is_empty() {
                    let sql = path.count_by_subject(self.d, &keys, None);
                    for r in bind_all(sqlx::query(AssertSqlSafe(sql.text.clone())), &sql.binds)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(|e| db_err(n, "count rows", e))?
                    {
                        if let Some(k) = read_val(&r, 0).and_then(|v| normalise(&v, &keys)) {
                            *counts.entry(k).or_default() += count(&r, 1);
                        }
                    }
                    // The parent keys tying child rows to each subject: the
                    // verification pass needs them once the parents are gone.
                    if let Some(sql) = path.parent_keys(self.d, &keys) {
                        for r in bind_all(sqlx::query(AssertSqlSafe(sql.text.clone())), &sql.binds)
                            .fetch_all(&mut *tx)
                            .await
                            .map_err(|e| db_err(n, "capture the parent keys", e))?
                        {
                            let Some(k) = read_val(&r, 0).and_then(|v| normalise(&v, &keys)) else {
                                continue;
                            };
                            let tuple: Vec<Val> =
                                (1..r.len()).filter_map(|i| read_val(&r, i)).collect();
                            let sc = scopes.entry(k).or_default();
                            if sc.parents.len() < MAX_SCOPE {
                                sc.parents.push(tuple);
                            }
                        }
                    }
                    let total: u64 = counts.values().sum();
                    match &step.action {
                        Action::Delete if total > 0 => {
                            let sql = path.write(self.d, None, vec![], &keys, None);
                            let done =
                                bind_all(sqlx::query(AssertSqlSafe(sql.text.clone())), &sql.binds)
                                    .execute(&mut *tx)
                                    .await
                                    .map_err(|e| db_err(n, "erase rows", e))?
                                    .rows_affected();
                            if done != total {
                                // A concurrent write changed the rows between
                                // the count and the delete: start over.
                                return Err(ConnectError::Db {
                                    system: n.clone(),
                                    action: "erase rows",
                                    message: format!(
                                        "{} changed during erasure ({total} counted, {done} deleted); rolled back, will retry",
                                        step.table
                                    ),
                                });
                            }
                        }
                        Action::Update { set_null, hash } if total > 0 => {
                            // Hashes first: nulling may clear the very column
                            // that ties the rows to the subject.
                            for col in hash {
                                let written = self.hash_column(&mut tx, path, col, &keys).await?;
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
                                    .map(|c| format!("{} = NULL", c.q(self.d)))
                                    .collect();
                                let sql =
                                    path.write(self.d, Some(&set.join(", ")), vec![], &keys, None);
                                bind_all(sqlx::query(AssertSqlSafe(sql.text.clone())), &sql.binds)
                                    .execute(&mut *tx)
                                    .await
                                    .map_err(|e| db_err(n, "nullify columns", e))?;
                            }
                        }
                        _ => {}
                    }
                }
                let retain_until = match &step.action {
                    Action::Keep { retention_days, .. } => now
                        .checked_add(jiff::SignedDuration::from_hours(
                            24 * i64::from(*retention_days),
                        ))
                        .ok(),
                    _ => None,
                };
                for it in &todo {
                    let k = self.key_for(&step.table, &it.subject);
                    let rows = k.as_ref().and_then(|k| counts.get(k)).copied().unwrap_or(0);
                    let scope = k
                        .as_ref()
                        .and_then(|k| scopes.get(k))
                        .cloned()
                        .unwrap_or_default();
                    new_rows
                        .entry(it.case_id.clone())
                        .or_default()
                        .push(RecordRow {
                            table: step.table.to_string(),
                            action: step.action.name().to_owned(),
                            rows,
                            scope,
                            subject: (retain_until.is_some() && rows > 0)
                                .then(|| it.subject.expose().to_owned()),
                            retain_until: if rows > 0 { retain_until } else { None },
                        });
                }
            }
            self.write_record(&mut tx, &new_rows, now).await?;
            tx.commit().await.map_err(|e| db_err(n, "commit", e))?;
            for (case, rows) in new_rows {
                results.insert(case, self.outcome_from_record(&rows, false));
            }
        }
        Ok(items
            .iter()
            .filter_map(|i| {
                results
                    .get(&i.case_id)
                    .map(|o| (i.case_id.clone(), o.clone()))
            })
            .collect())
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
        let mut sql = Sql::new(d);
        let pred = path.pred(&mut sql, keys);
        sql.text = format!(
            "SELECT DISTINCT {}, t0.{c} FROM {} WHERE {pred} AND t0.{c} IS NOT NULL",
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
                Some((&format!("t0.{} = {{}}", col.q(d)), vec![v])),
            );
            bind_all(sqlx::query(AssertSqlSafe(sql.text.clone())), &sql.binds)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err(n, "hash column values", e))?;
        }
        Ok(per_subject)
    }

    /// Counts what is left of the subjects in every mapped table, using the
    /// recorded scopes. Fills `remaining`; errors if a deleted or updated
    /// table still holds a subject's data.
    pub async fn verify_batch(
        &self,
        outcomes: Vec<(String, SubjectId, SystemOutcome)>,
    ) -> Result<Vec<(String, SystemOutcome)>, ConnectError> {
        let n = &self.name;
        let ids: Vec<Val> = outcomes.iter().map(|(c, _, _)| Val::S(c.clone())).collect();
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| db_err(n, "connect", e))?;
        let mut scopes: BTreeMap<String, Scope> = BTreeMap::new(); // per table, merged
        for chunk in ids.chunks(VERIFY_CHUNK) {
            let mut sql = Sql::new(self.d);
            let list = sql.list(chunk);
            sql.text =
                format!("SELECT table_name, scope FROM {RECORD_TABLE} WHERE case_id IN {list}");
            for r in bind_all(sqlx::query(AssertSqlSafe(sql.text.clone())), &sql.binds)
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| db_err(n, "read the erasure record", e))?
            {
                let table: String = r.try_get(0).unwrap_or_default();
                let sc: Scope = r
                    .try_get::<Option<String>, _>(1)
                    .ok()
                    .flatten()
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or_default();
                let m = scopes.entry(table).or_default();
                m.parents.extend(sc.parents);
                for (c, hs) in sc.hashes {
                    m.hashes.entry(c).or_default().extend(hs);
                }
            }
        }
        let mut remaining_by_table: BTreeMap<String, u64> = BTreeMap::new();
        for step in &self.plan.steps {
            if matches!(step.action, Action::Keep { .. }) {
                continue;
            }
            let path = &self.paths[&step.table];
            let scope = scopes.get(step.table.as_str()).cloned().unwrap_or_default();
            let d = self.d;
            let t = step.table.q(d);
            let mut remaining = 0u64;
            if path.depth() == 0 {
                let keys: Vec<Val> = outcomes
                    .iter()
                    .filter_map(|(_, s, _)| self.key_for(&step.table, s))
                    .collect();
                for chunk in keys.chunks(VERIFY_CHUNK) {
                    let mut sql = Sql::new(d);
                    let pred = path.pred(&mut sql, chunk);
                    let ex = update_filter(&mut sql, &step.action, &scope);
                    sql.text = format!("SELECT COUNT(*) FROM {t} t0 WHERE {pred}{ex}");
                    remaining += self.count_one(&mut conn, sql).await?;
                }
            } else if let Some(link) = path.links.first() {
                let cols: Vec<String> = link
                    .columns
                    .iter()
                    .map(|c| format!("t0.{}", c.q(d)))
                    .collect();
                for chunk in scope.parents.chunks(VERIFY_CHUNK) {
                    let mut sql = Sql::new(d);
                    let tuples: Vec<String> = chunk
                        .iter()
                        .filter(|t| t.len() == cols.len())
                        .map(|t| sql.list(t))
                        .collect();
                    if tuples.is_empty() {
                        continue;
                    }
                    let ex = update_filter(&mut sql, &step.action, &scope);
                    sql.text = format!(
                        "SELECT COUNT(*) FROM {t} t0 WHERE ({}) IN ({}){ex}",
                        cols.join(", "),
                        tuples.join(", ")
                    );
                    remaining += self.count_one(&mut conn, sql).await?;
                }
            }
            if remaining > 0 {
                return Err(ConnectError::NotErased {
                    system: n.clone(),
                    table: step.table.to_string(),
                    remaining,
                });
            }
            remaining_by_table.insert(step.table.to_string(), 0);
        }
        Ok(outcomes
            .into_iter()
            .map(|(case, _, mut o)| {
                for t in &mut o.tables {
                    t.remaining = Some(match remaining_by_table.get(&t.table) {
                        Some(r) => *r,
                        None => t.rows, // kept rows stay, as recorded
                    });
                }
                (case, o)
            })
            .collect())
    }

    async fn count_one(
        &self,
        conn: &mut sqlx::AnyConnection,
        sql: Sql,
    ) -> Result<u64, ConnectError> {
        let r = bind_all(sqlx::query(AssertSqlSafe(sql.text.clone())), &sql.binds)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| db_err(&self.name, "verify", e))?;
        Ok(count(&r, 0))
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
        v.pop().map(|(_, o)| o).ok_or_else(|| ConnectError::Db {
            system: self.name.clone(),
            action: "verify",
            message: "no outcome for the case".into(),
        })
    }

    /// Purges kept rows whose retention ended (children first within a
    /// case), at most `limit` record rows per call. Returns (case id,
    /// table, rows purged).
    pub async fn purge_expired(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(String, String, u64)>, ConnectError> {
        let n = &self.name;
        let d = self.d;
        let mut sql = Sql::new(d);
        let p = sql.p(Val::I(now.as_second()));
        sql.text = format!(
            "SELECT case_id, table_name, subject FROM {RECORD_TABLE} WHERE retain_until_s <= {p} AND purged_at IS NULL AND subject IS NOT NULL ORDER BY retain_until_s LIMIT {}",
            limit.min(1000)
        );
        let due = bind_all(sqlx::query(AssertSqlSafe(sql.text.clone())), &sql.binds)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_err(n, "read expired retentions", e))?;
        let mut due: Vec<(String, String, String)> = due
            .iter()
            .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?, r.try_get(2).ok()?)))
            .collect();
        let order = |t: &str| self.plan.steps.iter().position(|s| s.table.as_str() == t);
        due.sort_by_key(|(c, t, _)| (c.clone(), order(t)));
        let mut out = vec![];
        for (case, table, subject) in due {
            let Some(step) = self.plan.steps.iter().find(|s| s.table.as_str() == table) else {
                continue; // the table left the data map; leave the record
            };
            let Ok(subject) = SubjectId::parse(&subject) else {
                continue;
            };
            let mut tx = self.pool.begin().await.map_err(|e| db_err(n, "begin", e))?;
            let rows = match self.key_for(&step.table, &subject) {
                Some(k) => {
                    let sql = self.paths[&step.table].write(d, None, vec![], &[k], None);
                    bind_all(sqlx::query(AssertSqlSafe(sql.text.clone())), &sql.binds)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| db_err(n, "purge kept rows", e))?
                        .rows_affected()
                }
                None => 0,
            };
            let mut sql = Sql::new(d);
            let a = sql.p(Val::S(now.to_string()));
            let b = sql.p(Val::I(i64::try_from(rows).unwrap_or(i64::MAX)));
            let c = sql.p(Val::S(case.clone()));
            let t = sql.p(Val::S(table.clone()));
            sql.text = format!(
                "UPDATE {RECORD_TABLE} SET purged_at = {a}, purged_rows = {b}, subject = NULL WHERE case_id = {c} AND table_name = {t}"
            );
            bind_all(sqlx::query(AssertSqlSafe(sql.text.clone())), &sql.binds)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err(n, "record the purge", e))?;
            tx.commit().await.map_err(|e| db_err(n, "commit", e))?;
            out.push((case, table, rows));
        }
        Ok(out)
    }

    async fn record_rows(
        &self,
        tx: &mut sqlx::AnyConnection,
        ids: &[Val],
    ) -> Result<BTreeMap<String, Vec<RecordRow>>, ConnectError> {
        let mut sql = Sql::new(self.d);
        let list = sql.list(ids);
        sql.text = format!(
            "SELECT case_id, table_name, action, row_count, retain_until_s FROM {RECORD_TABLE} WHERE case_id IN {list}"
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql.text.clone())), &sql.binds)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| db_err(&self.name, "read the erasure record", e))?;
        let mut out: BTreeMap<String, Vec<RecordRow>> = BTreeMap::new();
        for r in rows {
            let case: String = r.try_get(0).unwrap_or_default();
            out.entry(case).or_default().push(RecordRow {
                table: r.try_get(1).unwrap_or_default(),
                action: r.try_get(2).unwrap_or_default(),
                rows: count(&r, 3),
                scope: Scope::default(),
                subject: None,
                retain_until: r
                    .try_get::<Option<i64>, _>(4)
                    .ok()
                    .flatten()
                    .and_then(|s| Timestamp::from_second(s).ok()),
            });
        }
        Ok(out)
    }

    async fn write_record(
        &self,
        tx: &mut sqlx::AnyConnection,
        rows: &BTreeMap<String, Vec<RecordRow>>,
        now: Timestamp,
    ) -> Result<(), ConnectError> {
        let flat: Vec<(&String, &RecordRow)> = rows
            .iter()
            .flat_map(|(c, rs)| rs.iter().map(move |r| (c, r)))
            .collect();
        let stamp = now.to_string();
        // 8 binds per row; 100 rows per statement stays far under every
        // database's parameter limit.
        for chunk in flat.chunks(100) {
            let mut sql = Sql::new(self.d);
            let mut values = vec![];
            for (case, r) in chunk {
                let scope = serde_json::to_string(&r.scope).unwrap_or_else(|_| "{}".into());
                let v = [
                    Val::S((*case).clone()),
                    Val::S(r.table.clone()),
                    Val::S(r.action.clone()),
                    Val::I(i64::try_from(r.rows).unwrap_or(i64::MAX)),
                    Val::S(scope),
                    Val::S(stamp.clone()),
                ];
                let mut ps: Vec<String> = v.iter().map(|x| sql.p(x.clone())).collect();
                ps.push(match &r.subject {
                    Some(s) => sql.p(Val::S(s.clone())),
                    None => "NULL".into(),
                });
                ps.push(match r.retain_until {
                    Some(t) => sql.p(Val::I(t.as_second())),
                    None => "NULL".into(),
                });
                values.push(format!("({})", ps.join(", ")));
            }
            sql.text = format!(
                "INSERT INTO {RECORD_TABLE} (case_id, table_name, action, row_count, scope, recorded_at, subject, retain_until_s) VALUES {}",
                values.join(", ")
            );
            bind_all(sqlx::query(AssertSqlSafe(sql.text.clone())), &sql.binds)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err(&self.name, "write the erasure record", e))?;
        }
        Ok(())
    }

    fn outcome_from_record(&self, rows: &[RecordRow], replayed: bool) -> SystemOutcome {
        let tables = self
            .plan
            .steps
            .iter()
            .map(|step| {
                let rec = rows.iter().find(|r| r.table == step.table.as_str());
                let legal_basis = match &step.action {
                    Action::Keep { legal_basis, .. } => Some(legal_basis.clone()),
                    _ => None,
                };
                let rows = rec.map(|r| r.rows).unwrap_or(0);
                TableOutcome {
                    table: step.table.to_string(),
                    action: step.action.name().to_owned(),
                    rows,
                    remaining: None,
                    legal_basis: legal_basis.filter(|_| rows > 0),
                    retain_until: rec.and_then(|r| r.retain_until),
                }
            })
            .collect();
        SystemOutcome {
            system: self.name.clone(),
            tables,
            replayed,
        }
    }
}

#[derive(Debug, Clone)]
struct RecordRow {
    table: String,
    action: String,
    rows: u64,
    scope: Scope,
    subject: Option<String>,
    retain_until: Option<Timestamp>,
}

/// For an updated table, the condition of a row not done yet: a column to
/// null still set, or a hashed column holding something other than a hash
/// written by the erasure.
fn update_filter(sql: &mut Sql, action: &Action, scope: &Scope) -> String {
    let Action::Update { set_null, hash } = action else {
        return String::new();
    };
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
    let text = match d {
        Dialect::Mysql => "VARCHAR(255)",
        _ => "TEXT",
    };
    let long = match d {
        Dialect::Mysql => "LONGTEXT",
        _ => "TEXT",
    };
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {RECORD_TABLE} (
            case_id VARCHAR(64) NOT NULL,
            table_name VARCHAR(64) NOT NULL,
            action VARCHAR(16) NOT NULL,
            row_count BIGINT NOT NULL,
            scope {long},
            recorded_at VARCHAR(40) NOT NULL,
            subject {text},
            retain_until_s BIGINT,
            purged_at VARCHAR(40),
            purged_rows BIGINT,
            PRIMARY KEY (case_id, table_name))"
    )))
    .execute(&mut *c)
    .await
    .map_err(|e| db_err(name, "create the erasure record", e))?;
    Ok(())
}

/// Ownership of a table, for callers that print plans.
pub fn describe_ownership(t: &Table) -> String {
    match &t.ownership {
        Ownership::Column(c) => format!("owner column {c}"),
        Ownership::Parent(p) => format!("belongs to {} via {:?}", p.table, p.columns),
    }
}
