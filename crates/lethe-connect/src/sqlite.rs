//! The SQLite connector.
//!
//! Erasure of one subject in one system is one transaction on that system,
//! which also writes the counts into a ledger table in the same database.
//! A re-run (after a crash, a retry) finds the ledger rows and returns the
//! recorded counts without touching anything: results are idempotent and
//! never double-counted.

use jiff::Timestamp;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{AssertSqlSafe, Row};
use std::str::FromStr;
use std::time::Duration;

use crate::datamap::{Action, BlockerRule, System};
use crate::planner::{Plan, PlanError, plan_with};
use lethe_domain::{Blocker, SubjectId};

/// The ledger table Lethe keeps in each SQL system it erases from. It holds
/// case ids, table names and counts: no personal data.
pub const LEDGER_TABLE: &str = "lethe_erasure_ledger";

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "system {system}: the environment variable {var} is not set; export it with the connection URL"
    )]
    MissingUrl { system: String, var: String },
    #[error("system {system}: {source}")]
    Plan {
        system: String,
        #[source]
        source: PlanError,
    },
    /// Database errors are reported by kind, never with the values bound.
    #[error("system {system}: {action} failed: {message}")]
    Db {
        system: String,
        action: &'static str,
        message: String,
    },
    #[error(
        "system {system}: verification found {remaining} row(s) of the subject left in {table}"
    )]
    NotErased {
        system: String,
        table: String,
        remaining: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableOutcome {
    pub table: String,
    pub action: String,
    /// Rows deleted, nullified, or (for `keep`) kept.
    pub rows: u64,
    /// Rows of the subject found by the verification pass (0 when erased).
    pub remaining: Option<u64>,
    pub legal_basis: Option<String>,
    pub retain_until: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SystemOutcome {
    pub system: String,
    pub tables: Vec<TableOutcome>,
    /// True when the counts come from an earlier run's ledger.
    pub replayed: bool,
}

pub struct SqliteSystem {
    name: String,
    pool: SqlitePool,
    plan: Plan,
    phone_query: Option<String>,
    identities: std::collections::BTreeMap<String, String>,
    accounts_by_phone: Option<String>,
    accounts_by_id_number: Option<String>,
}

impl std::fmt::Debug for SqliteSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteSystem")
            .field("name", &self.name)
            .finish()
    }
}

/// Errors from sqlx can quote SQL but never bound values; keep only the
/// database's message, cut to a bounded length.
fn db_err(system: &str, action: &'static str, e: sqlx::Error) -> ConnectError {
    let mut message = match &e {
        sqlx::Error::Database(d) => d.message().to_owned(),
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection".into(),
        sqlx::Error::Io(_) => "I/O error talking to the database".into(),
        other => other.to_string(),
    };
    message.truncate(300);
    ConnectError::Db {
        system: system.to_owned(),
        action,
        message,
    }
}

impl SqliteSystem {
    /// Connects using the URL in the system's environment variable.
    pub async fn connect_from_env(system: &System) -> Result<Self, ConnectError> {
        let url = std::env::var(&system.url_env).map_err(|_| ConnectError::MissingUrl {
            system: system.name.to_string(),
            var: system.url_env.clone(),
        })?;
        Self::connect(system, &url).await
    }

    pub async fn connect(system: &System, url: &str) -> Result<Self, ConnectError> {
        let name = system.name.to_string();
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| db_err(&name, "parse the connection URL", e))?
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(system.max_connections)
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(opts)
            .await
            .map_err(|e| db_err(&name, "connect", e))?;
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
                case_id TEXT NOT NULL,
                table_name TEXT NOT NULL,
                action TEXT NOT NULL,
                rows INTEGER NOT NULL,
                scope TEXT,
                recorded_at TEXT NOT NULL,
                PRIMARY KEY (case_id, table_name))"
        )))
        .execute(&pool)
        .await
        .map_err(|e| db_err(&name, "create the erasure ledger", e))?;
        // Foreign keys of the live schema order the erasure too.
        let mut fks = Vec::new();
        for t in &system.tables {
            let rows = sqlx::query("SELECT \"table\" FROM pragma_foreign_key_list($1)")
                .bind(t.name.to_string())
                .fetch_all(&pool)
                .await
                .map_err(|e| db_err(&name, "read the schema", e))?;
            for r in rows {
                if let Ok(parent) = crate::Ident::parse(&r.get::<String, _>(0)) {
                    fks.push((t.name.clone(), parent));
                }
            }
        }
        let plan = plan_with(system, &fks).map_err(|source| ConnectError::Plan {
            system: name.clone(),
            source,
        })?;
        Ok(Self {
            name,
            pool,
            plan,
            phone_query: system.phone_query.clone(),
            identities: system.identities.clone(),
            accounts_by_phone: system.accounts_by_phone.clone(),
            accounts_by_id_number: system.accounts_by_id_number.clone(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The subject's registered phone, for delivering a one-time code.
    pub async fn phone(&self, subject: &SubjectId) -> Result<Option<String>, ConnectError> {
        let Some(q) = &self.phone_query else {
            return Ok(None);
        };
        let row = sqlx::query(AssertSqlSafe(q.clone()))
            .bind(subject.expose().to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| db_err(&self.name, "look up the phone", e))?;
        Ok(row.and_then(|r| first_text(&r)))
    }

    /// The subject's identifiers (kind, value) for tombstones. Read before
    /// erasure; values never leave this call except as keyed hashes.
    pub async fn identifiers(
        &self,
        subject: &SubjectId,
    ) -> Result<Vec<(String, String)>, ConnectError> {
        let mut out = vec![];
        for (kind, q) in &self.identities {
            let rows = sqlx::query(AssertSqlSafe(q.clone()))
                .bind(subject.expose().to_owned())
                .fetch_all(&self.pool)
                .await
                .map_err(|e| db_err(&self.name, "read identifiers", e))?;
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
        let rows = sqlx::query(AssertSqlSafe(q.clone()))
            .bind(id_number.to_owned())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_err(&self.name, "look up accounts by ID number", e))?;
        Ok(rows.iter().filter_map(first_text).take(100).collect())
    }

    /// Live accounts bound to a phone number (up to 100).
    pub async fn accounts_with_phone(&self, phone: &str) -> Result<Vec<String>, ConnectError> {
        let Some(q) = &self.accounts_by_phone else {
            return Ok(vec![]);
        };
        let rows = sqlx::query(AssertSqlSafe(q.clone()))
            .bind(phone.to_owned())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_err(&self.name, "look up accounts by phone", e))?;
        Ok(rows.iter().filter_map(first_text).take(100).collect())
    }

    /// Whether the subject exists in this system at all (a row in any table
    /// owned directly by the subject).
    pub async fn subject_exists(&self, subject: &SubjectId) -> Result<bool, ConnectError> {
        for step in self.plan.steps.iter().filter(|s| s.depth == 0) {
            let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT EXISTS(SELECT 1 FROM {} WHERE {})",
                step.table.quoted(),
                step.condition
            )))
            .bind(subject.expose().to_owned())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| db_err(&self.name, "look up the subject", e))?;
            if n != 0 {
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
        let rows = sqlx::query(AssertSqlSafe(rule.query.clone()))
            .bind(subject.expose().to_owned())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_err(&self.name, "run a blocker rule", e))?;
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
        let rows = sqlx::query(AssertSqlSafe(rule.query.clone()))
            .bind(subject.expose().to_owned())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_err(&self.name, "run an asset rule", e))?;
        let text = |r: &SqliteRow, c: &str| -> Option<String> {
            r.try_get::<Option<String>, _>(c)
                .ok()
                .flatten()
                .or_else(|| {
                    r.try_get::<Option<i64>, _>(c)
                        .ok()
                        .flatten()
                        .map(|v| v.to_string())
                })
        };
        let int = |r: &SqliteRow, c: &str| -> Option<i64> {
            r.try_get::<Option<i64>, _>(c).ok().flatten()
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

    /// The connection pool (for the demo platform's own endpoints).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The first column of the first row of a consequence query, as text.
    pub async fn value(
        &self,
        query: &str,
        subject: &SubjectId,
    ) -> Result<Option<String>, ConnectError> {
        let row = sqlx::query(AssertSqlSafe(query.to_owned()))
            .bind(subject.expose().to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| db_err(&self.name, "run a consequence rule", e))?;
        Ok(row.and_then(|r| first_text(&r)))
    }

    /// Erases the subject, children first, in one transaction that also
    /// records the counts in the ledger. Idempotent per case.
    pub async fn erase(
        &self,
        case_id: &str,
        subject: &SubjectId,
        now: Timestamp,
    ) -> Result<SystemOutcome, ConnectError> {
        let n = &self.name;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| db_err(n, "begin", e))?;
        let recorded = self.ledger_rows(&mut tx, case_id).await?;
        if !recorded.is_empty() {
            tx.rollback().await.map_err(|e| db_err(n, "rollback", e))?;
            return Ok(self.outcome_from_ledger(recorded, now, true));
        }
        // Capture, before anything is deleted, the parent keys that tie each
        // child table to the subject: the verification pass needs them.
        let mut scopes = Vec::new();
        for step in &self.plan.steps {
            let scope: Option<String> = match self.parent_scope_query(step) {
                Some(q) => sqlx::query_scalar(AssertSqlSafe(q))
                    .bind(subject.expose().to_owned())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| db_err(n, "capture the parent keys", e))?,
                None => None,
            };
            scopes.push(scope);
        }
        let stamp = now.to_string();
        let mut recorded = Vec::new();
        for (step, scope) in self.plan.steps.iter().zip(scopes) {
            let sql = match &step.action {
                Action::Delete => format!(
                    "DELETE FROM {} WHERE {}",
                    step.table.quoted(),
                    step.condition
                ),
                Action::Nullify { columns } => {
                    let sets: Vec<String> = columns
                        .iter()
                        .map(|c| format!("{} = NULL", c.quoted()))
                        .collect();
                    format!(
                        "UPDATE {} SET {} WHERE {}",
                        step.table.quoted(),
                        sets.join(", "),
                        step.condition
                    )
                }
                Action::Keep { .. } => format!(
                    "SELECT COUNT(*) FROM {} WHERE {}",
                    step.table.quoted(),
                    step.condition
                ),
            };
            let rows: u64 = match &step.action {
                Action::Keep { .. } => {
                    let c: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
                        .bind(subject.expose().to_owned())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(|e| db_err(n, "count kept rows", e))?;
                    u64::try_from(c).unwrap_or(0)
                }
                _ => sqlx::query(AssertSqlSafe(sql))
                    .bind(subject.expose().to_owned())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_err(n, "erase rows", e))?
                    .rows_affected(),
            };
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {LEDGER_TABLE} (case_id, table_name, action, rows, scope, recorded_at) VALUES ($1, $2, $3, $4, $5, $6)"
            )))
            .bind(case_id.to_owned())
            .bind(step.table.to_string())
            .bind(step.action.name())
            .bind(i64::try_from(rows).unwrap_or(i64::MAX))
            .bind(scope.clone())
            .bind(stamp.clone())
            .execute(&mut *tx)
            .await
            .map_err(|e| db_err(n, "write the erasure ledger", e))?;
            recorded.push(LedgerRow {
                table: step.table.to_string(),
                rows,
                recorded_at: now,
            });
        }
        tx.commit().await.map_err(|e| db_err(n, "commit", e))?;
        Ok(self.outcome_from_ledger(recorded, now, false))
    }

    /// Counts what is left of the subject in every mapped table. Fills
    /// `remaining` in the outcome; errors if a deleted or nullified table
    /// still holds the subject's data.
    pub async fn verify(
        &self,
        case_id: &str,
        subject: &SubjectId,
        mut outcome: SystemOutcome,
    ) -> Result<SystemOutcome, ConnectError> {
        let n = &self.name;
        let scopes: Vec<(String, Option<String>)> = sqlx::query(AssertSqlSafe(format!(
            "SELECT table_name, scope FROM {LEDGER_TABLE} WHERE case_id = $1"
        )))
        .bind(case_id.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_err(n, "read the erasure ledger", e))?
        .into_iter()
        .map(|r| (r.get::<String, _>(0), r.get::<Option<String>, _>(1)))
        .collect();
        for step in &self.plan.steps {
            let scope = scopes
                .iter()
                .find(|(t, _)| t == step.table.as_str())
                .and_then(|(_, s)| s.clone());
            let cond = match (&scope, self.parent_link_columns(step)) {
                (Some(_), Some(cols)) => {
                    format!("json_array({cols}) IN (SELECT value FROM json_each($2))")
                }
                _ => step.condition.clone(),
            };
            let extra = match &step.action {
                Action::Nullify { columns } => {
                    let c: Vec<String> = columns
                        .iter()
                        .map(|c| format!("{} IS NOT NULL", c.quoted()))
                        .collect();
                    format!(" AND ({})", c.join(" OR "))
                }
                _ => String::new(),
            };
            let remaining: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM {} WHERE ({cond}){extra}",
                step.table.quoted()
            )))
            .bind(subject.expose().to_owned())
            .bind(scope.unwrap_or_else(|| "[]".into()))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| db_err(n, "verify", e))?;
            let remaining = u64::try_from(remaining).unwrap_or(0);
            if remaining > 0 && !matches!(step.action, Action::Keep { .. }) {
                return Err(ConnectError::NotErased {
                    system: n.clone(),
                    table: step.table.to_string(),
                    remaining,
                });
            }
            if let Some(t) = outcome
                .tables
                .iter_mut()
                .find(|t| t.table == step.table.as_str())
            {
                t.remaining = Some(remaining);
            }
        }
        Ok(outcome)
    }

    /// For a child table, a query returning the JSON array of the parent key
    /// tuples that belong to the subject.
    fn parent_scope_query(&self, step: &crate::planner::PlannedTable) -> Option<String> {
        let sys_table = self.plan.steps.iter().find(|s| s.table == step.table)?;
        let link = self.link_of(&sys_table.table)?;
        let parent = self.plan.steps.iter().find(|s| s.table == link.table)?;
        let refs: Vec<String> = link.references.iter().map(|r| r.quoted()).collect();
        Some(format!(
            "SELECT json_group_array(json_array({})) FROM {} WHERE {}",
            refs.join(", "),
            parent.table.quoted(),
            parent.condition
        ))
    }

    fn parent_link_columns(&self, step: &crate::planner::PlannedTable) -> Option<String> {
        let link = self.link_of(&step.table)?;
        let c: Vec<String> = link.columns.iter().map(|c| c.quoted()).collect();
        Some(c.join(", "))
    }

    fn link_of(&self, table: &crate::Ident) -> Option<&crate::datamap::ParentLink> {
        self.plan.links.get(table)
    }

    async fn ledger_rows(
        &self,
        tx: &mut sqlx::SqliteConnection,
        case_id: &str,
    ) -> Result<Vec<LedgerRow>, ConnectError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT table_name, rows, recorded_at FROM {LEDGER_TABLE} WHERE case_id = $1"
        )))
        .bind(case_id.to_owned())
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| db_err(&self.name, "read the erasure ledger", e))?;
        Ok(rows
            .into_iter()
            .map(|r| LedgerRow {
                table: r.get(0),
                rows: u64::try_from(r.get::<i64, _>(1)).unwrap_or(0),
                recorded_at: r
                    .get::<String, _>(2)
                    .parse()
                    .unwrap_or(Timestamp::UNIX_EPOCH),
            })
            .collect())
    }

    fn outcome_from_ledger(
        &self,
        rows: Vec<LedgerRow>,
        _now: Timestamp,
        replayed: bool,
    ) -> SystemOutcome {
        let tables = self
            .plan
            .steps
            .iter()
            .map(|step| {
                let rec = rows.iter().find(|r| r.table == step.table.as_str());
                let (legal_basis, retain_until) = match (&step.action, rec) {
                    (
                        Action::Keep {
                            legal_basis,
                            retention_days,
                        },
                        Some(r),
                    ) => (
                        Some(legal_basis.clone()),
                        r.recorded_at
                            .checked_add(jiff::SignedDuration::from_hours(
                                24 * i64::from(*retention_days),
                            ))
                            .ok(),
                    ),
                    _ => (None, None),
                };
                TableOutcome {
                    table: step.table.to_string(),
                    action: step.action.name().to_owned(),
                    rows: rec.map(|r| r.rows).unwrap_or(0),
                    remaining: None,
                    legal_basis,
                    retain_until,
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

struct LedgerRow {
    table: String,
    rows: u64,
    recorded_at: Timestamp,
}

fn first_text(r: &SqliteRow) -> Option<String> {
    if let Ok(v) = r.try_get::<String, _>(0) {
        return Some(v);
    }
    if let Ok(v) = r.try_get::<i64, _>(0) {
        return Some(v.to_string());
    }
    r.try_get::<f64, _>(0).ok().map(|v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataMap;

    const MAP: &str = r#"
[[systems]]
name = "shop"
kind = "sqlite"
url_env = "SHOP_URL"
[[systems.tables]]
name = "users"
owner = "id"
action = "delete"
[[systems.tables]]
name = "orders"
owner = "user_id"
action = "delete"
[[systems.tables]]
name = "lines"
belongs_to = { table = "orders", columns = ["order_id"], references = ["id"] }
action = "delete"
[[systems.tables]]
name = "line_notes"
belongs_to = { table = "lines", columns = ["order_id", "line_no"], references = ["order_id", "line_no"] }
action = "delete"
[[systems.tables]]
name = "reviews"
owner = "user_id"
action = "nullify"
columns = ["user_id", "author_name"]
[[systems.tables]]
name = "invoices"
owner = "user_id"
action = "keep"
legal_basis = "tax"
retention_days = 10
"#;

    async fn setup() -> (tempfile::TempDir, SqliteSystem) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("shop.db").display());
        let pool = SqlitePool::connect(&url).await.unwrap();
        sqlx::raw_sql(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
             CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id));
             CREATE TABLE lines (order_id INTEGER NOT NULL REFERENCES orders(id), line_no INTEGER NOT NULL, PRIMARY KEY (order_id, line_no));
             CREATE TABLE line_notes (id INTEGER PRIMARY KEY, order_id INTEGER, line_no INTEGER, note TEXT, FOREIGN KEY (order_id, line_no) REFERENCES lines(order_id, line_no));
             CREATE TABLE reviews (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), author_name TEXT, body TEXT);
             CREATE TABLE invoices (id INTEGER PRIMARY KEY, user_id INTEGER, amount INTEGER);
             INSERT INTO users VALUES (1, 'a'), (2, 'b');
             INSERT INTO orders VALUES (10, 1), (11, 1), (20, 2);
             INSERT INTO lines VALUES (10, 1), (10, 2), (11, 1), (20, 1);
             INSERT INTO line_notes (order_id, line_no, note) VALUES (10, 1, 'x'), (10, 2, 'y'), (20, 1, 'z');
             INSERT INTO reviews (user_id, author_name, body) VALUES (1, 'a', 'good'), (2, 'b', 'bad');
             INSERT INTO invoices (user_id, amount) VALUES (1, 5), (2, 6);",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
        let map = DataMap::parse(MAP).unwrap();
        let sys = SqliteSystem::connect(&map.systems[0], &url).await.unwrap();
        (dir, sys)
    }

    fn rows(o: &SystemOutcome, t: &str) -> u64 {
        o.tables.iter().find(|x| x.table == t).unwrap().rows
    }

    #[tokio::test]
    async fn erases_children_first_verifies_and_replays_idempotently() {
        let (_d, sys) = setup().await;
        let subject = SubjectId::parse("1").unwrap();
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let out = sys.erase("case-1", &subject, now).await.unwrap();
        assert!(!out.replayed);
        assert_eq!(
            (
                rows(&out, "users"),
                rows(&out, "orders"),
                rows(&out, "lines"),
                rows(&out, "line_notes")
            ),
            (1, 2, 3, 2)
        );
        assert_eq!((rows(&out, "reviews"), rows(&out, "invoices")), (1, 1));
        let kept = out.tables.iter().find(|t| t.table == "invoices").unwrap();
        assert_eq!(
            kept.retain_until.unwrap().to_string(),
            "2026-01-11T00:00:00Z"
        );
        let verified = sys.verify("case-1", &subject, out.clone()).await.unwrap();
        assert!(
            verified
                .tables
                .iter()
                .filter(|t| t.action != "keep")
                .all(|t| t.remaining == Some(0))
        );

        // A re-run returns the recorded counts and touches nothing.
        let again = sys.erase("case-1", &subject, now).await.unwrap();
        assert!(again.replayed);
        assert_eq!(again.tables, out.tables);

        // The other user is intact.
        let other: (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM orders WHERE user_id = 2), (SELECT COUNT(*) FROM lines WHERE order_id = 20),
                    (SELECT COUNT(*) FROM line_notes WHERE order_id = 20), (SELECT COUNT(*) FROM reviews WHERE user_id = 2 AND author_name = 'b')",
        )
        .fetch_one(&sys.pool)
        .await
        .unwrap();
        assert_eq!(other, (1, 1, 1, 1));
        // The nullified review stays, without its author.
        let body: String = sqlx::query_scalar("SELECT body FROM reviews WHERE user_id IS NULL")
            .fetch_one(&sys.pool)
            .await
            .unwrap();
        assert_eq!(body, "good");
    }

    #[tokio::test]
    async fn verification_catches_rows_left_behind() {
        let (_d, sys) = setup().await;
        let subject = SubjectId::parse("1").unwrap();
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let out = sys.erase("case-1", &subject, now).await.unwrap();
        // A line note of the subject's order reappears (a late write).
        let mut c = sys.pool.acquire().await.unwrap();
        sqlx::query("PRAGMA foreign_keys = OFF")
            .execute(&mut *c)
            .await
            .unwrap();
        sqlx::query("INSERT INTO line_notes (order_id, line_no, note) VALUES (11, 1, 'late')")
            .execute(&mut *c)
            .await
            .unwrap();
        sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&mut *c)
            .await
            .unwrap();
        drop(c);
        let e = sys.verify("case-1", &subject, out).await.unwrap_err();
        assert!(
            matches!(e, ConnectError::NotErased { ref table, remaining: 1, .. } if table == "line_notes"),
            "{e}"
        );
    }
}
