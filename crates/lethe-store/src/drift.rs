//! Schema drift: the findings of the scheduled data-map check, their
//! states (open, accepted, gone) and the claim that lets one instance run
//! a due check.

use jiff::{SignedDuration, Timestamp};
use sha2::Digest;
use sqlx::Row;

use crate::{Store, StoreError, db, from_ms, ms};

/// The schedule name of the data-map check.
pub const DATAMAP_CHECK: &str = "datamap";

/// The notification sent when a check finds something new.
pub const DRIFT_NOTICE: &str = lethe_domain::notice::DATAMAP_DRIFT;

/// A finding as the check reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFinding {
    pub system: String,
    pub kind: String,
    pub at: String,
    pub severity: String,
    /// Erasure in the system would fail on it.
    pub breaking: bool,
    pub message: String,
    pub fix: String,
}

impl NewFinding {
    /// Stable across checks: the same system, kind and place.
    pub fn id(&self) -> String {
        let mut h = sha2::Sha256::new();
        h.update(self.system.as_bytes());
        h.update(b"\n");
        h.update(self.kind.as_bytes());
        h.update(b"\n");
        h.update(self.at.as_bytes());
        hex::encode(&h.finalize()[..12])
    }
}

/// A stored finding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DriftFinding {
    pub id: String,
    pub system: String,
    pub kind: String,
    pub at: String,
    pub severity: String,
    pub breaking: bool,
    pub message: String,
    pub fix: String,
    /// open, accepted or gone.
    pub state: String,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub accepted_by: Option<String>,
    pub accepted_reason: Option<String>,
    pub accepted_at: Option<Timestamp>,
}

const COLS: &str = "id, system, kind, at, severity, breaking, message, fix, state, first_seen, last_seen, accepted_by, accepted_reason, accepted_at";

/// Notes how scheduled work's last run ended (None: well).
async fn set_schedule_error(
    ctx: &mut crate::WriteCtx,
    name: &str,
    error: Option<String>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE schedules SET last_error = $1 WHERE name = $2")
        .bind(error)
        .bind(name.to_owned())
        .execute(ctx.conn().await?)
        .await
        .map_err(db("record scheduled work"))?;
    Ok(())
}

fn row(r: &sqlx::any::AnyRow) -> DriftFinding {
    DriftFinding {
        id: r.get(0),
        system: r.get(1),
        kind: r.get(2),
        at: r.get(3),
        severity: r.get(4),
        breaking: r.get::<i64, _>(5) != 0,
        message: r.get(6),
        fix: r.get(7),
        state: r.get(8),
        first_seen: from_ms(r.get(9)),
        last_seen: from_ms(r.get(10)),
        accepted_by: r.get(11),
        accepted_reason: r.get(12),
        accepted_at: r.get::<Option<i64>, _>(13).map(from_ms),
    }
}

impl Store {
    /// Whether the scheduled data-map check is due (`interval` since the
    /// last run of any instance); claims it if so, so one instance runs it.
    pub async fn claim_drift_check(
        &self,
        now: Timestamp,
        interval: SignedDuration,
    ) -> Result<bool, StoreError> {
        self.claim_schedule(DATAMAP_CHECK.into(), now, interval, true)
            .await
    }

    /// Claims a run of scheduled work `name` when `interval` has passed
    /// since its last run (of any instance): true for the one caller that
    /// should run it. Never run before: `first` says whether to run now, or
    /// to start counting from now.
    pub async fn claim_schedule(
        &self,
        name: String,
        now: Timestamp,
        interval: SignedDuration,
        first: bool,
    ) -> Result<bool, StoreError> {
        let due = now.checked_sub(interval).unwrap_or(now);
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let n = sqlx::query("INSERT INTO schedules (name, last_run_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                        .bind(name.clone())
                        .bind(ms(now))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("claim scheduled work"))?
                        .rows_affected();
                    if n == 1 {
                        return Ok(first);
                    }
                    let n = sqlx::query("UPDATE schedules SET last_run_at = $1 WHERE name = $2 AND last_run_at <= $3")
                        .bind(ms(now))
                        .bind(name)
                        .bind(ms(due))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("claim scheduled work"))?
                        .rows_affected();
                    Ok(n == 1)
                })
            })
            .await
    }

    /// When scheduled work last ran, and its error if it failed.
    pub async fn schedule_state(
        &self,
        name: &str,
    ) -> Result<Option<(Timestamp, Option<String>)>, StoreError> {
        let r = sqlx::query("SELECT last_run_at, last_error FROM schedules WHERE name = $1")
            .bind(name.to_owned())
            .fetch_optional(&self.read)
            .await
            .map_err(db("read scheduled work"))?;
        Ok(r.map(|r| (from_ms(r.get(0)), r.get(1))))
    }

    /// Whether scheduled work `name` is due: never run, or `every` has
    /// passed since its last run (a read; `claim_schedule` takes it).
    pub async fn schedule_due(
        &self,
        name: &str,
        now: Timestamp,
        every: SignedDuration,
    ) -> Result<bool, StoreError> {
        Ok(match self.schedule_state(name).await? {
            Some((last, _)) => last.checked_add(every).is_ok_and(|t| t <= now),
            None => true,
        })
    }

    /// Notes how scheduled work's last run ended (None: well).
    pub async fn schedule_error(
        &self,
        name: String,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| Box::pin(async move { set_schedule_error(ctx, &name, error).await }))
            .await
    }

    /// Records a check's findings for the systems it checked: new ones
    /// (and ones back after they had gone) open; ones no longer found go;
    /// accepted ones stay accepted. Queues one `datamap.drift` notification
    /// per live platform when something opened. Returns what opened.
    pub async fn record_drift(
        &self,
        checked: Vec<String>,
        found: Vec<NewFinding>,
        error: Option<String>,
        now: Timestamp,
    ) -> Result<Vec<DriftFinding>, StoreError> {
        let platforms = self.live_platforms().await?;
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    set_schedule_error(ctx, DATAMAP_CHECK, error).await?;
                    let mut opened = vec![];
                    let mut ids = std::collections::BTreeSet::new();
                    for f in &found {
                        let id = f.id();
                        ids.insert(id.clone());
                        let state: Option<String> =
                            sqlx::query_scalar("SELECT state FROM drift_findings WHERE id = $1")
                                .bind(id.clone())
                                .fetch_optional(ctx.conn().await?)
                                .await
                                .map_err(db("read a drift finding"))?;
                        let sql = match state.as_deref() {
                            None => "INSERT INTO drift_findings (id, system, kind, at, severity, breaking, message, fix, state, first_seen, last_seen) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', $9, $9)",
                            Some("gone") => "UPDATE drift_findings SET system = $2, kind = $3, at = $4, severity = $5, breaking = $6, message = $7, fix = $8, state = 'open', first_seen = $9, last_seen = $9, accepted_by = NULL, accepted_reason = NULL, accepted_at = NULL WHERE id = $1",
                            Some(_) => "UPDATE drift_findings SET system = $2, kind = $3, at = $4, severity = $5, breaking = $6, message = $7, fix = $8, last_seen = $9 WHERE id = $1",
                        };
                        sqlx::query(sql)
                            .bind(id.clone())
                            .bind(f.system.clone())
                            .bind(f.kind.clone())
                            .bind(f.at.clone())
                            .bind(f.severity.clone())
                            .bind(i64::from(f.breaking))
                            .bind(f.message.clone())
                            .bind(f.fix.clone())
                            .bind(ms(now))
                            .execute(ctx.conn().await?)
                            .await
                            .map_err(db("record a drift finding"))?;
                        if matches!(state.as_deref(), None | Some("gone")) {
                            opened.push(id);
                        }
                    }
                    // What the check no longer finds in the systems it checked.
                    for system in &checked {
                        let live: Vec<String> = sqlx::query_scalar(
                            "SELECT id FROM drift_findings WHERE system = $1 AND state <> 'gone'",
                        )
                        .bind(system.clone())
                        .fetch_all(ctx.conn().await?)
                        .await
                        .map_err(db("read drift findings"))?;
                        for id in live.into_iter().filter(|i| !ids.contains(i)) {
                            sqlx::query("UPDATE drift_findings SET state = 'gone' WHERE id = $1")
                                .bind(id)
                                .execute(ctx.conn().await?)
                                .await
                                .map_err(db("clear a drift finding"))?;
                        }
                    }
                    let mut out = vec![];
                    for id in opened {
                        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "SELECT {COLS} FROM drift_findings WHERE id = $1"
                        )))
                        .bind(id)
                        .fetch_one(ctx.conn().await?)
                        .await
                        .map_err(db("read a drift finding"))?;
                        out.push(row(&r));
                    }
                    if !out.is_empty() {
                        let payload = serde_json::json!({
                            "findings": out.iter().map(|f| serde_json::json!({
                                "id": f.id,
                                "system": f.system,
                                "kind": f.kind,
                                "at": f.at,
                                "severity": f.severity,
                                "breaking": f.breaking,
                                "message": f.message,
                                "fix": f.fix,
                            })).collect::<Vec<_>>(),
                        });
                        for p in &platforms {
                            crate::tx::insert_notification_for(
                                ctx,
                                DRIFT_NOTICE,
                                None,
                                Some(p),
                                &payload,
                                now,
                            )
                            .await?;
                        }
                    }
                    Ok(out)
                })
            })
            .await
    }

    /// One finding by id.
    pub async fn drift_finding(&self, id: &str) -> Result<Option<DriftFinding>, StoreError> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM drift_findings WHERE id = $1"
        )))
        .bind(id.to_owned())
        .fetch_optional(&self.read)
        .await
        .map_err(db("read a drift finding"))?;
        Ok(r.as_ref().map(row))
    }

    /// Open findings per (system, breaking), for the metric.
    pub async fn drift_counts(&self) -> Result<Vec<(String, bool, u64)>, StoreError> {
        let rows = sqlx::query("SELECT system, breaking, COUNT(*) FROM drift_findings WHERE state = 'open' GROUP BY system, breaking ORDER BY system, breaking")
            .fetch_all(&self.read)
            .await
            .map_err(db("count drift findings"))?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get::<i64, _>(1) != 0,
                    u64::try_from(r.get::<i64, _>(2)).unwrap_or(0),
                )
            })
            .collect())
    }

    /// Findings in a state (`open`, `accepted`, `gone`), or all not gone
    /// (at most 500, breaking ones first).
    pub async fn drift_findings(
        &self,
        state: Option<&str>,
    ) -> Result<Vec<DriftFinding>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM drift_findings WHERE ($1 IS NULL AND state <> 'gone') OR state = $1 ORDER BY breaking DESC, system, kind, at LIMIT 500"
        )))
        .bind(state.map(str::to_owned))
        .fetch_all(&self.read)
        .await
        .map_err(db("read drift findings"))?;
        Ok(rows.iter().map(row).collect())
    }

    /// When the scheduled data-map check last ran, and its error if it
    /// failed.
    pub async fn drift_check_state(
        &self,
    ) -> Result<Option<(Timestamp, Option<String>)>, StoreError> {
        self.schedule_state(DATAMAP_CHECK).await
    }

    /// Accepts an open finding (declared not personal data, or dealt with
    /// otherwise) with a reason; audited in the same transaction. None when
    /// no open finding has this id.
    pub async fn accept_drift(
        &self,
        id: String,
        actor: String,
        reason: String,
        now: Timestamp,
    ) -> Result<Option<DriftFinding>, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let n = sqlx::query("UPDATE drift_findings SET state = 'accepted', accepted_by = $2, accepted_reason = $3, accepted_at = $4 WHERE id = $1 AND state = 'open'")
                        .bind(id.clone())
                        .bind(actor.clone())
                        .bind(reason.clone())
                        .bind(ms(now))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("accept a drift finding"))?
                        .rows_affected();
                    if n == 0 {
                        return Ok(None);
                    }
                    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {COLS} FROM drift_findings WHERE id = $1"
                    )))
                    .bind(id.clone())
                    .fetch_one(ctx.conn().await?)
                    .await
                    .map_err(db("read a drift finding"))?;
                    let f = row(&r);
                    crate::log::append_event(
                        ctx,
                        &format!("drift-{id}"),
                        "",
                        "datamap.finding_accepted",
                        Some("open"),
                        "accepted",
                        &actor,
                        serde_json::json!({
                            "system": f.system,
                            "kind": f.kind,
                            "at": f.at,
                            "reason": reason,
                        }),
                        now,
                    )
                    .await?;
                    Ok(Some(f))
                })
            })
            .await
    }
}
