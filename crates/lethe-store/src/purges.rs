//! Purges: many subjects erased on one legal basis. The purge and its
//! subjects, the lease one instance holds while it runs it, each subject's
//! outcome with its audit event (and, when erased, its erasure tombstones)
//! in one transaction per batch, objections in the notice period.

use jiff::Timestamp;
use lethe_ledger::AuditEvent;
use sqlx::Row;

use crate::{Store, StoreError, db, from_ms, ms};

/// Subjects written per INSERT statement.
const INSERT_CHUNK: usize = 500;

/// A purge to open.
#[derive(Debug, Clone)]
pub struct NewPurge {
    pub id: String,
    pub principal: String,
    pub legal_basis: String,
    pub rule: Option<String>,
    /// The end of the notice period, if any (subjects are told first).
    pub notice_until: Option<Timestamp>,
    /// (subject id, its pseudonym), in order.
    pub subjects: Vec<(String, String)>,
}

/// A purge and where it stands.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PurgeRow {
    pub id: String,
    pub principal: String,
    pub legal_basis: String,
    pub rule: Option<String>,
    pub notice_until: Option<Timestamp>,
    /// noticing, running, done or failed.
    pub state: String,
    pub requested: u64,
    pub pending: u64,
    pub erased: u64,
    pub skipped: u64,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub error: Option<String>,
}

/// One subject's outcome in a purge.
#[derive(Debug, Clone)]
pub struct PurgeOutcome {
    pub n: i64,
    pub subject_hash: String,
    /// Erased (true) or skipped with `reason`.
    pub erased: bool,
    pub reason: Option<String>,
    pub rows: u64,
    /// Systems it was erased from (tombstones for reapply).
    pub systems: Vec<String>,
}

/// A subject of a purge still to do.
#[derive(Debug, Clone)]
pub struct PendingSubject {
    pub n: i64,
    pub subject: String,
    pub subject_hash: String,
}

/// Whether `owner` still holds the purge's lease (inside a write).
async fn holds(ctx: &mut crate::WriteCtx, id: &str, owner: &str) -> Result<(), StoreError> {
    let held: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM purges WHERE id = $1 AND state = 'running' AND lease_owner = $2 {}",
        ctx.for_update()
    )))
    .bind(id.to_owned())
    .bind(owner.to_owned())
    .fetch_optional(ctx.conn().await?)
    .await
    .map_err(db("read the purge's lease"))?;
    match held {
        Some(_) => Ok(()),
        None => Err(StoreError::Refused(
            "this run no longer holds the purge's lease (another instance took it over)".into(),
        )),
    }
}

/// The purge's notices keep the accounts' pseudonyms, not their ids, once
/// it ends.
async fn scrub_notices(ctx: &mut crate::WriteCtx, id: &str) -> Result<(), StoreError> {
    let mut after = 0i64;
    loop {
        let rows = sqlx::query("SELECT id, payload FROM notifications WHERE kind = $1 AND id > $2 AND payload LIKE $3 ORDER BY id LIMIT 1000")
            .bind(lethe_domain::notice::PURGE_NOTICE)
            .bind(after)
            .bind(format!("%\"purge_id\":\"{id}\"%"))
            .fetch_all(ctx.conn().await?)
            .await
            .map_err(db("read the purge's notices"))?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.get(0);
        for r in &rows {
            let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&r.get::<String, _>(1))
            else {
                continue;
            };
            let Some(m) = v.as_object_mut() else { continue };
            if m.remove("subject_id").is_none() {
                continue;
            }
            sqlx::query("UPDATE notifications SET payload = $2 WHERE id = $1")
                .bind(r.get::<i64, _>(0))
                .bind(v.to_string())
                .execute(ctx.conn().await?)
                .await
                .map_err(db("forget the purge's notices"))?;
        }
    }
}

/// A subject's entry in the purge report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PurgeEntry {
    /// The keyed pseudonym of the subject id.
    pub subject_ref: String,
    /// erased or skipped.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub rows: u64,
}

impl Store {
    /// Opens a purge with its subjects and, with a notice period, one
    /// `purge.notice` notification per subject; audited (`purge.requested`).
    pub async fn create_purge(&self, p: NewPurge, now: Timestamp) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let state = if p.notice_until.is_some() { "noticing" } else { "running" };
                    sqlx::query("INSERT INTO purges (id, principal, legal_basis, rule, notice_until, state, requested, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                        .bind(p.id.clone())
                        .bind(p.principal.clone())
                        .bind(p.legal_basis.clone())
                        .bind(p.rule.clone())
                        .bind(p.notice_until.map(ms))
                        .bind(state)
                        .bind(p.subjects.len() as i64)
                        .bind(ms(now))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("open the purge"))?;
                    for (c, chunk) in p.subjects.chunks(INSERT_CHUNK).enumerate() {
                        let mut sql = String::from(
                            "INSERT INTO purge_subjects (purge_id, n, subject, subject_hash, state) VALUES ",
                        );
                        for i in 0..chunk.len() {
                            if i > 0 {
                                sql.push_str(", ");
                            }
                            let b = i * 4;
                            sql.push_str(&format!(
                                "(${}, ${}, ${}, ${}, 'pending')",
                                b + 1,
                                b + 2,
                                b + 3,
                                b + 4
                            ));
                        }
                        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                        for (i, (subject, hash)) in chunk.iter().enumerate() {
                            q = q
                                .bind(p.id.clone())
                                .bind((c * INSERT_CHUNK + i) as i64)
                                .bind(subject.clone())
                                .bind(hash.clone());
                        }
                        q.execute(ctx.conn().await?)
                            .await
                            .map_err(db("store the purge's subjects"))?;
                    }
                    if let Some(until) = p.notice_until {
                        // One notice per account, in multi-row INSERTs; the
                        // ids leave them when the purge ends (`finish_purge`).
                        for chunk in p.subjects.chunks(INSERT_CHUNK) {
                            let marks: Vec<String> = (0..chunk.len())
                                .map(|i| format!("($1, ${}, $2, 'pending', $3, $4)", i + 5))
                                .collect();
                            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "INSERT INTO notifications (kind, payload, created_at, state, next_at, principal) VALUES {}",
                                marks.join(", ")
                            )))
                            .bind(lethe_domain::notice::PURGE_NOTICE)
                            .bind(ms(now))
                            .bind(ms(crate::now_wall()))
                            .bind(p.principal.clone());
                            for (subject, hash) in chunk {
                                q = q.bind(
                                    serde_json::json!({
                                        "purge_id": p.id,
                                        "subject_id": subject,
                                        "subject_ref": hash,
                                        "erase_after": until.to_string(),
                                        "legal_basis": p.legal_basis,
                                    })
                                    .to_string(),
                                );
                            }
                            q.execute(ctx.conn().await?)
                                .await
                                .map_err(db("queue the purge's notices"))?;
                        }
                    }
                    crate::log::append_event(
                        ctx,
                        &p.id,
                        "",
                        "purge.requested",
                        None,
                        state,
                        &format!("platform:{}", p.principal),
                        serde_json::json!({
                            "legal_basis": p.legal_basis,
                            "rule": p.rule,
                            "requested": p.subjects.len(),
                            "notice_until": p.notice_until.map(|t| t.to_string()),
                        }),
                        now,
                    )
                    .await
                })
            })
            .await
    }

    /// A purge (with `platform`, only its own).
    pub async fn purge(
        &self,
        id: &str,
        platform: Option<&str>,
    ) -> Result<Option<PurgeRow>, StoreError> {
        let Some(r) = sqlx::query("SELECT id, principal, legal_basis, rule, notice_until, state, requested, created_at, started_at, finished_at, error FROM purges WHERE id = $1 AND ($2 IS NULL OR principal = $2)")
            .bind(id.to_owned())
            .bind(platform.map(str::to_owned))
            .fetch_optional(&self.read)
            .await
            .map_err(db("read the purge"))?
        else {
            return Ok(None);
        };
        let counts = sqlx::query(
            "SELECT state, COUNT(*) FROM purge_subjects WHERE purge_id = $1 GROUP BY state",
        )
        .bind(id.to_owned())
        .fetch_all(&self.read)
        .await
        .map_err(db("count the purge's subjects"))?;
        let count = |s: &str| {
            counts
                .iter()
                .find(|c| c.get::<String, _>(0) == s)
                .map_or(0, |c| u64::try_from(c.get::<i64, _>(1)).unwrap_or(0))
        };
        Ok(Some(PurgeRow {
            id: r.get(0),
            principal: r.get(1),
            legal_basis: r.get(2),
            rule: r.get(3),
            notice_until: r.get::<Option<i64>, _>(4).map(from_ms),
            state: r.get(5),
            requested: u64::try_from(r.get::<i64, _>(6)).unwrap_or(0),
            pending: count("pending"),
            erased: count("erased"),
            skipped: count("skipped"),
            created_at: from_ms(r.get(7)),
            started_at: r.get::<Option<i64>, _>(8).map(from_ms),
            finished_at: r.get::<Option<i64>, _>(9).map(from_ms),
            error: r.get(10),
        }))
    }

    /// The signed report of a finished purge (with `platform`, only its
    /// own), as stored.
    pub async fn purge_report(
        &self,
        id: &str,
        platform: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let r: Option<Option<String>> = sqlx::query_scalar(
            "SELECT report FROM purges WHERE id = $1 AND ($2 IS NULL OR principal = $2)",
        )
        .bind(id.to_owned())
        .bind(platform.map(str::to_owned))
        .fetch_optional(&self.read)
        .await
        .map_err(db("read the purge's report"))?;
        Ok(r.flatten())
    }

    /// The ids of a platform's purges, newest first.
    pub async fn purge_ids(&self, platform: &str, limit: u32) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT id FROM purges WHERE principal = $1 ORDER BY created_at DESC, id LIMIT $2",
        )
        .bind(platform.to_owned())
        .bind(i64::from(limit.min(1000)))
        .fetch_all(&self.read)
        .await
        .map_err(db("list purges"))
    }

    /// Takes the lease of a purge ready to run (its notice period over, or
    /// running with no live lease): returns its id.
    pub async fn claim_purge(
        &self,
        now: Timestamp,
        wall: Timestamp,
        lease_until: Timestamp,
        owner: String,
    ) -> Result<Option<String>, StoreError> {
        // Most ticks find nothing: a read first, so they take no write.
        let sql = "SELECT 1 FROM purges WHERE (state = 'noticing' AND notice_until <= $1) OR state = 'running' LIMIT 1";
        if !self.any_due(sql, now, "find a purge to run").await? {
            return Ok(None);
        }
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let id: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT id FROM purges WHERE ((state = 'noticing' AND notice_until <= $1) OR state = 'running')
                           AND (lease_until IS NULL OR lease_until < $2) ORDER BY created_at LIMIT 1 {}",
                        ctx.skip_locked()
                    )))
                    .bind(ms(now))
                    .bind(ms(wall))
                    .fetch_optional(ctx.conn().await?)
                    .await
                    .map_err(db("find a purge to run"))?;
                    let Some(id) = id else { return Ok(None) };
                    sqlx::query("UPDATE purges SET state = 'running', lease_until = $2, lease_owner = $4, started_at = COALESCE(started_at, $3) WHERE id = $1")
                        .bind(id.clone())
                        .bind(ms(lease_until))
                        .bind(ms(now))
                        .bind(owner)
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("lease the purge"))?;
                    Ok(Some(id))
                })
            })
            .await
    }

    /// Extends the lease of a purge this run holds; false when it holds it
    /// no more (another instance took it over: this run stops).
    pub async fn renew_purge(
        &self,
        id: String,
        owner: String,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let n = sqlx::query("UPDATE purges SET lease_until = $2 WHERE id = $1 AND state = 'running' AND lease_owner = $3")
                        .bind(id)
                        .bind(ms(until))
                        .bind(owner)
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("renew the purge's lease"))?
                        .rows_affected();
                    Ok(n == 1)
                })
            })
            .await
    }

    /// A run of the purge failed: counted, and tried again (by any
    /// instance) from `retry_at`; at `max` failures in a row the purge
    /// fails with the reason (audited). Says whether it failed for good.
    pub async fn purge_failed(
        &self,
        id: String,
        owner: String,
        error: String,
        max: u32,
        retry_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let n = sqlx::query("UPDATE purges SET failures = failures + 1, error = $3, lease_until = $4 WHERE id = $1 AND state = 'running' AND lease_owner = $2")
                        .bind(id.clone())
                        .bind(owner)
                        .bind(error.clone())
                        .bind(ms(retry_at))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("record the purge's failure"))?
                        .rows_affected();
                    if n == 0 {
                        return Ok(false);
                    }
                    let failed = sqlx::query("UPDATE purges SET state = 'failed', finished_at = $3 WHERE id = $1 AND failures >= $2")
                        .bind(id.clone())
                        .bind(i64::from(max))
                        .bind(ms(now))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("fail the purge"))?
                        .rows_affected()
                        == 1;
                    if failed {
                        crate::log::append_event(
                            ctx,
                            &id,
                            "",
                            "purge.failed",
                            Some("running"),
                            "failed",
                            "worker",
                            serde_json::json!({ "error": error, "failures": max }),
                            now,
                        )
                        .await?;
                    }
                    Ok(failed)
                })
            })
            .await
    }

    /// The next subjects of a purge still to do after position `after`, in
    /// order.
    pub async fn pending_purge_subjects(
        &self,
        id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<PendingSubject>, StoreError> {
        let rows = sqlx::query("SELECT n, subject, subject_hash FROM purge_subjects WHERE purge_id = $1 AND state = 'pending' AND n > $2 ORDER BY n LIMIT $3")
            .bind(id.to_owned())
            .bind(after)
            .bind(i64::from(limit.min(10_000)))
            .fetch_all(&self.read)
            .await
            .map_err(db("read the purge's subjects"))?;
        Ok(rows
            .iter()
            .map(|r| PendingSubject {
                n: r.get(0),
                subject: r.get::<Option<String>, _>(1).unwrap_or_default(),
                subject_hash: r.get(2),
            })
            .collect())
    }

    /// Of these pseudonyms, those with a cancellation case still open (the
    /// case decides; the purge skips them).
    pub async fn open_case_subjects(
        &self,
        hashes: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let open: Vec<String> = lethe_domain::CaseState::ALL
            .iter()
            .filter(|s| !s.is_terminal() && **s != lethe_domain::CaseState::Failed)
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        let mut out = std::collections::HashSet::new();
        for chunk in hashes.chunks(1000) {
            let Some(list) = crate::hex_literals(chunk) else {
                continue;
            };
            let found: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT DISTINCT subject_pseudonym FROM cases WHERE subject_pseudonym IN ({list}) AND state IN ({})",
                open.join(",")
            )))
            .fetch_all(&self.read)
            .await
            .map_err(db("look for open cases"))?;
            out.extend(found);
        }
        Ok(out)
    }

    /// Records a batch of outcomes: each subject's state (its id dropped),
    /// its audit event, and the erasure tombstones of the erased ones, in
    /// one transaction of a few multi-row statements.
    pub async fn record_purge_batch(
        &self,
        id: String,
        owner: String,
        principal: String,
        outcomes: Vec<PurgeOutcome>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    holds(ctx, &id, &owner).await?;
                    sqlx::query("UPDATE purges SET failures = 0 WHERE id = $1")
                        .bind(id.clone())
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("record the purge's progress"))?;
                    for chunk in outcomes.chunks(INSERT_CHUNK) {
                        // Pending rows are replaced by their outcome (one
                        // runner holds the purge's lease).
                        let ns: Vec<String> = chunk.iter().map(|o| o.n.to_string()).collect();
                        let gone = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DELETE FROM purge_subjects WHERE purge_id = $1 AND state = 'pending' AND n IN ({})",
                            ns.join(",")
                        )))
                        .bind(id.clone())
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("record purged subjects"))?
                        .rows_affected();
                        if gone != chunk.len() as u64 {
                            return Err(StoreError::Refused(
                                "the purge's subjects changed under its runner".into(),
                            ));
                        }
                        let marks: Vec<String> = (0..chunk.len())
                            .map(|i| {
                                let b = i * 5 + 1;
                                format!("($1, ${}, NULL, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5)
                            })
                            .collect();
                        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "INSERT INTO purge_subjects (purge_id, n, subject, subject_hash, state, reason, rows_erased) VALUES {}",
                            marks.join(", ")
                        )))
                        .bind(id.clone());
                        for o in chunk {
                            q = q
                                .bind(o.n)
                                .bind(o.subject_hash.clone())
                                .bind(if o.erased { "erased" } else { "skipped" })
                                .bind(o.reason.clone())
                                .bind(i64::try_from(o.rows).unwrap_or(i64::MAX));
                        }
                        q.execute(ctx.conn().await?)
                            .await
                            .map_err(db("record purged subjects"))?;
                        let stones: Vec<(&str, &str)> = chunk
                            .iter()
                            .filter(|o| o.erased)
                            .flat_map(|o| o.systems.iter().map(|s| (s.as_str(), o.subject_hash.as_str())))
                            .collect();
                        for part in stones.chunks(INSERT_CHUNK) {
                            let marks: Vec<String> = (0..part.len())
                                .map(|i| format!("(${}, ${}, $1, $2, $3)", i * 2 + 4, i * 2 + 5))
                                .collect();
                            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "INSERT INTO erased_subjects (system, subject_hash, case_id, principal, erased_at) VALUES {}
                                 ON CONFLICT (system, subject_hash) DO UPDATE SET case_id = excluded.case_id, principal = excluded.principal, erased_at = excluded.erased_at",
                                marks.join(", ")
                            )))
                            .bind(id.clone())
                            .bind(principal.clone())
                            .bind(ms(now));
                            for (system, hash) in part {
                                q = q.bind((*system).to_owned()).bind((*hash).to_owned());
                            }
                            q.execute(ctx.conn().await?)
                                .await
                                .map_err(db("keep the erased subjects' tombstones"))?;
                        }
                    }
                    let events: Vec<AuditEvent> = outcomes
                        .iter()
                        .map(|o| {
                            let (kind, state, detail) = if o.erased {
                                (
                                    "subject.purged",
                                    "erased",
                                    serde_json::json!({ "rows": o.rows, "systems": o.systems, "forfeited": o.reason }),
                                )
                            } else {
                                (
                                    "subject.purge_skipped",
                                    "skipped",
                                    serde_json::json!({ "reason": o.reason }),
                                )
                            };
                            AuditEvent {
                                seq: 0,
                                case_id: id.clone(),
                                subject: o.subject_hash.clone(),
                                kind: kind.to_owned(),
                                from_state: Some("pending".to_owned()),
                                to_state: state.to_owned(),
                                actor: "worker".to_owned(),
                                at: now.to_string(),
                                detail,
                            }
                        })
                        .collect();
                    crate::insert_events(ctx, events).await
                })
            })
            .await
    }

    /// A subject objects in the notice period (it signed in): skipped, with
    /// the reason; audited. False when the purge is not in its notice
    /// period or the subject is not pending in it.
    pub async fn object_to_purge(
        &self,
        id: String,
        platform: String,
        subject_hash: String,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let noticing: Option<String> = sqlx::query_scalar("SELECT id FROM purges WHERE id = $1 AND principal = $2 AND state = 'noticing'")
                        .bind(id.clone())
                        .bind(platform.clone())
                        .fetch_optional(ctx.conn().await?)
                        .await
                        .map_err(db("read the purge"))?;
                    if noticing.is_none() {
                        return Ok(false);
                    }
                    let reason = "objected: signed in during the notice period";
                    let n = sqlx::query("UPDATE purge_subjects SET state = 'skipped', reason = $3, subject = NULL WHERE purge_id = $1 AND subject_hash = $2 AND state = 'pending'")
                        .bind(id.clone())
                        .bind(subject_hash.clone())
                        .bind(reason)
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("record the objection"))?
                        .rows_affected();
                    if n == 0 {
                        return Ok(false);
                    }
                    crate::log::append_event(
                        ctx,
                        &id,
                        &subject_hash,
                        "subject.purge_skipped",
                        Some("pending"),
                        "skipped",
                        &format!("platform:{platform}"),
                        serde_json::json!({ "reason": reason }),
                        now,
                    )
                    .await?;
                    Ok(true)
                })
            })
            .await
    }

    /// Every subject's entry, in order (for the report).
    pub async fn purge_entries(&self, id: &str) -> Result<Vec<PurgeEntry>, StoreError> {
        let rows = sqlx::query("SELECT subject_hash, state, reason, rows_erased FROM purge_subjects WHERE purge_id = $1 ORDER BY n")
            .bind(id.to_owned())
            .fetch_all(&self.read)
            .await
            .map_err(db("read the purge's subjects"))?;
        Ok(rows
            .iter()
            .map(|r| PurgeEntry {
                subject_ref: r.get(0),
                outcome: r.get(1),
                reason: r.get(2),
                rows: r
                    .get::<Option<i64>, _>(3)
                    .and_then(|v| u64::try_from(v).ok())
                    .unwrap_or(0),
            })
            .collect())
    }

    /// Closes a purge: done with its signed report (audited), or failed.
    pub async fn finish_purge(
        &self,
        id: String,
        owner: String,
        outcome: Result<serde_json::Value, String>,
        detail: serde_json::Value,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    holds(ctx, &id, &owner).await?;
                    scrub_notices(ctx, &id).await?;
                    let (state, report, error) = match outcome {
                        Ok(r) => ("done", Some(r.to_string()), None),
                        Err(e) => ("failed", None, Some(e)),
                    };
                    sqlx::query("UPDATE purges SET state = $2, report = $3, error = $4, finished_at = $5, lease_until = NULL, lease_owner = NULL WHERE id = $1")
                        .bind(id.clone())
                        .bind(state)
                        .bind(report)
                        .bind(error)
                        .bind(ms(now))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("close the purge"))?;
                    crate::log::append_event(
                        ctx,
                        &id,
                        "",
                        "purge.finished",
                        Some("running"),
                        state,
                        "worker",
                        detail,
                        now,
                    )
                    .await
                })
            })
            .await
    }
}
