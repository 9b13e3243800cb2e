//! Test databases on the machine's servers (PostgreSQL on 5432, MariaDB on
//! 3306) and SQLite files, shared by the connector's live tests.
#![allow(dead_code)]

use sqlx::{AnyPool, AssertSqlSafe, Executor, Row};

/// A test database, dropped by [`Scratch::remove`] at the end of a test
/// that passed (a failed test leaves it for inspection).
pub struct Scratch {
    pub kind: String,
    pub name: String,
    _dir: Option<tempfile::TempDir>,
}

impl Scratch {
    pub async fn remove(self) {
        let (url, stmt) = match self.kind.as_str() {
            "postgres" => (
                "postgres://postgres@127.0.0.1:5432/postgres",
                format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ),
            "mysql" => (
                "mysql://root@127.0.0.1:3306/test",
                format!("DROP DATABASE IF EXISTS {}", self.name),
            ),
            _ => return,
        };
        let admin = AnyPool::connect(url).await.unwrap();
        admin.execute(AssertSqlSafe(stmt)).await.unwrap();
    }
}

/// A fresh database on the server (or a SQLite file), with the schema.
pub async fn fresh_db(kind: &str, ddl: &str) -> (String, Scratch) {
    sqlx::any::install_default_drivers();
    let name = format!("lethe_t_{}", uuid::Uuid::new_v4().simple());
    let server = match kind {
        "postgres" => Some(("postgres://postgres@127.0.0.1:5432", "postgres")),
        "mysql" => Some(("mysql://root@127.0.0.1:3306", "test")),
        _ => None,
    };
    let (url, dir) = match server {
        Some((base, admin_db)) => {
            let admin = AnyPool::connect(&format!("{base}/{admin_db}"))
                .await
                .unwrap();
            admin
                .execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .await
                .unwrap();
            (format!("{base}/{name}"), None)
        }
        None => {
            let dir = tempfile::tempdir().unwrap();
            (
                format!("sqlite://{}?mode=rwc", dir.path().join("shop.db").display()),
                Some(dir),
            )
        }
    };
    let pool = AnyPool::connect(&url).await.unwrap();
    let mut c = pool.acquire().await.unwrap();
    if kind == "sqlite" {
        c.execute("PRAGMA foreign_keys = ON").await.unwrap();
    }
    // Statements end with `;` at the end of a line (a `;` inside a line
    // belongs to a trigger or function body).
    for stmt in ddl.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        c.execute(AssertSqlSafe(stmt.to_owned())).await.unwrap();
    }
    (
        url,
        Scratch {
            kind: kind.to_owned(),
            name,
            _dir: dir,
        },
    )
}

pub async fn scalar(pool: &AnyPool, q: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(AssertSqlSafe(q.to_owned()))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Every row of a table as text, sorted (rows equal on the first column
/// come back in any order).
pub async fn dump(pool: &AnyPool, table: &str) -> Vec<String> {
    // PostgreSQL writes a whole row as text (every type, arrays too); the
    // others have no such cast, and their driver reads every column.
    let pg = sqlx::query_scalar::<_, String>(AssertSqlSafe(format!(
        "SELECT CAST(t AS TEXT) FROM {table} t"
    )))
    .fetch_all(pool)
    .await;
    let mut rows = match pg {
        Ok(rows) => rows,
        Err(_) => dump_query(pool, &format!("SELECT * FROM {table}")).await,
    };
    rows.sort();
    rows
}

/// Every row a query returns, as text.
pub async fn dump_query(pool: &AnyPool, q: &str) -> Vec<String> {
    let table = q;
    let rows = sqlx::query(AssertSqlSafe(q.to_owned()))
        .fetch_all(pool)
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (0..r.len())
                .map(|i| {
                    r.try_get::<Option<i64>, _>(i)
                        .map(|v| format!("{v:?}"))
                        .or_else(|_| r.try_get::<Option<i32>, _>(i).map(|v| format!("{v:?}")))
                        .or_else(|_| r.try_get::<Option<String>, _>(i).map(|v| format!("{v:?}")))
                        .unwrap_or_else(|e| panic!("{table} column {i}: {e}"))
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}
