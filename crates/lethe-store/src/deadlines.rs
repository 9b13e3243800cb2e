//! Deadlines, the notification outbox and identifier tombstones.

use jiff::Timestamp;
use lethe_domain::{Case, CaseId, Change};
use sqlx::Row;

use crate::{
    Store, StoreError, append_audit, db, from_ms, insert_notification, load_case,
    load_case_and_pseudonym, ms, upsert_deadlines,
};

#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadlineRow {
    pub case_id: String,
    pub kind: String,
    pub starts_at: Timestamp,
    pub due_at: Option<Timestamp>,
    pub paused: bool,
    pub met_at: Option<Timestamp>,
    pub problem: Option<String>,
    /// Computed over days the calendar does not cover yet.
    pub provisional: bool,
    pub warned_at: Option<Timestamp>,
    pub escalated_at: Option<Timestamp>,
    pub case_state: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct NotificationRow {
    pub id: i64,
    pub kind: String,
    pub case_id: Option<String>,
    pub payload: serde_json::Value,
    pub created_at: Timestamp,
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// A deadline that crossed its warning point or its due time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub case_id: CaseId,
    pub kind: String,
    pub overdue: bool,
}

fn row_deadline(r: &crate::DbRow) -> DeadlineRow {
    DeadlineRow {
        case_id: r.get(0),
        kind: r.get(1),
        starts_at: from_ms(r.get(2)),
        due_at: r.get::<Option<i64>, _>(3).map(from_ms),
        paused: r.get::<i64, _>(4) != 0,
        met_at: r.get::<Option<i64>, _>(5).map(from_ms),
        problem: r.get(6),
        warned_at: r.get::<Option<i64>, _>(7).map(from_ms),
        escalated_at: r.get::<Option<i64>, _>(8).map(from_ms),
        case_state: r.get(9),
        provisional: r.get::<i64, _>(10) != 0,
    }
}

const DEADLINE_COLS: &str = "d.case_id, d.kind, d.starts_at, d.due_at, d.paused, d.met_at, d.problem, d.warned_at, d.escalated_at, c.state, d.provisional";

fn row_notification(r: &crate::DbRow) -> NotificationRow {
    NotificationRow {
        id: r.get(0),
        kind: r.get(1),
        case_id: r.get(2),
        payload: serde_json::from_str(&r.get::<String, _>(3)).unwrap_or(serde_json::Value::Null),
        created_at: from_ms(r.get(4)),
        state: r.get(5),
        attempts: u32::try_from(r.get::<i64, _>(6)).unwrap_or(0),
        last_error: r.get(7),
    }
}

impl Store {
    pub async fn deadlines_for_case(&self, id: CaseId) -> Result<Vec<DeadlineRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {DEADLINE_COLS} FROM deadlines d JOIN cases c ON c.id = d.case_id WHERE d.case_id = $1 ORDER BY d.starts_at, d.kind")))
            .bind(id.to_string())
            .fetch_all(&self.read)
            .await
            .map_err(db("read deadlines"))?;
        Ok(rows.iter().map(row_deadline).collect())
    }

    /// The console's overdue queue: open deadlines past due, oldest first.
    /// Only the cases of `platform` when it is given.
    pub async fn overdue(
        &self,
        now: Timestamp,
        limit: u32,
        platform: Option<&str>,
    ) -> Result<Vec<DeadlineRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEADLINE_COLS} FROM deadlines d JOIN cases c ON c.id = d.case_id WHERE d.met_at IS NULL AND d.due_at IS NOT NULL AND d.due_at < $1 AND ($3 IS NULL OR c.principal = $3) ORDER BY d.due_at LIMIT $2"
        )))
        .bind(ms(now))
        .bind(i64::from(limit))
        .bind(platform.map(str::to_owned))
        .fetch_all(&self.read)
        .await
        .map_err(db("read overdue deadlines"))?;
        Ok(rows.iter().map(row_deadline).collect())
    }

    /// Deadlines that cannot be computed (a year the calendar lacks).
    pub async fn deadline_problems(&self, limit: u32) -> Result<Vec<DeadlineRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {DEADLINE_COLS} FROM deadlines d JOIN cases c ON c.id = d.case_id WHERE d.met_at IS NULL AND d.problem IS NOT NULL AND d.provisional = 0 LIMIT $1")))
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(db("read deadlines"))?;
        Ok(rows.iter().map(row_deadline).collect())
    }

    /// Warns at 80 % and escalates past due, once each: the flag, the
    /// notification and an audit event in one transaction. Deadlines are
    /// data, so a deadline that passed while the process was down is
    /// escalated on the first call after start-up.
    pub async fn deadline_alerts(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Alert>, StoreError> {
        // The timer calls this every tick: look first, write only when
        // there is an alert to raise.
        let sql = "SELECT 1 FROM deadlines WHERE met_at IS NULL AND due_at IS NOT NULL
               AND ((due_at <= $1 AND escalated_at IS NULL) OR (warn_at <= $1 AND warned_at IS NULL AND due_at > $1)) LIMIT 1";
        if !self.any_due(sql, now, "look for deadline alerts").await? {
            return Ok(vec![]);
        }
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    // Read without locking: each alert then locks its case
                    // first and its deadline second, the order every change
                    // of a case takes (so the monitor never waits in a cycle
                    // with one), passing over a case another transaction
                    // holds (the next tick takes it).
                    let due: Vec<(String, String, bool, bool)> = sqlx::query(
                        "SELECT case_id, kind, CASE WHEN due_at <= $1 THEN 1 ELSE 0 END AS overdue, provisional FROM deadlines
                         WHERE met_at IS NULL AND due_at IS NOT NULL
                           AND ((due_at <= $1 AND escalated_at IS NULL) OR (warn_at <= $1 AND warned_at IS NULL AND due_at > $1))
                         ORDER BY due_at LIMIT $2",
                    )
                    .bind(ms(now))
                    .bind(i64::from(limit))
                    .fetch_all(ctx.conn().await?)
                    .await
                    .map_err(db("find deadline alerts"))?
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get::<i64, _>(2) != 0, r.get::<i64, _>(3) != 0))
                    .collect();
                    let mut out = vec![];
                    for (case_id, kind, overdue, provisional) in due {
                        let id = CaseId::parse(&case_id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                        let locked: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                            "SELECT id FROM cases WHERE id = $1 {}",
                            ctx.skip_locked()
                        )))
                        .bind(case_id.clone())
                        .fetch_optional(ctx.conn().await?)
                        .await
                        .map_err(db("lock case"))?;
                        if locked.is_none() {
                            continue;
                        }
                        // Flagged once: another instance may have raised it
                        // since the read above.
                        let sql = if overdue {
                            "UPDATE deadlines SET escalated_at = $1, warned_at = COALESCE(warned_at, $1) WHERE case_id = $2 AND kind = $3 AND met_at IS NULL AND escalated_at IS NULL"
                        } else {
                            "UPDATE deadlines SET warned_at = $1 WHERE case_id = $2 AND kind = $3 AND met_at IS NULL AND warned_at IS NULL"
                        };
                        let flagged = sqlx::query(sql).bind(ms(now)).bind(case_id.clone()).bind(kind.clone()).execute(ctx.conn().await?).await.map_err(db("flag deadline"))?.rows_affected();
                        if flagged == 0 {
                            continue;
                        }
                        let (case, pseudo) = load_case_and_pseudonym(ctx, id).await?;
                        let event = if overdue { lethe_domain::notice::DEADLINE_OVERDUE } else { lethe_domain::notice::DEADLINE_WARNING };
                        // A provisional due date is the earliest possible one
                        // (the calendar does not cover it yet): said so.
                        let payload = serde_json::json!({ "case_id": case_id, "deadline": kind, "state": case.state.as_str(), "provisional": provisional });
                        insert_notification(ctx, event, Some(&case_id), &payload, now).await?;
                        let change = Change { kind: event.into(), from: Some(case.state), to: case.state, at: now, detail: serde_json::json!({ "deadline": kind }) };
                        append_audit(ctx, &case, &pseudo, &change, "monitor").await?;
                        out.push(Alert { case_id: id, kind, overdue });
                    }
                    Ok(out)
                })
            })
            .await
    }

    /// Recomputes the stored deadlines of open cases (after the calendar
    /// changed), `limit` cases after `after` (a case id) at a time. Returns
    /// the last case id handled, or None when done.
    pub async fn recompute_deadlines(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Result<Option<String>, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let Some(f) = ctx.deadlines.clone() else { return Ok(None) };
                    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM cases WHERE state NOT IN ('erased', 'withdrawn', 'rejected') AND id > $1 ORDER BY id LIMIT $2")
                        .bind(after.unwrap_or_default())
                        .bind(i64::from(limit))
                        .fetch_all(ctx.conn().await?)
                        .await
                        .map_err(db("list open cases"))?;
                    for id in &ids {
                        let cid = CaseId::parse(id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                        let case: Case = load_case(ctx, cid).await?;
                        upsert_deadlines(ctx, &case, &f(&case)).await?;
                    }
                    Ok(ids.last().cloned())
                })
            })
            .await
    }

    // --------------------------------------------------------- notifications

    /// Notifications, newest first; with `platform`, only its own (of its
    /// cases, or addressed to it; installation-wide ones only the webhook
    /// delivers).
    pub async fn notifications(
        &self,
        state: Option<String>,
        case: Option<CaseId>,
        platform: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, case_id, payload, created_at, state, attempts, last_error FROM notifications n
             WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR case_id = $2)
               AND ($4 IS NULL OR n.principal = $4
                    OR (n.principal IS NULL AND n.case_id IN (SELECT c.id FROM cases c WHERE c.principal = $4)))
             ORDER BY id DESC LIMIT $3",
        )
        .bind(state)
        .bind(case.map(|c| c.to_string()))
        .bind(i64::from(limit))
        .bind(platform.map(str::to_owned))
        .fetch_all(&self.read)
        .await
        .map_err(db("read notifications"))?;
        Ok(rows.iter().map(row_notification).collect())
    }

    /// Claims up to `limit` pending notifications due for delivery at
    /// `now`, oldest first, for `lease`: their next attempt moves to the end
    /// of the lease, so another instance passes over them, and takes them
    /// over if this one dies before it records the attempt.
    pub async fn notifications_due(
        &self,
        now: Timestamp,
        limit: u32,
        lease: jiff::SignedDuration,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        let sql = "SELECT 1 FROM notifications WHERE state = 'pending' AND next_at <= $1 LIMIT 1";
        if !self.any_due(sql, now, "read notifications").await? {
            return Ok(vec![]);
        }
        let until = now.checked_add(lease).unwrap_or(now);
        let mut rows = self
            .writer
            .run(move |ctx| {
                Box::pin(async move {
                    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE notifications SET next_at = $1 WHERE id IN (SELECT id FROM notifications WHERE state = 'pending' AND next_at <= $2 ORDER BY id LIMIT $3 {})
                         RETURNING id, kind, case_id, payload, created_at, state, attempts, last_error",
                        ctx.skip_locked()
                    )))
                    .bind(ms(until))
                    .bind(ms(now))
                    .bind(i64::from(limit.min(1000)))
                    .fetch_all(ctx.conn().await?)
                    .await
                    .map_err(db("claim notifications"))?;
                    Ok(rows.iter().map(row_notification).collect::<Vec<_>>())
                })
            })
            .await?;
        rows.sort_by_key(|n| n.id);
        Ok(rows)
    }

    /// Records a delivery attempt: delivered, retried at `retry_at`, or dead.
    pub async fn notification_attempt(
        &self,
        id: i64,
        result: Result<(), String>,
        retry_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let now = ms(crate::now_wall());
                    let q = match (&result, retry_at) {
                        (Ok(()), _) => sqlx::query("UPDATE notifications SET state = 'delivered', attempts = attempts + 1, delivered_at = $1, last_error = NULL WHERE id = $2").bind(now).bind(id),
                        (Err(e), Some(at)) => sqlx::query("UPDATE notifications SET attempts = attempts + 1, next_at = $1, last_error = $2 WHERE id = $3").bind(ms(at)).bind(e.clone()).bind(id),
                        (Err(e), None) => sqlx::query("UPDATE notifications SET state = 'dead', attempts = attempts + 1, last_error = $1 WHERE id = $2").bind(e.clone()).bind(id),
                    };
                    q.execute(ctx.conn().await?).await.map_err(db("record delivery"))?;
                    Ok(())
                })
            })
            .await
    }

    /// Queues a notification that belongs to no case change (carrier
    /// events): for the platform that reported it, or (None) for the
    /// installation, which only the webhook delivers.
    pub async fn notify(
        &self,
        kind: &'static str,
        payload: serde_json::Value,
        principal: Option<String>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    crate::tx::insert_notification_for(
                        ctx,
                        kind,
                        None,
                        principal.as_deref(),
                        &payload,
                        now,
                    )
                    .await
                })
            })
            .await
    }

    // ------------------------------------------------------------ tombstones

    /// Stores keyed hashes of an erased account's identifiers with their
    /// expiry (idempotent per case).
    pub async fn put_tombstones(
        &self,
        case_id: CaseId,
        items: Vec<(String, String, Timestamp)>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    for (kind, hash, expires) in items {
                        sqlx::query(
                            "INSERT INTO tombstones (kind, hash, case_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)
                             ON CONFLICT (kind, hash) DO UPDATE SET case_id = excluded.case_id, expires_at = CASE WHEN tombstones.expires_at > excluded.expires_at THEN tombstones.expires_at ELSE excluded.expires_at END, released_at = NULL",
                        )
                        .bind(kind)
                        .bind(hash)
                        .bind(case_id.to_string())
                        .bind(ms(now))
                        .bind(ms(expires))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("store tombstone"))?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// The live tombstone of an identifier hash, if any: its expiry. With
    /// `platform`, only a tombstone left by that platform's case.
    pub async fn tombstone(
        &self,
        kind: &str,
        hash: &str,
        now: Timestamp,
        platform: Option<&str>,
    ) -> Result<Option<Timestamp>, StoreError> {
        let r: Option<i64> = sqlx::query_scalar("SELECT expires_at FROM tombstones WHERE kind = $1 AND hash = $2 AND released_at IS NULL AND expires_at > $3
               AND ($4 IS NULL OR case_id IN (SELECT id FROM cases WHERE principal = $4))")
            .bind(kind.to_owned())
            .bind(hash.to_owned())
            .bind(ms(now))
            .bind(platform.map(str::to_owned))
            .fetch_optional(&self.read)
            .await
            .map_err(db("read tombstone"))?;
        Ok(r.map(from_ms))
    }

    /// Releases a tombstone (a recycled phone number); says whether one was
    /// live. With `platform`, only a tombstone left by that platform's case.
    pub async fn release_tombstone(
        &self,
        kind: String,
        hash: String,
        now: Timestamp,
        platform: Option<String>,
    ) -> Result<bool, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let n = sqlx::query("UPDATE tombstones SET released_at = $1 WHERE kind = $2 AND hash = $3 AND released_at IS NULL AND expires_at > $1
                           AND ($4 IS NULL OR case_id IN (SELECT id FROM cases WHERE principal = $4))")
                        .bind(ms(now))
                        .bind(kind)
                        .bind(hash)
                        .bind(platform)
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("release tombstone"))?
                        .rows_affected();
                    Ok(n > 0)
                })
            })
            .await
    }

    /// Deletes tombstones that expired or were released.
    pub async fn purge_tombstones(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    Ok(sqlx::query(
                        "DELETE FROM tombstones WHERE expires_at <= $1 OR released_at IS NOT NULL",
                    )
                    .bind(ms(now))
                    .execute(ctx.conn().await?)
                    .await
                    .map_err(db("purge tombstones"))?
                    .rows_affected())
                })
            })
            .await
    }
}

/// Figures for the metrics endpoint, read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    pub cases_by_state: Vec<(String, i64)>,
    pub events_by_kind: Vec<(String, i64)>,
    /// (kind, state, count, oldest run_at in ms)
    pub jobs: Vec<(String, String, i64, i64)>,
    pub notifications: Vec<(String, i64)>,
    /// Seconds until the nearest open deadline is due (negative: overdue).
    pub min_headroom_secs: Option<i64>,
    pub overdue: i64,
    /// Open deadlines computed over days the calendar does not cover yet.
    pub provisional: i64,
}

impl Store {
    pub async fn metrics_snapshot(&self, now: Timestamp) -> Result<MetricsSnapshot, StoreError> {
        let pairs = |rows: Vec<crate::DbRow>| -> Vec<(String, i64)> {
            rows.iter().map(|r| (r.get(0), r.get(1))).collect()
        };
        let cases_by_state = pairs(
            sqlx::query("SELECT state, COUNT(*) FROM cases GROUP BY state")
                .fetch_all(&self.read)
                .await
                .map_err(db("metrics"))?,
        );
        let events_by_kind = pairs(
            sqlx::query("SELECT kind, CAST(SUM(n) AS BIGINT) FROM (SELECT kind, n FROM audit_kind_counts UNION ALL SELECT e.kind, COUNT(*) AS n FROM audit_pending p JOIN audit_entries e ON e.qid = p.qid GROUP BY e.kind) AS k GROUP BY kind")
                .fetch_all(&self.read)
                .await
                .map_err(db("metrics"))?,
        );
        let jobs = sqlx::query("SELECT kind, state, COUNT(*), MIN(run_at) FROM jobs WHERE state <> 'done' GROUP BY kind, state")
            .fetch_all(&self.read)
            .await
            .map_err(db("metrics"))?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        let notifications = pairs(
            sqlx::query("SELECT state, COUNT(*) FROM notifications GROUP BY state")
                .fetch_all(&self.read)
                .await
                .map_err(db("metrics"))?,
        );
        let row = sqlx::query("SELECT MIN(due_at), SUM(CASE WHEN due_at < $1 THEN 1 ELSE 0 END) FROM deadlines WHERE met_at IS NULL AND due_at IS NOT NULL")
            .bind(ms(now))
            .fetch_one(&self.read)
            .await
            .map_err(db("metrics"))?;
        let min_due: Option<i64> = row.get(0);
        let overdue: Option<i64> = row.get(1);
        let provisional: Option<i64> = sqlx::query_scalar(
            "SELECT COUNT(*) FROM deadlines WHERE met_at IS NULL AND provisional = 1",
        )
        .fetch_one(&self.read)
        .await
        .map_err(db("metrics"))?;
        Ok(MetricsSnapshot {
            cases_by_state,
            events_by_kind,
            jobs,
            notifications,
            min_headroom_secs: min_due.map(|d| (d - ms(now)) / 1000),
            overdue: overdue.unwrap_or(0),
            provisional: provisional.unwrap_or(0),
        })
    }
}
