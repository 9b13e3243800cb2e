//! Jobs: the erasure, vault and outbox work queue, leased to workers; manual tasks; the outbox.

use super::*;

#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub case_id: CaseId,
    pub system: String,
    pub attempts: u32,
    pub max_attempts: u32,
}

/// A task an operator does by hand (a manual system of the data map).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ManualTask {
    pub id: i64,
    pub case_id: String,
    pub system: String,
    pub instructions: String,
    pub due_at: Timestamp,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    pub completed_by: Option<String>,
    pub note: Option<String>,
    pub records: Option<u64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct OutboxMessage {
    pub id: i64,
    pub case_id: String,
    pub channel: String,
    pub destination: String,
    pub body: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct JobInfo {
    pub kind: String,
    pub system: String,
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// A message for a gateway. `destination` is masked (no full phone number
/// is stored); the gateway resolves the subject's number itself.
#[derive(Debug, Clone)]
pub struct OutboxDraft {
    pub channel: String,
    pub destination: String,
    pub body: String,
}

/// A job from `RETURNING id, kind, case_id, system, attempts, max_attempts`.
pub(crate) fn job_of(r: &crate::DbRow) -> Result<Job, StoreError> {
    Ok(Job {
        id: r.get(0),
        kind: r.get(1),
        case_id: CaseId::parse(&r.get::<String, _>(2))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        system: r.get(3),
        attempts: u32::try_from(r.get::<i64, _>(4)).unwrap_or(u32::MAX),
        max_attempts: u32::try_from(r.get::<i64, _>(5)).unwrap_or(1),
    })
}

pub(crate) async fn enqueue(
    ctx: &mut WriteCtx,
    id: &CaseId,
    j: &NewJob,
    now: Timestamp,
) -> Result<(), StoreError> {
    ctx.defer(
        Stmt::new("enqueue job", "INSERT INTO jobs (kind, case_id, system, state, attempts, max_attempts, run_at, created_at) VALUES ($1, $2, $3, 'ready', 0, $4, $5, $5) ON CONFLICT (kind, case_id, system) DO NOTHING")
            .arg(j.kind.clone())
            .arg(id.to_string())
            .arg(j.system.clone())
            .arg(i64::from(j.max_attempts))
            .arg(ms(now)),
    )
    .await?;
    if ctx.case_events && j.kind == "erase" {
        events::erasure_requested(ctx, id, &j.system, now).await?;
    }
    Ok(())
}

impl Store {
    // ------------------------------------------------------------------ jobs

    /// Whether a job is ready to be claimed at `now` (a cheap read, so idle
    /// workers do not write).
    pub async fn job_ready(&self, now: Timestamp) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT CASE WHEN EXISTS(SELECT 1 FROM jobs WHERE state = 'ready' AND run_at <= $1) OR EXISTS(SELECT 1 FROM jobs WHERE state = 'leased' AND lease_until <= $1) THEN 1 ELSE 0 END",
        )
        .bind(ms(now))
        .fetch_one(&self.read)
        .await
        .map_err(db("look for jobs"))?;
        Ok(n != 0)
    }

    /// Claims the oldest ready job (or one whose lease expired) for `lease`.
    pub async fn claim_job(
        &self,
        now: Timestamp,
        lease: jiff::SignedDuration,
    ) -> Result<Option<Job>, StoreError> {
        let owner = self.instance.to_string();
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let until = now.checked_add(lease).unwrap_or(now);
                    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE jobs SET state = 'leased', lease_until = $1, attempts = attempts + 1, lease_owner = $3
                         WHERE id = (SELECT id FROM jobs WHERE (state = 'ready' AND run_at <= $2) OR (state = 'leased' AND lease_until <= $2) ORDER BY run_at, id LIMIT 1 {})
                         RETURNING id, kind, case_id, system, attempts, max_attempts",
                        ctx.skip_locked()
                    )))
                    .bind(ms(until))
                    .bind(ms(now))
                    .bind(owner)
                    .fetch_optional(ctx.conn().await?)
                    .await
                    .map_err(db("claim job"))?;
                    row.as_ref().map(job_of).transpose()
                })
            })
            .await
    }

    /// Extends the leases of jobs while they run, all in one transaction;
    /// each `(id, attempt)` only while that claim still holds the job (a
    /// job taken over by another instance keeps its new lease).
    pub async fn heartbeat(
        &self,
        jobs: Vec<(i64, u32)>,
        until: Timestamp,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    for (job_id, attempt) in &jobs {
                        // A job row another transaction holds (recording the
                        // job's result) is passed over, not waited for.
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "UPDATE jobs SET lease_until = $1 WHERE id IN (SELECT id FROM jobs WHERE id = $2 AND state = 'leased' AND attempts = $3 {})",
                            ctx.skip_locked()
                        )))
                        .bind(ms(until))
                        .bind(*job_id)
                        .bind(i64::from(*attempt))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("heartbeat"))?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Marks a job done without a result of its own (its work was found
    /// done already, or there is none), with the reason as its last note;
    /// only while claim `attempt` still holds it.
    pub async fn finish_job(
        &self,
        job_id: i64,
        attempt: u32,
        note: String,
    ) -> Result<(), StoreError> {
        self.end_attempt(
            job_id,
            Some(attempt),
            "done",
            now_wall(),
            note,
            "finish job",
        )
        .await
    }

    /// Puts a failed job back with a later `run_at`, or marks it dead.
    /// `attempt`: the claim that failed; its report counts only while that
    /// claim still holds the job (after a lease ran out and another
    /// instance took the job, the late report is dropped). `None` for a
    /// report that comes with no claim (a callback).
    pub async fn retry_job(
        &self,
        job_id: i64,
        attempt: Option<u32>,
        error: String,
        run_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let (state, at) = match run_at {
            Some(t) => ("ready", t),
            None => ("dead", now_wall()),
        };
        self.end_attempt(job_id, attempt, state, at, error, "reschedule job")
            .await
    }

    /// Ends a claim of a job: the job's new `state`, `run_at` and note, the
    /// lease released; fenced by the claim's `attempt` when there is one.
    async fn end_attempt(
        &self,
        job_id: i64,
        attempt: Option<u32>,
        state: &'static str,
        run_at: Timestamp,
        note: String,
        action: &'static str,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("UPDATE jobs SET state = $1, run_at = $2, lease_until = NULL, last_error = $3 WHERE id = $4 AND ($5 < 0 OR (state = 'leased' AND attempts = $5))")
                        .bind(state)
                        .bind(ms(run_at))
                        .bind(note)
                        .bind(job_id)
                        .bind(attempt.map_or(-1, i64::from))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db(action))?;
                    Ok(())
                })
            })
            .await
    }

    /// Puts a claimed job back to wait until `run_at` without using up an
    /// attempt (its system cannot take it now: schema drift), with the
    /// reason as its note.
    pub async fn defer_job(
        &self,
        job_id: i64,
        attempt: u32,
        note: String,
        run_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("UPDATE jobs SET state = 'ready', run_at = $1, lease_until = NULL, last_error = $2, attempts = attempts - 1 WHERE id = $3 AND state = 'leased' AND attempts = $4")
                        .bind(ms(run_at))
                        .bind(note)
                        .bind(job_id)
                        .bind(i64::from(attempt))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("defer job"))?;
                    Ok(())
                })
            })
            .await
    }

    pub async fn jobs_for_case(&self, id: CaseId) -> Result<Vec<JobInfo>, StoreError> {
        let rows = sqlx::query("SELECT kind, system, state, attempts, last_error FROM jobs WHERE case_id = $1 ORDER BY id")
            .bind(id.to_string())
            .fetch_all(&self.read)
            .await
            .map_err(db("read jobs"))?;
        Ok(rows
            .iter()
            .map(|r| JobInfo {
                kind: r.get(0),
                system: r.get(1),
                state: r.get(2),
                attempts: u32::try_from(r.get::<i64, _>(3)).unwrap_or(0),
                last_error: r.get(4),
            })
            .collect())
    }

    /// Records one system's erasure outcome and marks its job done. When
    /// every erase job of the case is done, `finish` builds the receipt from
    /// all outcomes and the case moves to `erased`, in the same transaction.
    pub async fn record_erasure(
        &self,
        job_id: i64,
        id: CaseId,
        system: String,
        outcome: serde_json::Value,
        now: Timestamp,
        finish: ReceiptBuilder,
    ) -> Result<Case, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    record_erasure_in(ctx, job_id, id, system, outcome, now, finish).await
                })
            })
            .await
    }

    /// Parks an erase job while an operator does the work by hand: opens
    /// the manual task (once per job) due at `due`, and sets the job to
    /// `waiting` (never claimed by workers; completing the task completes
    /// it). Returns the task id.
    pub async fn open_manual_task(
        &self,
        job_id: i64,
        id: CaseId,
        system: String,
        instructions: String,
        due: Timestamp,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO manual_tasks (job_id, case_id, system, instructions, due_at, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (job_id) DO NOTHING")
                        .bind(job_id)
                        .bind(id.to_string())
                        .bind(system)
                        .bind(instructions)
                        .bind(ms(due))
                        .bind(ms(now))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("open manual task"))?;
                    let task: i64 = sqlx::query_scalar("SELECT id FROM manual_tasks WHERE job_id = $1")
                        .bind(job_id)
                        .fetch_one(ctx.conn().await?)
                        .await
                        .map_err(db("read manual task"))?;
                    sqlx::query("UPDATE jobs SET state = 'waiting', lease_until = NULL, run_at = $1, last_error = $2 WHERE id = $3")
                        .bind(ms(due))
                        .bind(format!("waiting for manual task {task}, due {due}"))
                        .bind(job_id)
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("park job"))?;
                    Ok(task)
                })
            })
            .await
    }

    /// Manual tasks, open ones first (oldest due first), at most `limit`.
    pub async fn manual_tasks(
        &self,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<ManualTask>, StoreError> {
        self.manual_tasks_of(None, open_only, limit).await
    }

    /// Manual tasks of the cases a principal opened (`None`: every case,
    /// for agents).
    pub async fn manual_tasks_of(
        &self,
        principal: Option<&str>,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<ManualTask>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, case_id, system, instructions, due_at, created_at, completed_at, completed_by, note, records FROM manual_tasks
             WHERE ($1 = 0 OR completed_at IS NULL)
               AND ($3 = '' OR case_id IN (SELECT id FROM cases WHERE principal = $3))
             ORDER BY completed_at IS NOT NULL, due_at, id LIMIT $2",
        )
        .bind(i64::from(open_only))
        .bind(i64::from(limit.min(1000)))
        .bind(principal.unwrap_or("").to_owned())
        .fetch_all(&self.read)
        .await
        .map_err(db("read manual tasks"))?;
        Ok(rows
            .iter()
            .map(|r| ManualTask {
                id: r.get(0),
                case_id: r.get(1),
                system: r.get(2),
                instructions: r.get(3),
                due_at: from_ms(r.get(4)),
                created_at: from_ms(r.get(5)),
                completed_at: r.get::<Option<i64>, _>(6).map(from_ms),
                completed_by: r.get(7),
                note: r.get(8),
                records: r
                    .get::<Option<i64>, _>(9)
                    .and_then(|v| u64::try_from(v).ok()),
            })
            .collect())
    }

    /// Completes a manual task with the operator's note and count, and
    /// records the system's outcome in the same transaction (which closes
    /// the case when it was the last system). `None` when the task does not
    /// exist or is already completed.
    #[allow(clippy::too_many_arguments)]
    pub async fn complete_manual_task(
        &self,
        task_id: i64,
        agent: String,
        note: String,
        records: u64,
        outcome: serde_json::Value,
        now: Timestamp,
        finish: ReceiptBuilder,
    ) -> Result<Option<Case>, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let actor = agent.clone();
                    let row = sqlx::query("UPDATE manual_tasks SET completed_at = $1, completed_by = $2, note = $3, records = $4 WHERE id = $5 AND completed_at IS NULL RETURNING job_id, case_id, system")
                        .bind(ms(now))
                        .bind(agent)
                        .bind(note)
                        .bind(i64::try_from(records).unwrap_or(i64::MAX))
                        .bind(task_id)
                        .fetch_optional(ctx.conn().await?)
                        .await
                        .map_err(db("complete manual task"))?;
                    let Some(row) = row else {
                        return Ok(None);
                    };
                    let id = CaseId::parse(&row.get::<String, _>(1)).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    let system: String = row.get(2);
                    // Who completed it, and what they claimed: an audit
                    // event of the case, in the same transaction.
                    let (case, pseudo) = load_case_and_pseudonym(ctx, id).await?;
                    let change = Change {
                        kind: "case.manual_task_completed".into(),
                        from: Some(case.state),
                        to: case.state,
                        at: now,
                        detail: serde_json::json!({ "task": task_id, "system": system, "records": records }),
                    };
                    append_audit(ctx, &case, &pseudo, &change, &actor).await?;
                    record_erasure_in(ctx, row.get(0), id, system, outcome, now, finish).await.map(Some)
                })
            })
            .await
    }

    /// The open erase job of a case in a system (for an HTTP callback).
    pub async fn open_erase_job(
        &self,
        id: CaseId,
        system: &str,
    ) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar("SELECT id FROM jobs WHERE case_id = $1 AND system = $2 AND kind = 'erase' AND state <> 'done' AND state <> 'dead'")
            .bind(id.to_string())
            .bind(system.to_owned())
            .fetch_optional(&self.read)
            .await
            .map_err(db("find the erase job"))
    }

    /// Claims up to `limit` more ready jobs of one kind and system (an
    /// erasure batch), leased like [`Store::claim_job`].
    pub async fn claim_more_jobs(
        &self,
        kind: &str,
        system: &str,
        now: Timestamp,
        lease: jiff::SignedDuration,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        let (kind, system) = (kind.to_owned(), system.to_owned());
        let owner = self.instance.to_string();
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let until = now.checked_add(lease).unwrap_or(now);
                    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE jobs SET state = 'leased', lease_until = $1, attempts = attempts + 1, lease_owner = $6
                         WHERE id IN (SELECT id FROM jobs WHERE kind = $2 AND system = $3 AND ((state = 'ready' AND run_at <= $4) OR (state = 'leased' AND lease_until <= $4)) ORDER BY run_at, id LIMIT $5 {})
                         RETURNING id, kind, case_id, system, attempts, max_attempts",
                        ctx.skip_locked()
                    )))
                    .bind(ms(until))
                    .bind(kind)
                    .bind(system)
                    .bind(ms(now))
                    .bind(i64::from(limit.min(1000)))
                    .bind(owner)
                    .fetch_all(ctx.conn().await?)
                    .await
                    .map_err(db("claim jobs"))?;
                    rows.iter().map(job_of).collect()
                })
            })
            .await
    }

    pub async fn receipt(&self, id: CaseId) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT body FROM receipts WHERE case_id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(db("read receipt"))
    }

    /// Applies a command and marks a job done, in one transaction (a
    /// settlement result and the end of its instruction job).
    pub async fn apply_completing_job(
        &self,
        job_id: i64,
        id: CaseId,
        cmd: CaseCommand,
        now: Timestamp,
        actor: String,
    ) -> Result<Case, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    sqlx::query("UPDATE jobs SET state = 'done', lease_until = NULL, last_error = NULL WHERE id = $1")
                        .bind(job_id)
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("complete job"))?;
                    apply_in(ctx, id, &cmd, now, &actor).await
                })
            })
            .await
    }

    /// Marks the case failed (needs an operator) and its job dead, when
    /// claim `attempt` still holds the job (not when its lease ran out and
    /// another instance took the job over).
    pub async fn fail_erasure(
        &self,
        job_id: i64,
        attempt: u32,
        id: CaseId,
        reason: String,
        now: Timestamp,
    ) -> Result<Case, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let case = load_case(ctx, id).await?;
                    let n = sqlx::query("UPDATE jobs SET state = 'dead', lease_until = NULL, last_error = $1 WHERE id = $2 AND state = 'leased' AND attempts = $3")
                        .bind(reason.clone())
                        .bind(job_id)
                        .bind(i64::from(attempt))
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("fail job"))?
                        .rows_affected();
                    if n == 0 || case.state != CaseState::Erasing {
                        return Ok(case);
                    }
                    apply_in(ctx, id, &CaseCommand::FailErasure { reason }, now, "worker").await
                })
            })
            .await
    }

    /// An operator's retry of a failed case: dead erase jobs are re-armed.
    pub async fn retry_erasure(
        &self,
        id: CaseId,
        now: Timestamp,
        actor: String,
        idem: Option<Idem>,
    ) -> Result<Case, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let case = apply_in(ctx, id, &CaseCommand::RetryErasure, now, &actor).await?;
                    sqlx::query("UPDATE jobs SET state = 'ready', attempts = 0, run_at = $1, lease_until = NULL WHERE case_id = $2 AND state = 'dead'")
                        .bind(ms(now_wall()))
                        .bind(id.to_string())
                        .execute(ctx.conn().await?)
                        .await
                        .map_err(db("re-arm jobs"))?;
                    finish_idem(ctx, idem.as_ref(), &case).await?;
                    Ok(case)
                })
            })
            .await
    }
}
