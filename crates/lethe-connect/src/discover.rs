//! Where a subject's id sits by value. Many real schemas tie rows to an
//! account only by value: a text id in dozens of tables under different
//! names, as its bare local part, inside JSON documents or arrays, with no
//! foreign key. `datamap check` and `datamap init` find these by taking a
//! few real subject ids and looking for them in every column.

use sqlx::AssertSqlSafe;

use crate::ConnectError;
use crate::datamap::{Ident, JsonPath, OwnerForm};
use crate::schema;
use crate::sql::{SqlSystem, db_err};
use crate::sqlgen::{Sql, Val};

/// Subject ids looked for per run.
pub const MAX_IDS: usize = 5;
/// Rows read per column when looking (a bound on the scan).
pub const SCAN_ROWS: u32 = 50_000;

/// How a column holds a subject id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdForm {
    /// The id as it is.
    Exact,
    /// Its local part only (`alice` for `@alice:example.org`).
    LocalPart,
    /// Inside a JSON document, at this path.
    InJson(String),
    /// An element of an array (a JSON array or a PostgreSQL array).
    InArray,
    /// Somewhere inside a longer text.
    Contains,
}

/// A column in which sampled subject ids were found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IdHit {
    pub table: String,
    pub column: String,
    pub form: IdForm,
    /// How many of the sampled ids were found in it.
    pub found: usize,
    /// How many ids were looked for.
    pub of: usize,
}

/// The ids distinctive enough to look for by value: at least 4
/// characters, and not a short number (`7` equals a thousand unrelated
/// integers; integer ids are followed through foreign keys instead).
pub fn distinctive(ids: &[String]) -> Vec<String> {
    ids.iter()
        .filter(|id| {
            id.len() >= 4
                && (id.bytes().any(|b| !b.is_ascii_digit()) || id.len() >= 9)
                && !id.contains(['\'', '\\', '%'])
        })
        .take(MAX_IDS)
        .cloned()
        .collect()
}

fn local_part(id: &str) -> &str {
    OwnerForm::LocalPart.apply(id)
}

/// How `value` holds `id`, if it does.
pub fn classify(value: &str, id: &str) -> Option<IdForm> {
    if value == id {
        return Some(IdForm::Exact);
    }
    let lp = local_part(id);
    if lp != id && lp.len() >= 2 && value == lp {
        return Some(IdForm::LocalPart);
    }
    if !value.contains(id) {
        return None;
    }
    let t = value.trim_start();
    if (t.starts_with('{') || t.starts_with('['))
        && let Ok(doc) = serde_json::from_str::<serde_json::Value>(value)
    {
        if let Some(path) = json_path_to(&doc, id, &mut vec![]) {
            return Some(IdForm::InJson(path));
        }
        if doc
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(id)))
        {
            return Some(IdForm::InArray);
        }
    }
    // A PostgreSQL array as text: {a,b,"c d"}.
    if let Some(inner) = t.strip_prefix('{').and_then(|r| r.strip_suffix('}'))
        && inner.split(',').any(|e| e.trim().trim_matches('"') == id)
    {
        return Some(IdForm::InArray);
    }
    Some(IdForm::Contains)
}

/// The dotted path of object keys to a string equal to `id` (not through
/// arrays; keys must be plain names).
fn json_path_to(v: &serde_json::Value, id: &str, at: &mut Vec<String>) -> Option<String> {
    match v {
        serde_json::Value::String(s) if s == id && !at.is_empty() => Some(at.join(".")),
        serde_json::Value::Object(m) if at.len() < 8 => {
            for (k, child) in m {
                if JsonPath::parse(k).is_err() {
                    continue;
                }
                at.push(k.clone());
                let found = json_path_to(child, id, at);
                at.pop();
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        _ => None,
    }
}

impl SqlSystem {
    /// Up to `n` distinct values of a column (the subject table's id
    /// column), read as text.
    pub async fn sample_ids(
        &self,
        table: &str,
        column: &str,
        n: usize,
    ) -> Result<Vec<String>, ConnectError> {
        let (Ok(t), Ok(c)) = (Ident::parse(table), Ident::parse(column)) else {
            return Ok(vec![]);
        };
        let d = self.dialect();
        let ty = self
            .schema()
            .table(table)
            .and_then(|st| st.column(column))
            .map(|c| c.data_type.clone())
            .unwrap_or_default();
        let q = format!(
            "SELECT {} FROM {} WHERE {} IS NOT NULL LIMIT {}",
            schema::as_text(d, &c.q(d), &ty),
            t.q(d),
            c.q(d),
            (n * 4).min(100)
        );
        let rows: Vec<String> = sqlx::query_scalar::<_, String>(AssertSqlSafe(q))
            .fetch_all(self.pool())
            .await
            .map_err(|e| db_err(self.name(), "sample subject ids", e))?;
        let mut out: Vec<String> = vec![];
        for r in rows {
            if !out.contains(&r) {
                out.push(r);
            }
            if out.len() >= n {
                break;
            }
        }
        Ok(out)
    }

    /// Looks for the ids in every column of every table except `skip`
    /// (table, column): equal, equal to the local part, or contained.
    /// `progress(done, total)` per column.
    pub async fn find_ids(
        &self,
        ids: &[String],
        skip: &[(String, String)],
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Vec<IdHit>, ConnectError> {
        let ids = distinctive(ids);
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let d = self.dialect();
        let mut cols = vec![];
        for (tname, t) in &self.schema().tables {
            if tname == crate::sql::RECORD_TABLE || tname == crate::sql::RETENTION_TABLE {
                continue;
            }
            for c in &t.columns {
                if schema::is_unsampled(&c.data_type)
                    || skip.iter().any(|(st, sc)| st == tname && sc == &c.name)
                {
                    continue;
                }
                if let (Ok(ti), Ok(ci)) = (Ident::parse(tname), Ident::parse(&c.name)) {
                    cols.push((ti, ci, c.data_type.clone()));
                }
            }
        }
        let mut hits = vec![];
        let total = cols.len();
        for (i, (t, c, ty)) in cols.into_iter().enumerate() {
            let mut sql = Sql::new(d);
            let mut eq: Vec<Val> = ids.iter().map(|x| Val::S(x.clone())).collect();
            for x in &ids {
                let lp = local_part(x);
                if lp != x && lp.len() >= 2 {
                    eq.push(Val::S(lp.to_owned()));
                }
            }
            let list = sql.list(&eq);
            let likes: Vec<String> = ids
                .iter()
                .map(|x| {
                    let pat = format!(
                        "%{}%",
                        x.replace('!', "!!").replace('%', "!%").replace('_', "!_")
                    );
                    format!("v LIKE {} ESCAPE '!'", sql.p(Val::S(pat)))
                })
                .collect();
            sql.text = format!(
                "SELECT v FROM (SELECT {} AS v FROM {} LIMIT {SCAN_ROWS}) s WHERE v IN {list} OR {} LIMIT 50",
                schema::as_text(d, &c.q(d), &ty),
                t.q(d),
                likes.join(" OR ")
            );
            let mut q = sqlx::query_scalar::<_, Option<String>>(AssertSqlSafe(sql.text.clone()));
            for b in &sql.binds {
                q = match b {
                    Val::I(v) => q.bind(*v),
                    Val::S(s) => q.bind(s.clone()),
                };
            }
            // A column the database cannot read this way is left to the
            // name and content checks.
            let Ok(values) = q.fetch_all(self.pool()).await else {
                progress(i + 1, total);
                continue;
            };
            let mut forms: Vec<IdForm> = vec![];
            let mut found = std::collections::BTreeSet::new();
            for v in values.into_iter().flatten() {
                for x in &ids {
                    if let Some(f) = classify(&v, x) {
                        found.insert(x.clone());
                        forms.push(f);
                        break;
                    }
                }
            }
            if let Some(form) = most_common(forms) {
                hits.push(IdHit {
                    table: t.to_string(),
                    column: c.to_string(),
                    form,
                    found: found.len(),
                    of: ids.len(),
                });
            }
            progress(i + 1, total);
        }
        Ok(hits)
    }
}

fn most_common(forms: Vec<IdForm>) -> Option<IdForm> {
    let mut best: Option<(IdForm, usize)> = None;
    for f in &forms {
        let n = forms.iter().filter(|g| *g == f).count();
        if best.as_ref().is_none_or(|(_, m)| n > *m) {
            best = Some((f.clone(), n));
        }
    }
    best.map(|(f, _)| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let id = "@alice:example.org";
        assert_eq!(classify(id, id), Some(IdForm::Exact));
        assert_eq!(classify("alice", id), Some(IdForm::LocalPart));
        assert_eq!(
            classify(r#"{"content": {"sender": "@alice:example.org"}}"#, id),
            Some(IdForm::InJson("content.sender".into()))
        );
        assert_eq!(
            classify(r#"["@bob:x", "@alice:example.org"]"#, id),
            Some(IdForm::InArray)
        );
        assert_eq!(
            classify("{@bob:x,@alice:example.org}", id),
            Some(IdForm::InArray)
        );
        assert_eq!(
            classify("invited @alice:example.org today", id),
            Some(IdForm::Contains)
        );
        assert_eq!(classify("bob", id), None);
        assert_eq!(
            distinctive(&[
                "7".into(),
                "10042".into(),
                "123456789".into(),
                "u7".into(),
                "@a:b".into()
            ]),
            ["123456789", "@a:b"]
        );
    }
}
