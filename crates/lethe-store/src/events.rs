//! Case events for the platform's services: `frozen`, `restored`,
//! `erasure_requested` (one per system) and `erased`, written in the
//! transaction of the change that causes them (when enabled), published at
//! least once by the server, each with a de-duplication id.

use jiff::Timestamp;
use lethe_domain::{Case, CaseId};
use sqlx::Row;

use crate::{Stmt, Store, StoreError, WriteCtx, db, ms};

/// One event waiting to be published.
#[derive(Debug, Clone)]
pub struct CaseEvent {
    pub id: i64,
    /// Unique per case, kind and system: the broker drops a repeat.
    pub dedupe_id: String,
    pub kind: String,
    pub system: Option<String>,
    pub payload: String,
}

/// The event a notice of the case implies, if any.
pub(crate) fn kind_of_notice(notice: &str) -> Option<&'static str> {
    match notice {
        "account.freeze" => Some("frozen"),
        "account.restore" => Some("restored"),
        "account.erased" => Some("erased"),
        _ => None,
    }
}

pub(crate) async fn insert(
    ctx: &mut WriteCtx,
    case: &Case,
    kind: &str,
    system: Option<&str>,
    at: Timestamp,
) -> Result<(), StoreError> {
    let dedupe_id = match system {
        Some(s) => format!("{}:{kind}:{s}", case.id),
        None => format!("{}:{kind}", case.id),
    };
    let mut payload = serde_json::json!({
        "id": dedupe_id,
        "kind": kind,
        "case_id": case.id.to_string(),
        "subject_id": case.subject.expose(),
        "at": at.to_string(),
    });
    if let (Some(s), Some(m)) = (system, payload.as_object_mut()) {
        m.insert("system".into(), s.into());
    }
    ctx.defer(
        Stmt::new("record case event", "INSERT INTO case_events (dedupe_id, kind, system, case_id, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (dedupe_id) DO NOTHING")
            .arg(dedupe_id)
            .arg(kind)
            .arg(system.map(str::to_owned))
            .arg(case.id.to_string())
            .arg(payload.to_string())
            .arg(ms(at)),
    )
    .await?;
    Ok(())
}

/// `erasure_requested` for one system, when its erase job is enqueued.
pub(crate) async fn erasure_requested(
    ctx: &mut WriteCtx,
    id: &CaseId,
    system: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    let case = crate::tx::load_case(ctx, *id).await?;
    insert(ctx, &case, "erasure_requested", Some(system), at).await
}

impl Store {
    /// Claims up to `limit` events not yet published, oldest first, for
    /// `lease` (wall-clock): instances publish side by side, each event
    /// leased by one of them; an event whose publisher died is taken over
    /// once its lease runs out (JetStream drops a repeat by its
    /// de-duplication id).
    pub async fn pending_case_events(
        &self,
        limit: u32,
        lease: jiff::SignedDuration,
    ) -> Result<Vec<CaseEvent>, StoreError> {
        let now = crate::now_wall();
        let sql = "SELECT 1 FROM case_events WHERE published_at IS NULL AND (lease_until IS NULL OR lease_until <= $1) LIMIT 1";
        if !self.any_due(sql, now, "read case events").await? {
            return Ok(vec![]);
        }
        let until = now.checked_add(lease).unwrap_or(now);
        let mut events = self
            .writer
            .run(move |ctx| {
                Box::pin(async move {
                    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE case_events SET lease_until = $1 WHERE id IN (SELECT id FROM case_events WHERE published_at IS NULL AND (lease_until IS NULL OR lease_until <= $2) ORDER BY id LIMIT $3 {})
                         RETURNING id, dedupe_id, kind, system, payload",
                        ctx.skip_locked()
                    )))
                    .bind(ms(until))
                    .bind(ms(now))
                    .bind(i64::from(limit.min(1000)))
                    .fetch_all(ctx.conn().await?)
                    .await
                    .map_err(db("claim case events"))?;
                    Ok(rows
                        .iter()
                        .map(|r| CaseEvent {
                            id: r.get(0),
                            dedupe_id: r.get(1),
                            kind: r.get(2),
                            system: r.get(3),
                            payload: r.get(4),
                        })
                        .collect::<Vec<_>>())
                })
            })
            .await?;
        // RETURNING does not keep the subquery's order.
        events.sort_by_key(|e| e.id);
        Ok(events)
    }

    /// The broker acknowledged these events.
    pub async fn case_events_published(
        &self,
        ids: Vec<i64>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    for id in &ids {
                        sqlx::query("UPDATE case_events SET published_at = $1, lease_until = NULL WHERE id = $2")
                            .bind(ms(now))
                            .bind(*id)
                            .execute(ctx.conn().await?)
                            .await
                            .map_err(db("mark case event published"))?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Gives claimed events back before their lease ends (a publish failed
    /// part-way): the next publisher takes them at once.
    pub async fn release_case_events(&self, ids: Vec<i64>) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    for id in &ids {
                        sqlx::query("UPDATE case_events SET lease_until = NULL WHERE id = $1 AND published_at IS NULL")
                            .bind(*id)
                            .execute(ctx.conn().await?)
                            .await
                            .map_err(db("release case event"))?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// A publish failed: counted, with the reason, for operators.
    pub async fn case_event_failed(&self, id: i64, error: String) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("UPDATE case_events SET attempts = attempts + 1, last_error = $1, lease_until = NULL WHERE id = $2")
                        .bind(error.clone())
                        .bind(id)
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("record case event failure"))?;
                    Ok(())
                })
            })
            .await
    }
}
