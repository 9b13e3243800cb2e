//! The platform side of erasure: the data map (which stores hold the
//! subject's data and what to do with it), the planner (in which order), and
//! the connectors (doing it, proving it): SQL (SQLite, PostgreSQL,
//! MySQL/MariaDB), Redis, HTTP services, and manual tasks.
//!
//! A data map is parsed once into [`DataMap`]; every name in it is checked to
//! be a plain SQL identifier, so SQL built from it cannot be injected.

pub mod check;
pub mod datamap;
pub mod http;
pub mod planner;
pub mod redis_conn;
pub mod schema;
pub mod sql;
pub mod sqlgen;

pub use datamap::{Action, DataMap, DataMapError, Dialect, Ident, Kind};
pub use planner::{Plan, PlanError, PlannedTable};
pub use sql::{BatchItem, SqlSystem};

use jiff::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "system {system}: the environment variable {var} is not set; export it with the connection URL or secret"
    )]
    MissingUrl { system: String, var: String },
    #[error("system {system}: {message}")]
    Config { system: String, message: String },
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
    /// A table, a Redis entry, an HTTP service or a manual task.
    pub table: String,
    pub action: String,
    /// Rows (keys, members, records) deleted, updated, or (for `keep`) kept.
    pub rows: u64,
    /// Found by the verification pass (0 when erased; for `keep`, the rows
    /// kept).
    pub remaining: Option<u64>,
    pub legal_basis: Option<String>,
    pub retain_until: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SystemOutcome {
    pub system: String,
    pub tables: Vec<TableOutcome>,
    /// True when the counts come from an earlier run's record.
    pub replayed: bool,
}
