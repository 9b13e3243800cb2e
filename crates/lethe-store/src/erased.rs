//! Erased-subject tombstones and the runs that erase again what a backup
//! restore brought back.
//!
//! When a system's erasure of a case is recorded, the same transaction
//! keeps `(system, keyed pseudonym of the subject id, case, platform,
//! erasure time)`. The raw id is never kept: reapply reads the restored
//! system's ids, computes their pseudonyms and asks which are tombstoned.

use jiff::Timestamp;
use sqlx::Row;

use crate::{Store, StoreError, WriteCtx, db, from_ms, ms};

/// Pseudonyms matched per query (inlined as literals after checking they
/// are hexadecimal, so no bind limit applies).
pub const MATCH_CHUNK: usize = 5_000;

/// One tombstoned subject found again: its pseudonym and the case that
/// erased it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasedMatch {
    pub subject_hash: String,
    pub case_id: String,
    pub erased_at: Timestamp,
}

/// A reapply run: `running`, `done` (with its signed report) or `failed`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReapplyRun {
    pub id: String,
    pub system: String,
    pub since: Timestamp,
    pub dry_run: bool,
    pub state: String,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// The signed report (JSON), once done.
    pub report: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Keeps the tombstone of a case's subject for one system (inside the
/// transaction that records the system's erasure).
pub(crate) async fn keep_tombstone(
    ctx: &mut WriteCtx,
    case_id: &str,
    system: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO erased_subjects (system, subject_hash, case_id, principal, erased_at)
         SELECT $1, subject_pseudonym, id, principal, $2 FROM cases WHERE id = $3
         ON CONFLICT (system, subject_hash) DO UPDATE SET case_id = excluded.case_id,
           principal = excluded.principal, erased_at = excluded.erased_at",
    )
    .bind(system.to_owned())
    .bind(ms(now))
    .bind(case_id.to_owned())
    .execute(ctx.conn().await?)
    .await
    .map_err(db("keep the erased subject's tombstone"))?;
    Ok(())
}

impl Store {
    /// Of these pseudonyms, those tombstoned in `system` by an erasure at
    /// or after `since` (with `platform`, only that platform's cases).
    /// Any number of pseudonyms; queried [`MATCH_CHUNK`] at a time.
    pub async fn erased_matches(
        &self,
        system: &str,
        since: Timestamp,
        platform: Option<&str>,
        hashes: &[String],
    ) -> Result<Vec<ErasedMatch>, StoreError> {
        let mut out = vec![];
        for chunk in hashes.chunks(MATCH_CHUNK) {
            let Some(list) = crate::hex_literals(chunk) else {
                continue;
            };
            let sql = format!(
                "SELECT subject_hash, case_id, erased_at FROM erased_subjects
                 WHERE system = $1 AND erased_at >= $2 AND ($3 IS NULL OR principal = $3)
                   AND subject_hash IN ({list})"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(system.to_owned())
                .bind(ms(since))
                .bind(platform.map(str::to_owned))
                .fetch_all(&self.read)
                .await
                .map_err(db("match erased subjects"))?;
            out.extend(rows.iter().map(|r| ErasedMatch {
                subject_hash: r.get(0),
                case_id: r.get(1),
                erased_at: from_ms(r.get(2)),
            }));
        }
        Ok(out)
    }

    /// How many subjects are tombstoned in `system` since `since`.
    pub async fn erased_count(
        &self,
        system: &str,
        since: Timestamp,
        platform: Option<&str>,
    ) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM erased_subjects WHERE system = $1 AND erased_at >= $2 AND ($3 IS NULL OR principal = $3)",
        )
        .bind(system.to_owned())
        .bind(ms(since))
        .bind(platform.map(str::to_owned))
        .fetch_one(&self.read)
        .await
        .map_err(db("count erased subjects"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Runs left `running` since before `before` (their instance stopped):
    /// failed, with the reason. Returns how many.
    pub async fn fail_stale_reapply(&self, before: Timestamp) -> Result<u64, StoreError> {
        let sql = "SELECT 1 FROM reapply_runs WHERE state = 'running' AND created_at < $1 LIMIT 1";
        if !self
            .any_due(sql, before, "find interrupted reapply runs")
            .await?
        {
            return Ok(0);
        }
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    Ok(sqlx::query("UPDATE reapply_runs SET state = 'failed', error = 'interrupted: the instance running it stopped; run it again' WHERE state = 'running' AND created_at < $1")
                        .bind(ms(before))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("close interrupted reapply runs"))?
                        .rows_affected())
                })
            })
            .await
    }

    /// Opens a reapply run (`running`); refused while another run of the
    /// same system is running.
    pub async fn open_reapply(
        &self,
        id: String,
        system: String,
        platform: Option<String>,
        since: Timestamp,
        dry_run: bool,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let busy: Option<String> = sqlx::query_scalar(
                        "SELECT id FROM reapply_runs WHERE system = $1 AND state = 'running' LIMIT 1",
                    )
                    .bind(system.clone())
                    .fetch_optional(ctx.conn().await?)
                    .await
                    .map_err(db("look for a running reapply"))?;
                    if busy.is_some() {
                        return Err(StoreError::Refused(format!(
                            "a reapply run of {system} is running: wait for it to end (GET /v1/reapply-runs or lethe erasures runs)"
                        )));
                    }
                    sqlx::query("INSERT INTO reapply_runs (id, system, principal, since_at, dry_run, state, created_at) VALUES ($1, $2, $3, $4, $5, 'running', $6)")
                        .bind(id)
                        .bind(system)
                        .bind(platform)
                        .bind(ms(since))
                        .bind(i64::from(dry_run))
                        .bind(ms(now))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("open the reapply run"))?;
                    Ok(())
                })
            })
            .await
    }

    /// Closes a reapply run. Done: its signed report, and (unless a dry
    /// run) one audit event with its counts, in the same transaction.
    /// Failed: the reason.
    pub async fn close_reapply(
        &self,
        id: String,
        outcome: Result<serde_json::Value, String>,
        event: Option<serde_json::Value>,
        actor: String,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let (state, report, error) = match outcome {
                        Ok(report) => ("done", Some(report.to_string()), None),
                        Err(e) => ("failed", None, Some(e)),
                    };
                    sqlx::query("UPDATE reapply_runs SET state = $2, finished_at = $3, report = $4, error = $5 WHERE id = $1")
                        .bind(id.clone())
                        .bind(state)
                        .bind(ms(now))
                        .bind(report)
                        .bind(error)
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("close the reapply run"))?;
                    if let Some(detail) = event {
                        crate::log::append_event(
                            ctx,
                            &id,
                            "",
                            "erasure.reapplied",
                            None,
                            state,
                            &actor,
                            detail,
                            now,
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Reapply runs, newest first (with `platform`, only its own).
    pub async fn reapply_runs(
        &self,
        platform: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ReapplyRun>, StoreError> {
        let rows = sqlx::query("SELECT id, system, since_at, dry_run, state, created_at, finished_at, report, error FROM reapply_runs WHERE ($1 IS NULL OR principal = $1) ORDER BY created_at DESC, id LIMIT $2")
            .bind(platform.map(str::to_owned))
            .bind(i64::from(limit.min(1000)))
            .fetch_all(&self.read)
            .await
            .map_err(db("read reapply runs"))?;
        Ok(rows.iter().map(run_row).collect())
    }

    /// One reapply run (with `platform`, only its own).
    pub async fn reapply_run(
        &self,
        id: &str,
        platform: Option<&str>,
    ) -> Result<Option<ReapplyRun>, StoreError> {
        let row = sqlx::query("SELECT id, system, since_at, dry_run, state, created_at, finished_at, report, error FROM reapply_runs WHERE id = $1 AND ($2 IS NULL OR principal = $2)")
            .bind(id.to_owned())
            .bind(platform.map(str::to_owned))
            .fetch_optional(&self.read)
            .await
            .map_err(db("read the reapply run"))?;
        Ok(row.as_ref().map(run_row))
    }
}

fn run_row(r: &sqlx::any::AnyRow) -> ReapplyRun {
    ReapplyRun {
        id: r.get(0),
        system: r.get(1),
        since: from_ms(r.get(2)),
        dry_run: r.get::<i64, _>(3) != 0,
        state: r.get(4),
        created_at: from_ms(r.get(5)),
        finished_at: r.get::<Option<i64>, _>(6).map(from_ms),
        report: r
            .get::<Option<String>, _>(7)
            .and_then(|t| serde_json::from_str(&t).ok()),
        error: r.get(8),
    }
}
