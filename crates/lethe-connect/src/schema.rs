//! Reading a live schema: tables, columns and foreign keys, from
//! `sqlite_master`/`pragma_*`, `pg_catalog` and `information_schema`.

use sqlx::{AnyConnection, Row};
use std::collections::BTreeMap;

use crate::datamap::Dialect;

/// At most this many tables are read from one schema.
pub const MAX_TABLES: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// As the database names it, lower-case (`bigint`, `character varying`).
    pub data_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    pub columns: Vec<String>,
    pub parent: String,
    pub parent_columns: Vec<String>,
    /// `cascade`, `set null`, `set default`, `restrict` or `no action`.
    pub on_delete: String,
}

impl ForeignKey {
    /// Whether deleting the parent row also takes care of this row.
    pub fn follows_delete(&self) -> bool {
        matches!(
            self.on_delete.as_str(),
            "cascade" | "set null" | "set default"
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaTable {
    pub name: String,
    pub columns: Vec<Column>,
    pub fks: Vec<ForeignKey>,
    /// PostgreSQL: a partitioned table. Its partitions are not listed as
    /// tables; the foreign keys declared on them are folded into `fks`.
    pub partitioned: bool,
    /// PostgreSQL: each partition (at any depth) with the foreign keys
    /// declared on the partition itself, not inherited from the parent.
    pub partitions: BTreeMap<String, Vec<ForeignKey>>,
}

impl SchemaTable {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// A view or materialised view and the tables it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub name: String,
    /// A materialised view holds a copy of what it read.
    pub materialized: bool,
    pub reads: Vec<String>,
}

/// A trigger: on which table, on which events, and the tables its body
/// writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub name: String,
    pub table: String,
    /// `insert`, `update`, `delete`, lower-case.
    pub events: Vec<String>,
    pub writes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    pub tables: BTreeMap<String, SchemaTable>,
    pub views: Vec<View>,
    pub triggers: Vec<Trigger>,
}

/// The known tables a SQL text names as whole words (quoted or not,
/// schema-qualified or not), sorted.
pub fn tables_named(sql: &str, known: &BTreeMap<String, SchemaTable>) -> Vec<String> {
    let lower = sql.to_ascii_lowercase();
    let words: std::collections::BTreeSet<&str> = lower
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    known
        .keys()
        .filter(|t| words.contains(t.to_ascii_lowercase().as_str()))
        .cloned()
        .collect()
}

/// The tables a trigger body writes to: the word after `INSERT INTO`,
/// `UPDATE` or `DELETE FROM`, where it is a known table.
pub fn tables_written(body: &str, known: &BTreeMap<String, SchemaTable>) -> Vec<String> {
    let lower = body.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = std::collections::BTreeSet::new();
    for (i, w) in words.iter().enumerate() {
        let target = match *w {
            "into" if i > 0 && words[i - 1] == "insert" => words.get(i + 1),
            "from" if i > 0 && words[i - 1] == "delete" => words.get(i + 1),
            "update" => words.get(i + 1),
            _ => None,
        };
        if let Some(t) = target {
            let t = t.rsplit('.').next().unwrap_or(t);
            if let Some(k) = known.keys().find(|k| k.to_ascii_lowercase() == t) {
                out.insert(k.clone());
            }
        }
    }
    out.into_iter().collect()
}

impl Schema {
    pub fn table(&self, name: &str) -> Option<&SchemaTable> {
        self.tables.get(name)
    }
}

pub fn is_integer(t: &str) -> bool {
    let t = t.to_ascii_lowercase();
    ["int", "serial"].iter().any(|k| t.contains(k)) && !t.contains("point")
}

pub fn is_text(t: &str) -> bool {
    let t = t.to_ascii_lowercase();
    ["char", "text", "clob", "string"]
        .iter()
        .any(|k| t.contains(k))
        || t.is_empty()
}

/// Whether sampling skips a column of this type: booleans, dates and times
/// hold no identifier. Everything else is read as text (numbers too: a
/// phone number in a BIGINT is still a phone number).
pub fn is_unsampled(t: &str) -> bool {
    let t = t.to_ascii_lowercase();
    t == "bool"
        || t == "boolean"
        || t == "tinyint(1)"
        || t == "date"
        || t == "year"
        || t.starts_with("timestamp")
        || t.starts_with("time")
        || t.starts_with("datetime")
        || t.starts_with("interval")
}

/// An SQL expression reading `expr` (a column of type `t`) as text in the
/// database itself, so that every type comes out as a string the driver
/// decodes: arrays, json, bytea/blob, enums, uuid, inet, money, numeric,
/// geometry, char(n), citext, tsvector, xml and domains over them.
pub fn as_text(d: Dialect, expr: &str, t: &str) -> String {
    let t = t.to_ascii_lowercase();
    match d {
        Dialect::Postgres => format!("CAST({expr} AS TEXT)"),
        Dialect::Mysql => {
            let spatial = [
                "geometry",
                "point",
                "linestring",
                "polygon",
                "multipoint",
                "multilinestring",
                "multipolygon",
                "geometrycollection",
            ];
            if spatial.iter().any(|g| t.starts_with(g)) {
                format!("ST_AsText({expr})")
            } else if t.contains("blob") || t.contains("binary") {
                format!("HEX({expr})")
            } else {
                format!("CAST({expr} AS CHAR)")
            }
        }
        Dialect::Sqlite => {
            if t.contains("blob") {
                format!("hex({expr})")
            } else {
                format!("CAST({expr} AS TEXT)")
            }
        }
    }
}

fn text(r: &sqlx::any::AnyRow, i: usize) -> String {
    r.try_get::<String, _>(i)
        .or_else(|_| {
            r.try_get::<Vec<u8>, _>(i)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .or_else(|_| r.try_get::<i64, _>(i).map(|v| v.to_string()))
        .unwrap_or_default()
}

/// Reads the schema; `progress(done, total)` is called as tables are read.
pub async fn read(
    c: &mut AnyConnection,
    d: Dialect,
    mut progress: impl FnMut(usize, usize),
) -> Result<Schema, sqlx::Error> {
    let mut s = Schema::default();
    match d {
        Dialect::Sqlite => {
            let names: Vec<String> = sqlx::query(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| text(r, 0))
            .take(MAX_TABLES)
            .collect();
            let total = names.len();
            for (i, name) in names.into_iter().enumerate() {
                let columns = sqlx::query("SELECT name, type FROM pragma_table_info($1)")
                    .bind(name.clone())
                    .fetch_all(&mut *c)
                    .await?
                    .iter()
                    .map(|r| Column {
                        name: text(r, 0),
                        data_type: text(r, 1).to_ascii_lowercase(),
                    })
                    .collect();
                let mut fks: BTreeMap<i64, ForeignKey> = BTreeMap::new();
                for r in sqlx::query(
                    "SELECT id, \"table\", \"from\", \"to\", on_delete FROM pragma_foreign_key_list($1) ORDER BY id, seq",
                )
                .bind(name.clone())
                .fetch_all(&mut *c)
                .await?
                {
                    let id: i64 = r.try_get(0).unwrap_or(0);
                    let fk = fks.entry(id).or_insert_with(|| ForeignKey {
                        columns: vec![],
                        parent: text(&r, 1),
                        parent_columns: vec![],
                        on_delete: text(&r, 4).to_ascii_lowercase(),
                    });
                    fk.columns.push(text(&r, 2));
                    fk.parent_columns.push(text(&r, 3));
                }
                s.tables.insert(
                    name.clone(),
                    SchemaTable {
                        name,
                        columns,
                        fks: fks.into_values().collect(),
                        ..Default::default()
                    },
                );
                progress(i + 1, total);
            }
        }
        Dialect::Postgres => {
            read_postgres(c, &mut s, &mut progress).await?;
        }
        Dialect::Mysql => {
            read_mysql(c, &mut s, &mut progress).await?;
        }
    }
    read_views_and_triggers(c, d, &mut s).await?;
    Ok(s)
}

/// Views, materialised views and triggers, with the tables they read or
/// write.
async fn read_views_and_triggers(
    c: &mut AnyConnection,
    d: Dialect,
    s: &mut Schema,
) -> Result<(), sqlx::Error> {
    const MAX_OBJECTS: usize = 5_000;
    match d {
        Dialect::Sqlite => {
            for r in sqlx::query(
                "SELECT type, name, tbl_name, COALESCE(sql, '') FROM sqlite_master WHERE type IN ('view', 'trigger') ORDER BY name",
            )
            .fetch_all(&mut *c)
            .await?
            .iter()
            .take(MAX_OBJECTS)
            {
                let (kind, name, table, sql) = (text(r, 0), text(r, 1), text(r, 2), text(r, 3));
                if kind == "view" {
                    s.views.push(View {
                        reads: tables_named(&sql, &s.tables),
                        name,
                        materialized: false,
                    });
                } else {
                    // The header names the events; the body (after BEGIN)
                    // what it writes.
                    let lower = sql.to_ascii_lowercase();
                    let (head, body) = lower.split_once("begin").unwrap_or((&lower, ""));
                    let events = ["insert", "update", "delete"]
                        .iter()
                        .filter(|e| head.contains(*e))
                        .map(|e| e.to_string())
                        .collect();
                    s.triggers.push(Trigger {
                        writes: tables_written(body, &s.tables),
                        name,
                        table,
                        events,
                    });
                }
            }
        }
        Dialect::Postgres => {
            for r in sqlx::query(
                "SELECT DISTINCT v.relname::text, (v.relkind = 'm')::int4, COALESCE(rt.relname, t.relname)::text
                 FROM pg_class v JOIN pg_namespace n ON n.oid = v.relnamespace
                 JOIN pg_rewrite rw ON rw.ev_class = v.oid
                 JOIN pg_depend dp ON dp.objid = rw.oid AND dp.classid = 'pg_rewrite'::regclass AND dp.refclassid = 'pg_class'::regclass
                 JOIN pg_class t ON t.oid = dp.refobjid
                 LEFT JOIN pg_class rt ON rt.oid = pg_partition_root(t.oid)
                 WHERE n.nspname = current_schema() AND v.relkind IN ('v', 'm') AND t.oid <> v.oid
                 ORDER BY 1, 3",
            )
            .fetch_all(&mut *c)
            .await?
            .iter()
            .take(MAX_OBJECTS * 10)
            {
                let (name, mat, table) = (text(r, 0), r.try_get::<i32, _>(1).unwrap_or(0) == 1, text(r, 2));
                match s.views.iter_mut().find(|v| v.name == name) {
                    Some(v) => v.reads.push(table),
                    None => s.views.push(View {
                        name,
                        materialized: mat,
                        reads: vec![table],
                    }),
                }
            }
            for r in sqlx::query(
                "SELECT t.tgname::text, COALESCE(rc.relname, c.relname)::text, t.tgtype::int4, COALESCE(p.prosrc, '')
                 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_proc p ON p.oid = t.tgfoid
                 LEFT JOIN pg_class rc ON rc.oid = pg_partition_root(c.oid)
                 WHERE NOT t.tgisinternal AND t.tgparentid = 0 AND n.nspname = current_schema() ORDER BY 1",
            )
            .fetch_all(&mut *c)
            .await?
            .iter()
            .take(MAX_OBJECTS)
            {
                let ty = r.try_get::<i32, _>(2).unwrap_or(0);
                let events = [(4, "insert"), (8, "delete"), (16, "update")]
                    .iter()
                    .filter(|(bit, _)| ty & bit != 0)
                    .map(|(_, e)| e.to_string())
                    .collect();
                s.triggers.push(Trigger {
                    name: text(r, 0),
                    table: text(r, 1),
                    events,
                    writes: tables_written(&text(r, 3), &s.tables),
                });
            }
        }
        Dialect::Mysql => {
            for r in sqlx::query(
                "SELECT CAST(TABLE_NAME AS CHAR), CAST(VIEW_DEFINITION AS CHAR) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1",
            )
            .fetch_all(&mut *c)
            .await?
            .iter()
            .take(MAX_OBJECTS)
            {
                s.views.push(View {
                    name: text(r, 0),
                    materialized: false,
                    reads: tables_named(&text(r, 1), &s.tables),
                });
            }
            for r in sqlx::query(
                "SELECT CAST(TRIGGER_NAME AS CHAR), CAST(EVENT_OBJECT_TABLE AS CHAR), CAST(EVENT_MANIPULATION AS CHAR), CAST(ACTION_STATEMENT AS CHAR)
                 FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() ORDER BY 1",
            )
            .fetch_all(&mut *c)
            .await?
            .iter()
            .take(MAX_OBJECTS)
            {
                s.triggers.push(Trigger {
                    name: text(r, 0),
                    table: text(r, 1),
                    events: vec![text(r, 2).to_ascii_lowercase()],
                    writes: tables_written(&text(r, 3), &s.tables),
                });
            }
        }
    }
    Ok(())
}

/// Rows of (table, column, type) into the schema's tables.
fn add_columns(s: &mut Schema, rows: &[sqlx::any::AnyRow]) {
    for r in rows {
        if let Some(t) = s.tables.get_mut(&text(r, 0)) {
            t.columns.push(Column {
                name: text(r, 1),
                data_type: text(r, 2).to_ascii_lowercase(),
            });
        }
    }
}

async fn read_postgres(
    c: &mut AnyConnection,
    s: &mut Schema,
    progress: &mut impl FnMut(usize, usize),
) -> Result<(), sqlx::Error> {
    for r in sqlx::query(
        "SELECT c.relname::text, (c.relkind = 'p')::int4 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1",
    )
    .fetch_all(&mut *c)
    .await?
    .iter()
    .take(MAX_TABLES)
    {
        let name = text(r, 0);
        s.tables.insert(
            name.clone(),
            SchemaTable {
                name,
                partitioned: r.try_get::<i32, _>(1).unwrap_or(0) == 1,
                ..Default::default()
            },
        );
    }
    let total = s.tables.len();
    let rows = sqlx::query(
        "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod)
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
           AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum",
    )
    .fetch_all(&mut *c)
    .await?;
    add_columns(s, &rows);
    progress(total / 2, total);
    // Partitions, each with its root table.
    for r in sqlx::query(
        "SELECT c.relname::text, r.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_class r ON r.oid = pg_partition_root(c.oid)
         WHERE n.nspname = current_schema() AND c.relispartition ORDER BY 1",
    )
    .fetch_all(&mut *c)
    .await?
    {
        if let Some(t) = s.tables.get_mut(&text(&r, 1)) {
            t.partitions.insert(text(&r, 0), vec![]);
        }
    }
    // Declared foreign keys (not the copies PostgreSQL makes for each
    // partition), on tables and on partitions, each side named by its
    // root table: a key declared on a partition only orders the
    // erasure of the whole partitioned table.
    for r in sqlx::query(
        "SELECT cl.relname::text, COALESCE(rr.relname, cl.relname)::text, COALESCE(pr.relname, pf.relname)::text,
           con.confdeltype::text,
           (SELECT string_agg(a.attname::text, ',' ORDER BY k.ord) FROM unnest(con.conkey) WITH ORDINALITY k(n, ord)
              JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n),
           (SELECT string_agg(a.attname::text, ',' ORDER BY k.ord) FROM unnest(con.confkey) WITH ORDINALITY k(n, ord)
              JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n),
           cl.relispartition::int4
         FROM pg_constraint con JOIN pg_class cl ON cl.oid = con.conrelid JOIN pg_class pf ON pf.oid = con.confrelid
         JOIN pg_namespace n ON n.oid = cl.relnamespace
         LEFT JOIN pg_class rr ON rr.oid = pg_partition_root(cl.oid)
         LEFT JOIN pg_class pr ON pr.oid = pg_partition_root(pf.oid)
         WHERE con.contype = 'f' AND n.nspname = current_schema() AND con.conparentid = 0
         ORDER BY cl.relname, con.conname",
    )
    .fetch_all(&mut *c)
    .await?
    {
        let on_delete = match text(&r, 3).as_str() {
            "c" => "cascade",
            "n" => "set null",
            "d" => "set default",
            "r" => "restrict",
            _ => "no action",
        };
        let fk = ForeignKey {
            columns: text(&r, 4).split(',').map(str::to_owned).collect(),
            parent: text(&r, 2),
            parent_columns: text(&r, 5).split(',').map(str::to_owned).collect(),
            on_delete: on_delete.into(),
        };
        let on_partition = r.try_get::<i32, _>(6).unwrap_or(0) == 1;
        if let Some(t) = s.tables.get_mut(&text(&r, 1)) {
            if on_partition && let Some(p) = t.partitions.get_mut(&text(&r, 0)) {
                p.push(fk.clone());
            }
            if !t.fks.contains(&fk) {
                t.fks.push(fk);
            }
        }
    }
    progress(total, total);
    Ok(())
}

async fn read_mysql(
    c: &mut AnyConnection,
    s: &mut Schema,
    progress: &mut impl FnMut(usize, usize),
) -> Result<(), sqlx::Error> {
    for r in sqlx::query(
        "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(&mut *c)
    .await?
    .iter()
    .take(MAX_TABLES)
    {
        let name = text(r, 0);
        s.tables.insert(
            name.clone(),
            SchemaTable {
                name,
                ..Default::default()
            },
        );
    }
    let total = s.tables.len();
    let rows = sqlx::query(
        "SELECT CAST(TABLE_NAME AS CHAR), CAST(COLUMN_NAME AS CHAR), CAST(COLUMN_TYPE AS CHAR) FROM information_schema.COLUMNS
         WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION",
    )
    .fetch_all(&mut *c)
    .await?;
    add_columns(s, &rows);
    progress(total / 2, total);
    let mut fks: BTreeMap<(String, String), ForeignKey> = BTreeMap::new();
    for r in sqlx::query(
        "SELECT CAST(k.TABLE_NAME AS CHAR), CAST(k.CONSTRAINT_NAME AS CHAR), CAST(k.COLUMN_NAME AS CHAR),
                CAST(k.REFERENCED_TABLE_NAME AS CHAR), CAST(k.REFERENCED_COLUMN_NAME AS CHAR), CAST(rc.DELETE_RULE AS CHAR)
         FROM information_schema.KEY_COLUMN_USAGE k JOIN information_schema.REFERENTIAL_CONSTRAINTS rc
           ON rc.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND rc.CONSTRAINT_NAME = k.CONSTRAINT_NAME AND rc.TABLE_NAME = k.TABLE_NAME
         WHERE k.TABLE_SCHEMA = DATABASE() AND k.REFERENCED_TABLE_NAME IS NOT NULL
         ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION",
    )
    .fetch_all(&mut *c)
    .await?
    {
        let fk = fks.entry((text(&r, 0), text(&r, 1))).or_insert_with(|| ForeignKey {
            columns: vec![],
            parent: text(&r, 3),
            parent_columns: vec![],
            on_delete: text(&r, 5).to_ascii_lowercase(),
        });
        fk.columns.push(text(&r, 2));
        fk.parent_columns.push(text(&r, 4));
    }
    for ((table, _), fk) in fks {
        if let Some(t) = s.tables.get_mut(&table) {
            t.fks.push(fk);
        }
    }
    progress(total, total);
    Ok(())
}
