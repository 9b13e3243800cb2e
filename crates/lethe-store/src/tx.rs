//! The writes every aggregate shares inside one transaction: a case loaded
//! for change, and a notification queued with the change that causes it.

use jiff::Timestamp;
use lethe_domain::{Case, CaseId};

use crate::{DbRow, Stmt, StoreError, WriteCtx, db, from_json, ms, now_wall};
use sqlx::Row;

/// Loads a case to change it. On PostgreSQL the row stays locked until the
/// transaction ends, so a change made by another instance at the same time
/// waits and then sees this one's result.
pub(crate) async fn load_case(ctx: &mut WriteCtx, id: CaseId) -> Result<Case, StoreError> {
    let row = load_case_row(ctx, id, "body").await?;
    from_json(&row.try_get::<String, _>(0).map_err(db("load case"))?)
}

/// [`load_case`], with the case's pseudonym (its audit events carry it).
pub(crate) async fn load_case_and_pseudonym(
    ctx: &mut WriteCtx,
    id: CaseId,
) -> Result<(Case, String), StoreError> {
    let row = load_case_row(ctx, id, "body, subject_pseudonym").await?;
    let case = from_json(&row.try_get::<String, _>(0).map_err(db("load case"))?)?;
    Ok((case, row.try_get(1).map_err(db("load case"))?))
}

/// The case's pseudonym (its audit events and what Lethe keeps once the
/// case is erased carry it).
pub(crate) async fn pseudonym_of(ctx: &mut WriteCtx, id: CaseId) -> Result<String, StoreError> {
    let row = load_case_row(ctx, id, "subject_pseudonym").await?;
    row.try_get(0).map_err(db("load case"))
}

/// The case's columns `cols`, read in the round trip of the control due
/// and any deferred writes.
async fn load_case_row(
    ctx: &mut WriteCtx,
    id: CaseId,
    cols: &'static str,
) -> Result<DbRow, StoreError> {
    let sql = format!(
        "SELECT {cols} FROM cases WHERE id = $1 {}",
        ctx.for_update()
    );
    ctx.fetch(Stmt::new("load case", sql).arg(id.to_string()))
        .await?
        .into_iter()
        .next()
        .ok_or(StoreError::NotFound(id))
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
