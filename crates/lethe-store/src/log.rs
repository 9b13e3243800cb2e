//! The audit log's write side: queue, then sequence.
//!
//! A change appends its event to `audit_entries` in its own transaction,
//! without any lock shared with other changes (an unsequenced leaf, as in
//! Trillian); a trigger marks it in `audit_pending`. One sequencer at a
//! time, the holder of the [`SEQUENCER_LEASE`], takes pending events in
//! queue order, gives them the next sequence numbers, computes their leaf
//! hashes, extends the Merkle tree and inserts one narrow row per event
//! into `audit_leaves` (sequence number, queue id, hash), a batch per
//! transaction: the event itself is never moved or rewritten. The lease is
//! renewed in that same transaction and its row stays locked until commit,
//! so two sequencers never integrate at once; `audit_leaves.seq` is the
//! primary key, `audit_leaves.qid` is unique, and the pending mark is
//! deleted in the transaction that sequences it, so an event is never
//! sequenced twice, and a holder killed
//! mid-batch leaves nothing behind (the transaction rolls back; another
//! instance takes the lease once it expires and goes on from the stored
//! tree).
//!
//! Causal order: events of one case are written by changes that lock the
//! case's row, so a later change of a case queues after the earlier one
//! committed: its queue id is larger, and any reader that sees it sees the
//! earlier one too. Sequencing in queue-id order keeps each case's events
//! in the order they happened.

use lethe_ledger::merkle::Frontier;
use lethe_ledger::{AuditEvent, Hash, Signer, TreeHead};
use sqlx::Row;
use std::sync::Arc;

use jiff::Timestamp;
use lethe_ledger::RecordedEvent;

use crate::{DbConn, Stmt, Store, StoreError, Then, WriteCtx, db, ms};

/// The lease the sequencer holds.
pub const SEQUENCER_LEASE: &str = "audit.sequencer";
/// How long the sequencer's lease lasts without renewal: an instance that
/// dies holding it is replaced after at most this long.
pub const LEASE_TTL_MS: i64 = 10_000;
/// The log's maximum merge delay: an event is in the signed tree at most
/// this long after its change committed, as long as one instance runs
/// (lease expiry of a dead holder, the followers' look, a full backlog).
pub const MAX_MERGE_DELAY: std::time::Duration = std::time::Duration::from_secs(30);
/// Events integrated per transaction at most.
pub const MAX_SEQUENCE_BATCH: u32 = 20_000;

/// What one sequencing pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceOutcome {
    /// Whether this instance holds the lease (and so sequenced).
    pub held: bool,
    /// The lease's epoch (grows at every change of holder).
    pub epoch: i64,
    /// Events integrated by this pass.
    pub integrated: u64,
    /// The log's size after it.
    pub size: u64,
    /// Whether events were already waiting beyond this pass's batch (go on
    /// at once instead of waiting to be woken).
    pub more: bool,
}

/// Every string in a JSON value (keys too) without control or
/// bidirectional formatting characters.
pub(crate) fn clean_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s)
            if s.chars()
                .any(|c| c.is_control() || lethe_domain::ids::is_bidi_control(c)) =>
        {
            *s = lethe_domain::ids::clean_text(s);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(clean_json),
        serde_json::Value::Object(m) => {
            let dirty: Vec<String> = m
                .keys()
                .filter(|k| {
                    k.chars()
                        .any(|c| c.is_control() || lethe_domain::ids::is_bidi_control(c))
                })
                .cloned()
                .collect();
            for k in dirty {
                if let Some(x) = m.remove(&k) {
                    m.insert(lethe_domain::ids::clean_text(&k), x);
                }
            }
            m.values_mut().for_each(clean_json);
        }
        _ => {}
    }
}

/// The event's canonical bytes after its sequence number, as text (JSON
/// is UTF-8 and escapes every control character, so the sequencer's
/// separators never occur in it).
fn tail(event: &AuditEvent) -> String {
    let mut out = Vec::with_capacity(256);
    event.canonical_tail_into(&mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Events queued per multi-row INSERT (10 values each).
const EVENTS_PER_INSERT: usize = 500;

/// Queues one event (its `seq` is ignored: the sequencer assigns it). The
/// insert is deferred; its queue id becomes [`WriteCtx::last_qid`].
pub(crate) async fn insert_event(
    ctx: &mut WriteCtx,
    mut event: AuditEvent,
) -> Result<(), StoreError> {
    // Free text from agents and platforms (reasons, branches, notes) never
    // carries control or bidirectional formatting characters into the log.
    event.actor = lethe_domain::ids::clean_text(&event.actor);
    clean_json(&mut event.detail);
    let body = tail(&event);
    ctx.defer(
        Stmt::new("queue audit event", "INSERT INTO audit_entries (case_id, subject, kind, from_state, to_state, actor, at, detail, queued_at, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING qid")
            .arg(event.case_id)
            .arg(event.subject)
            .arg(event.kind)
            .arg(event.from_state)
            .arg(event.to_state)
            .arg(event.actor)
            .arg(event.at)
            .arg(event.detail.to_string())
            .arg(ms(crate::now_wall()))
            .arg(body)
            .then(Then::QueueId),
    )
    .await?;
    ctx.queued = true;
    Ok(())
}

/// Queues many events (of no case: purges) in order, with multi-row
/// INSERTs.
pub(crate) async fn insert_events(
    ctx: &mut WriteCtx,
    events: Vec<AuditEvent>,
) -> Result<(), StoreError> {
    let now = ms(crate::now_wall());
    ctx.queued |= !events.is_empty();
    for chunk in events.chunks(EVENTS_PER_INSERT) {
        let marks: Vec<String> = (0..chunk.len())
            .map(|i| {
                let b = i * 10;
                let p: Vec<String> = (1..=10).map(|k| format!("${}", b + k)).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO audit_entries (case_id, subject, kind, from_state, to_state, actor, at, detail, queued_at, body) VALUES {}",
            marks.join(", ")
        )));
        for e in chunk {
            let mut e = e.clone();
            clean_json(&mut e.detail);
            e.actor = lethe_domain::ids::clean_text(&e.actor);
            let body = tail(&e);
            q = q
                .bind(e.case_id.clone())
                .bind(e.subject.clone())
                .bind(e.kind.clone())
                .bind(e.from_state.clone())
                .bind(e.to_state.clone())
                .bind(e.actor.clone())
                .bind(e.at.clone())
                .bind(e.detail.to_string())
                .bind(now)
                .bind(body);
        }
        q.execute(ctx.conn().await?)
            .await
            .map_err(db("queue audit events"))?;
    }
    Ok(())
}

/// The log's size: its highest sequence number.
async fn log_size(conn: &mut DbConn) -> Result<u64, StoreError> {
    let size: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_leaves")
        .fetch_one(&mut *conn)
        .await
        .map_err(db("read audit size"))?;
    Ok(u64::try_from(size).unwrap_or(0))
}

/// Upgrades a log written before the Merkle tree existed (no nodes): leaf
/// hashes are recomputed from the events and the nodes stored.
pub(crate) async fn load_head(conn: &mut DbConn) -> Result<(), StoreError> {
    let size = log_size(conn).await?;
    if size <= 1 {
        return Ok(());
    }
    // A log the sequencer wrote has entries queued with a time; one written
    // before the Merkle tree existed has neither nodes nor such entries
    // (its events were carried over with queued_at -1).
    let nodes: Option<i64> = sqlx::query_scalar("SELECT level FROM audit_nodes LIMIT 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("read audit nodes"))?;
    let sequenced: Option<i64> =
        sqlx::query_scalar("SELECT qid FROM audit_entries WHERE queued_at >= 0 LIMIT 1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("read audit"))?;
    if nodes.is_none() && sequenced.is_none() {
        rebuild_tree(conn).await?;
    }
    Ok(())
}

/// The audit log's Merkle frontier at `size` from its stored nodes: one
/// perfect subtree per bit of the size.
async fn frontier_at(conn: &mut DbConn, size: u64) -> Result<Frontier, StoreError> {
    if size == 0 {
        return Ok(Frontier::default());
    }
    let mut start = 0u64;
    let mut found = std::collections::HashMap::new();
    for level in (0..64u32).rev() {
        if size & (1u64 << level) == 0 {
            continue;
        }
        let idx = start >> level;
        let h = perfect_node(conn, level, idx).await?;
        found.insert((level, idx), h);
        start += 1u64 << level;
    }
    Frontier::restore(size, |l, i| found.get(&(l, i)).copied().flatten())
        .ok_or_else(|| StoreError::Corrupt("the audit log's Merkle nodes are incomplete".into()))
}

/// Perfect subtrees are stored at every [`NODE_STRIDE`]-th level only
/// (an aligned subtree of 16 leaves, of 256, ...): one stored node per 15
/// leaves instead of one per leaf. A node between two stored levels is
/// computed from at most 8 stored nodes (or leaf hashes) below it.
pub const NODE_STRIDE: u32 = 4;

pub(crate) async fn perfect_node(
    conn: &mut DbConn,
    level: u32,
    idx: u64,
) -> Result<Option<Hash>, StoreError> {
    if !level.is_multiple_of(NODE_STRIDE) {
        return computed_node(conn, level, idx).await;
    }
    let text: Option<String> = if level == 0 {
        sqlx::query_scalar("SELECT hash FROM audit_leaves WHERE seq = $1")
            .bind(i64::try_from(idx + 1).unwrap_or(i64::MAX))
            .fetch_optional(&mut *conn)
            .await
    } else {
        sqlx::query_scalar("SELECT hash FROM audit_nodes WHERE level = $1 AND idx = $2")
            .bind(i64::from(level))
            .bind(i64::try_from(idx).unwrap_or(i64::MAX))
            .fetch_optional(&mut *conn)
            .await
    }
    .map_err(db("read audit node"))?;
    Ok(text.and_then(|t| {
        let mut h = [0u8; 32];
        hex::decode_to_slice(t, &mut h).ok().map(|_| h)
    }))
}

/// A node at a level that is not stored, from the stored level below.
async fn computed_node(
    conn: &mut DbConn,
    level: u32,
    idx: u64,
) -> Result<Option<Hash>, StoreError> {
    let base = level - level % NODE_STRIDE;
    let n = 1u64 << (level - base);
    let start = idx << (level - base);
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let rows: Vec<String> = if base == 0 {
        sqlx::query_scalar("SELECT hash FROM audit_leaves WHERE seq BETWEEN $1 AND $2 ORDER BY seq")
            .bind(i(start + 1))
            .bind(i(start + n))
            .fetch_all(&mut *conn)
            .await
    } else {
        sqlx::query_scalar(
            "SELECT hash FROM audit_nodes WHERE level = $1 AND idx BETWEEN $2 AND $3 ORDER BY idx",
        )
        .bind(i64::from(base))
        .bind(i(start))
        .bind(i(start + n - 1))
        .fetch_all(&mut *conn)
        .await
    }
    .map_err(db("read audit nodes"))?;
    if rows.len() as u64 != n {
        return Ok(None);
    }
    let mut layer: Vec<Hash> = Vec::with_capacity(rows.len());
    for t in rows {
        let mut h = [0u8; 32];
        if hex::decode_to_slice(t, &mut h).is_err() {
            return Ok(None);
        }
        layer.push(h);
    }
    while layer.len() > 1 {
        layer = layer
            .chunks(2)
            .map(|p| lethe_ledger::merkle::node_hash(&p[0], &p[1]))
            .collect();
    }
    Ok(layer.pop())
}

async fn rebuild_tree(conn: &mut DbConn) -> Result<(), StoreError> {
    tracing::info!("upgrading the audit log to a Merkle tree");
    let rows = sqlx::query("SELECT seq, case_id, subject, kind, from_state, to_state, actor, at, detail, hash FROM audit_events ORDER BY seq")
        .fetch_all(&mut *conn)
        .await
        .map_err(db("read audit"))?;
    let mut frontier = Frontier::default();
    sqlx::query("BEGIN")
        .execute(&mut *conn)
        .await
        .map_err(db("begin"))?;
    for r in &rows {
        let e = row_to_event(r)?;
        let leaf = e.event.leaf_hash();
        sqlx::query("UPDATE audit_leaves SET hash = $1 WHERE seq = $2")
            .bind(hex::encode(leaf))
            .bind(i64::try_from(e.event.seq).unwrap_or(i64::MAX))
            .execute(&mut *conn)
            .await
            .map_err(db("upgrade audit"))?;
        let mut new_nodes = vec![];
        frontier.push(leaf, |l, i, h| new_nodes.push((l, i, *h)));
        for (l, i, h) in new_nodes {
            sqlx::query("INSERT INTO audit_nodes (level, idx, hash) VALUES ($1, $2, $3) ON CONFLICT (level, idx) DO NOTHING")
                .bind(i64::from(l))
                .bind(i64::try_from(i).unwrap_or(i64::MAX))
                .bind(hex::encode(h))
                .execute(&mut *conn)
                .await
                .map_err(db("upgrade audit"))?;
        }
    }
    sqlx::query("COMMIT")
        .execute(&mut *conn)
        .await
        .map_err(db("commit"))?;
    Ok(())
}

/// Takes or renews `name` for `owner` until `now + ttl`, in the caller's
/// transaction (the row stays locked until it ends); the epoch if held.
async fn take_lease(
    ctx: &mut WriteCtx,
    name: &str,
    owner: &str,
    now: i64,
    ttl: i64,
) -> Result<Option<i64>, StoreError> {
    // Never wait for the lease row: a holder frozen mid-batch keeps it
    // locked until its transaction ends (the server ends idle ones), and
    // the others must stay free to take the lease after that.
    let present: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT owner FROM leases WHERE name = $1 {}",
        ctx.skip_locked()
    )))
    .bind(name.to_owned())
    .fetch_optional(ctx.conn().await?)
    .await
    .map_err(db("take the sequencer's lease"))?;
    if present.is_none() {
        let exists: Option<i64> = sqlx::query_scalar("SELECT epoch FROM leases WHERE name = $1")
            .bind(name.to_owned())
            .fetch_optional(ctx.conn().await?)
            .await
            .map_err(db("take the sequencer's lease"))?;
        if exists.is_some() {
            return Ok(None);
        }
    }
    let epoch: Option<i64> = sqlx::query_scalar("UPDATE leases SET epoch = epoch + CASE WHEN owner = $1 THEN 0 ELSE 1 END, owner = $1, expires_at = $2 WHERE name = $3 AND (owner = $1 OR expires_at < $4) RETURNING epoch")
        .bind(owner.to_owned())
        .bind(now + ttl)
        .bind(name.to_owned())
        .bind(now)
        .fetch_optional(ctx.conn().await?)
        .await
        .map_err(db("take the sequencer's lease"))?;
    if epoch.is_some() {
        return Ok(epoch);
    }
    sqlx::query_scalar("INSERT INTO leases (name, owner, expires_at, epoch) VALUES ($1, $2, $3, 1) ON CONFLICT (name) DO NOTHING RETURNING epoch")
        .bind(name.to_owned())
        .bind(owner.to_owned())
        .bind(now + ttl)
        .fetch_optional(ctx.conn().await?)
        .await
        .map_err(db("take the sequencer's lease"))
}

/// The event kind in a canonical tail (`,"case_id":…,"kind":"…",…`):
/// kinds are Lethe's own dotted names, never escaped.
fn kind_of(body: &str) -> &str {
    body.split_once(",\"kind\":\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or("unknown", |(k, _)| k)
}

/// Writes a sequenced batch on SQLite in three statements, whatever its
/// size: the narrow leaf rows (sequence number, queue id, hash), the
/// deletion of the pending marks, the Merkle nodes. The events themselves
/// stay where their changes wrote them.
async fn move_batch(
    ctx: &mut WriteCtx,
    leaves: &[(i64, u64, Hash)],
    nodes: &[(u32, u64, Hash)],
) -> Result<(), StoreError> {
    use std::fmt::Write as _;
    let (lo, hi) = (leaves[0].0, leaves[leaves.len() - 1].0);
    let mut json = String::with_capacity(leaves.len() * 90 + 2);
    json.push('[');
    for (i, (qid, seq, hash)) in leaves.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        let _ = write!(json, "[{seq},{qid},\"{}\"]", hex::encode(hash));
    }
    json.push(']');
    let inserted = sqlx::query(
        "INSERT INTO audit_leaves (seq, qid, hash) \
         SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]') FROM json_each($1)",
    )
    .bind(json)
    .execute(ctx.conn().await?)
    .await
    .map_err(db("sequence audit events"))?
    .rows_affected();
    if inserted != leaves.len() as u64 {
        return Err(StoreError::Corrupt(format!(
            "{} queued audit events read, {inserted} sequenced",
            leaves.len()
        )));
    }
    // The batch is every pending event up to its last queue id (the one
    // writer: nothing committed since the read), so a range deletes
    // exactly the batch's marks.
    let deleted = sqlx::query("DELETE FROM audit_pending WHERE qid BETWEEN $1 AND $2")
        .bind(lo)
        .bind(hi)
        .execute(ctx.conn().await?)
        .await
        .map_err(db("sequence audit events"))?
        .rows_affected();
    if deleted != leaves.len() as u64 {
        return Err(StoreError::Corrupt(format!(
            "{} queued audit events sequenced, {deleted} pending marks",
            leaves.len()
        )));
    }
    insert_nodes(ctx, nodes).await
}

/// Stores new Merkle nodes in one statement.
async fn insert_nodes(ctx: &mut WriteCtx, nodes: &[(u32, u64, Hash)]) -> Result<(), StoreError> {
    use std::fmt::Write as _;
    if !nodes.is_empty() {
        let mut json = String::with_capacity(nodes.len() * 100 + 2);
        json.push('[');
        for (i, (l, x, h)) in nodes.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            let _ = write!(json, "{{\"l\":{l},\"i\":{x},\"h\":\"{}\"}}", hex::encode(h));
        }
        json.push(']');
        let insert = match ctx.backend {
            crate::Backend::Postgres => {
                "INSERT INTO audit_nodes (level, idx, hash) SELECT v.l, v.i, v.h FROM jsonb_to_recordset(CAST($1 AS jsonb)) AS v(l bigint, i bigint, h text)"
            }
            crate::Backend::Sqlite => {
                "INSERT INTO audit_nodes (level, idx, hash) SELECT json_extract(value, '$.l'), json_extract(value, '$.i'), json_extract(value, '$.h') FROM json_each($1)"
            }
        };
        sqlx::query(insert)
            .bind(json)
            .execute(ctx.conn().await?)
            .await
            .map_err(db("append audit nodes"))?;
    }
    Ok(())
}

/// One batch on SQLite: the pending events read as one aggregated row,
/// hashed here, their leaves written (the one writer: nothing commits in
/// between).
async fn sequence_batch_sqlite(
    ctx: &mut WriteCtx,
    max: u32,
    frontier: &mut Frontier,
) -> Result<(u64, bool), StoreError> {
    // One row for the whole batch (per-row decoding would cost more than
    // the rest): `qid US body` joined by RS, in queue order.
    let agg = "SELECT group_concat(qid || char(31) || body, char(30)), COUNT(*) FROM (SELECT p.qid, e.body FROM audit_pending p JOIN audit_entries e ON e.qid = p.qid ORDER BY p.qid LIMIT $1) AS b";
    let row = sqlx::query(agg)
        .bind(i64::from(max))
        .fetch_one(ctx.conn().await?)
        .await
        .map_err(db("read the audit queue"))?;
    let text: Option<String> = row.get(0);
    let text = text.unwrap_or_default();
    let mut queued: Vec<(i64, &str)> =
        Vec::with_capacity(usize::try_from(row.get::<i64, _>(1)).unwrap_or(0));
    for item in text.split('\u{1e}').filter(|x| !x.is_empty()) {
        let (qid, body) = item
            .split_once('\u{1f}')
            .ok_or_else(|| StoreError::Corrupt("queued audit event".into()))?;
        let qid: i64 = qid
            .parse()
            .map_err(|_| StoreError::Corrupt("queued audit event id".into()))?;
        queued.push((qid, body));
    }
    // Queue order, whatever order the aggregate kept.
    queued.sort_unstable_by_key(|(q, _)| *q);
    let mut leaves = Vec::with_capacity(queued.len());
    let mut nodes = vec![];
    let mut kinds: std::collections::BTreeMap<&str, i64> = Default::default();
    for (qid, body) in &queued {
        let seq = frontier.size() + 1;
        let hash = lethe_ledger::leaf_hash_of(seq, body.as_bytes());
        frontier.push(hash, |l, i, h| {
            if l.is_multiple_of(NODE_STRIDE) {
                nodes.push((l, i, *h));
            }
        });
        leaves.push((*qid, seq, hash));
        *kinds.entry(kind_of(body)).or_default() += 1;
    }
    if !leaves.is_empty() {
        move_batch(ctx, &leaves, &nodes).await?;
    }
    for (kind, n) in kinds {
        sqlx::query("INSERT INTO audit_kind_counts (kind, n) VALUES ($1, $2) ON CONFLICT (kind) DO UPDATE SET n = audit_kind_counts.n + excluded.n")
            .bind(kind.to_owned())
            .bind(n)
            .execute(ctx.conn().await?)
            .await
            .map_err(db("count audit events"))?;
    }
    // A full batch: more may wait.
    Ok((leaves.len() as u64, leaves.len() as u64 >= u64::from(max)))
}

/// One batch on PostgreSQL in two statements. The first finds the oldest
/// pending queue id `lo` (one probe of the queue's key); the batch is every
/// event pending in `lo ..= lo + max - 1` (queue ids run without gaps but
/// for changes rolled back, so a batch is `max` events or a few fewer).
/// With the bounds as values (and a custom plan, see [`sequence_in`]) the
/// second reads the pending marks and the events as two range scans of
/// their primary keys merged in queue order (no lookup per event, no
/// sort), hashes each event (the database's SHA-256 over the same
/// canonical bytes, so the events never travel), writes the leaves,
/// deletes the marks and keeps the counts by kind; the leaf hashes come
/// back with their sequence numbers to extend the tree. The first leaf's
/// hash is checked here against the ledger's own function.
async fn sequence_batch_pg(
    ctx: &mut WriteCtx,
    max: u32,
    frontier: &mut Frontier,
) -> Result<(u64, bool), StoreError> {
    const OLDEST: &str = "SELECT MIN(qid) FROM audit_pending";
    const BATCH: &str = "WITH h AS MATERIALIZED ( \
            SELECT qid, kind, seq, \
                   encode(sha256(decode('00', 'hex') || convert_to('{\"seq\":' || CAST(seq AS TEXT) || body, 'UTF8')), 'hex') AS hash \
            FROM (SELECT e.qid, e.kind, e.body, $3 + row_number() OVER (ORDER BY e.qid) AS seq \
                  FROM audit_pending p JOIN audit_entries e ON e.qid = p.qid \
                  WHERE p.qid BETWEEN $1 AND $2 AND e.qid BETWEEN $1 AND $2) AS r \
        ), ins AS ( \
            INSERT INTO audit_leaves (seq, qid, hash) SELECT seq, qid, hash FROM h \
        ), del AS ( \
            DELETE FROM audit_pending WHERE qid BETWEEN $1 AND $2 RETURNING qid \
        ), kinds AS ( \
            INSERT INTO audit_kind_counts (kind, n) SELECT kind, COUNT(*) FROM h GROUP BY kind \
            ON CONFLICT (kind) DO UPDATE SET n = audit_kind_counts.n + excluded.n \
        ) \
        SELECT (SELECT string_agg(CAST(seq AS TEXT) || ':' || hash, ',') FROM h), \
               (SELECT COUNT(*) FROM h), (SELECT COUNT(*) FROM del), \
               (SELECT e.body FROM audit_entries e WHERE e.qid = $1), \
               EXISTS (SELECT 1 FROM audit_pending WHERE qid > $2)";
    let lo: Option<i64> = sqlx::query_scalar(OLDEST)
        .fetch_one(ctx.conn().await?)
        .await
        .map_err(db("read the audit queue"))?;
    let Some(lo) = lo else {
        return Ok((0, false));
    };
    let hi = lo.saturating_add(i64::from(max) - 1);
    let first = frontier.size();
    let row = sqlx::query(BATCH)
        .bind(lo)
        .bind(hi)
        .bind(i64::try_from(first).unwrap_or(i64::MAX))
        .fetch_one(ctx.conn().await?)
        .await
        .map_err(db("sequence audit events"))?;
    let hashes: Option<String> = row.get(0);
    let (inserted, deleted): (i64, i64) = (row.get(1), row.get(2));
    if inserted != deleted || inserted == 0 {
        return Err(StoreError::Corrupt(format!(
            "{deleted} audit events pending from the oldest on, {inserted} of them found"
        )));
    }
    let first_body: Option<String> = row.get(3);
    let more: bool = row.get(4);
    // `seq:hash` pairs in whatever order the aggregate kept (asking it for
    // an order would sort them): each put in its place, each place once.
    let hashes = hashes.unwrap_or_default();
    let mut placed: Vec<Option<Hash>> = vec![None; usize::try_from(inserted).unwrap_or(0)];
    for item in hashes.split(',').filter(|x| !x.is_empty()) {
        let bad = || StoreError::Corrupt("a leaf hash from the database".into());
        let (seq, text) = item.split_once(':').ok_or_else(bad)?;
        let seq: u64 = seq.parse().map_err(|_| bad())?;
        let slot = seq
            .checked_sub(first + 1)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| placed.get_mut(i))
            .ok_or_else(bad)?;
        let mut hash = [0u8; 32];
        hex::decode_to_slice(text, &mut hash).map_err(|_| bad())?;
        if slot.replace(hash).is_some() {
            return Err(bad());
        }
    }
    let leaves: Vec<Hash> = placed.into_iter().collect::<Option<_>>().ok_or_else(|| {
        StoreError::Corrupt(format!(
            "{inserted} leaves written, a sequence number missing"
        ))
    })?;
    let expect = lethe_ledger::leaf_hash_of(
        first + 1,
        first_body.as_deref().unwrap_or_default().as_bytes(),
    );
    if leaves.first() != Some(&expect) {
        return Err(StoreError::Corrupt(
            "the database's leaf hash differs from the ledger's (is the database's encoding UTF-8?)".into(),
        ));
    }
    let mut nodes = vec![];
    for hash in &leaves {
        frontier.push(*hash, |l, i, h| {
            if l.is_multiple_of(NODE_STRIDE) {
                nodes.push((l, i, *h));
            }
        });
    }
    insert_nodes(ctx, &nodes).await?;
    Ok((leaves.len() as u64, more))
}

async fn sequence_in(
    ctx: &mut WriteCtx,
    owner: String,
    max: u32,
    cached: Option<Frontier>,
    sign: Option<(Arc<Signer>, String)>,
) -> Result<(SequenceOutcome, Option<Frontier>), StoreError> {
    // One snapshot for the whole pass on PostgreSQL: the pending events
    // read, the range of marks deleted and the tree extended are the same
    // ones, whatever other changes commit meanwhile (a change that got its
    // queue id earlier may commit later; the next pass takes it).
    if ctx.backend == crate::Backend::Postgres {
        // A custom plan for every pass: the batch's bounds are values that
        // move, and a generic plan would guess the size of their range.
        sqlx::raw_sql(
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; SET LOCAL plan_cache_mode = force_custom_plan",
        )
        .execute(ctx.conn().await?)
        .await
        .map_err(db("sequence audit events"))?;
    }
    let now = ms(crate::now_wall());
    let Some(epoch) = take_lease(ctx, SEQUENCER_LEASE, &owner, now, LEASE_TTL_MS).await? else {
        return Ok((
            SequenceOutcome {
                held: false,
                epoch: 0,
                integrated: 0,
                size: 0,
                more: false,
            },
            None,
        ));
    };
    // The stored tree is the truth: a cached frontier of another size (a
    // holder before this one appended) is read again.
    let size = log_size(ctx.conn().await?).await?;
    let mut frontier = match cached {
        Some(f) if f.size() == size => f,
        _ => frontier_at(ctx.conn().await?, size).await?,
    };
    // Every batch function takes a `max` already within 1 ..= MAX_SEQUENCE_BATCH.
    let max = max.clamp(1, MAX_SEQUENCE_BATCH);
    let (integrated, more) = match ctx.backend {
        crate::Backend::Postgres => sequence_batch_pg(ctx, max, &mut frontier).await?,
        crate::Backend::Sqlite => sequence_batch_sqlite(ctx, max, &mut frontier).await?,
    };
    if let Some((signer, timestamp)) = sign
        && frontier.size() > 0
    {
        store_head(
            ctx,
            &TreeHead::sign(&signer, frontier.size(), &frontier.root(), &timestamp),
        )
        .await?;
    }
    Ok((
        SequenceOutcome {
            held: true,
            epoch,
            integrated,
            size: frontier.size(),
            more,
        },
        Some(frontier),
    ))
}

async fn store_head(ctx: &mut WriteCtx, head: &TreeHead) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO tree_heads (tree_size, root_hash, timestamp, signature) VALUES ($1, $2, $3, $4) ON CONFLICT (tree_size) DO NOTHING")
        .bind(i64::try_from(head.tree_size).unwrap_or(i64::MAX))
        .bind(head.root_hash.clone())
        .bind(head.timestamp.clone())
        .bind(head.signature.clone())
        .execute(ctx.conn().await?)
        .await
        .map_err(db("store tree head"))?;
    Ok(())
}

impl Store {
    /// One sequencing pass: takes or renews the sequencer's lease and, if
    /// this instance holds it, integrates up to `max` queued events (and
    /// signs the new tree head when `sign` is given).
    pub async fn sequence(
        &self,
        max: u32,
        sign: Option<(Arc<Signer>, String)>,
    ) -> Result<SequenceOutcome, StoreError> {
        let owner = self.instance.to_string();
        let cached = self
            .sequencer
            .lock()
            .map(|mut c| c.take())
            .unwrap_or_default();
        let r = self
            .writer
            .run(move |ctx| Box::pin(sequence_in(ctx, owner, max, cached, sign)))
            .await;
        match r {
            Ok((outcome, frontier)) => {
                if let Ok(mut c) = self.sequencer.lock() {
                    *c = frontier;
                }
                Ok(outcome)
            }
            // Another instance changed the lease (or signed the same head)
            // after this pass's snapshot was taken: this pass did nothing,
            // the next one sees the new state.
            Err(StoreError::Db { message, .. })
                if message.starts_with("could not serialize access") =>
            {
                Ok(SequenceOutcome {
                    held: false,
                    epoch: 0,
                    integrated: 0,
                    size: 0,
                    more: false,
                })
            }
            // The cache was taken: the next pass reads the stored tree.
            Err(e) => Err(e),
        }
    }

    /// Notified when a change of this instance queued audit events.
    pub fn audit_queued_signal(&self) -> Arc<tokio::sync::Notify> {
        self.writer.queued.clone()
    }

    /// Gives the lease up (a clean shutdown), so another instance goes on
    /// at once instead of after the lease expires.
    pub async fn release_sequencer(&self) -> Result<(), StoreError> {
        self.expire_sequencer_of(self.instance.to_string()).await
    }

    /// Ends `owner`'s lease now (its process is known to be gone).
    pub async fn expire_sequencer_of(&self, owner: String) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("UPDATE leases SET expires_at = 0 WHERE name = $1 AND owner = $2")
                        .bind(SEQUENCER_LEASE)
                        .bind(owner)
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("release the sequencer's lease"))?;
                    Ok(())
                })
            })
            .await
    }

    /// The sequencer's lease: holder, expiry, epoch.
    pub async fn sequencer_lease(&self) -> Result<Option<(String, i64, i64)>, StoreError> {
        let r = sqlx::query("SELECT owner, expires_at, epoch FROM leases WHERE name = $1")
            .bind(SEQUENCER_LEASE)
            .fetch_optional(&self.read)
            .await
            .map_err(db("read the sequencer's lease"))?;
        Ok(r.map(|r| (r.get(0), r.get(1), r.get(2))))
    }

    /// Queued events and the age of the oldest (ms), for metrics and the
    /// merge-delay check.
    pub async fn audit_queue_state(&self, now: jiff::Timestamp) -> Result<(i64, i64), StoreError> {
        let r = sqlx::query("SELECT COUNT(*), (SELECT queued_at FROM audit_entries WHERE qid = (SELECT MIN(qid) FROM audit_pending)) FROM audit_pending")
            .fetch_one(&self.read)
            .await
            .map_err(db("read the audit queue"))?;
        let n: i64 = r.get(0);
        let oldest: Option<i64> = r.get(1);
        Ok((n, oldest.map_or(0, |t| (ms(now) - t).max(0))))
    }

    /// Whether any event waits in the queue (a cheap read).
    pub async fn audit_queued(&self) -> Result<bool, StoreError> {
        let r: Option<i64> =
            sqlx::query_scalar("SELECT qid FROM audit_pending ORDER BY qid LIMIT 1")
                .fetch_optional(&self.read)
                .await
                .map_err(db("read the audit queue"))?;
        Ok(r.is_some())
    }

    /// Waits until every event queued before this call is in the tree
    /// (for a tree head that must cover what was just done, a command that
    /// ends, tests): sequences itself while it gets the lease, else waits
    /// for the holder, up to `wait`.
    pub async fn integrate_queued(&self, wait: std::time::Duration) -> Result<(), StoreError> {
        let until = std::time::Instant::now() + wait;
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(qid) FROM audit_pending")
            .fetch_one(&self.read)
            .await
            .map_err(db("read the audit queue"))?;
        let Some(last) = last else {
            return Ok(());
        };
        loop {
            let waiting: Option<i64> =
                sqlx::query_scalar("SELECT qid FROM audit_pending WHERE qid <= $1 LIMIT 1")
                    .bind(last)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(db("read the audit queue"))?;
            if waiting.is_none() {
                return Ok(());
            }
            // Sequence here only when the lease is free, run out or ours;
            // else the holder does it.
            let free = match self.sequencer_lease().await? {
                None => true,
                Some((owner, expires_at, _)) => {
                    owner == *self.instance || expires_at < ms(crate::now_wall())
                }
            };
            if free {
                let out = self.sequence(MAX_SEQUENCE_BATCH, None).await?;
                if out.held && out.integrated > 0 {
                    continue;
                }
            }
            if std::time::Instant::now() >= until {
                return Err(StoreError::Refused(
                    "audit events still wait for the sequencer; is an instance running?".into(),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Signs the head of the tree as it stands (size and root of the
    /// integrated events), unless the log is empty; the stored head of
    /// that size if one exists.
    pub async fn sign_tree_head(
        &self,
        signer: Arc<Signer>,
        timestamp: String,
    ) -> Result<Option<TreeHead>, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let size = log_size(ctx.conn().await?).await?;
                    if size == 0 {
                        return Ok(None);
                    }
                    if let Some(head) = head_of_size(ctx.conn().await?, size).await? {
                        return Ok(Some(head));
                    }
                    // Nodes and leaves up to `size` never change once
                    // written: this root is the tree's at `size`.
                    let frontier = frontier_at(ctx.conn().await?, size).await?;
                    store_head(
                        ctx,
                        &TreeHead::sign(&signer, size, &frontier.root(), &timestamp),
                    )
                    .await?;
                    head_of_size(ctx.conn().await?, size).await
                })
            })
            .await
    }
}

pub(crate) fn row_to_event(r: &crate::DbRow) -> Result<RecordedEvent, StoreError> {
    Ok(RecordedEvent {
        event: AuditEvent {
            seq: u64::try_from(r.get::<i64, _>(0)).unwrap_or(0),
            case_id: r.get(1),
            subject: r.get(2),
            kind: r.get(3),
            from_state: r.get(4),
            to_state: r.get(5),
            actor: r.get(6),
            at: r.get(7),
            detail: serde_json::from_str(&r.get::<String, _>(8))
                .map_err(|_| StoreError::Corrupt("audit detail".into()))?,
        },
        hash: r.get(9),
        redacted: false,
    })
}

/// Appends an audit event that belongs to no case (claims).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn append_event(
    ctx: &mut WriteCtx,
    case_id: &str,
    subject: &str,
    kind: &str,
    from: Option<&str>,
    to: &str,
    actor: &str,
    detail: serde_json::Value,
    at: Timestamp,
) -> Result<(), StoreError> {
    let event = AuditEvent {
        seq: 0,
        case_id: case_id.to_owned(),
        subject: subject.to_owned(),
        kind: kind.to_owned(),
        from_state: from.map(str::to_owned),
        to_state: to.to_owned(),
        actor: actor.to_owned(),
        at: at.to_string(),
        detail,
    };
    insert_event(ctx, event).await
}

/// A tree head from its row (`size, root, timestamp, signature`).
pub(crate) fn row_head(r: &crate::DbRow) -> TreeHead {
    TreeHead {
        tree_size: u64::try_from(r.get::<i64, _>(0)).unwrap_or(0),
        root_hash: r.get(1),
        timestamp: r.get(2),
        signature: r.get(3),
    }
}

async fn head_of_size(conn: &mut DbConn, size: u64) -> Result<Option<TreeHead>, StoreError> {
    let r = sqlx::query(
        "SELECT tree_size, root_hash, timestamp, signature FROM tree_heads WHERE tree_size = $1",
    )
    .bind(i64::try_from(size).unwrap_or(i64::MAX))
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("read tree head"))?;
    Ok(r.as_ref().map(row_head))
}

/// Where a receipt's final event stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalEventState {
    /// The receipt predates the queue: its body names the event.
    InBody,
    /// Still queued: the receipt is signed once it is integrated.
    Queued,
    /// In the tree: its sequence number and hex leaf hash.
    Sequenced(u64, String),
}

impl Store {
    /// The sequence number and hash of a receipt's final event, once the
    /// sequencer integrated it.
    pub async fn receipt_final_event(&self, case_id: &str) -> Result<FinalEventState, StoreError> {
        let qid: Option<Option<i64>> =
            sqlx::query_scalar("SELECT final_qid FROM receipts WHERE case_id = $1")
                .bind(case_id.to_owned())
                .fetch_optional(&self.read)
                .await
                .map_err(db("read receipt"))?;
        let Some(Some(qid)) = qid else {
            return Ok(FinalEventState::InBody);
        };
        let r = sqlx::query("SELECT seq, hash FROM audit_leaves WHERE qid = $1")
            .bind(qid)
            .fetch_optional(&self.read)
            .await
            .map_err(db("read receipt"))?;
        Ok(match r {
            Some(r) => {
                FinalEventState::Sequenced(u64::try_from(r.get::<i64, _>(0)).unwrap_or(0), r.get(1))
            }
            None => FinalEventState::Queued,
        })
    }
}
