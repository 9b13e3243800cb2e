//! Data exports: their rows, leases, links and ends. Every change of an
//! export's state is one transaction with its audit event (`export.*`,
//! keyed by the export id, the subject as its pseudonym).

use crate::DbRow;
use jiff::Timestamp;
use lethe_domain::export::{ExportState, SystemProgress};
use sqlx::Row;

use crate::log::append_event;
use crate::{Store, StoreError, WriteCtx, db, from_ms, ms};

/// A new export request.
#[derive(Debug, Clone)]
pub struct NewExport {
    pub id: String,
    pub subject_id: String,
    pub subject_ref: String,
    pub case_id: Option<String>,
    pub principal: String,
    pub requested_by: String,
    pub single_use: bool,
    pub idem_key: String,
    pub key_sealed: String,
    pub expires_at: Timestamp,
    pub max_attempts: u32,
}

/// An export as stored. The subject id is present only while the export
/// can still be built or downloaded.
#[derive(Clone)]
pub struct ExportRow {
    pub id: String,
    pub subject_id: Option<String>,
    pub subject_ref: String,
    pub case_id: Option<String>,
    pub principal: String,
    pub requested_by: String,
    pub state: ExportState,
    pub progress: Vec<SystemProgress>,
    pub single_use: bool,
    pub key_sealed: Option<String>,
    pub bytes: Option<u64>,
    pub summary: Option<serde_json::Value>,
    pub downloads: u32,
    pub attempts: u32,
    pub max_attempts: u32,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub ready_at: Option<Timestamp>,
    pub expires_at: Timestamp,
    pub closed_at: Option<Timestamp>,
    pub cleaned_at: Option<Timestamp>,
}

impl std::fmt::Debug for ExportRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The subject id and the sealed key stay out of debug output.
        f.debug_struct("ExportRow")
            .field("id", &self.id)
            .field("state", &self.state)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// SQL text built only from the constant column list (no input).
macro_rules! sql {
    ($($t:tt)*) => {
        sqlx::AssertSqlSafe(format!($($t)*))
    };
}

const COLS: &str = "id, subject_id, subject_ref, case_id, principal, requested_by, state, progress, single_use, key_sealed, bytes, summary, downloads, attempts, max_attempts, last_error, created_at, ready_at, expires_at, closed_at, cleaned_at";

fn row_of(r: &DbRow) -> Result<ExportRow, StoreError> {
    let bad = |what: &str| StoreError::Corrupt(format!("export row: {what}"));
    let state: String = r.get("state");
    let progress: String = r.get("progress");
    let opt_ts = |c: &str| r.get::<Option<i64>, _>(c).map(from_ms);
    Ok(ExportRow {
        id: r.get("id"),
        subject_id: r.get("subject_id"),
        subject_ref: r.get("subject_ref"),
        case_id: r.get("case_id"),
        principal: r.get("principal"),
        requested_by: r.get("requested_by"),
        state: ExportState::parse(&state).ok_or_else(|| bad("state"))?,
        progress: serde_json::from_str(&progress).map_err(|_| bad("progress"))?,
        single_use: r.get::<i64, _>("single_use") != 0,
        key_sealed: r.get("key_sealed"),
        bytes: r.get::<Option<i64>, _>("bytes").map(|b| b.max(0) as u64),
        summary: r
            .get::<Option<String>, _>("summary")
            .and_then(|s| serde_json::from_str(&s).ok()),
        downloads: r.get::<i64, _>("downloads").clamp(0, i64::from(u32::MAX)) as u32,
        attempts: r.get::<i64, _>("attempts").clamp(0, i64::from(u32::MAX)) as u32,
        max_attempts: r
            .get::<i64, _>("max_attempts")
            .clamp(0, i64::from(u32::MAX)) as u32,
        last_error: r.get("last_error"),
        created_at: from_ms(r.get("created_at")),
        ready_at: opt_ts("ready_at"),
        expires_at: from_ms(r.get("expires_at")),
        closed_at: opt_ts("closed_at"),
        cleaned_at: opt_ts("cleaned_at"),
    })
}

fn progress_text(p: &[SystemProgress]) -> String {
    serde_json::to_string(p).unwrap_or_else(|_| "[]".into())
}

async fn event(
    ctx: &mut WriteCtx,
    e: &ExportRow,
    kind: &str,
    to: ExportState,
    actor: &str,
    detail: serde_json::Value,
    at: Timestamp,
) -> Result<(), StoreError> {
    let mut detail = detail;
    if let (Some(case), Some(m)) = (&e.case_id, detail.as_object_mut()) {
        m.insert("case_id".into(), case.clone().into());
    }
    append_event(
        ctx,
        &e.id,
        &e.subject_ref,
        kind,
        Some(e.state.as_str()),
        to.as_str(),
        actor,
        detail,
        at,
    )
    .await
}

async fn load(ctx: &mut WriteCtx, id: &str) -> Result<Option<ExportRow>, StoreError> {
    sqlx::query(sql!("SELECT {COLS} FROM exports WHERE id = $1"))
        .bind(id.to_owned())
        .fetch_optional(ctx.conn().await?)
        .await
        .map_err(db("read export"))?
        .as_ref()
        .map(row_of)
        .transpose()
}

/// Ends an export in `to` (a terminal state) if it is not over yet: the
/// link dies and the subject id and key are dropped from the row; the file
/// and the vault key are removed by [`Store::exports_to_clean`]'s caller.
async fn close(
    ctx: &mut WriteCtx,
    e: &ExportRow,
    to: ExportState,
    kind: &str,
    actor: &str,
    detail: serde_json::Value,
    now: Timestamp,
) -> Result<bool, StoreError> {
    if e.state.is_terminal() {
        return Ok(false);
    }
    let n = sqlx::query("UPDATE exports SET state = $1, subject_id = NULL, lease_until = NULL, closed_at = $2 WHERE id = $3 AND state = $4")
        .bind(to.as_str())
        .bind(ms(now))
        .bind(e.id.clone())
        .bind(e.state.as_str())
        .execute(ctx.conn().await?)
        .await
        .map_err(db("close export"))?
        .rows_affected();
    if n == 1 {
        event(ctx, e, kind, to, actor, detail, now).await?;
    }
    Ok(n == 1)
}

impl Store {
    /// Records a request; the audit log gets `export.requested`. A request
    /// with an idempotency key already used returns the export it made
    /// (the caller compares subject and case).
    pub async fn insert_export(
        &self,
        x: NewExport,
        now: Timestamp,
    ) -> Result<ExportRow, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let earlier = sqlx::query(sql!("SELECT {COLS} FROM exports WHERE idem_key = $1"))
                        .bind(x.idem_key.clone())
                        .fetch_optional(ctx.conn().await?)
                        .await
                        .map_err(db("read export"))?;
                    if let Some(r) = earlier {
                        return row_of(&r);
                    }
                    // Checked in the same transaction as the insert: once an
                    // erasure has started, its shred job deletes every open
                    // export of the subject, so none may start after it.
                    let erasing: Option<String> = sqlx::query_scalar("SELECT state FROM cases WHERE subject_pseudonym = $1 AND state IN ('erasing', 'erased') LIMIT 1")
                        .bind(x.subject_ref.clone())
                        .fetch_optional(ctx.conn().await?)
                        .await
                        .map_err(db("read cases of subject"))?;
                    if let Some(state) = erasing {
                        return Err(StoreError::Refused(format!("the account's erasure has started (a case is {state}); no copy can be made any more")));
                    }
                    sqlx::query("INSERT INTO exports (id, subject_id, subject_ref, case_id, principal, requested_by, state, progress, single_use, idem_key, key_sealed, max_attempts, run_at, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, 'queued', '[]', $7, $8, $9, $10, $11, $12, $13)")
                        .bind(x.id.clone())
                        .bind(x.subject_id.clone())
                        .bind(x.subject_ref.clone())
                        .bind(x.case_id.clone())
                        .bind(x.principal.clone())
                        .bind(x.requested_by.clone())
                        .bind(i64::from(x.single_use))
                        .bind(x.idem_key.clone())
                        .bind(x.key_sealed.clone())
                        .bind(i64::from(x.max_attempts))
                        // Leases and retries run on wall-clock time.
                        .bind(ms(crate::now_wall()))
                        .bind(ms(now))
                        .bind(ms(x.expires_at))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("store export"))?;
                    let mut detail = serde_json::json!({
                        "single_use": x.single_use,
                        "expires_at": x.expires_at.to_string(),
                    });
                    if let (Some(c), Some(m)) = (&x.case_id, detail.as_object_mut()) {
                        m.insert("case_id".into(), c.clone().into());
                    }
                    append_event(ctx, &x.id, &x.subject_ref, "export.requested", None, ExportState::Queued.as_str(), &x.requested_by, detail, now).await?;
                    load(ctx, &x.id).await?.ok_or_else(|| StoreError::Corrupt("export row vanished".into()))
                })
            })
            .await
    }

    pub async fn export(&self, id: &str) -> Result<Option<ExportRow>, StoreError> {
        sqlx::query(sql!("SELECT {COLS} FROM exports WHERE id = $1"))
            .bind(id.to_owned())
            .fetch_optional(&self.read)
            .await
            .map_err(db("read export"))?
            .as_ref()
            .map(row_of)
            .transpose()
    }

    /// Exports matching `filter` (a constant condition with one text
    /// parameter, `$1`).
    async fn exports_where(
        &self,
        filter: &'static str,
        arg: String,
    ) -> Result<Vec<ExportRow>, StoreError> {
        sqlx::query(sql!("SELECT {COLS} FROM exports WHERE {filter}"))
            .bind(arg)
            .fetch_all(&self.read)
            .await
            .map_err(db("read exports"))?
            .iter()
            .map(row_of)
            .collect()
    }

    /// The exports of a case, newest first (at most 20).
    pub async fn exports_for_case(&self, case_id: &str) -> Result<Vec<ExportRow>, StoreError> {
        self.exports_where(
            "case_id = $1 ORDER BY created_at DESC, id LIMIT 20",
            case_id.to_owned(),
        )
        .await
    }

    /// Exports of a subject (by pseudonym) that are not over.
    pub async fn open_exports_of(&self, subject_ref: &str) -> Result<Vec<ExportRow>, StoreError> {
        self.exports_where(
            "subject_ref = $1 AND state IN ('queued', 'building', 'ready', 'downloading') LIMIT 100",
            subject_ref.to_owned(),
        )
        .await
    }

    /// Takes the oldest queued export, or one whose builder's lease ran out
    /// (the builder died: the export is rebuilt from the start). Leases are
    /// wall-clock time.
    pub async fn claim_export(
        &self,
        wall: Timestamp,
        lease: jiff::SignedDuration,
    ) -> Result<Option<ExportRow>, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let until = wall.checked_add(lease).unwrap_or(wall);
                    let r = sqlx::query(sql!(
                        "UPDATE exports SET state = 'building', lease_until = $1, attempts = attempts + 1, progress = '[]'
                         WHERE id = (SELECT id FROM exports WHERE (state = 'queued' AND run_at <= $2) OR (state = 'building' AND lease_until <= $2) ORDER BY run_at, id LIMIT 1 {})
                         RETURNING {COLS}",
                        ctx.skip_locked()
                    ))
                    .bind(ms(until))
                    .bind(ms(wall))
                    .fetch_optional(ctx.conn().await?)
                    .await
                    .map_err(db("claim export"))?;
                    r.as_ref().map(row_of).transpose()
                })
            })
            .await
    }

    /// Records progress and extends the builder's lease. False when the
    /// export is no longer being built (deleted meanwhile): stop.
    pub async fn export_progress(
        &self,
        id: &str,
        progress: Vec<SystemProgress>,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    Ok(sqlx::query("UPDATE exports SET progress = $1, lease_until = $2 WHERE id = $3 AND state = 'building'")
                        .bind(progress_text(&progress))
                        .bind(ms(lease_until))
                        .bind(id.clone())
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("record export progress"))?
                        .rows_affected()
                        == 1)
                })
            })
            .await
    }

    /// The archive is sealed on disk: the link works. False when the
    /// export was deleted or expired meanwhile (the caller removes the file).
    pub async fn export_ready(
        &self,
        id: &str,
        progress: Vec<SystemProgress>,
        bytes: u64,
        summary: serde_json::Value,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let Some(e) = load(ctx, &id).await? else { return Ok(false) };
                    if e.state != ExportState::Building || e.expires_at <= now {
                        return Ok(false);
                    }
                    sqlx::query("UPDATE exports SET state = 'ready', progress = $1, bytes = $2, summary = $3, ready_at = $4, lease_until = NULL, last_error = NULL WHERE id = $5 AND state = 'building'")
                        .bind(progress_text(&progress))
                        .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
                        .bind(summary.to_string())
                        .bind(ms(now))
                        .bind(id.clone())
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("mark export ready"))?;
                    event(ctx, &e, "export.ready", ExportState::Ready, "worker", summary, now).await?;
                    // A copy an agent asked for goes to the user, not the
                    // agent: the platform is told it is ready and gives the
                    // user the link (GET /v1/exports/{id} with its key).
                    if e.requested_by.starts_with("agent:") {
                        let payload = serde_json::json!({
                            "export_id": e.id,
                            "case_id": e.case_id,
                            "subject_id": e.subject_id,
                            "requested_by": "agent",
                        });
                        crate::tx::insert_notification_for(ctx, lethe_domain::notice::EXPORT_READY, e.case_id.as_deref(), Some(&e.principal), &payload, now).await?;
                    }
                    Ok(true)
                })
            })
            .await
    }

    /// A build failed: queued again after `retry_at`, or failed for good
    /// after its last attempt.
    pub async fn export_failed(
        &self,
        id: &str,
        error: String,
        retry_at: Timestamp,
        now: Timestamp,
    ) -> Result<ExportState, StoreError> {
        let id = id.to_owned();
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let Some(e) = load(ctx, &id).await? else { return Ok(ExportState::Deleted) };
                    if e.state != ExportState::Building {
                        return Ok(e.state);
                    }
                    if e.attempts < e.max_attempts {
                        sqlx::query("UPDATE exports SET state = 'queued', run_at = $1, lease_until = NULL, last_error = $2 WHERE id = $3 AND state = 'building'")
                            .bind(ms(retry_at))
                            .bind(error.clone())
                            .bind(id.clone())
                            .execute(ctx.conn().await?)
                            .await
                            .map_err(db("requeue export"))?;
                        return Ok(ExportState::Queued);
                    }
                    sqlx::query("UPDATE exports SET last_error = $1 WHERE id = $2")
                        .bind(error.clone())
                        .bind(id.clone())
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("record export error"))?;
                    close(ctx, &e, ExportState::Failed, "export.failed", "worker", serde_json::json!({ "attempts": e.attempts }), now).await?;
                    Ok(ExportState::Failed)
                })
            })
            .await
    }

    /// Starts a download through the link (the caller has checked the
    /// token): a single-use link is taken (`downloading`), so a second
    /// request is refused. None when the link cannot be used now.
    pub async fn begin_download(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<ExportRow>, StoreError> {
        let id = id.to_owned();
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let Some(e) = load(ctx, &id).await? else { return Ok(None) };
                    if e.state != ExportState::Ready || e.expires_at <= now {
                        return Ok(None);
                    }
                    if e.single_use {
                        sqlx::query("UPDATE exports SET state = 'downloading' WHERE id = $1 AND state = 'ready'")
                            .bind(id.clone())
                            .execute(ctx.conn().await?)
                            .await
                            .map_err(db("take export link"))?;
                    }
                    Ok(Some(e))
                })
            })
            .await
    }

    /// The whole archive went out: a single-use export is over; an expiring
    /// one counts the download. Recorded in the audit log either way.
    pub async fn finish_download(&self, id: &str, now: Timestamp) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let Some(e) = load(ctx, &id).await? else {
                        return Ok(());
                    };
                    sqlx::query("UPDATE exports SET downloads = downloads + 1 WHERE id = $1")
                        .bind(id.clone())
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("count download"))?;
                    let detail = serde_json::json!({ "download": e.downloads + 1 });
                    match e.state {
                        ExportState::Downloading => {
                            close(
                                ctx,
                                &e,
                                ExportState::Downloaded,
                                "export.downloaded",
                                "link",
                                detail,
                                now,
                            )
                            .await?;
                        }
                        ExportState::Ready => {
                            event(ctx, &e, "export.downloaded", e.state, "link", detail, now)
                                .await?;
                        }
                        _ => {}
                    }
                    Ok(())
                })
            })
            .await
    }

    /// A single-use download broke off: the link works again.
    pub async fn release_download(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("UPDATE exports SET state = 'ready' WHERE id = $1 AND state = 'downloading'")
                        .bind(id.clone())
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("release export link"))?;
                    Ok(())
                })
            })
            .await
    }

    /// Deletes an export that is not over (at the user's request, or
    /// before the subject's erasure). True when this call ended it.
    pub async fn delete_export(
        &self,
        id: &str,
        actor: String,
        reason: &'static str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let Some(e) = load(ctx, &id).await? else {
                        return Ok(false);
                    };
                    close(
                        ctx,
                        &e,
                        ExportState::Deleted,
                        "export.deleted",
                        &actor,
                        serde_json::json!({ "reason": reason }),
                        now,
                    )
                    .await
                })
            })
            .await
    }

    /// Ends every export whose link expired (at most `limit`); returns how
    /// many.
    pub async fn expire_exports(&self, now: Timestamp, limit: u32) -> Result<usize, StoreError> {
        // The purge tick calls this on every instance: look first.
        let sql = "SELECT 1 FROM exports WHERE expires_at <= $1 AND state IN ('queued', 'building', 'ready', 'downloading') LIMIT 1";
        if !self.any_due(sql, now, "read expired exports").await? {
            return Ok(0);
        }
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let rows = sqlx::query(sql!(
                        "SELECT {COLS} FROM exports WHERE expires_at <= $1 AND state IN ('queued', 'building', 'ready', 'downloading') ORDER BY expires_at LIMIT $2"
                    ))
                    .bind(ms(now))
                    .bind(i64::from(limit))
                    .fetch_all(ctx.conn().await?)
                    .await
                    .map_err(db("read expired exports"))?;
                    let mut n = 0;
                    for r in &rows {
                        let e = row_of(r)?;
                        if close(ctx, &e, ExportState::Expired, "export.expired", "worker", serde_json::json!({}), now).await? {
                            n += 1;
                        }
                    }
                    Ok(n)
                })
            })
            .await
    }

    /// Exports that are over but whose file or key may still exist.
    pub async fn exports_to_clean(&self, limit: u32) -> Result<Vec<ExportRow>, StoreError> {
        sqlx::query(sql!(
            "SELECT {COLS} FROM exports WHERE state IN ('downloaded', 'expired', 'deleted', 'failed') AND cleaned_at IS NULL ORDER BY closed_at LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db("read exports to clean"))?
        .iter()
        .map(row_of)
        .collect()
    }

    /// The file and the vault key of an export that is over are gone.
    pub async fn export_cleaned(&self, id: &str, now: Timestamp) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("UPDATE exports SET key_sealed = NULL, cleaned_at = $1 WHERE id = $2 AND cleaned_at IS NULL")
                        .bind(ms(now))
                        .bind(id.clone())
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("mark export cleaned"))?;
                    Ok(())
                })
            })
            .await
    }
}
