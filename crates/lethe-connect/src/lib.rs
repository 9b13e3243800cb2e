//! The platform side of erasure: the data map (which stores hold the
//! subject's data and what to do with it), the planner (in which order), and
//! the connectors (doing it, proving it): SQL (SQLite, PostgreSQL,
//! MySQL/MariaDB), Redis, HTTP services, and manual tasks.
//!
//! A data map is parsed once into [`DataMap`]; every name in it is checked to
//! be a plain SQL identifier, so SQL built from it cannot be injected.

pub mod check;
pub mod datamap;
pub mod discover;
pub mod http;
pub mod init;
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
    /// The plan error names the system itself.
    #[error("{source}")]
    Plan {
        system: String,
        #[source]
        source: Box<PlanError>,
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

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// Referenced rows (`referenced_by`) of the subject kept because other
    /// rows still reference them (an address shared with a store).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shared_kept: u64,
    /// Columns set to NULL in the rows that stay (names only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_null: Vec<String>,
    /// Columns replaced by a keyed hash in the rows that stay (names only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashed: Vec<String>,
    /// Kept only because the kept rows of this table reference them (a
    /// stub), purged with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stub_for: Option<String>,
    /// A stub table's rows of the subject deleted because no kept row
    /// references them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stub_deleted: u64,
    /// The data map's names for users (what the table holds, why it is
    /// kept) in Chinese and English, when it gives them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<lethe_domain::labels::TableLabels>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SystemOutcome {
    pub system: String,
    pub tables: Vec<TableOutcome>,
    /// True when the counts come from an earlier run's record.
    pub replayed: bool,
}

/// One dataset of a subject's data export: a table, a Redis entry or a
/// dataset an HTTP service returned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportDataset {
    pub name: String,
    pub columns: Vec<String>,
    /// Rows the subject has there (for progress).
    pub rows: u64,
}

/// One exported row: the text of a JSON object (column name to value) as
/// the database built it. It is passed on as it is, not parsed into a map
/// and written again: the archive reads its fields as it writes it, and
/// refuses text that is not one JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowJson(String);

impl RowJson {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The row as a JSON object (for checks and tests; the export itself
    /// does not parse it into a map).
    pub fn to_object(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        match serde_json::from_str(&self.0) {
            Ok(serde_json::Value::Object(m)) => Some(m),
            _ => None,
        }
    }
}

/// A stream of one table's export rows.
pub type ExportStream<'a> =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<RowJson, ConnectError>> + Send + 'a>>;

/// A dataset read whole (Redis entries, an HTTP service's answer; both
/// bounded by the connector's limits).
pub type ExportRows = Vec<serde_json::Map<String, serde_json::Value>>;

/// Rows of a JSON value: an array of objects is rows as they are, an object
/// is one row, anything else one row `{"value": …}`. Columns are the keys in
/// the order they first appear.
pub fn rows_of(value: serde_json::Value) -> (Vec<String>, ExportRows) {
    let rows: ExportRows = match value {
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                serde_json::Value::Object(m) => m,
                other => one("value", other),
            })
            .collect(),
        serde_json::Value::Object(m) => vec![m],
        serde_json::Value::Null => vec![],
        other => vec![one("value", other)],
    };
    let mut columns: Vec<String> = vec![];
    for r in &rows {
        for k in r.keys() {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    (columns, rows)
}

fn one(k: &str, v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert(k.to_owned(), v);
    m
}

#[cfg(test)]
mod export_tests {
    use serde_json::json;

    #[test]
    fn rows_of_json_values() {
        let (c, r) = super::rows_of(json!([{"a": 1}, {"b": 2, "a": 3}, 5]));
        assert_eq!(c, ["a", "b", "value"]);
        assert_eq!(r.len(), 3);
        let (c, r) = super::rows_of(json!({"x": "y"}));
        assert_eq!((c.len(), r.len()), (1, 1));
        assert_eq!(super::rows_of(json!(null)).1.len(), 0);
        assert_eq!(super::rows_of(json!("s")).0, ["value"]);
    }
}
