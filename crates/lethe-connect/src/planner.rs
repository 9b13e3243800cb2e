//! Orders a system's tables so that children are erased before their parents,
//! and builds for each table the condition that selects the subject's rows.

use std::collections::{BTreeMap, BTreeSet};

use crate::datamap::{Action, Ident, Ownership, ParentLink, System};

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
        "system {system}: the tables {cycle} form a cycle of belongs_to links, so no table can be erased first; break it by giving one of them its own `owner` column, or by nullifying the foreign key first (action = \"nullify\") in a table of its own"
    )]
    Cycle { system: String, cycle: String },
}

pub fn plan(system: &System) -> Result<Plan, PlanError> {
    plan_with(system, &[])
}

/// Plans with extra `(child, parent)` edges, typically the foreign keys read
/// from the live schema: a table whose rows reference another mapped table
/// must be erased before it, even when the data map does not say so.
pub fn plan_with(system: &System, extra: &[(Ident, Ident)]) -> Result<Plan, PlanError> {
    let by_name: BTreeMap<&Ident, &crate::datamap::Table> =
        system.tables.iter().map(|t| (&t.name, t)).collect();
    // parent -> children edges, belongs_to links and the extra edges.
    let mut children: BTreeMap<Ident, BTreeSet<Ident>> = BTreeMap::new();
    for t in &system.tables {
        children.entry(t.name.clone()).or_default();
    }
    for t in &system.tables {
        if let Ownership::Parent(p) = &t.ownership
            && p.table != t.name
        {
            children
                .entry(p.table.clone())
                .or_default()
                .insert(t.name.clone());
        }
    }
    for (child, parent) in extra {
        if child != parent && by_name.contains_key(child) && by_name.contains_key(parent) {
            children
                .entry(parent.clone())
                .or_default()
                .insert(child.clone());
        }
    }
    let order = topo_children_first(children).map_err(|cycle| PlanError::Cycle {
        system: system.name.to_string(),
        cycle,
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
            Ownership::Column(_) => None,
        })
        .collect();
    Ok(Plan {
        system: system.name.clone(),
        steps,
        links,
    })
}

fn condition_for(
    t: &crate::datamap::Table,
    by_name: &BTreeMap<&Ident, &crate::datamap::Table>,
    depth: usize,
) -> (String, usize) {
    match &t.ownership {
        Ownership::Column(c) => (format!("{} = $1", c.quoted()), depth),
        Ownership::Parent(p) => {
            // The cycle check above guarantees the recursion ends; the parent
            // exists because the data map parser checked it.
            let Some(parent) = by_name.get(&p.table) else {
                return ("1 = 0".into(), depth);
            };
            let (pc, d) = condition_for(parent, by_name, depth + 1);
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
/// first; ties broken by name so plans are stable. On a cycle, returns it as
/// `a -> b -> a` (each table referencing the next).
fn topo_children_first(
    mut remaining: BTreeMap<Ident, BTreeSet<Ident>>,
) -> Result<Vec<Ident>, String> {
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
                    let mut cyc: Vec<String> =
                        path[pos..].iter().rev().map(|s| s.to_string()).collect();
                    cyc.push(cyc[0].clone());
                    return Err(cyc.join(" -> "));
                }
                path.push(n.clone());
                cur = remaining.get(&n).and_then(|ch| ch.iter().next().cloned());
            }
            return Err("(unknown)".into());
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
        let fk = |c: &str, p: &str| (Ident::parse(c).unwrap(), Ident::parse(p).unwrap());
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
}
