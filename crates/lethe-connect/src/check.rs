//! `lethe datamap check`: the data map against a live schema. This static
//! check is what keeps deletion correct as schemas change.
//!
//! Pure: it takes the schema (and column samples) read by the connector and
//! returns findings.

use std::collections::{BTreeMap, BTreeSet};

use crate::datamap::{Action, Ownership, System};
use crate::schema::{self, Schema};
use crate::sql::RECORD_TABLE;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub system: String,
    /// `missing_table`, `missing_column`, `uncovered_reference`,
    /// `personal_data`, `order`, `column_type`.
    pub kind: &'static str,
    /// `table` or `table.column`.
    pub at: String,
    pub message: String,
    pub fix: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{sev}[{}] {}.{}: {}\n    fix: {}",
            self.kind, self.system, self.at, self.message, self.fix
        )
    }
}

/// What a column's name suggests it holds, if personal data.
pub fn pii_by_name(column: &str) -> Option<&'static str> {
    let c = column.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| c == *w || c.contains(w));
    if has(&["phone", "mobile", "msisdn", "tel_no", "telephone"]) {
        Some("phone")
    } else if has(&["email", "e_mail", "mail_addr"]) {
        Some("email")
    } else if has(&[
        "id_card",
        "idcard",
        "id_number",
        "id_no",
        "identity_no",
        "passport",
        "sfz",
        "ssn",
    ]) {
        Some("ID number")
    } else if has(&[
        "real_name",
        "full_name",
        "legal_name",
        "first_name",
        "last_name",
        "nickname",
        "username",
        "user_name",
        "contact_name",
        "recipient",
    ]) || c == "name"
    {
        Some("name")
    } else if has(&["address", "addr", "street", "postcode", "zipcode"]) {
        Some("address")
    } else if c == "ip" || has(&["ip_addr", "_ip", "ip_"]) {
        Some("IP address")
    } else if has(&[
        "birth",
        "device_id",
        "imei",
        "idfa",
        "gps",
        "latitude",
        "longitude",
    ]) {
        Some("personal detail")
    } else {
        None
    }
}

/// What a value looks like, if personal data.
pub fn pii_by_content(v: &str) -> Option<&'static str> {
    let v = v.trim();
    if v.is_empty() || v.len() > 254 {
        return None;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let phone = v
        .strip_prefix("+86")
        .map(|s| s.trim_start_matches(['-', ' ']))
        .unwrap_or(v);
    if phone.len() == 11
        && digits(phone)
        && phone.starts_with('1')
        && (b'3'..=b'9').contains(&phone.as_bytes()[1])
    {
        return Some("phone");
    }
    if let Some(rest) = v.strip_prefix('+')
        && (8..=15).contains(&rest.len())
        && digits(rest)
    {
        return Some("phone");
    }
    if let Some((local, domain)) = v.split_once('@')
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !v.contains(char::is_whitespace)
    {
        return Some("email");
    }
    if id_card_ok(v) {
        return Some("ID number");
    }
    if v.parse::<std::net::IpAddr>().is_ok() && v.contains(['.', ':']) {
        return Some("IP address");
    }
    None
}

/// A mainland resident ID number: 17 digits and a check character (ISO 7064
/// MOD 11-2).
fn id_card_ok(v: &str) -> bool {
    let b = v.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = b[..17]
        .iter()
        .zip(W)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize];
    b[17].to_ascii_uppercase() == check
}

/// The columns a check should sample: text columns not covered by the
/// erasure (all columns of unmapped tables; columns an `update` table
/// leaves as they are).
pub fn uncovered_columns(system: &System, schema: &Schema) -> Vec<(String, String)> {
    let mut out = vec![];
    for (name, t) in &schema.tables {
        if name == RECORD_TABLE {
            continue;
        }
        let mapped = system.tables.iter().find(|m| m.name.as_str() == name);
        for c in &t.columns {
            let covered = match mapped.map(|m| &m.action) {
                None => false,
                Some(Action::Delete) | Some(Action::Keep { .. }) => true,
                Some(Action::Update { set_null, hash }) => {
                    set_null.iter().chain(hash).any(|x| x.as_str() == c.name)
                }
            };
            if !covered && schema::is_text(&c.data_type) {
                out.push((name.clone(), c.name.clone()));
            }
        }
    }
    out
}

/// Checks a system's data map against its live schema. `samples` holds up
/// to a few values of uncovered text columns (see [`uncovered_columns`]).
pub fn check(
    system: &System,
    schema: &Schema,
    samples: &BTreeMap<(String, String), Vec<String>>,
) -> Vec<Finding> {
    let sys = system.name.to_string();
    let mut out = vec![];
    let mut f = |severity, kind, at: String, message: String, fix: String| {
        out.push(Finding {
            severity,
            system: sys.clone(),
            kind,
            at,
            message,
            fix,
        })
    };
    let mapped: BTreeSet<&str> = system.tables.iter().map(|t| t.name.as_str()).collect();
    // 1. Tables and columns of the map that do not exist.
    for t in &system.tables {
        let Some(st) = schema.table(t.name.as_str()) else {
            f(
                Severity::Error,
                "missing_table",
                t.name.to_string(),
                "the data map names this table, but the database has no such table".into(),
                "correct the name, or remove the entry if the table was dropped".into(),
            );
            continue;
        };
        let mut cols: Vec<(&str, &str)> = vec![];
        match &t.ownership {
            Ownership::Column(c) => cols.push((c.as_str(), "owner")),
            Ownership::Parent(p) => {
                cols.extend(p.columns.iter().map(|c| (c.as_str(), "belongs_to.columns")));
                if let Some(pt) = schema.table(p.table.as_str()) {
                    for r in &p.references {
                        if pt.column(r.as_str()).is_none() {
                            f(
                                Severity::Error,
                                "missing_column",
                                format!("{}.{}", p.table, r),
                                format!(
                                    "{}.belongs_to.references names a column that does not exist",
                                    t.name
                                ),
                                "correct the column name".into(),
                            );
                        }
                    }
                }
            }
        }
        if let Action::Update { set_null, hash } = &t.action {
            cols.extend(set_null.iter().map(|c| (c.as_str(), "set_null")));
            cols.extend(hash.iter().map(|c| (c.as_str(), "hash")));
            for h in hash {
                if let Some(c) = st.column(h.as_str())
                    && !(schema::is_text(&c.data_type) && text_len(&c.data_type) >= 64)
                {
                    f(
                        Severity::Error,
                        "column_type",
                        format!("{}.{}", t.name, h),
                        format!(
                            "a keyed hash is 64 hex characters, but the column is {}",
                            c.data_type
                        ),
                        "hash only text columns of at least 64 characters, or nullify this one"
                            .into(),
                    );
                }
            }
        }
        for (c, what) in cols {
            if st.column(c).is_none() {
                f(
                    Severity::Error,
                    "missing_column",
                    format!("{}.{c}", t.name),
                    format!("the data map's {what} names a column that does not exist"),
                    "correct the column name, or update the data map after the schema change"
                        .into(),
                );
            }
        }
    }
    // 2. Unmapped tables that reference a mapped table.
    for (name, st) in &schema.tables {
        if mapped.contains(name.as_str()) || name == RECORD_TABLE {
            continue;
        }
        for fk in &st.fks {
            if mapped.contains(fk.parent.as_str()) {
                let (severity, message) = if fk.follows_delete() {
                    (
                        Severity::Warning,
                        format!(
                            "references {} (ON DELETE {}): the database changes its rows at erasure, but they are neither counted nor verified",
                            fk.parent,
                            fk.on_delete.to_uppercase()
                        ),
                    )
                } else {
                    (
                        Severity::Error,
                        format!(
                            "references {} ({}), which is erased: the erasure would fail on this foreign key, or leave rows that point to an erased subject",
                            fk.parent,
                            fk.columns.join(", ")
                        ),
                    )
                };
                f(
                    severity,
                    "uncovered_reference",
                    name.clone(),
                    message,
                    format!(
                        "map the table: belongs_to = {{ table = \"{}\", columns = {:?}, references = {:?} }} with an action",
                        fk.parent, fk.columns, fk.parent_columns
                    ),
                );
            }
        }
    }
    // 3. Foreign keys between mapped tables that the erasure would break: a
    // row that stays (kept, or updated without clearing the key) pointing to
    // a row that is deleted.
    for t in &system.tables {
        let Some(st) = schema.table(t.name.as_str()) else {
            continue;
        };
        for fk in &st.fks {
            let Some(parent) = system.tables.iter().find(|p| p.name.as_str() == fk.parent) else {
                continue;
            };
            if parent.name == t.name
                || !matches!(parent.action, Action::Delete)
                || fk.follows_delete()
            {
                continue;
            }
            let stays = match &t.action {
                Action::Delete => false,
                Action::Keep { .. } => true,
                Action::Update { set_null, .. } => !fk
                    .columns
                    .iter()
                    .all(|c| set_null.iter().any(|s| s.as_str() == c)),
            };
            if stays {
                f(
                    Severity::Error,
                    "order",
                    t.name.to_string(),
                    format!(
                        "its rows stay ({}) but reference {} ({}), which is deleted: the foreign key would stop the erasure",
                        t.action.name(),
                        fk.parent,
                        fk.columns.join(", ")
                    ),
                    format!(
                        "set {} to NULL in this table (action = \"update\", set_null = {:?}), or make the foreign key ON DELETE SET NULL, or keep {} too",
                        fk.columns.join(", "),
                        fk.columns,
                        fk.parent
                    ),
                );
            }
        }
    }
    // 4. Uncovered columns that look like personal data.
    for (table, col) in uncovered_columns(system, schema) {
        let by_content = samples.get(&(table.clone(), col.clone())).and_then(|vs| {
            let hits: Vec<&'static str> = vs.iter().filter_map(|v| pii_by_content(v)).collect();
            (!vs.is_empty() && hits.len() * 2 >= vs.len()).then(|| hits[0])
        });
        let by_name = pii_by_name(&col);
        let where_ = if mapped.contains(table.as_str()) {
            "a mapped table leaves this column as it is"
        } else {
            "this table is not in the data map"
        };
        match (by_content, by_name) {
            (Some(what), _) => f(
                Severity::Error,
                "personal_data",
                format!("{table}.{col}"),
                format!("sampled values look like {what}s, and {where_}"),
                "map the table (delete), or nullify or hash the column".into(),
            ),
            (None, Some(what)) => f(
                Severity::Warning,
                "personal_data",
                format!("{table}.{col}"),
                format!("the name suggests a {what}, and {where_}"),
                "map it, or confirm it holds no personal data".into(),
            ),
            _ => {}
        }
    }
    out.sort_by(|a, b| (a.severity, &a.at).cmp(&(b.severity, &b.at)));
    out
}

/// The declared length of `varchar(n)`/`char(n)`, or a large number for
/// unbounded text.
fn text_len(t: &str) -> usize {
    match (t.find('('), t.find(')')) {
        (Some(a), Some(b)) if a < b => t[a + 1..b].trim().parse().unwrap_or(0),
        _ => usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_detectors() {
        assert_eq!(pii_by_content("13812345678"), Some("phone"));
        assert_eq!(pii_by_content("+86 13812345678"), Some("phone"));
        assert_eq!(pii_by_content("a.b@example.cn"), Some("email"));
        assert_eq!(pii_by_content("11010519491231002X"), Some("ID number"));
        assert_eq!(pii_by_content("110105194912310021"), None); // bad check digit
        assert_eq!(pii_by_content("10.1.2.3"), Some("IP address"));
        assert_eq!(pii_by_content("2001:db8::1"), Some("IP address"));
        assert_eq!(pii_by_content("blue widget"), None);
        assert_eq!(pii_by_content("12345"), None);
    }

    #[test]
    fn name_detectors() {
        assert_eq!(pii_by_name("contact_phone"), Some("phone"));
        assert_eq!(pii_by_name("name"), Some("name"));
        assert_eq!(pii_by_name("last_login_ip"), Some("IP address"));
        assert_eq!(pii_by_name("sku"), None);
        assert_eq!(pii_by_name("shipping"), None);
    }
}

/// What a check of the whole data map found.
#[derive(Debug, Default)]
pub struct CheckRun {
    pub findings: Vec<Finding>,
    /// Systems without a schema Lethe can read (HTTP, manual, event).
    pub unchecked: Vec<String>,
}

impl CheckRun {
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }
}

/// Checks every system of the data map against its live schema (SQL:
/// connects afresh, reads the schema, samples up to `sample` values of each
/// uncovered column; Redis: answers). `note(system, message)` reports
/// progress; `sampled(system, done, total)` the sampling.
pub async fn check_systems(
    map: &crate::DataMap,
    sample: u32,
    mut note: impl FnMut(&str, &str),
    mut sampled: impl FnMut(&str, usize, usize),
) -> Result<CheckRun, crate::ConnectError> {
    use crate::Kind;
    let mut run = CheckRun::default();
    for s in &map.systems {
        match s.kind {
            Kind::Sqlite | Kind::Postgres | Kind::Mysql => {
                note(s.name.as_str(), "connecting and reading the schema ...");
                let sys = crate::SqlSystem::connect_from_env(s).await?;
                note(
                    s.name.as_str(),
                    &format!("{} tables", sys.schema().tables.len()),
                );
                let cols = uncovered_columns(s, sys.schema());
                let samples = if sample == 0 {
                    Default::default()
                } else {
                    sys.sample(&cols, sample, |done, total| {
                        sampled(s.name.as_str(), done, total)
                    })
                    .await?
                };
                run.findings.extend(check(s, sys.schema(), &samples));
            }
            Kind::Redis => {
                crate::redis_conn::RedisSystem::connect_from_env(s).await?;
                note(s.name.as_str(), "redis answers");
            }
            Kind::Http | Kind::Manual | Kind::Event => run.unchecked.push(s.name.to_string()),
        }
    }
    Ok(run)
}
