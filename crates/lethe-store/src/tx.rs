//! The writes every aggregate shares inside one transaction: a case loaded
//! for change, and a notification queued with the change that causes it.

use jiff::Timestamp;
use lethe_domain::{Case, CaseId};

use crate::{Stmt, StoreError, WriteCtx, db, from_json, ms, now_wall};

/// Loads a case to change it. On PostgreSQL the row stays locked until the
/// transaction ends, so a change made by another instance at the same time
/// waits and then sees this one's result.
pub(crate) async fn load_case(ctx: &mut WriteCtx, id: CaseId) -> Result<Case, StoreError> {
    let body: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT body FROM cases WHERE id = $1 {}",
        ctx.for_update()
    )))
    .bind(id.to_string())
    .fetch_optional(ctx.conn().await?)
    .await
    .map_err(db("load case"))?;
    from_json(&body.ok_or(StoreError::NotFound(id))?)
}

pub(crate) async fn insert_notification(
    ctx: &mut WriteCtx,
    kind: &str,
    case_id: Option<&str>,
    payload: &serde_json::Value,
    at: Timestamp,
) -> Result<(), StoreError> {
    insert_notification_for(ctx, kind, case_id, None, payload, at).await
}

/// A notification for one platform (`principal`), when no case says whose
/// it is.
pub(crate) async fn insert_notification_for(
    ctx: &mut WriteCtx,
    kind: &str,
    case_id: Option<&str>,
    principal: Option<&str>,
    payload: &serde_json::Value,
    at: Timestamp,
) -> Result<(), StoreError> {
    ctx.defer(
        Stmt::new("queue notification", "INSERT INTO notifications (kind, case_id, payload, created_at, state, next_at, principal) VALUES ($1, $2, $3, $4, 'pending', $5, $6)")
            .arg(kind)
            .arg(case_id.map(str::to_owned))
            .arg(payload.to_string())
            .arg(ms(at))
            .arg(ms(now_wall()))
            .arg(principal.map(str::to_owned)),
    )
    .await
}
