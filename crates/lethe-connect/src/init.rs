//! `lethe datamap init`: a first data map from a live schema. It walks the
//! foreign-key graph from the subject table (both directions, partitions
//! folded into their tables), adds the columns that hold subject ids by
//! value (see [`crate::discover`]), proposes an owner, `belongs_to` or
//! `referenced_by` and an action per table, refreshes materialised views,
//! notes the columns that look personal, and lists every other table as
//! `ignore` with a TODO reason for a person to confirm. Pure: it takes
//! what the connector read.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::check::{pii_by_name, pii_in_value};
use crate::discover::{IdForm, IdHit};

use crate::schema::Schema;

/// How far from the subject table the walk goes.
pub const MAX_DEPTH: usize = 6;

/// What `init` proposes.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// The data map (TOML, with comments).
    pub text: String,
    /// What a person must still decide, one line each.
    pub todo: Vec<String>,
    /// The tables mapped, and how (`owner`, `belongs_to`, ...).
    pub mapped: BTreeMap<String, String>,
    /// How many of them were found by value (no foreign key).
    pub by_value: usize,
}

/// Inputs besides the schema.
pub struct Subject<'a> {
    pub system: &'a str,
    pub kind: &'a str,
    pub url_env: &'a str,
    pub table: &'a str,
    pub column: &'a str,
}

enum Entry {
    Owner {
        column: String,
        form: Option<&'static str>,
        path: Option<String>,
        action: &'static str,
        why: String,
    },
    BelongsTo {
        parent: String,
        columns: Vec<String>,
        references: Vec<String>,
    },
    ReferencedBy {
        table: String,
        columns: Vec<String>,
    },
}

fn toml_list(v: &[String]) -> String {
    let q: Vec<String> = v.iter().map(|c| format!("\"{c}\"")).collect();
    format!("[{}]", q.join(", "))
}

/// Whether a JSON key names who the document is by (then the rows are the
/// subject's own and go; otherwise the id is redacted out of them).
fn authored_by(path: &str) -> bool {
    let first = path.split('.').next().unwrap_or("");
    [
        "sender", "user_id", "user", "owner", "author", "from", "account",
    ]
    .iter()
    .any(|k| first.eq_ignore_ascii_case(k))
}

/// Proposes a data map.
pub fn propose(
    schema: &Schema,
    subject: &Subject<'_>,
    hits: &[IdHit],
    samples: &BTreeMap<(String, String), Vec<String>>,
) -> Proposal {
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut todo = vec![];
    entries.insert(
        subject.table.to_owned(),
        Entry::Owner {
            column: subject.column.to_owned(),
            form: None,
            path: None,
            action: "delete",
            why: "the subject table".into(),
        },
    );
    // 1. Foreign keys: tables referencing mapped tables, breadth first.
    let mut queue: VecDeque<(String, usize)> = VecDeque::from([(subject.table.to_owned(), 0)]);
    while let Some((parent, depth)) = queue.pop_front() {
        if depth >= MAX_DEPTH {
            continue;
        }
        for (name, t) in &schema.tables {
            if entries.contains_key(name) {
                continue;
            }
            let Some(fk) = t.fks.iter().find(|fk| fk.parent == parent) else {
                continue;
            };
            let entry = if parent == subject.table
                && fk.columns.len() == 1
                && fk.parent_columns == [subject.column]
            {
                Entry::Owner {
                    column: fk.columns[0].clone(),
                    form: None,
                    path: None,
                    action: "delete",
                    why: format!("foreign key to {parent}"),
                }
            } else {
                Entry::BelongsTo {
                    parent: parent.clone(),
                    columns: fk.columns.clone(),
                    references: fk.parent_columns.clone(),
                }
            };
            entries.insert(name.clone(), entry);
            queue.push_back((name.clone(), depth + 1));
        }
    }
    // 2. The rows the subject's own row points at (its address): erased
    // after it, and only where nothing else references them.
    if let Some(st) = schema.table(subject.table) {
        for fk in &st.fks {
            if entries.contains_key(&fk.parent) || fk.parent == subject.table {
                continue;
            }
            entries.insert(
                fk.parent.clone(),
                Entry::ReferencedBy {
                    table: subject.table.to_owned(),
                    columns: fk.columns.clone(),
                },
            );
            todo.push(format!(
                "{}: proposed as rows the subject's {} row points at (referenced_by); confirm they are the subject's own (an address), not shared reference data (a city)",
                fk.parent, subject.table
            ));
        }
    }
    // 3. Subject ids by value, in tables no key reaches.
    // Several id columns in one table: exact ones first, then the one whose
    // name says "user"; the others are noted.
    let mut hits: Vec<&IdHit> = hits.iter().collect();
    hits.sort_by_key(|h| {
        (
            h.table.clone(),
            !matches!(h.form, IdForm::Exact),
            !h.column.contains("user"),
            h.column.clone(),
        )
    });
    let mut extra_ids: Vec<&IdHit> = vec![];
    for h in hits {
        if entries.contains_key(&h.table) {
            extra_ids.push(h);
            continue;
        }
        let (form, path, action) = match &h.form {
            IdForm::Exact => (None, None, "delete"),
            IdForm::LocalPart => (Some("local_part"), None, "delete"),
            IdForm::InJson(p) if authored_by(p) => (None, Some(p.clone()), "delete"),
            IdForm::InJson(p) => (None, Some(p.clone()), "redact"),
            IdForm::InArray | IdForm::Contains => {
                todo.push(format!(
                    "{}.{}: holds subject ids inside a list or text; Lethe cannot own rows by it: clean it in the platform, or store the id in a column of its own",
                    h.table, h.column
                ));
                continue;
            }
        };
        entries.insert(
            h.table.clone(),
            Entry::Owner {
                column: h.column.clone(),
                form,
                path,
                action,
                why: format!("{} of {} sampled subject ids found by value", h.found, h.of),
            },
        );
    }
    // Id columns left in mapped tables besides their owner: note them.
    let mut notes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for h in extra_ids {
        let owner_col = match entries.get(&h.table) {
            Some(Entry::Owner { column, .. }) => Some(column.as_str()),
            _ => None,
        };
        if owner_col != Some(h.column.as_str()) {
            notes.entry(h.table.clone()).or_default().push(format!(
                "{} also holds subject ids ({:?}): rows of others naming the subject keep them unless set_null/hash covers it",
                h.column, h.form
            ));
        }
    }
    // 4. Materialised views over mapped tables are refreshed.
    let refresh: Vec<String> = schema
        .views
        .iter()
        .filter(|v| v.materialized && v.reads.iter().any(|t| entries.contains_key(t)))
        .map(|v| v.name.clone())
        .collect();

    // The text.
    let mut out = String::new();
    out.push_str(&format!(
        "# Generated by `lethe datamap init` from the live schema ({} tables).\n# Review every entry, decide every TODO, then run `lethe datamap check`.\n\n",
        schema.tables.len()
    ));
    out.push_str(&format!(
        "[[systems]]\nname = \"{}\"\nkind = \"{}\"\nurl_env = \"{}\"\n",
        subject.system, subject.kind, subject.url_env
    ));
    if !refresh.is_empty() {
        out.push_str(&format!(
            "# Materialised views holding copies of mapped rows: refreshed after each erasure.\nrefresh = {}\n",
            toml_list(&refresh)
        ));
    }
    let mut mapped = BTreeMap::new();
    for (name, e) in &entries {
        out.push('\n');
        if let Some(ns) = notes.get(name) {
            for n in ns {
                out.push_str(&format!("# NOTE: {n}\n"));
            }
        }
        let personal = personal_columns(schema, name, samples);
        if !personal.is_empty() {
            out.push_str(&format!("# personal: {}\n", personal.join(", ")));
        }
        out.push_str(&format!("[[systems.tables]]\nname = \"{name}\"\n"));
        match e {
            Entry::Owner {
                column,
                form,
                path,
                action,
                why,
            } => {
                mapped.insert(name.clone(), format!("owner {column}"));
                out.push_str(&format!("# {why}\nowner = \"{column}\"\n"));
                if let Some(f) = form {
                    out.push_str(&format!("owner_form = \"{f}\"\n"));
                }
                if let Some(p) = path {
                    out.push_str(&format!("owner_path = \"{p}\"\n"));
                }
                out.push_str(&format!("action = \"{action}\"\n"));
                if *action == "redact" {
                    todo.push(format!(
                        "{name}: the subject's id inside {column} is redacted and the rows stay; use delete if the rows are the subject's own"
                    ));
                }
            }
            Entry::BelongsTo {
                parent,
                columns,
                references,
            } => {
                mapped.insert(name.clone(), format!("belongs_to {parent}"));
                out.push_str(&format!(
                    "belongs_to = {{ table = \"{parent}\", columns = {}, references = {} }}\naction = \"delete\"\n",
                    toml_list(columns),
                    toml_list(references)
                ));
            }
            Entry::ReferencedBy { table, columns } => {
                mapped.insert(name.clone(), format!("referenced_by {table}"));
                out.push_str(&format!(
                    "# TODO confirm: rows the subject's {table} row points at, erased after it and only where nothing else references them\nreferenced_by = {{ table = \"{table}\", columns = {} }}\naction = \"delete\"\n",
                    toml_list(columns)
                ));
            }
        }
    }
    // 5. Everything else: to confirm, one by one.
    let mut others: BTreeSet<&String> = schema.tables.keys().collect();
    for name in entries.keys() {
        others.remove(name);
    }
    for name in others {
        if name == crate::sql::RECORD_TABLE || name == crate::sql::RETENTION_TABLE {
            continue;
        }
        let personal = personal_columns(schema, name, samples);
        out.push('\n');
        let reason = if personal.is_empty() {
            "TODO: confirm this table holds no personal data, and say why".to_owned()
        } else {
            todo.push(format!(
                "{name}: not tied to the subject by key or value, but {} look personal: map it or explain",
                personal.join(", ")
            ));
            format!(
                "TODO: {} look personal; map the table, or say why they are not the subject's",
                personal.join(", ")
            )
        };
        out.push_str(&format!(
            "[[systems.ignore]]\ntable = \"{name}\"\nreason = \"{reason}\"\n"
        ));
    }
    for v in schema.views.iter().filter(|v| !v.materialized) {
        if v.reads.iter().any(|t| entries.contains_key(t)) {
            out.push_str(&format!(
                "\n[[systems.ignore]]\ntable = \"{}\"\nreason = \"TODO: a view of mapped tables; confirm no copy of it is kept elsewhere\"\n",
                v.name
            ));
        }
    }
    let undecided = out.matches("reason = \"TODO").count();
    if undecided > 0 {
        todo.push(format!(
            "{undecided} TODO(s) in the map: `lethe datamap check` reports each as undecided until it is"
        ));
    }
    let by_value = entries
        .values()
        .filter(|e| matches!(e, Entry::Owner { why, .. } if why.contains("by value")))
        .count();
    Proposal {
        text: out,
        todo,
        mapped,
        by_value,
    }
}

/// The columns of a table that look personal, as `column (what)`.
fn personal_columns(
    schema: &Schema,
    table: &str,
    samples: &BTreeMap<(String, String), Vec<String>>,
) -> Vec<String> {
    schema
        .table(table)
        .map(|t| {
            t.columns
                .iter()
                .filter_map(|c| {
                    looks_personal(table, &c.name, samples).map(|w| format!("{} ({w})", c.name))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn looks_personal(
    table: &str,
    column: &str,
    samples: &BTreeMap<(String, String), Vec<String>>,
) -> Option<&'static str> {
    if let Some(vs) = samples.get(&(table.to_owned(), column.to_owned())) {
        let hits: Vec<&'static str> = vs.iter().filter_map(|v| pii_in_value(v)).collect();
        if !vs.is_empty() && hits.len() * 2 >= vs.len() {
            return hits.first().copied();
        }
    }
    pii_by_name(column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Column, ForeignKey, SchemaTable};

    fn table(name: &str, cols: &[&str], fks: Vec<ForeignKey>) -> (String, SchemaTable) {
        (
            name.into(),
            SchemaTable {
                name: name.into(),
                columns: cols
                    .iter()
                    .map(|c| Column {
                        name: c.to_string(),
                        data_type: "text".into(),
                    })
                    .collect(),
                fks,
                ..Default::default()
            },
        )
    }

    fn fk(cols: &[&str], parent: &str, pcols: &[&str]) -> ForeignKey {
        ForeignKey {
            columns: cols.iter().map(|c| c.to_string()).collect(),
            parent: parent.into(),
            parent_columns: pcols.iter().map(|c| c.to_string()).collect(),
            on_delete: "no action".into(),
        }
    }

    #[test]
    fn walks_keys_both_ways_and_parses() {
        let mut schema = Schema::default();
        schema.tables.extend([
            table("address", &["address_id", "address", "phone"], vec![]),
            table(
                "customer",
                &["customer_id", "first_name", "address_id"],
                vec![fk(&["address_id"], "address", &["address_id"])],
            ),
            table(
                "rental",
                &["rental_id", "customer_id"],
                vec![fk(&["customer_id"], "customer", &["customer_id"])],
            ),
            table(
                "payment",
                &["payment_id", "rental_id"],
                vec![fk(&["rental_id"], "rental", &["rental_id"])],
            ),
            table("film", &["film_id", "title"], vec![]),
        ]);
        let p = propose(
            &schema,
            &Subject {
                system: "shop",
                kind: "postgres",
                url_env: "SHOP_URL",
                table: "customer",
                column: "customer_id",
            },
            &[],
            &Default::default(),
        );
        assert_eq!(p.mapped["rental"], "owner customer_id");
        assert_eq!(p.mapped["payment"], "belongs_to rental");
        assert_eq!(p.mapped["address"], "referenced_by customer");
        assert!(!p.mapped.contains_key("film"));
        assert!(p.text.contains("table = \"film\""), "{}", p.text);
        let m = crate::DataMap::parse(&p.text).unwrap_or_else(|e| panic!("{e}\n{}", p.text));
        assert_eq!(m.systems[0].tables.len(), 4);
    }
}
