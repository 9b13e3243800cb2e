//! `lethe datamap check`: the data map against a live schema. This static
//! check is what keeps deletion correct as schemas change.
//!
//! Pure: it takes the schema (and column samples) read by the connector and
//! returns findings.

use std::collections::{BTreeMap, BTreeSet};

use crate::datamap::{Action, Ownership, System};
use crate::discover::{IdForm, IdHit};
use crate::schema::{self, Schema};
use crate::sql::{RECORD_TABLE, RETENTION_TABLE};

fn lethe_own(table: &str) -> bool {
    table == RECORD_TABLE || table == RETENTION_TABLE
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
    /// A finding the data map declares not personal data, with its reason
    /// (`[[systems.ignore]]`): listed, not counted.
    Accepted,
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
            Severity::Accepted => "accepted",
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
    } else if has(&["password", "passwd", "pwd", "pass_hash", "secret"]) {
        Some("password or its hash")
    } else if has(&["token", "session_key", "api_key"]) {
        Some("credential token")
    } else if has(&[
        "avatar", "photo", "picture", "portrait", "face_img", "selfie",
    ]) {
        Some("picture of the person")
    } else if has(&[
        "card_no",
        "card_number",
        "bank_card",
        "bank_account",
        "iban",
    ]) {
        Some("bank card number")
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
    if bank_card_ok(v) {
        return Some("bank card number");
    }
    if v.parse::<std::net::IpAddr>().is_ok() && v.contains(['.', ':']) {
        return Some("IP address");
    }
    None
}

/// What a value or any part of it looks like, if personal data: the whole
/// value first, then each token of a composite one (an array `{a,b}`, a
/// JSON document, a list), so a phone inside a JSON column is found.
pub fn pii_in_value(v: &str) -> Option<&'static str> {
    if let Some(what) = pii_by_content(v) {
        return Some(what);
    }
    let v = if v.len() > 64 * 1024 {
        &v[..floor_char(v, 64 * 1024)]
    } else {
        v
    };
    v.split(|c: char| {
        !(c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '+' | '-' | '_' | ':'))
    })
    .filter(|t| t.len() >= 7)
    .take(10_000)
    .find_map(|t| pii_by_content(t.trim_matches(['.', '-', ':'])))
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A bank card number: 16 to 19 digits passing the Luhn check.
fn bank_card_ok(v: &str) -> bool {
    let b = v.as_bytes();
    if !(16..=19).contains(&b.len()) || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = b
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
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
        if lethe_own(name) {
            continue;
        }
        let mapped = system.tables.iter().find(|m| m.name.as_str() == name);
        for c in &t.columns {
            let covered = match mapped.map(|m| &m.action) {
                None => false,
                Some(Action::Delete) | Some(Action::Keep { .. }) => true,
                // The JSON owner column is redacted at its path.
                Some(Action::Redact { .. }) => {
                    matches!(&mapped.map(|m| &m.ownership), Some(Ownership::Column(o)) if o.as_str() == c.name)
                }
                Some(Action::Update { set_null, hash }) => {
                    set_null.iter().chain(hash).any(|x| x.as_str() == c.name)
                }
            };
            if !covered && !schema::is_unsampled(&c.data_type) {
                out.push((name.clone(), c.name.clone()));
            }
        }
    }
    out
}

/// The data-map text that covers an uncovered personal column: the table's
/// entry (owned through its foreign key to a mapped table, or by a column
/// that names the account), or the column added to a mapped table's
/// `set_null`; and the `[[systems.ignore]]` entry for a column that holds
/// no personal data after all.
pub fn map_text(system: &System, schema: &Schema, table: &str, col: &str) -> String {
    let ignore = format!(
        "or, if it holds no personal data:\n[[systems.ignore]]\ntable = \"{table}\"\ncolumn = \"{col}\"\nreason = \"<why it is not personal data>\""
    );
    if let Some(m) = system.tables.iter().find(|t| t.name.as_str() == table) {
        let (set_null, _) = m.action.pseudonymised();
        let mut cols: Vec<String> = set_null.iter().map(|c| format!("\"{c}\"")).collect();
        cols.push(format!("\"{col}\""));
        return format!(
            "add the column to the table's entry:\n[[systems.tables]]\nname = \"{table}\"\n# ...\nset_null = [{}]   # or hash = [\"{col}\"]\n{ignore}",
            cols.join(", ")
        );
    }
    let mapped: BTreeSet<&str> = system.tables.iter().map(|t| t.name.as_str()).collect();
    let st = schema.table(table);
    let owner = if let Some(fk) =
        st.and_then(|t| t.fks.iter().find(|fk| mapped.contains(fk.parent.as_str())))
    {
        format!(
            "belongs_to = {{ table = \"{}\", columns = [{}], references = [{}] }}",
            fk.parent,
            fk.columns
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", "),
            fk.parent_columns
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        let named = st.and_then(|t| {
            t.columns.iter().map(|c| c.name.as_str()).find(|c| {
                let c = c.to_ascii_lowercase();
                [
                    "user_id",
                    "account_id",
                    "customer_id",
                    "member_id",
                    "uid",
                    "subject_id",
                ]
                .iter()
                .any(|k| c == *k || c.ends_with(&format!("_{k}")))
            })
        });
        match named {
            Some(c) => format!("owner = \"{c}\""),
            None => "owner = \"<the column holding the account id>\"".to_owned(),
        }
    };
    format!(
        "map the table:\n[[systems.tables]]\nname = \"{table}\"\n{owner}\naction = \"delete\"\n{ignore}"
    )
}

/// Checks a system's data map against its live schema. `samples` holds up
/// to a few values of uncovered text columns (see [`uncovered_columns`]).
pub fn check(
    system: &System,
    schema: &Schema,
    samples: &BTreeMap<(String, String), Vec<String>>,
) -> Vec<Finding> {
    check_with(system, schema, samples, &[])
}

/// What a map entry for a column holding the subject id by value looks
/// like, per form (None: no entry can own rows by it).
pub fn owner_entry(table: &str, column: &str, form: &IdForm) -> Option<String> {
    let head = format!("[[systems.tables]]\nname = \"{table}\"\nowner = \"{column}\"\n");
    match form {
        IdForm::Exact => Some(format!("{head}action = \"delete\"")),
        IdForm::LocalPart => Some(format!(
            "{head}owner_form = \"local_part\"\naction = \"delete\""
        )),
        IdForm::InJson(p) => Some(format!(
            "{head}owner_path = \"{p}\"\naction = \"delete\"   # or \"redact\" if the rows are not the subject's own"
        )),
        IdForm::InArray | IdForm::Contains => None,
    }
}

/// [`check`] with the columns found to hold subject ids by value
/// (see [`crate::discover`]).
pub fn check_with(
    system: &System,
    schema: &Schema,
    samples: &BTreeMap<(String, String), Vec<String>>,
    hits: &[IdHit],
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
            Ownership::Referenced(r) => {
                cols.extend(
                    r.references
                        .iter()
                        .map(|c| (c.as_str(), "referenced_by.references")),
                );
                if let Some(rt) = schema.table(r.table.as_str()) {
                    for c in &r.columns {
                        if rt.column(c.as_str()).is_none() {
                            f(
                                Severity::Error,
                                "missing_column",
                                format!("{}.{}", r.table, c),
                                format!(
                                    "{}.referenced_by.columns names a column that does not exist",
                                    t.name
                                ),
                                "correct the column name".into(),
                            );
                        }
                    }
                }
            }
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
        let (set_null, hash) = t.action.pseudonymised();
        if !set_null.is_empty() || !hash.is_empty() {
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
    // 2. Unmapped tables that reference a table whose rows are deleted
    // (an updated or kept parent stays, and a referenced_by parent is
    // deleted only where nothing references it: no finding).
    let deleted: BTreeSet<&str> = system
        .tables
        .iter()
        .filter(|t| {
            matches!(t.action, Action::Delete) && !matches!(t.ownership, Ownership::Referenced(_))
        })
        .map(|t| t.name.as_str())
        .collect();
    for (name, st) in &schema.tables {
        if mapped.contains(name.as_str()) || lethe_own(name) {
            continue;
        }
        for fk in &st.fks {
            if deleted.contains(fk.parent.as_str()) {
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
                || matches!(parent.ownership, Ownership::Referenced(_))
                || fk.follows_delete()
            {
                continue;
            }
            let stays = match &t.action {
                Action::Delete => false,
                Action::Redact { .. } => true,
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
            let hits: Vec<&'static str> = vs.iter().filter_map(|v| pii_in_value(v)).collect();
            (!vs.is_empty() && hits.len() * 2 >= vs.len()).then(|| hits[0])
        });
        let by_name = pii_by_name(&col);
        let where_ = if mapped.contains(table.as_str()) {
            "a mapped table leaves this column as it is"
        } else {
            "this table is not in the data map"
        };
        let fix = map_text(system, schema, &table, &col);
        match (by_content, by_name) {
            (Some(what), _) => f(
                Severity::Error,
                "personal_data",
                format!("{table}.{col}"),
                format!("sampled values look like {what}s, and {where_}"),
                fix,
            ),
            (None, Some(what)) => f(
                Severity::Warning,
                "personal_data",
                format!("{table}.{col}"),
                format!(
                    "the name suggests {} {what}, and {where_}",
                    if what.starts_with(['a', 'e', 'i', 'o', 'u', 'I']) {
                        "an"
                    } else {
                        "a"
                    }
                ),
                fix,
            ),
            _ => {}
        }
    }
    // Rows the subject's rows reference, under a table whose rows are kept:
    // they stay while those rows do, and the purge does not reach them.
    for t in &system.tables {
        if let Ownership::Referenced(r) = &t.ownership
            && let Some(via) = system.tables.iter().find(|o| o.name == r.table)
            && matches!(via.action, Action::Keep { .. })
        {
            f(
                Severity::Warning,
                "kept_reference",
                t.name.to_string(),
                format!(
                    "referenced by {}, whose rows are kept: the subject's rows here stay as they are, not pseudonymised, while those are kept (the purge at expiry removes them with them)",
                    r.table
                ),
                format!(
                    "if the retention does not need them, make {}({}) nullable and set it to NULL in the kept rows (set_null), so these rows go at erasure",
                    r.table,
                    r.columns
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
    // Views and materialised views over mapped tables; triggers the
    // erasure fires that write where the map does not reach.
    for v in &schema.views {
        let read: Vec<&String> = v
            .reads
            .iter()
            .filter(|t| mapped.contains(t.as_str()))
            .collect();
        if read.is_empty() {
            continue;
        }
        let read = read
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if v.materialized {
            if !system.refresh.iter().any(|r| r.as_str() == v.name) {
                f(
                    Severity::Error,
                    "materialized_view",
                    v.name.clone(),
                    format!(
                        "a materialised view of {read}: it holds copies of the subject's rows until it is refreshed"
                    ),
                    format!(
                        "add refresh = [\"{}\"] to the system, so it is refreshed after each erasure",
                        v.name
                    ),
                );
            }
        } else {
            f(
                Severity::Warning,
                "view",
                v.name.clone(),
                format!("a view of {read}: it holds no copy and shows no erased row, but what is exported from it elsewhere is not erased by Lethe"),
                "confirm no copy of this view is kept elsewhere; [[systems.ignore]] it with that reason".into(),
            );
        }
    }
    for tr in &schema.triggers {
        if !mapped.contains(tr.table.as_str())
            || !tr.events.iter().any(|e| e == "delete" || e == "update")
        {
            continue;
        }
        for w in tr
            .writes
            .iter()
            .filter(|w| !mapped.contains(w.as_str()) && !lethe_own(w))
        {
            f(
                Severity::Warning,
                "trigger",
                w.clone(),
                format!(
                    "the trigger {} on {} ({}) writes to this table, which the data map does not cover: the erasure itself writes rows here",
                    tr.name,
                    tr.table,
                    tr.events.join(", ")
                ),
                format!(
                    "map {w} (its rows are erased after {} fires), or [[systems.ignore]] it with the reason it holds no personal data",
                    tr.table
                ),
            );
        }
    }
    // 5. Partitions whose own foreign keys differ from their siblings':
    // the erasure is ordered by their union, but the schema is likely
    // unintended (a key forgotten on some months).
    for (name, st) in &schema.tables {
        if st.partitions.len() < 2 {
            continue;
        }
        let describe = |fks: &Vec<schema::ForeignKey>| {
            let mut v: Vec<String> = fks
                .iter()
                .map(|fk| format!("({}) -> {}", fk.columns.join(", "), fk.parent))
                .collect();
            v.sort();
            v
        };
        let sets: BTreeMap<&String, Vec<String>> = st
            .partitions
            .iter()
            .map(|(p, fks)| (p, describe(fks)))
            .collect();
        let distinct: BTreeSet<&Vec<String>> = sets.values().collect();
        if distinct.len() > 1 {
            let detail: Vec<String> = sets
                .iter()
                .map(|(p, v)| {
                    format!(
                        "{p}: {}",
                        if v.is_empty() {
                            "none".to_owned()
                        } else {
                            v.join(", ")
                        }
                    )
                })
                .collect();
            f(
                Severity::Warning,
                "partition_keys",
                name.clone(),
                format!(
                    "its partitions declare different foreign keys ({}); the erasure is ordered by their union",
                    detail.join("; ")
                ),
                format!(
                    "declare the foreign keys once on {name} (ALTER TABLE {name} ADD FOREIGN KEY ...), so every partition has them"
                ),
            );
        }
    }
    // Order the live schema imposes that the map alone does not state:
    // the erasure follows the schema either way, but `lethe datamap plan`
    // without the database would print another order.
    if let (Ok(offline), Ok(resolved)) = (
        crate::planner::plan(system),
        crate::planner::resolve(system, schema),
    ) {
        let pos = |t: &str| offline.steps.iter().position(|s| s.table.as_str() == t);
        for e in crate::planner::schema_edges(&resolved, schema) {
            let (Some(c), Some(p)) = (pos(e.child.as_str()), pos(e.parent.as_str())) else {
                continue;
            };
            if c < p {
                continue;
            }
            let (why, fix) = match &e.why {
                crate::planner::EdgeWhy::ForeignKey(cols)
                    if matches!(
                        system.tables.iter().find(|t| t.name == e.child).map(|t| &t.ownership),
                        Some(Ownership::Column(_))
                    ) =>
                {
                    let refs = schema
                        .table(e.child.as_str())
                        .and_then(|st| st.fks.iter().find(|fk| fk.parent == e.parent.as_str() && &fk.columns == cols))
                        .map(|fk| fk.parent_columns.clone())
                        .unwrap_or_default();
                    (
                        format!("the foreign key {}({}) references {}", e.child, cols.join(", "), e.parent),
                        format!(
                            "state it in the map: belongs_to = {{ table = \"{}\", columns = {:?}, references = {:?} }} on {} instead of its owner column",
                            e.parent, cols, refs, e.child
                        ),
                    )
                }
                crate::planner::EdgeWhy::ForeignKey(cols) => (
                    format!("the foreign key {}({}) references {}", e.child, cols.join(", "), e.parent),
                    "nothing to change: the erasure orders by the live schema; run `lethe datamap plan` with the database's URL set to see the order".into(),
                ),
                crate::planner::EdgeWhy::Trigger(name) => (
                    format!("the trigger {name} on {} writes to {}", e.child, e.parent),
                    "nothing to change: the erasure orders by the live schema; run `lethe datamap plan` with the database's URL set to see the order".into(),
                ),
                _ => continue,
            };
            f(
                Severity::Warning,
                "order_by_schema",
                e.child.to_string(),
                format!(
                    "{why}, so {} is erased before {}; the data map alone does not say so, and `lethe datamap plan` without the database prints another order",
                    e.child, e.parent
                ),
                fix,
            );
        }
    }
    // Columns holding subject ids by value.
    for h in hits {
        let entry = system.tables.iter().find(|t| t.name.as_str() == h.table);
        let how = match &h.form {
            IdForm::Exact => "the subject's id".to_owned(),
            IdForm::LocalPart => "the local part of the subject's id".to_owned(),
            IdForm::InJson(p) => format!("the subject's id inside JSON at {p}"),
            IdForm::InArray => "the subject's id as an element of an array".to_owned(),
            IdForm::Contains => "the subject's id inside longer text".to_owned(),
        };
        let found = format!("{} of {} sampled subject ids found", h.found, h.of);
        match entry {
            None => f(
                Severity::Error,
                "subject_id_by_value",
                format!("{}.{}", h.table, h.column),
                format!("holds {how} ({found}), with no foreign key, and this table is not in the data map"),
                match owner_entry(&h.table, &h.column, &h.form) {
                    Some(e) => format!("map it:\n{e}"),
                    None => "Lethe cannot own rows by an id inside a list or text: clean this column in the platform (and list it under [[systems.ignore]] with the reason), or store the id in a column of its own".into(),
                },
            ),
            Some(t) => {
                let (set_null, hash) = t.action.pseudonymised();
                let is_owner = matches!(&t.ownership, Ownership::Column(o) if o.as_str() == h.column);
                let handled = is_owner
                    || set_null.iter().chain(hash).any(|c| c.as_str() == h.column);
                if !handled {
                    f(
                        Severity::Warning,
                        "subject_id_by_value",
                        format!("{}.{}", h.table, h.column),
                        format!("also holds {how} ({found}); the entry owns rows by another column, so rows of others that name the subject here keep the id"),
                        format!("add {} to set_null or hash (action = \"update\"), or confirm these rows are erased anyway", h.column),
                    );
                }
            }
        }
    }
    // Decisions the map leaves open (a generated map's TODO reasons).
    for ig in &system.ignore {
        if ig
            .reason
            .trim_start()
            .to_ascii_uppercase()
            .starts_with("TODO")
        {
            f(
                Severity::Error,
                "undecided",
                match &ig.column {
                    Some(c) => format!("{}.{c}", ig.table),
                    None => ig.table.to_string(),
                },
                format!("the data map leaves this open: {}", ig.reason),
                "decide: map the table, or write the reason it holds no personal data (without TODO)".into(),
            );
        }
    }
    apply_ignores(system, &mut out);
    out
}

/// Marks the findings the data map declares not personal data as
/// accepted (with the reason), never one that would make the erasure fail
/// and never under a TODO reason; sorts errors first.
pub fn apply_ignores(system: &System, out: &mut [Finding]) {
    for x in out.iter_mut() {
        if x.severity == Severity::Error
            && !matches!(x.kind, "personal_data" | "subject_id_by_value")
        {
            continue; // a broken erasure cannot be waved through
        }
        let (table, column) = match x.at.split_once('.') {
            Some((t, c)) => (t, Some(c)),
            None => (x.at.as_str(), None),
        };
        if let Some(ig) = system.ignore.iter().find(|ig| {
            ig.table.as_str() == table
                && (ig.column.is_none() || ig.column.as_ref().map(|c| c.as_str()) == column)
                && !ig
                    .reason
                    .trim_start()
                    .to_ascii_uppercase()
                    .starts_with("TODO")
        }) {
            x.severity = Severity::Accepted;
            x.fix = format!("declared not personal data: {}", ig.reason);
        }
    }
    out.sort_by(|a, b| (a.severity, &a.at).cmp(&(b.severity, &b.at)));
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

    /// (table, columns, foreign key as (column, parent, parent column)).
    type TableSpec<'a> = (&'a str, &'a [&'a str], Option<(&'a str, &'a str, &'a str)>);

    fn schema_of(tables: &[TableSpec<'_>]) -> Schema {
        let mut s = Schema::default();
        for (name, cols, fk) in tables {
            s.tables.insert(
                name.to_string(),
                schema::SchemaTable {
                    name: name.to_string(),
                    columns: cols
                        .iter()
                        .map(|c| schema::Column {
                            name: c.to_string(),
                            data_type: "bigint".into(),
                        })
                        .collect(),
                    fks: fk
                        .iter()
                        .map(|(c, p, pc)| schema::ForeignKey {
                            columns: vec![c.to_string()],
                            parent: p.to_string(),
                            parent_columns: vec![pc.to_string()],
                            on_delete: "no action".into(),
                        })
                        .collect(),
                    ..Default::default()
                },
            );
        }
        s
    }

    #[test]
    fn a_personal_column_comes_with_the_map_text_that_covers_it() {
        let m = crate::DataMap::parse(
            r#"
[[systems]]
name = "shop"
kind = "sqlite"
url_env = "X"
[[systems.tables]]
name = "users"
owner = "id"
action = "delete"
[[systems.tables]]
name = "reviews"
owner = "user_id"
action = "nullify"
columns = ["author_name"]
"#,
        )
        .unwrap();
        let s = schema_of(&[
            ("users", &["id"], None),
            (
                "delivery_notes",
                &["id", "user_id", "phone"],
                Some(("user_id", "users", "id")),
            ),
            ("leads", &["id", "crm_customer_id", "phone"], None),
            (
                "reviews",
                &["id", "user_id", "author_name", "author_phone"],
                None,
            ),
        ]);
        let sys = &m.systems[0];
        let fix = map_text(sys, &s, "delivery_notes", "phone");
        assert!(
            fix.contains("name = \"delivery_notes\"")
                && fix.contains("belongs_to = { table = \"users\", columns = [\"user_id\"], references = [\"id\"] }")
                && fix.contains("[[systems.ignore]]"),
            "{fix}"
        );
        assert!(map_text(sys, &s, "leads", "phone").contains("owner = \"crm_customer_id\""));
        let fix = map_text(sys, &s, "reviews", "author_phone");
        assert!(
            fix.contains("set_null = [\"author_name\", \"author_phone\"]"),
            "{fix}"
        );
        // The check's finding carries it.
        let f = check(sys, &s, &Default::default());
        let phone = f.iter().find(|x| x.at == "delivery_notes.phone").unwrap();
        assert!(phone.fix.contains("[[systems.tables]]"), "{phone:?}");
    }

    /// A table referencing a mapped table that is only updated (its rows
    /// stay) is no error: only a deleted parent breaks the reference.
    #[test]
    fn an_updated_parent_is_not_an_erased_one() {
        let m = crate::DataMap::parse(
            r#"
[[systems]]
name = "shop"
kind = "sqlite"
url_env = "SHOP_URL"
[[systems.tables]]
name = "users"
owner = "id"
action = "delete"
[[systems.tables]]
name = "reviews"
owner = "user_id"
action = "nullify"
columns = ["user_id"]
"#,
        )
        .unwrap();
        let s = schema_of(&[
            ("users", &["id"], None),
            (
                "reviews",
                &["id", "user_id"],
                Some(("user_id", "users", "id")),
            ),
            (
                "review_votes",
                &["id", "review_id"],
                Some(("review_id", "reviews", "id")),
            ),
            (
                "complaints",
                &["id", "user_id"],
                Some(("user_id", "users", "id")),
            ),
        ]);
        let f = check(&m.systems[0], &s, &Default::default());
        assert!(
            !f.iter()
                .any(|x| x.at == "review_votes" && x.kind == "uncovered_reference"),
            "{f:#?}"
        );
        assert!(
            f.iter().any(|x| x.at == "complaints"
                && x.kind == "uncovered_reference"
                && x.severity == Severity::Error),
            "{f:#?}"
        );
    }

    #[test]
    fn composite_values_and_cards() {
        assert_eq!(pii_in_value("{13812345678,foo}"), Some("phone"));
        assert_eq!(
            pii_in_value(r#"{"contact": {"email": "a.b@example.cn"}}"#),
            Some("email")
        );
        assert_eq!(pii_in_value(r#"["red", "blue"]"#), None);
        assert_eq!(
            pii_by_content("6222021234567890128"),
            Some("bank card number")
        );
        assert_eq!(pii_by_content("4111111111111111"), Some("bank card number"));
        assert_eq!(pii_by_content("4111111111111112"), None);
        assert_eq!(pii_by_name("password_hash"), Some("password or its hash"));
        assert_eq!(pii_by_name("avatar_url"), Some("picture of the person"));
        assert_eq!(pii_by_name("refresh_token"), Some("credential token"));
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

/// What in the live schema would break this system's erasure (see
/// [`is_breaking`]): the schema as `sql` last read it (afresh at most once per
/// `max_age`), checked against the map (`system`, the entry the connector
/// was made from), its accepted findings set aside.
pub async fn breaking_drift(
    sql: &crate::SqlSystem,
    system: &System,
    max_age: std::time::Duration,
) -> Result<Vec<Finding>, crate::ConnectError> {
    let live = sql.live_schema(max_age).await?;
    let mut found = check(system, &live, &BTreeMap::new());
    apply_ignores(system, &mut found);
    found.retain(is_breaking);
    Ok(found)
}

/// Whether a finding means erasure in its system would fail part-way: a
/// table or column the map names is gone, or an unmapped table references
/// an erased one with a key that blocks deletion. Erasure waits on these.
pub fn is_breaking(f: &Finding) -> bool {
    f.severity == Severity::Error
        && matches!(
            f.kind,
            "missing_table" | "missing_column" | "uncovered_reference"
        )
}

/// Whether a finding is schema drift the scheduled check raises: anything
/// about what the map covers or whether erasure works; not the advice on
/// how the map states the erasure order, which changes nothing erased.
pub fn is_drift(f: &Finding) -> bool {
    f.severity != Severity::Accepted && !matches!(f.kind, "order" | "order_by_schema")
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
    pub fn accepted(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Accepted)
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
                let (samples, unreadable) = if sample == 0 {
                    Default::default()
                } else {
                    sys.sample_all(&cols, sample, |done, total| {
                        sampled(s.name.as_str(), done, total)
                    })
                    .await?
                };
                // Subject ids by value: a few real ids from an owner
                // column, looked for in every other column.
                let mut ids = vec![];
                if sample > 0 {
                    for t in &s.tables {
                        if let (Ownership::Column(c), None, crate::datamap::OwnerForm::Exact) =
                            (&t.ownership, &t.owner_path, t.owner_form)
                        {
                            ids = sys.sample_ids(t.name.as_str(), c.as_str(), 5).await?;
                            if !crate::discover::distinctive(&ids).is_empty() {
                                break;
                            }
                        }
                    }
                }
                let skip: Vec<(String, String)> = s
                    .tables
                    .iter()
                    .filter_map(|t| match &t.ownership {
                        Ownership::Column(c) => Some((t.name.to_string(), c.to_string())),
                        _ => None,
                    })
                    .collect();
                let hits = sys
                    .find_ids(&ids, &skip, |done, total| {
                        sampled(s.name.as_str(), done, total)
                    })
                    .await?;
                let mut found = check_with(s, sys.schema(), &samples, &hits);
                found.extend(unreadable.into_iter().map(|(t, c, ty, why)| Finding {
                    severity: Severity::Warning,
                    system: s.name.to_string(),
                    kind: "unreadable_column",
                    at: format!("{t}.{c}"),
                    message: format!("values of type {ty} could not be sampled ({why}), so this column was checked by its name only"),
                    fix: "confirm it holds no personal data (map it, or [[systems.ignore]] it with a reason)".into(),
                }));
                apply_ignores(s, &mut found);
                run.findings.extend(found);
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
