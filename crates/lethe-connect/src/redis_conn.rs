//! The Redis connector: keys by pattern, hash fields, set members and
//! sorted-set members.
//!
//! Erasure of one subject is one MULTI/EXEC transaction that deletes what
//! was found and writes the counts into a record hash
//! (`lethe:erasure:{case id}`) at the same time, so a re-run returns the
//! recorded counts and never double-counts.

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use std::time::Duration;

use crate::datamap::{RedisEntry, System};
use crate::{ConnectError, SystemOutcome, TableOutcome};
use lethe_domain::SubjectId;

/// Keys one pattern may match for one subject.
pub const MAX_KEYS_PER_PATTERN: usize = 100_000;
/// SCAN page size.
const SCAN_COUNT: usize = 1000;
/// How long the record of an erasure is kept (for replays): 400 days.
const RECORD_TTL_SECS: u64 = 400 * 24 * 3600;

pub struct RedisSystem {
    name: String,
    conn: MultiplexedConnection,
    entries: Vec<RedisEntry>,
}

impl std::fmt::Debug for RedisSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSystem")
            .field("name", &self.name)
            .finish()
    }
}

fn rerr(system: &str, action: &'static str, e: redis::RedisError) -> ConnectError {
    // Redis errors name the command and the server's message, never the
    // arguments (keys, members).
    let mut message = match e.kind() {
        redis::ErrorKind::Io => "I/O error talking to Redis (connection lost?)".into(),
        _ => format!("{:?}: {}", e.kind(), e.detail().unwrap_or("")),
    };
    message.truncate(300);
    ConnectError::Db {
        system: system.to_owned(),
        action,
        message,
    }
}

/// Escapes glob metacharacters so a subject id matches only itself.
fn glob_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            o.push('\\');
        }
        o.push(ch);
    }
    o
}

fn fill(template: &str, subject: &str) -> String {
    template.replace("{subject}", subject)
}

/// The subject ids `value` may hold by `template` (`{subject}` standing for
/// the id; the template's other parts literal, or `*`). An id may itself
/// hold the text that follows it in the template (`@alice:example.org` in
/// `session:{subject}:*`), so every place that text occurs gives a
/// candidate (at most [`MAX_CANDIDATES`]); only candidates that were erased
/// match a tombstone.
fn subject_in(template: &str, value: &str) -> Vec<String> {
    let Some((prefix, rest)) = template.split_once("{subject}") else {
        return vec![];
    };
    if prefix.contains(['*', '?', '[']) {
        return vec![];
    }
    let Some(tail) = value.strip_prefix(prefix) else {
        return vec![];
    };
    let stop: String = rest
        .chars()
        .take_while(|c| !matches!(c, '*' | '?' | '['))
        .collect();
    let mut out = vec![];
    if rest.is_empty() {
        out.push(tail.to_owned());
    } else if stop.len() == rest.len() {
        // The template ends with this literal: it ends the value too.
        if let Some(id) = tail.strip_suffix(stop.as_str()) {
            out.push(id.to_owned());
        }
    } else {
        let sep = if stop.is_empty() { ":" } else { stop.as_str() };
        out.extend(
            tail.match_indices(sep)
                .take(MAX_CANDIDATES)
                .map(|(i, _)| tail[..i].to_owned()),
        );
    }
    out.retain(|id| !id.is_empty());
    out
}

/// Candidate ids read out of one key, field or member.
const MAX_CANDIDATES: usize = 8;

/// A short description of an entry, for outcomes and plans.
pub fn describe(e: &RedisEntry) -> String {
    match e {
        RedisEntry::Key { pattern } => format!("keys {pattern}"),
        RedisEntry::HashField { key, field } => format!("hash {key} field {field}"),
        RedisEntry::SetMember { key, member } => format!("set {key} member {member}"),
        RedisEntry::ZsetMember { key, member } => format!("zset {key} member {member}"),
    }
}

impl RedisSystem {
    pub async fn connect_from_env(system: &System) -> Result<Self, ConnectError> {
        let url = std::env::var(&system.url_env).map_err(|_| ConnectError::MissingUrl {
            system: system.name.to_string(),
            var: system.url_env.clone(),
        })?;
        Self::connect(system, &url).await
    }

    pub async fn connect(system: &System, url: &str) -> Result<Self, ConnectError> {
        let name = system.name.to_string();
        let client = redis::Client::open(url).map_err(|e| rerr(&name, "parse the URL", e))?;
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(10)))
            .set_response_timeout(Some(Duration::from_secs(30)));
        let conn = client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .map_err(|e| rerr(&name, "connect", e))?;
        Ok(Self {
            name,
            conn,
            entries: system.keys.clone(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn entries(&self) -> &[RedisEntry] {
        &self.entries
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<String>, ConnectError> {
        let mut c = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut c)
                .await
                .map_err(|e| rerr(&self.name, "scan keys", e))?;
            keys.extend(page);
            if keys.len() > MAX_KEYS_PER_PATTERN {
                return Err(ConnectError::Db {
                    system: self.name.clone(),
                    action: "scan keys",
                    message: format!(
                        "a pattern matched more than {MAX_KEYS_PER_PATTERN} keys for one subject; narrow the pattern"
                    ),
                });
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Streams the subject ids found in this system's entries into `tx` in
    /// chunks of `chunk` (a subject id is read back out of a key, field or
    /// member by its template). Entries whose template names no subject
    /// add nothing. Returns the number of ids sent (one per key, field or
    /// member; the reader deduplicates). Reads only.
    pub async fn scan_subjects(
        &self,
        chunk: usize,
        tx: tokio::sync::mpsc::Sender<Vec<String>>,
    ) -> Result<u64, ConnectError> {
        let chunk = chunk.clamp(1, 100_000);
        let mut c = self.conn.clone();
        let mut sent = 0u64;
        let mut buf: Vec<String> = Vec::with_capacity(chunk);
        for e in &self.entries {
            // (command, key, template of the scanned strings)
            let (cmd, key, template) = match e {
                RedisEntry::Key { pattern } => ("SCAN", None, pattern.as_str()),
                RedisEntry::HashField { key, field } => ("HSCAN", Some(key), field.as_str()),
                RedisEntry::SetMember { key, member } => ("SSCAN", Some(key), member.as_str()),
                RedisEntry::ZsetMember { key, member } => ("ZSCAN", Some(key), member.as_str()),
            };
            if key.is_some_and(|k| k.contains("{subject}")) {
                // One key per subject: the subject is in the key's name.
                let pattern = fill(key.map(String::as_str).unwrap_or_default(), "*");
                let tpl = key.map(String::as_str).unwrap_or_default();
                let mut cursor: u64 = 0;
                loop {
                    let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(SCAN_COUNT)
                        .query_async(&mut c)
                        .await
                        .map_err(|e| rerr(&self.name, "list subjects", e))?;
                    buf.extend(page.iter().flat_map(|k| subject_in(tpl, k)));
                    sent += self.flush(&mut buf, chunk, &tx, false).await?;
                    cursor = next;
                    if cursor == 0 {
                        break;
                    }
                }
                continue;
            }
            if !template.contains("{subject}") {
                continue;
            }
            let pattern = fill(template, "*");
            let mut cursor: u64 = 0;
            loop {
                let mut q = redis::cmd(cmd);
                if let Some(k) = key {
                    q.arg(k);
                }
                q.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT);
                let (next, page): (u64, Vec<String>) = q
                    .query_async(&mut c)
                    .await
                    .map_err(|e| rerr(&self.name, "list subjects", e))?;
                // HSCAN and ZSCAN answer field/value and member/score pairs.
                let step = if matches!(cmd, "HSCAN" | "ZSCAN") {
                    2
                } else {
                    1
                };
                buf.extend(
                    page.iter()
                        .step_by(step)
                        .flat_map(|v| subject_in(template, v)),
                );
                sent += self.flush(&mut buf, chunk, &tx, false).await?;
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        sent += self.flush(&mut buf, chunk, &tx, true).await?;
        Ok(sent)
    }

    async fn flush(
        &self,
        buf: &mut Vec<String>,
        chunk: usize,
        tx: &tokio::sync::mpsc::Sender<Vec<String>>,
        last: bool,
    ) -> Result<u64, ConnectError> {
        if buf.is_empty() || (!last && buf.len() < chunk) {
            return Ok(0);
        }
        let n = buf.len() as u64;
        tx.send(std::mem::take(buf))
            .await
            .map_err(|_| ConnectError::Db {
                system: self.name.clone(),
                action: "list subjects",
                message: "the reader stopped".into(),
            })?;
        Ok(n)
    }

    /// What the subject has, per entry: (description, count).
    pub async fn count(&self, subject: &SubjectId) -> Result<Vec<(String, u64)>, ConnectError> {
        let s = subject.expose();
        let mut c = self.conn.clone();
        let mut out = vec![];
        for e in &self.entries {
            let n: u64 = match e {
                RedisEntry::Key { pattern } => {
                    self.scan(&fill(pattern, &glob_escape(s))).await?.len() as u64
                }
                RedisEntry::HashField { key, field } => {
                    let b: bool = c
                        .hexists(fill(key, s), fill(field, s))
                        .await
                        .map_err(|e| rerr(&self.name, "read a hash", e))?;
                    u64::from(b)
                }
                RedisEntry::SetMember { key, member } => {
                    let b: bool = c
                        .sismember(fill(key, s), fill(member, s))
                        .await
                        .map_err(|e| rerr(&self.name, "read a set", e))?;
                    u64::from(b)
                }
                RedisEntry::ZsetMember { key, member } => {
                    let score: Option<f64> = c
                        .zscore(fill(key, s), fill(member, s))
                        .await
                        .map_err(|e| rerr(&self.name, "read a sorted set", e))?;
                    u64::from(score.is_some())
                }
            };
            out.push((describe(e), n));
        }
        Ok(out)
    }

    fn record_key(&self, case_id: &str) -> String {
        format!("lethe:erasure:{}:{case_id}", self.name)
    }

    /// Erases the subject; idempotent per case.
    pub async fn erase(
        &self,
        case_id: &str,
        subject: &SubjectId,
    ) -> Result<SystemOutcome, ConnectError> {
        let mut c = self.conn.clone();
        let rk = self.record_key(case_id);
        let recorded: Vec<(String, u64)> = c
            .hgetall(&rk)
            .await
            .map_err(|e| rerr(&self.name, "read the erasure record", e))?;
        if !recorded.is_empty() {
            return Ok(self.outcome(&recorded, true));
        }
        let s = subject.expose();
        // Count first, then delete and record in one MULTI/EXEC: the record
        // and the deletion land together or not at all.
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut counts = vec![];
        for e in &self.entries {
            match e {
                RedisEntry::Key { pattern } => {
                    let keys = self.scan(&fill(pattern, &glob_escape(s))).await?;
                    for chunk in keys.chunks(1000) {
                        pipe.unlink(chunk).ignore();
                    }
                    counts.push((describe(e), keys.len() as u64));
                }
                RedisEntry::HashField { key, field } => {
                    let b: bool = c
                        .hexists(fill(key, s), fill(field, s))
                        .await
                        .map_err(|e| rerr(&self.name, "read a hash", e))?;
                    pipe.hdel(fill(key, s), fill(field, s)).ignore();
                    counts.push((describe(e), u64::from(b)));
                }
                RedisEntry::SetMember { key, member } => {
                    let b: bool = c
                        .sismember(fill(key, s), fill(member, s))
                        .await
                        .map_err(|e| rerr(&self.name, "read a set", e))?;
                    pipe.srem(fill(key, s), fill(member, s)).ignore();
                    counts.push((describe(e), u64::from(b)));
                }
                RedisEntry::ZsetMember { key, member } => {
                    let score: Option<f64> = c
                        .zscore(fill(key, s), fill(member, s))
                        .await
                        .map_err(|e| rerr(&self.name, "read a sorted set", e))?;
                    pipe.zrem(fill(key, s), fill(member, s)).ignore();
                    counts.push((describe(e), u64::from(score.is_some())));
                }
            }
        }
        for (d, n) in &counts {
            pipe.hset(&rk, d, *n).ignore();
        }
        pipe.expire(&rk, RECORD_TTL_SECS as i64).ignore();
        let () = pipe
            .query_async(&mut c)
            .await
            .map_err(|e| rerr(&self.name, "erase", e))?;
        Ok(self.outcome(&counts, false))
    }

    /// Counts what is left; errors if anything of the subject remains.
    pub async fn verify(
        &self,
        subject: &SubjectId,
        mut outcome: SystemOutcome,
    ) -> Result<SystemOutcome, ConnectError> {
        for (d, n) in self.count(subject).await? {
            if n > 0 {
                return Err(ConnectError::NotErased {
                    system: self.name.clone(),
                    table: d,
                    remaining: n,
                });
            }
            if let Some(t) = outcome.tables.iter_mut().find(|t| t.table == d) {
                t.remaining = Some(0);
            }
        }
        Ok(outcome)
    }

    /// The subject's data, per entry, as JSON (for the data export).
    pub async fn export(
        &self,
        subject: &SubjectId,
    ) -> Result<Vec<(String, serde_json::Value)>, ConnectError> {
        let s = subject.expose();
        let mut c = self.conn.clone();
        let mut out = vec![];
        for e in &self.entries {
            let v = match e {
                RedisEntry::Key { pattern } => {
                    let mut items = serde_json::Map::new();
                    for k in self.scan(&fill(pattern, &glob_escape(s))).await? {
                        let t: String = redis::cmd("TYPE")
                            .arg(&k)
                            .query_async(&mut c)
                            .await
                            .map_err(|e| rerr(&self.name, "read a key", e))?;
                        let v = match t.as_str() {
                            "string" => serde_json::json!(
                                c.get::<_, Option<String>>(&k).await.map_err(|e| rerr(
                                    &self.name,
                                    "read a key",
                                    e
                                ))?
                            ),
                            "hash" => serde_json::json!(
                                c.hgetall::<_, std::collections::BTreeMap<String, String>>(&k)
                                    .await
                                    .map_err(|e| rerr(&self.name, "read a key", e))?
                            ),
                            "set" => serde_json::json!(
                                c.smembers::<_, Vec<String>>(&k).await.map_err(|e| rerr(
                                    &self.name,
                                    "read a key",
                                    e
                                ))?
                            ),
                            "zset" => serde_json::json!(
                                c.zrange_withscores::<_, Vec<(String, f64)>>(&k, 0, -1)
                                    .await
                                    .map_err(|e| rerr(&self.name, "read a key", e))?
                            ),
                            "list" => serde_json::json!(
                                c.lrange::<_, Vec<String>>(&k, 0, -1)
                                    .await
                                    .map_err(|e| rerr(&self.name, "read a key", e))?
                            ),
                            other => serde_json::json!({ "type": other }),
                        };
                        items.insert(k, v);
                    }
                    serde_json::Value::Object(items)
                }
                RedisEntry::HashField { key, field } => {
                    serde_json::json!(
                        c.hget::<_, _, Option<String>>(fill(key, s), fill(field, s))
                            .await
                            .map_err(|e| rerr(&self.name, "read a hash", e))?
                    )
                }
                RedisEntry::SetMember { key, member } => {
                    serde_json::json!(
                        c.sismember::<_, _, bool>(fill(key, s), fill(member, s))
                            .await
                            .map_err(|e| rerr(&self.name, "read a set", e))?
                    )
                }
                RedisEntry::ZsetMember { key, member } => {
                    serde_json::json!(
                        c.zscore::<_, _, Option<f64>>(fill(key, s), fill(member, s))
                            .await
                            .map_err(|e| rerr(&self.name, "read a sorted set", e))?
                    )
                }
            };
            out.push((describe(e), v));
        }
        Ok(out)
    }

    /// The subject's data as export datasets, one per entry: a key
    /// pattern gives one row per key (`key`, `value`), the other entries
    /// one row (`key`, `value`) when present.
    pub async fn export_datasets(
        &self,
        subject: &SubjectId,
    ) -> Result<Vec<(crate::ExportDataset, crate::ExportRows)>, ConnectError> {
        let s = subject.expose();
        let mut out = vec![];
        for ((name, value), entry) in self.export(subject).await?.into_iter().zip(&self.entries) {
            let rows: crate::ExportRows = match (entry, value) {
                (RedisEntry::Key { .. }, serde_json::Value::Object(keys)) => keys
                    .into_iter()
                    .map(|(k, v)| {
                        let mut m = serde_json::Map::new();
                        m.insert("key".into(), k.into());
                        m.insert("value".into(), v);
                        m
                    })
                    .collect(),
                (_, serde_json::Value::Null | serde_json::Value::Bool(false)) => vec![],
                (e, v) => {
                    let key = match e {
                        RedisEntry::Key { pattern } => fill(pattern, s),
                        RedisEntry::HashField { key, field } => {
                            format!("{} {}", fill(key, s), fill(field, s))
                        }
                        RedisEntry::SetMember { key, member }
                        | RedisEntry::ZsetMember { key, member } => {
                            format!("{} {}", fill(key, s), fill(member, s))
                        }
                    };
                    let mut m = serde_json::Map::new();
                    m.insert("key".into(), key.into());
                    m.insert("value".into(), v);
                    vec![m]
                }
            };
            out.push((
                crate::ExportDataset {
                    name,
                    columns: vec!["key".into(), "value".into()],
                    rows: rows.len() as u64,
                },
                rows,
            ));
        }
        Ok(out)
    }

    fn outcome(&self, recorded: &[(String, u64)], replayed: bool) -> SystemOutcome {
        SystemOutcome {
            system: self.name.clone(),
            tables: self
                .entries
                .iter()
                .map(|e| {
                    let d = describe(e);
                    TableOutcome {
                        rows: recorded
                            .iter()
                            .find(|(k, _)| *k == d)
                            .map(|(_, n)| *n)
                            .unwrap_or(0),
                        table: d,
                        action: "delete".into(),
                        remaining: None,
                        legal_basis: None,
                        retain_until: None,
                        ..Default::default()
                    }
                })
                .collect(),
            replayed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::subject_in;

    #[test]
    fn subject_ids_are_read_back_from_keys_by_their_template() {
        assert_eq!(
            subject_in("session:{subject}:*", "session:u42:abc"),
            ["u42"]
        );
        assert_eq!(subject_in("cart:{subject}", "cart:u7"), ["u7"]);
        assert_eq!(subject_in("{subject}", "u9"), ["u9"]);
        assert_eq!(
            subject_in("user:{subject}:profile", "user:u1:profile"),
            ["u1"]
        );
        assert_eq!(
            subject_in("user:{subject}:profile", "user:@a:b.org:profile"),
            ["@a:b.org"]
        );
        assert_eq!(
            subject_in("session:{subject}:*", "session:@alice:example.org:t1"),
            ["@alice", "@alice:example.org"]
        );
        assert!(subject_in("user:{subject}:profile", "other:u1").is_empty());
        assert!(subject_in("cart:{subject}", "cart:").is_empty());
        assert!(subject_in("no-subject", "x").is_empty());
    }

    #[test]
    fn glob_characters_in_a_subject_match_only_themselves() {
        assert_eq!(super::glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(super::fill("s:{subject}:*", "7"), "s:7:*");
    }
}
