//! Support requests: opened with a receipt (after erasure) or from the
//! cancellation centre (live case); answered, closed. Every change is one
//! transaction with its audit event (on the case's id, with no personal
//! data in its detail).

use jiff::Timestamp;
use sqlx::Row;

use crate::{OutboxDraft, Store, StoreError, db, from_ms, ms};

/// Requests an agent's queue lists at most.
pub const MAX_QUEUE: u32 = 500;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SupportRow {
    pub id: String,
    /// None for a question asked before any case existed.
    pub case_id: Option<String>,
    pub principal: String,
    pub origin: String,
    pub topic: String,
    pub state: String,
    #[serde(skip)]
    pub message_sealed: Option<String>,
    #[serde(skip)]
    pub contact_sealed: Option<String>,
    pub contact_kind: Option<String>,
    pub contact_hint: Option<String>,
    #[serde(skip)]
    pub answer_sealed: Option<String>,
    pub due_at: Timestamp,
    pub provisional: bool,
    pub created_at: Timestamp,
    pub answered_at: Option<Timestamp>,
    pub answered_by: Option<String>,
    pub closed_at: Option<Timestamp>,
    pub closed_by: Option<String>,
}

/// A request to open.
#[derive(Debug, Clone)]
pub struct NewSupport {
    pub id: String,
    pub case_id: Option<String>,
    pub principal: String,
    pub origin: String,
    pub topic: String,
    pub message_sealed: String,
    pub contact_sealed: String,
    pub contact_kind: String,
    pub contact_hint: String,
    pub due_at: Timestamp,
    pub provisional: bool,
    /// What the per-receipt limit counts: a keyed hash of the receipt's
    /// digest, of the live case or of the signed-in account.
    pub limit_key: String,
    pub client_hash: String,
    pub actor: String,
}

/// The abuse limits a new request is checked against, in the same
/// transaction as its insert (every instance sees every request).
#[derive(Debug, Clone, Copy)]
pub struct SupportLimits {
    /// Requests opened with one receipt (or for one live case, or from one
    /// signed-in account) per day.
    pub per_receipt_per_day: u32,
    /// Requests opened from one client address per hour.
    pub per_client_per_hour: u32,
}

/// Which limit a refused request hit, and when to try again (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    Receipt(i64),
    Client(i64),
}

const COLS: &str = "id, case_id, principal, origin, topic, state, message_sealed, contact_sealed, contact_kind, contact_hint, answer_sealed, due_at, provisional, created_at, answered_at, answered_by, closed_at, closed_by";

/// The audit trail a request's events join: its case's, or (asked before
/// any case existed) its own.
pub fn audit_key(case_id: Option<&str>, request: &str) -> String {
    case_id.map_or_else(|| format!("support-{request}"), str::to_owned)
}

fn row(r: &crate::DbRow) -> SupportRow {
    SupportRow {
        id: r.get(0),
        case_id: r.get(1),
        principal: r.get(2),
        origin: r.get(3),
        topic: r.get(4),
        state: r.get(5),
        message_sealed: r.get(6),
        contact_sealed: r.get(7),
        contact_kind: r.get(8),
        contact_hint: r.get(9),
        answer_sealed: r.get(10),
        due_at: from_ms(r.get(11)),
        provisional: r.get::<i64, _>(12) != 0,
        created_at: from_ms(r.get(13)),
        answered_at: r.get::<Option<i64>, _>(14).map(from_ms),
        answered_by: r.get(15),
        closed_at: r.get::<Option<i64>, _>(16).map(from_ms),
        closed_by: r.get(17),
    }
}

async fn count_since(
    ctx: &mut crate::WriteCtx,
    column: &str,
    value: &str,
    since: Timestamp,
) -> Result<(i64, Option<i64>), StoreError> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*), MIN(created_at) FROM support_requests WHERE {column} = $1 AND created_at >= $2"
    )))
    .bind(value.to_owned())
    .bind(ms(since))
    .fetch_one(ctx.conn().await?)
    .await
    .map_err(db("count support requests"))?;
    Ok((r.get(0), r.get(1)))
}

impl Store {
    /// Opens a request unless a limit says no.
    pub async fn open_support(
        &self,
        n: NewSupport,
        limits: SupportLimits,
        now: Timestamp,
    ) -> Result<Result<SupportRow, Throttled>, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    // Opens for one case wait for each other (PostgreSQL:
                    // the case row stays locked to commit), so two at once
                    // cannot both pass the per-receipt count.
                    if let Some(case_id) = &n.case_id {
                        let lock = format!("SELECT id FROM cases WHERE id = $1 {}", ctx.for_update());
                        sqlx::query(sqlx::AssertSqlSafe(lock))
                            .bind(case_id.clone())
                            .fetch_optional(ctx.conn().await?)
                            .await
                            .map_err(db("lock the case"))?;
                    }
                    let day = now.checked_sub(jiff::SignedDuration::from_hours(24)).unwrap_or(now);
                    let hour = now.checked_sub(jiff::SignedDuration::from_hours(1)).unwrap_or(now);
                    let (c, oldest) = count_since(ctx, "limit_key", &n.limit_key, day).await?;
                    if c >= i64::from(limits.per_receipt_per_day) {
                        let wait = oldest.map_or(3600, |o| (o + 86_400_000 - ms(now)) / 1000).max(1);
                        return Ok(Err(Throttled::Receipt(wait)));
                    }
                    let (c, oldest) = count_since(ctx, "client_hash", &n.client_hash, hour).await?;
                    if c >= i64::from(limits.per_client_per_hour) {
                        let wait = oldest.map_or(60, |o| (o + 3_600_000 - ms(now)) / 1000).max(1);
                        return Ok(Err(Throttled::Client(wait)));
                    }
                    sqlx::query("INSERT INTO support_requests (id, case_id, principal, origin, topic, state, message_sealed, contact_sealed, contact_kind, contact_hint, due_at, provisional, created_at, limit_key, client_hash) VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $8, $9, $10, $11, $12, $13, $14)")
                        .bind(n.id.clone())
                        .bind(n.case_id.clone())
                        .bind(n.principal.clone())
                        .bind(n.origin.clone())
                        .bind(n.topic.clone())
                        .bind(n.message_sealed.clone())
                        .bind(n.contact_sealed.clone())
                        .bind(n.contact_kind.clone())
                        .bind(n.contact_hint.clone())
                        .bind(ms(n.due_at))
                        .bind(i64::from(n.provisional))
                        .bind(ms(now))
                        .bind(n.limit_key.clone())
                        .bind(n.client_hash.clone())
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("open a support request"))?;
                    crate::log::append_event(ctx, &audit_key(n.case_id.as_deref(), &n.id), "",
                        "support.opened",
                        None,
                        "open",
                        &n.actor,
                        serde_json::json!({
                            "request": n.id,
                            "origin": n.origin,
                            "topic": n.topic,
                            "contact": n.contact_kind,
                            "due_at": n.due_at.to_string(),
                        }),
                        now,
                    )
                    .await?;
                    let r = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM support_requests WHERE id = $1")))
                        .bind(n.id)
                        .fetch_one(ctx.conn().await?)
                        .await
                        .map_err(db("read a support request"))?;
                    Ok(Ok(row(&r)))
                })
            })
            .await
    }

    pub async fn support_request(&self, id: &str) -> Result<Option<SupportRow>, StoreError> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM support_requests WHERE id = $1"
        )))
        .bind(id.to_owned())
        .fetch_optional(&self.read)
        .await
        .map_err(db("read a support request"))?;
        Ok(r.as_ref().map(row))
    }

    /// Requests not closed, soonest due first (one platform's, or all).
    pub async fn support_queue(
        &self,
        platform: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SupportRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM support_requests WHERE state IN ('open', 'answered') AND ($1 IS NULL OR principal = $1) ORDER BY due_at LIMIT $2"
        )))
        .bind(platform.map(str::to_owned))
        .bind(i64::from(limit.min(MAX_QUEUE)))
        .fetch_all(&self.read)
        .await
        .map_err(db("read the support queue"))?;
        Ok(rows.iter().map(row).collect())
    }

    /// The requests of one case, newest first.
    pub async fn support_of_case(&self, case_id: &str) -> Result<Vec<SupportRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM support_requests WHERE case_id = $1 ORDER BY created_at DESC LIMIT 50"
        )))
        .bind(case_id.to_owned())
        .fetch_all(&self.read)
        .await
        .map_err(db("read support requests"))?;
        Ok(rows.iter().map(row).collect())
    }

    /// Records an answer delivered to the contact (and, in the demo, the
    /// dev outbox's copy, which closing deletes). False when the request
    /// is closed.
    pub async fn answer_support(
        &self,
        id: String,
        answer_sealed: String,
        outbox: Option<OutboxDraft>,
        actor: String,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let prev: Option<(Option<String>, String)> = sqlx::query("SELECT case_id, state FROM support_requests WHERE id = $1")
                        .bind(id.clone())
                        .fetch_optional(ctx.conn().await?)
                        .await
                        .map_err(db("read a support request"))?
                        .map(|r| (r.get(0), r.get(1)));
                    let Some((case_id, state)) = prev.filter(|(_, s)| s != "closed") else {
                        return Ok(false);
                    };
                    // Guarded: a close that committed since the read wins.
                    let n = sqlx::query("UPDATE support_requests SET state = 'answered', answer_sealed = $1, answered_at = $2, answered_by = $3 WHERE id = $4 AND state <> 'closed'")
                        .bind(answer_sealed)
                        .bind(ms(now))
                        .bind(actor.clone())
                        .bind(id.clone())
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("answer a support request"))?
                        .rows_affected();
                    if n == 0 {
                        return Ok(false);
                    }
                    if let Some(o) = outbox {
                        sqlx::query("INSERT INTO outbox (case_id, channel, destination, body, created_at) VALUES ($1, $2, $3, $4, $5)")
                            .bind(id.clone())
                            .bind(o.channel)
                            .bind(o.destination)
                            .bind(o.body)
                            .bind(ms(now))
                            .execute(ctx.conn().await?)
                            .await
                            .map_err(db("queue a message"))?;
                    }
                    crate::log::append_event(ctx, &audit_key(case_id.as_deref(), &id), "", "support.answered", Some(&state), "answered", &actor, serde_json::json!({ "request": id }), now).await?;
                    Ok(true)
                })
            })
            .await
    }

    /// An action on a request that changes no state but is audited (a
    /// settlement instruction re-sent, the message read). False when there
    /// is no such request.
    pub async fn support_action(
        &self,
        id: String,
        kind: String,
        actor: String,
        detail: serde_json::Value,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let r: Option<(Option<String>, String)> =
                        sqlx::query("SELECT case_id, state FROM support_requests WHERE id = $1")
                            .bind(id.clone())
                            .fetch_optional(ctx.conn().await?)
                            .await
                            .map_err(db("read a support request"))?
                            .map(|r| (r.get(0), r.get(1)));
                    let Some((case_id, state)) = r else {
                        return Ok(false);
                    };
                    let mut detail = detail;
                    detail["request"] = serde_json::json!(id);
                    crate::log::append_event(
                        ctx,
                        &audit_key(case_id.as_deref(), &id),
                        "",
                        &kind,
                        Some(&state),
                        &state,
                        &actor,
                        detail,
                        now,
                    )
                    .await?;
                    Ok(true)
                })
            })
            .await
    }

    /// Closes a request: its sealed texts and contact are emptied (their
    /// key was destroyed just before), the dev outbox's copy deleted.
    /// False when it was closed already.
    pub async fn close_support(
        &self,
        id: String,
        actor: String,
        key_versions_destroyed: u32,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let r: Option<(Option<String>, String)> = sqlx::query("SELECT case_id, state FROM support_requests WHERE id = $1")
                        .bind(id.clone())
                        .fetch_optional(ctx.conn().await?)
                        .await
                        .map_err(db("read a support request"))?
                        .map(|r| (r.get(0), r.get(1)));
                    let Some((case_id, state)) = r.filter(|(_, s)| s != "closed") else {
                        return Ok(false);
                    };
                    let n = sqlx::query("UPDATE support_requests SET state = 'closed', message_sealed = NULL, contact_sealed = NULL, contact_hint = NULL, answer_sealed = NULL, closed_at = $1, closed_by = $2 WHERE id = $3 AND state <> 'closed'")
                        .bind(ms(now))
                        .bind(actor.clone())
                        .bind(id.clone())
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("close a support request"))?
                        .rows_affected();
                    if n == 0 {
                        return Ok(false);
                    }
                    sqlx::query("DELETE FROM outbox WHERE case_id = $1")
                        .bind(id.clone())
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("delete a request's messages"))?;
                    crate::log::append_event(ctx, &audit_key(case_id.as_deref(), &id), "", "support.closed", Some(&state), "closed", &actor, serde_json::json!({ "request": id, "contact_destroyed": true, "key_versions_destroyed": key_versions_destroyed }), now).await?;
                    Ok(true)
                })
            })
            .await
    }

    /// Requests answered before `before` and not closed (at most `limit`).
    pub async fn answered_before(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT id FROM support_requests WHERE state = 'answered' AND answered_at < $1 ORDER BY answered_at LIMIT $2")
            .bind(ms(before))
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(db("read answered support requests"))
    }

    /// Empties the limit keys and client hashes of requests opened before
    /// `before` (they no longer count against any limit), at most `limit`
    /// rows; how many were emptied. Index-backed (the partial index on
    /// rows not yet emptied), so the cost does not grow with history.
    pub async fn scrub_support_limits(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    Ok(sqlx::query("UPDATE support_requests SET limit_key = NULL, client_hash = '' WHERE id IN (SELECT id FROM support_requests WHERE client_hash <> '' AND created_at < $1 ORDER BY created_at LIMIT $2)")
                        .bind(ms(before))
                        .bind(i64::from(limit))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("empty support limit keys"))?
                        .rows_affected())
                })
            })
            .await
    }

    /// The audit events of a request asked before any case existed.
    pub async fn support_events(
        &self,
        request: &str,
    ) -> Result<Vec<lethe_ledger::RecordedEvent>, StoreError> {
        let mut conn = self.read.acquire().await.map_err(db("read audit"))?;
        crate::case_events(&mut conn, &audit_key(None, request)).await
    }

    /// Requests waiting for an answer, and how many of them are past due.
    pub async fn support_waiting(&self, now: Timestamp) -> Result<(i64, i64), StoreError> {
        let r = sqlx::query("SELECT COUNT(*), COALESCE(SUM(CASE WHEN due_at < $1 THEN 1 ELSE 0 END), 0) FROM support_requests WHERE state = 'open'")
            .bind(ms(now))
            .fetch_one(&self.read)
            .await
            .map_err(db("count support requests"))?;
        Ok((r.get(0), r.get(1)))
    }

    /// The signed receipt of a case and whether it is signed.
    pub async fn receipt_of(&self, case_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .receipt_signed(case_id)
            .await?
            .filter(|(_, signed)| *signed)
            .map(|(body, _)| body))
    }
}
