//! SQL text for one dialect, built only from validated identifiers, with
//! every value bound as a parameter.

use crate::datamap::{Dialect, Ident, JsonPath, OwnerForm, Ownership, ParentLink, Table};
use std::collections::BTreeMap;

/// A bound value: the connectors bind integers to integer columns and text
/// elsewhere, so that PostgreSQL compares like with like.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(untagged)]
pub enum Val {
    I(i64),
    S(String),
}

impl Val {
    pub fn text(&self) -> String {
        match self {
            Self::I(i) => i.to_string(),
            Self::S(s) => s.clone(),
        }
    }
}

/// A statement under construction: text plus its binds in order.
#[derive(Debug, Clone)]
pub struct Sql {
    pub d: Dialect,
    pub text: String,
    pub binds: Vec<Val>,
}

impl Sql {
    pub fn new(d: Dialect) -> Self {
        Self {
            d,
            text: String::new(),
            binds: Vec::new(),
        }
    }
    /// Appends a placeholder for `v` and returns it. Integers are written
    /// as literals (an `i64` printed is digits and a sign, nothing else),
    /// which spares the database a parameter per key in large batches.
    pub fn p(&mut self, v: Val) -> String {
        match v {
            Val::I(i) => i.to_string(),
            // MySQL/MariaDB: a text value as a hex literal in the
            // connection's character set: nothing in it can end the
            // literal, and the statement goes by the text protocol in one
            // round trip (prepared statements with many parameters are
            // slow there).
            Val::S(s) if self.d == Dialect::Mysql => {
                let mut out = String::with_capacity(14 + 2 * s.len());
                out.push_str("_utf8mb4 X'");
                for b in s.as_bytes() {
                    out.push_str(&format!("{b:02x}"));
                }
                out.push('\'');
                out
            }
            v => {
                self.binds.push(v);
                self.d.ph(self.binds.len())
            }
        }
    }
    /// `(p1, p2, ...)` for a list of values.
    pub fn list(&mut self, vs: &[Val]) -> String {
        let ps: Vec<String> = vs.iter().map(|v| self.p(v.clone())).collect();
        format!("({})", ps.join(", "))
    }
    pub fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }
}

/// The chain of foreign-key hops from a table to the table that holds the
/// subject id: `t0` is the table itself, `tN` the root.
#[derive(Debug, Clone)]
pub struct Path {
    /// (alias index, table) from the table itself to the root.
    pub tables: Vec<Ident>,
    /// links[i] joins tables[i] (columns) to tables[i+1] (references).
    pub links: Vec<ParentLink>,
    /// The root's column holding the subject id.
    pub owner: Ident,
    /// Where inside the owner column (a JSON document) the id sits.
    pub owner_path: Option<JsonPath>,
    /// How the owner column holds the id.
    pub owner_form: OwnerForm,
}

impl Path {
    /// Follows `belongs_to` links. The data map parser checked every parent
    /// exists and the planner rejected cycles; a broken chain ends at the
    /// last table found (the path is then never used: planning failed).
    pub fn of(table: &Table, by_name: &BTreeMap<&Ident, &Table>) -> Option<Self> {
        let mut tables = vec![table.name.clone()];
        let mut links = vec![];
        let mut cur = table;
        for _ in 0..64 {
            match &cur.ownership {
                Ownership::Column(c) => {
                    return Some(Self {
                        tables,
                        links,
                        owner: c.clone(),
                        owner_path: cur.owner_path.clone(),
                        owner_form: cur.owner_form,
                    });
                }
                Ownership::Parent(p) => {
                    let parent = by_name.get(&p.table)?;
                    links.push(p.clone());
                    tables.push(p.table.clone());
                    cur = parent;
                }
                Ownership::Referenced(r) => {
                    // The same join, seen from the other side: this table's
                    // referenced columns equal the referencing table's
                    // columns. Unresolved references (no schema yet) have
                    // no path.
                    if r.references.is_empty() {
                        return None;
                    }
                    let next = by_name.get(&r.table)?;
                    links.push(ParentLink {
                        table: r.table.clone(),
                        columns: r.references.clone(),
                        references: r.columns.clone(),
                    });
                    tables.push(r.table.clone());
                    cur = next;
                }
            }
        }
        None
    }

    pub fn depth(&self) -> usize {
        self.links.len()
    }

    pub fn root(&self) -> &Ident {
        // A path always holds at least its own table.
        &self.tables[self.tables.len() - 1]
    }

    fn alias(i: usize) -> String {
        format!("t{i}")
    }

    /// `T t0 JOIN P t1 ON t0.a = t1.b ...` from hop `from` on.
    pub fn from_clause(&self, d: Dialect, from: usize) -> String {
        let mut s = format!("{} {}", self.tables[from].q(d), Self::alias(from));
        for i in from..self.links.len() {
            s.push_str(&format!(
                " JOIN {} {} ON {}",
                self.tables[i + 1].q(d),
                Self::alias(i + 1),
                self.join_cond(d, i)
            ));
        }
        s
    }

    /// The join condition between hop `i` and hop `i + 1`.
    pub fn join_cond(&self, d: Dialect, i: usize) -> String {
        let l = &self.links[i];
        let parts: Vec<String> = l
            .columns
            .iter()
            .zip(&l.references)
            .map(|(c, r)| {
                format!(
                    "{}.{} = {}.{}",
                    Self::alias(i),
                    c.q(d),
                    Self::alias(i + 1),
                    r.q(d)
                )
            })
            .collect();
        parts.join(" AND ")
    }

    /// The root's owner column, qualified; with a JSON path, the text at
    /// that path.
    pub fn owner_col(&self, d: Dialect) -> String {
        self.owner_expr(d, Some(&Self::alias(self.depth())))
    }

    /// The owner expression with an alias, or bare (a single-table
    /// statement without alias). The path's keys are plain names (checked
    /// at parse), so they sit in the SQL text safely.
    pub fn owner_expr(&self, d: Dialect, alias: Option<&str>) -> String {
        let col = match alias {
            Some(a) => format!("{a}.{}", self.owner.q(d)),
            None => self.owner.q(d),
        };
        json_text(d, &col, self.owner_path.as_ref())
    }

    /// `tN.owner IN (...)` with the subjects bound.
    pub fn pred(&self, sql: &mut Sql, subjects: &[Val]) -> String {
        let list = sql.list(subjects);
        format!("{} IN {list}", self.owner_col(sql.d))
    }

    /// `SELECT owner, COUNT(*) ... GROUP BY owner`, optionally with an extra
    /// condition on `t0`.
    pub fn count_by_subject(&self, d: Dialect, subjects: &[Val], extra: Option<&str>) -> Sql {
        let mut sql = Sql::new(d);
        let pred = self.pred(&mut sql, subjects);
        let extra = extra.map(|e| format!(" AND ({e})")).unwrap_or_default();
        sql.text = format!(
            "SELECT {o}, COUNT(*) FROM {} WHERE {pred}{extra} GROUP BY {o}",
            self.from_clause(d, 0),
            o = self.owner_col(d)
        );
        sql
    }

    /// The parent key tuples of the subjects (for hop 1), with the subject:
    /// `SELECT owner, t1.refs... FROM P t1 JOIN ... WHERE pred`.
    pub fn parent_keys(&self, d: Dialect, subjects: &[Val]) -> Option<Sql> {
        let l = self.links.first()?;
        let mut sql = Sql::new(d);
        let pred = self.pred(&mut sql, subjects);
        let refs: Vec<String> = l
            .references
            .iter()
            .map(|r| format!("{}.{}", Self::alias(1), r.q(d)))
            .collect();
        sql.text = format!(
            "SELECT {}, {} FROM {} WHERE {pred}",
            self.owner_col(d),
            refs.join(", "),
            self.from_clause(d, 1)
        );
        Some(sql)
    }

    /// A statement applying `action` to the subjects' rows: `DELETE` when
    /// `set` is `None`, else `UPDATE ... SET {set}` (the SET list refers to
    /// columns of the table unqualified, and may contain placeholders bound
    /// before the subjects: pass them as `pre`). `extra` is one more
    /// condition on `t0`, with its binds in `extra_binds` (after the subjects).
    pub fn write(
        &self,
        d: Dialect,
        set: Option<&str>,
        pre: Vec<Val>,
        subjects: &[Val],
        extra: Option<(&str, Vec<Val>)>,
    ) -> Sql {
        let mut sql = Sql::new(d);
        sql.binds = pre;
        let t = self.tables[0].q(d);
        let pred = self.pred(&mut sql, subjects);
        let extra_s = match extra {
            Some((e, binds)) => {
                // Placeholders in `e` are written as `{}` and numbered here.
                let mut out = String::new();
                let mut rest = e;
                let mut binds = binds.into_iter();
                while let Some(pos) = rest.find("{}") {
                    out.push_str(&rest[..pos]);
                    if let Some(b) = binds.next() {
                        out.push_str(&sql.p(b));
                    }
                    rest = &rest[pos + 2..];
                }
                out.push_str(rest);
                format!(" AND ({out})")
            }
            None => String::new(),
        };
        let depth = self.depth();
        sql.text = match d {
            Dialect::Mysql => {
                // Multi-table syntax: MariaDB plans it as a join (an IN
                // subquery in a single-table DELETE would scan the table).
                let from = self.from_clause(d, 0);
                match set {
                    None => format!("DELETE t0 FROM {from} WHERE {pred}{extra_s}"),
                    Some(set) => format!(
                        "UPDATE {from} SET {} WHERE {pred}{extra_s}",
                        qualify_set(set, "t0")
                    ),
                }
            }
            Dialect::Postgres => {
                let using: Vec<String> = (1..=depth)
                    .map(|i| format!("{} {}", self.tables[i].q(d), Self::alias(i)))
                    .collect();
                let joins: Vec<String> = (0..depth).map(|i| self.join_cond(d, i)).collect();
                let join_pred = if joins.is_empty() {
                    String::new()
                } else {
                    format!("{} AND ", joins.join(" AND "))
                };
                match set {
                    None if depth == 0 => format!("DELETE FROM {t} t0 WHERE {pred}{extra_s}"),
                    None => format!(
                        "DELETE FROM {t} t0 USING {} WHERE {join_pred}{pred}{extra_s}",
                        using.join(", ")
                    ),
                    Some(set) if depth == 0 => {
                        format!("UPDATE {t} t0 SET {set} WHERE {pred}{extra_s}")
                    }
                    Some(set) => format!(
                        "UPDATE {t} t0 SET {set} FROM {} WHERE {join_pred}{pred}{extra_s}",
                        using.join(", ")
                    ),
                }
            }
            Dialect::Sqlite => {
                let cond = if depth == 0 {
                    pred
                } else {
                    let l = &self.links[0];
                    let cols: Vec<String> =
                        l.columns.iter().map(|c| format!("t0.{}", c.q(d))).collect();
                    let refs: Vec<String> = l
                        .references
                        .iter()
                        .map(|r| format!("t1.{}", r.q(d)))
                        .collect();
                    format!(
                        "({}) IN (SELECT {} FROM {} WHERE {pred})",
                        cols.join(", "),
                        refs.join(", "),
                        self.from_clause(d, 1)
                    )
                };
                match set {
                    None => format!("DELETE FROM {t} AS t0 WHERE {cond}{extra_s}"),
                    Some(set) => format!("UPDATE {t} AS t0 SET {set} WHERE {cond}{extra_s}"),
                }
            }
        };
        sql
    }
}

/// The text at `path` inside the JSON in `col` (or `col` itself).
pub fn json_text(d: Dialect, col: &str, path: Option<&JsonPath>) -> String {
    match path {
        None => col.to_owned(),
        Some(p) => match d {
            Dialect::Postgres => format!("(CAST({col} AS jsonb) #>> '{}')", p.braces()),
            Dialect::Mysql => format!("JSON_UNQUOTE(JSON_EXTRACT({col}, '{}'))", p.dollar()),
            Dialect::Sqlite => format!("json_extract({col}, '{}')", p.dollar()),
        },
    }
}

/// An expression setting the value at `path` inside the JSON in `col` to
/// the placeholder `ph` (a text value), or to JSON null when `ph` is None;
/// `data_type` is the column's declared type (PostgreSQL casts back to it).
/// Written without ", " so MySQL's SET qualification leaves it whole.
pub fn json_set(
    d: Dialect,
    col: &str,
    path: &JsonPath,
    ph: Option<&str>,
    data_type: &str,
) -> String {
    match d {
        Dialect::Postgres => {
            let v = match ph {
                Some(ph) => format!("to_jsonb(CAST({ph} AS text))"),
                None => "'null'::jsonb".to_owned(),
            };
            let ty = if data_type.is_empty() {
                "jsonb"
            } else {
                data_type
            };
            format!(
                "CAST(jsonb_set(CAST({col} AS jsonb),'{}',{v}) AS {ty})",
                p_braces(path)
            )
        }
        Dialect::Mysql => {
            let v = ph.map(str::to_owned).unwrap_or_else(|| "NULL".into());
            format!("JSON_SET({col},'{}',{v})", path.dollar())
        }
        Dialect::Sqlite => {
            let v = ph
                .map(str::to_owned)
                .unwrap_or_else(|| "json('null')".into());
            format!("json_set({col},'{}',{v})", path.dollar())
        }
    }
}

fn p_braces(p: &JsonPath) -> String {
    p.braces()
}

/// MySQL's multi-table UPDATE needs qualified targets: `a = NULL, b = ?`
/// becomes `t0.a = NULL, t0.b = ?`. The SET list is built by the connector
/// from identifiers and placeholders only, so splitting on ", " is exact.
fn qualify_set(set: &str, alias: &str) -> String {
    set.split(", ")
        .map(|part| format!("{alias}.{part}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataMap;

    fn paths() -> BTreeMap<String, Path> {
        let m = DataMap::parse(
            r#"
[[systems]]
name = "shop"
kind = "postgres"
url_env = "SHOP_URL"
[[systems.tables]]
name = "orders"
owner = "user_id"
action = "delete"
[[systems.tables]]
name = "lines"
belongs_to = { table = "orders", columns = ["order_id"], references = ["id"] }
action = "delete"
[[systems.tables]]
name = "notes"
belongs_to = { table = "lines", columns = ["order_id", "line_no"], references = ["order_id", "line_no"] }
action = "delete"
"#,
        )
        .unwrap();
        let s = &m.systems[0];
        let by: BTreeMap<&Ident, &Table> = s.tables.iter().map(|t| (&t.name, t)).collect();
        s.tables
            .iter()
            .map(|t| (t.name.to_string(), Path::of(t, &by).unwrap()))
            .collect()
    }

    #[test]
    fn statements_per_dialect() {
        let p = paths();
        let subs = [Val::I(1), Val::I(2)];
        let notes = &p["notes"];
        assert_eq!(notes.depth(), 2);
        let pg = notes.write(Dialect::Postgres, None, vec![], &subs, None);
        assert_eq!(
            pg.text,
            "DELETE FROM \"notes\" t0 USING \"lines\" t1, \"orders\" t2 WHERE t0.\"order_id\" = t1.\"order_id\" AND t0.\"line_no\" = t1.\"line_no\" AND t1.\"order_id\" = t2.\"id\" AND t2.\"user_id\" IN (1, 2)"
        );
        let my = notes.write(Dialect::Mysql, None, vec![], &subs, None);
        assert_eq!(
            my.text,
            "DELETE t0 FROM `notes` t0 JOIN `lines` t1 ON t0.`order_id` = t1.`order_id` AND t0.`line_no` = t1.`line_no` JOIN `orders` t2 ON t1.`order_id` = t2.`id` WHERE t2.`user_id` IN (1, 2)"
        );
        let lite = p["lines"].write(Dialect::Sqlite, None, vec![], &subs, None);
        assert_eq!(
            lite.text,
            "DELETE FROM \"lines\" AS t0 WHERE (t0.\"order_id\") IN (SELECT t1.\"id\" FROM \"orders\" t1 WHERE t1.\"user_id\" IN (1, 2))"
        );
        let upd = p["orders"].write(
            Dialect::Mysql,
            Some("`a` = NULL, `b` = ?"),
            vec![Val::S("h".into())],
            &subs,
            Some(("t0.`b` = {}", vec![Val::S("v".into())])),
        );
        assert_eq!(
            upd.text,
            "UPDATE `orders` t0 SET t0.`a` = NULL, t0.`b` = ? WHERE t0.`user_id` IN (1, 2) AND (t0.`b` = _utf8mb4 X'76')"
        );
        assert_eq!(upd.binds.len(), 1);
        let c = p["lines"].count_by_subject(Dialect::Postgres, &subs, None);
        assert_eq!(
            c.text,
            "SELECT t1.\"user_id\", COUNT(*) FROM \"lines\" t0 JOIN \"orders\" t1 ON t0.\"order_id\" = t1.\"id\" WHERE t1.\"user_id\" IN (1, 2) GROUP BY t1.\"user_id\""
        );
    }
}
