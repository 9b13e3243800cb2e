//! Orders a system's tables so that children are erased before their parents,
//! and builds for each table the condition that selects the subject's rows.

use std::collections::{BTreeMap, BTreeSet};

use crate::datamap::{Action, Ident, Ownership, ParentLink, System};
use crate::schema::Schema;

#[derive(Debug, Clone)]
pub struct PlannedTable {
    pub table: Ident,
    pub action: Action,
    /// A SQL condition selecting the subject's rows; `$1` is the subject id.
    /// Built only from validated identifiers.
    pub condition: String,
    /// How many foreign-key hops separate the table from the subject id.
    pub depth: usize,
}

/// The erasure order of one system: children first.
#[derive(Debug, Clone)]
pub struct Plan {
    pub system: Ident,
    pub steps: Vec<PlannedTable>,
    /// The foreign-key link of each child table to its parent.
    pub links: BTreeMap<Ident, ParentLink>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "system {system}: the tables {cycle} form a cycle, so no table can be erased first ({edges}); {fix}"
    )]
    Cycle {
        system: String,
        cycle: String,
        /// Each link of the cycle and where it comes from.
        edges: String,
        /// The fix that applies to this cycle.
        fix: String,
    },
    #[error("system {system}: table {table}: {problem}; fix: {fix}")]
    Unresolved {
        system: String,
        table: String,
        problem: String,
        fix: String,
    },
}

/// Why one table must be erased before another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeWhy {
    /// The data map's `belongs_to` of the child.
    BelongsTo,
    /// The data map's `referenced_by` of the parent (the referencing table
    /// goes first).
    ReferencedBy,
    /// A foreign key of the live schema (on the child, or on one of its
    /// partitions), with its columns.
    ForeignKey(Vec<String>),
    /// A trigger of the child, fired by the erasure (on delete or update),
    /// that writes to the parent: the parent is erased after it fired.
    Trigger(String),
}

/// `child` is erased before `parent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub child: Ident,
    pub parent: Ident,
    pub why: EdgeWhy,
}

pub fn plan(system: &System) -> Result<Plan, PlanError> {
    plan_with(system, &[])
}

/// The plan of a system as erasure runs it: the data map's links, plus the
/// live schema's foreign keys between mapped tables when a schema is given
/// (`lethe datamap plan` and the connector both plan through here, so the
/// order printed is the order run). `referenced_by` links without their
/// referenced columns take them from the schema's foreign key.
pub fn plan_for(system: &System, schema: Option<&Schema>) -> Result<Plan, PlanError> {
    match schema {
        None => plan(system),
        Some(schema) => {
            let resolved = resolve(system, schema)?;
            plan_with(&resolved, &schema_edges(&resolved, schema))
        }
    }
}

/// The foreign keys of the live schema between mapped tables, as edges.
/// A partitioned table's edges are the union of its partitions' keys (the
/// schema reader folds them into the parent).
pub fn schema_edges(system: &System, schema: &Schema) -> Vec<Edge> {
    let mapped: BTreeSet<&str> = system.tables.iter().map(|t| t.name.as_str()).collect();
    let mut out = Vec::new();
    for tr in &schema.triggers {
        if !mapped.contains(tr.table.as_str())
            || !tr.events.iter().any(|e| e == "delete" || e == "update")
        {
            continue;
        }
        for w in &tr.writes {
            if w != &tr.table
                && mapped.contains(w.as_str())
                && let (Ok(c), Ok(p)) = (Ident::parse(&tr.table), Ident::parse(w))
            {
                out.push(Edge {
                    child: c,
                    parent: p,
                    why: EdgeWhy::Trigger(tr.name.clone()),
                });
            }
        }
    }
    for t in &system.tables {
        if let Some(st) = schema.table(t.name.as_str()) {
            for fk in &st.fks {
                if mapped.contains(fk.parent.as_str())
                    && let Ok(p) = Ident::parse(&fk.parent)
                {
                    out.push(Edge {
                        child: t.name.clone(),
                        parent: p,
                        why: EdgeWhy::ForeignKey(fk.columns.clone()),
                    });
                }
            }
        }
    }
    out
}

/// Fills the referenced columns of `referenced_by` links that leave them
/// out, from the live schema's foreign key.
pub fn resolve(system: &System, schema: &Schema) -> Result<System, PlanError> {
    let mut out = system.clone();
    for t in &mut out.tables {
        let Ownership::Referenced(r) = &mut t.ownership else {
            continue;
        };
        if !r.references.is_empty() {
            continue;
        }
        let fk = schema.table(r.table.as_str()).and_then(|st| {
            st.fks.iter().find(|fk| {
                fk.parent == t.name.as_str()
                    && fk.columns.len() == r.columns.len()
                    && fk
                        .columns
                        .iter()
                        .zip(&r.columns)
                        .all(|(a, b)| a == b.as_str())
            })
        });
        let cols: Option<Vec<Ident>> = fk.and_then(|fk| {
            fk.parent_columns
                .iter()
                .map(|c| Ident::parse(c).ok())
                .collect()
        });
        match cols {
            Some(cols) => r.references = cols,
            None => {
                return Err(PlanError::Unresolved {
                    system: system.name.to_string(),
                    table: t.name.to_string(),
                    problem: format!(
                        "referenced_by names {}({}), but the database has no foreign key from those columns to {}, so the referenced columns are unknown",
                        r.table,
                        r.columns
                            .iter()
                            .map(|c| c.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        t.name
                    ),
                    fix: format!(
                        "name them: referenced_by = {{ table = \"{}\", columns = {:?}, references = [\"<column of {}>\"] }}",
                        r.table,
                        r.columns.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                        t.name
                    ),
                });
            }
        }
    }
    Ok(out)
}

/// Plans with extra edges, typically the foreign keys read from the live
/// schema: a table whose rows reference another mapped table must be
/// erased before it, even when the data map does not say so.
pub fn plan_with(system: &System, extra: &[Edge]) -> Result<Plan, PlanError> {
    let by_name: BTreeMap<&Ident, &crate::datamap::Table> =
        system.tables.iter().map(|t| (&t.name, t)).collect();
    let mut edges: Vec<Edge> = Vec::new();
    for t in &system.tables {
        match &t.ownership {
            Ownership::Parent(p) if p.table != t.name => edges.push(Edge {
                child: t.name.clone(),
                parent: p.table.clone(),
                why: EdgeWhy::BelongsTo,
            }),
            Ownership::Referenced(r) => edges.push(Edge {
                child: r.table.clone(),
                parent: t.name.clone(),
                why: EdgeWhy::ReferencedBy,
            }),
            _ => {}
        }
    }
    edges.extend(
        extra
            .iter()
            .filter(|e| {
                e.child != e.parent
                    && by_name.contains_key(&e.child)
                    && by_name.contains_key(&e.parent)
            })
            .cloned(),
    );
    // parent -> children edges.
    let mut children: BTreeMap<Ident, BTreeSet<Ident>> = BTreeMap::new();
    for t in &system.tables {
        children.entry(t.name.clone()).or_default();
    }
    for e in &edges {
        children
            .entry(e.parent.clone())
            .or_default()
            .insert(e.child.clone());
    }
    let order = topo_children_first(children).map_err(|cycle| {
        let (edges_text, fix) = explain_cycle(&cycle, &edges);
        PlanError::Cycle {
            system: system.name.to_string(),
            cycle: cycle
                .iter()
                .map(Ident::as_str)
                .collect::<Vec<_>>()
                .join(" -> "),
            edges: edges_text,
            fix,
        }
    })?;

    let mut steps = Vec::new();
    for t in &system.tables {
        let (condition, depth) = condition_for(t, &by_name, 0);
        steps.push(PlannedTable {
            table: t.name.clone(),
            action: t.action.clone(),
            condition,
            depth,
        });
    }
    steps.sort_by_key(|s| {
        order
            .iter()
            .position(|n| n == &s.table)
            .unwrap_or(usize::MAX)
    });
    let links = system
        .tables
        .iter()
        .filter_map(|t| match &t.ownership {
            Ownership::Parent(p) => Some((t.name.clone(), p.clone())),
            _ => None,
        })
        .collect();
    Ok(Plan {
        system: system.name.clone(),
        steps,
        links,
    })
}

/// Says where each link of a cycle comes from, and the fix that applies:
/// a `belongs_to` against a live foreign key in the other direction means
/// the table is one the subject's rows reference (`referenced_by`).
fn explain_cycle(cycle: &[Ident], edges: &[Edge]) -> (String, String) {
    let mut parts = vec![];
    let mut fix = None;
    for w in cycle.windows(2) {
        // cycle[i] references cycle[i + 1]: cycle[i] is the child.
        let (child, parent) = (&w[0], &w[1]);
        let here: Vec<&Edge> = edges
            .iter()
            .filter(|e| &e.child == child && &e.parent == parent)
            .collect();
        for e in &here {
            parts.push(match &e.why {
                EdgeWhy::BelongsTo => format!("{child} belongs_to {parent} in the data map"),
                EdgeWhy::ReferencedBy => {
                    format!("{parent} is referenced_by {child} in the data map")
                }
                EdgeWhy::ForeignKey(cols) => format!(
                    "the foreign key {child}({}) references {parent}",
                    cols.join(", ")
                ),
                EdgeWhy::Trigger(name) => format!(
                    "the trigger {name} on {child} writes to {parent} when rows are deleted or updated"
                ),
            });
        }
        // A belongs_to child -> parent while the schema's key runs
        // parent -> child: the child is referenced by the parent.
        if fix.is_none()
            && here.iter().any(|e| e.why == EdgeWhy::BelongsTo)
            && let Some(fk) = edges.iter().find(|e| {
                &e.child == parent && &e.parent == child && matches!(e.why, EdgeWhy::ForeignKey(_))
            })
            && let EdgeWhy::ForeignKey(cols) = &fk.why
        {
            fix = Some(format!(
                "{parent} references {child}, not the other way round: replace {child}'s belongs_to with referenced_by = {{ table = \"{parent}\", columns = {cols:?} }}, so {child}'s rows are erased after {parent}'s and only where nothing else references them"
            ));
        }
    }
    let fix = fix.unwrap_or_else(|| {
        "break it by giving one of them its own `owner` column (a column holding the subject id), or by mapping a table the subject's rows point at with referenced_by instead of belongs_to".into()
    });
    (parts.join("; "), fix)
}

fn condition_for(
    t: &crate::datamap::Table,
    by_name: &BTreeMap<&Ident, &crate::datamap::Table>,
    depth: usize,
) -> (String, usize) {
    let parent_cond = |table: &Ident| match by_name.get(table) {
        Some(parent) => condition_for(parent, by_name, depth + 1),
        None => ("1 = 0".into(), depth),
    };
    match &t.ownership {
        Ownership::Column(c) => (format!("{} = $1", c.quoted()), depth),
        Ownership::Parent(p) => {
            // The cycle check above guarantees the recursion ends; the parent
            // exists because the data map parser checked it.
            let (pc, d) = parent_cond(&p.table);
            let cols = tuple(&p.columns);
            let refs: Vec<String> = p.references.iter().map(|r| r.quoted()).collect();
            (
                format!(
                    "{cols} IN (SELECT {} FROM {} WHERE {pc})",
                    refs.join(", "),
                    p.table.quoted()
                ),
                d,
            )
        }
        Ownership::Referenced(r) => {
            let (pc, d) = parent_cond(&r.table);
            let own = if r.references.is_empty() {
                "(the referenced key)".to_owned()
            } else {
                tuple(&r.references)
            };
            let cols: Vec<String> = r.columns.iter().map(|c| c.quoted()).collect();
            (
                format!(
                    "{own} IN (SELECT {} FROM {} WHERE {pc}), captured before, erased after {} and only where nothing else references them",
                    cols.join(", "),
                    r.table.quoted(),
                    r.table
                ),
                d,
            )
        }
    }
}

fn tuple(cols: &[Ident]) -> String {
    if cols.len() == 1 {
        cols[0].quoted()
    } else {
        let c: Vec<String> = cols.iter().map(|c| c.quoted()).collect();
        format!("({})", c.join(", "))
    }
}

/// Kahn's algorithm over parent -> children edges, emitting children
/// first; ties broken by name so plans are stable (names decide only
/// between tables no link orders). On a cycle, returns it as `[a, b, a]`
/// (each table referencing the next).
fn topo_children_first(
    mut remaining: BTreeMap<Ident, BTreeSet<Ident>>,
) -> Result<Vec<Ident>, Vec<Ident>> {
    let mut out = Vec::new();
    while !remaining.is_empty() {
        let ready: Vec<Ident> = remaining
            .iter()
            .filter(|(_, ch)| ch.is_empty())
            .map(|(n, _)| n.clone())
            .collect();
        if ready.is_empty() {
            // Every remaining table has a remaining child: walk child links
            // until a table repeats.
            let mut path: Vec<Ident> = Vec::new();
            let mut cur = remaining.keys().next().cloned();
            while let Some(n) = cur {
                if let Some(pos) = path.iter().position(|p| p == &n) {
                    let mut cyc: Vec<Ident> = path[pos..].iter().rev().cloned().collect();
                    cyc.push(cyc[0].clone());
                    return Err(cyc);
                }
                path.push(n.clone());
                cur = remaining.get(&n).and_then(|ch| ch.iter().next().cloned());
            }
            return Err(vec![]);
        }
        for n in ready {
            remaining.remove(&n);
            for ch in remaining.values_mut() {
                ch.remove(&n);
            }
            out.push(n);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataMap;

    fn map(extra: &str) -> DataMap {
        DataMap::parse(&format!(
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
name = "order_items"
belongs_to = {{ table = "orders", columns = ["order_id"], references = ["id"] }}
action = "delete"
[[systems.tables]]
name = "orders"
owner = "user_id"
action = "delete"
[[systems.tables]]
name = "item_notes"
belongs_to = {{ table = "order_items", columns = ["order_id", "line"], references = ["order_id", "line"] }}
action = "delete"
{extra}
"#
        ))
        .unwrap()
    }

    #[test]
    fn children_come_before_parents() {
        let p = plan(&map("").systems[0]).unwrap();
        let names: Vec<&str> = p.steps.iter().map(|s| s.table.as_str()).collect();
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(pos("item_notes") < pos("order_items"));
        assert!(pos("order_items") < pos("orders"));
        let notes = &p.steps[pos("item_notes")];
        assert_eq!(notes.depth, 2);
        assert_eq!(
            notes.condition,
            "(\"order_id\", \"line\") IN (SELECT \"order_id\", \"line\" FROM \"order_items\" WHERE \"order_id\" IN (SELECT \"id\" FROM \"orders\" WHERE \"user_id\" = $1))"
        );
    }

    #[test]
    fn schema_foreign_keys_order_owner_tables_before_the_subject_table() {
        let m = map("");
        let fk = |c: &str, p: &str| Edge {
            child: Ident::parse(c).unwrap(),
            parent: Ident::parse(p).unwrap(),
            why: EdgeWhy::ForeignKey(vec!["x".into()]),
        };
        let p = plan_with(
            &m.systems[0],
            &[fk("orders", "users"), fk("users", "users")],
        )
        .unwrap();
        let names: Vec<&str> = p.steps.iter().map(|s| s.table.as_str()).collect();
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(pos("orders") < pos("users"));
        assert!(pos("order_items") < pos("orders"));
    }

    #[test]
    fn a_cycle_is_reported_with_a_way_out() {
        let m = map(r#"
[[systems.tables]]
name = "a"
belongs_to = { table = "b", columns = ["b_id"], references = ["id"] }
action = "delete"
[[systems.tables]]
name = "b"
belongs_to = { table = "a", columns = ["a_id"], references = ["id"] }
action = "delete"
"#);
        let e = plan(&m.systems[0]).unwrap_err().to_string();
        assert!(
            e.contains("a -> b -> a") || e.contains("b -> a -> b"),
            "{e}"
        );
        assert!(e.contains("break it"), "{e}");
    }

    fn schema_with_fk(child: &str, cols: &[&str], parent: &str, pcols: &[&str]) -> Schema {
        use crate::schema::{ForeignKey, SchemaTable};
        let mut s = Schema::default();
        s.tables.insert(
            child.into(),
            SchemaTable {
                name: child.into(),
                fks: vec![ForeignKey {
                    columns: cols.iter().map(|c| c.to_string()).collect(),
                    parent: parent.into(),
                    parent_columns: pcols.iter().map(|c| c.to_string()).collect(),
                    on_delete: "no action".into(),
                }],
                ..Default::default()
            },
        );
        s
    }

    fn shop(address: &str) -> DataMap {
        DataMap::parse(&format!(
            r#"
[[systems]]
name = "shop"
kind = "postgres"
url_env = "SHOP_URL"
[[systems.tables]]
name = "customer"
owner = "customer_id"
action = "delete"
[[systems.tables]]
name = "address"
{address}
action = "delete"
"#
        ))
        .unwrap()
    }

    #[test]
    fn a_referenced_table_comes_after_the_rows_that_reference_it() {
        let m = shop(r#"referenced_by = { table = "customer", columns = ["address_id"] }"#);
        let schema = schema_with_fk("customer", &["address_id"], "address", &["id"]);
        for p in [
            plan(&m.systems[0]).unwrap(),
            plan_for(&m.systems[0], Some(&schema)).unwrap(),
        ] {
            let names: Vec<&str> = p.steps.iter().map(|s| s.table.as_str()).collect();
            assert_eq!(names, ["customer", "address"]);
        }
        // The referenced column comes from the live foreign key.
        let p = plan_for(&m.systems[0], Some(&schema)).unwrap();
        assert!(
            p.steps[1].condition.starts_with(
                "\"id\" IN (SELECT \"address_id\" FROM \"customer\" WHERE \"customer_id\" = $1)"
            ),
            "{}",
            p.steps[1].condition
        );
        // Without a foreign key, the map must name the referenced columns.
        let e = plan_for(&m.systems[0], Some(&Schema::default()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("references = ["), "{e}");
    }

    #[test]
    fn belongs_to_against_the_live_key_suggests_referenced_by() {
        let m = shop(
            r#"belongs_to = { table = "customer", columns = ["id"], references = ["address_id"] }"#,
        );
        let schema = schema_with_fk("customer", &["address_id"], "address", &["id"]);
        let e = plan_for(&m.systems[0], Some(&schema))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cycle"), "{e}");
        assert!(
            e.contains("address belongs_to customer in the data map"),
            "{e}"
        );
        assert!(
            e.contains("the foreign key customer(address_id) references address"),
            "{e}"
        );
        assert!(
            e.contains(r#"referenced_by = { table = "customer", columns = ["address_id"] }"#),
            "{e}"
        );
    }

    #[test]
    fn order_does_not_depend_on_names() {
        // Two owner tables ordered only by a live key: whichever sorts
        // first by name, the referencing one goes first.
        for (a, b) in [("aa", "zz"), ("zz", "aa")] {
            let m = DataMap::parse(&format!(
                r#"
[[systems]]
name = "s"
kind = "postgres"
url_env = "S_URL"
[[systems.tables]]
name = "{a}"
owner = "user_id"
action = "delete"
[[systems.tables]]
name = "{b}"
owner = "user_id"
action = "delete"
"#
            ))
            .unwrap();
            let schema = schema_with_fk(a, &["b_id"], b, &["id"]);
            let p = plan_for(&m.systems[0], Some(&schema)).unwrap();
            let names: Vec<&str> = p.steps.iter().map(|s| s.table.as_str()).collect();
            assert_eq!(names, [a, b]);
        }
    }
}
