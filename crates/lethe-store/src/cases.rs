//! Cases: opening, commands and their effects (audit events, deadlines, notifications, jobs enqueued), the erasure record, a case's timeline.

use super::*;

/// Loads, applies, writes and audits one command inside the current
/// transaction. The update checks the version it read (optimistic lock).
pub(crate) async fn apply_in(
    ctx: &mut WriteCtx,
    id: CaseId,
    cmd: &CaseCommand,
    now: Timestamp,
    actor: &str,
) -> Result<Case, StoreError> {
    let (case, pseudo) = load_case_and_pseudonym(ctx, id).await?;
    let (next, change) = case.apply(cmd, now)?;
    // The update checks the version it read; on PostgreSQL the row is
    // locked as well, so it fails only if the store was changed beside
    // Lethe.
    ctx.defer(
        Stmt::new(
            "update case",
            "UPDATE cases SET state = $1, version = $2, updated_at = $3, cooling_off_ends_at = $4, body = $5 WHERE id = $6 AND version = $7",
        )
        .arg(next.state.as_str())
        .arg(i64::try_from(next.version).unwrap_or(i64::MAX))
        .arg(ms(next.updated_at))
        .arg(next.cooling_off_ends_at.map(ms))
        .arg(to_json(&next)?)
        .arg(id.to_string())
        .arg(i64::try_from(case.version).unwrap_or(i64::MAX))
        .then(Then::AtLeastOneRow(|| StoreError::Db {
            action: "update case",
            message: "the case changed concurrently; retry".into(),
        })),
    )
    .await?;
    append_audit(ctx, &next, &pseudo, &change, actor).await?;
    write_effects(ctx, &next, &change).await?;
    Ok(next)
}

/// The notifications, deadlines and jobs that follow from a change, in its
/// transaction.
pub(crate) async fn write_effects(
    ctx: &mut WriteCtx,
    case: &Case,
    change: &Change,
) -> Result<(), StoreError> {
    // Settlement instructions go out when they become pending: when the
    // cancellation became final, or at once for an early settlement or a
    // choice made again after a refusal. One job per instruction id.
    if matches!(
        change.kind.as_str(),
        "case.settlement_chosen" | "case.settlement_started"
    ) {
        let pending: Vec<String> = case
            .assets
            .iter()
            .filter_map(|a| a.settlement.as_ref())
            .filter(|s| s.status == lethe_domain::asset::SettlementStatus::Pending)
            .map(|s| s.instruction_id.clone())
            .collect();
        for instruction in pending {
            let job = NewJob {
                kind: "settle".into(),
                system: instruction,
                max_attempts: ctx.settle_attempts,
            };
            enqueue(ctx, &case.id, &job, now_wall()).await?;
        }
    }
    if change.to == CaseState::Erasing
        && matches!(
            change.from,
            Some(CaseState::CoolingOff | CaseState::Settling)
        )
    {
        let jobs = ctx.erasure_jobs.clone();
        for j in jobs.iter() {
            enqueue(ctx, &case.id, j, now_wall()).await?;
        }
    }
    for n in case.notices(change) {
        if ctx.case_events
            && let Some(kind) = events::kind_of_notice(n.kind)
        {
            events::insert(ctx, case, kind, None, change.at).await?;
        }
        insert_notification(
            ctx,
            n.kind,
            Some(&case.id.to_string()),
            &n.payload,
            change.at,
        )
        .await?;
    }
    if let Some(f) = ctx.deadlines.clone() {
        upsert_deadlines(ctx, case, &f(case)).await?;
    }
    Ok(())
}

/// Records one system's erasure outcome and marks its job done; closes the
/// case (receipt built by `finish`) when it was the last open job.
pub(crate) async fn record_erasure_in(
    ctx: &mut WriteCtx,
    job_id: i64,
    id: CaseId,
    system: String,
    outcome: serde_json::Value,
    now: Timestamp,
    finish: ReceiptBuilder,
) -> Result<Case, StoreError> {
    // The case first: two instances recording a case's last two systems at
    // once would each still see the other's job open, and neither would
    // close the case. Locked, the second sees the first's commit.
    load_case(ctx, id).await?;
    let system_name = system.clone();
    sqlx::query("INSERT INTO erasure_results (case_id, system, outcome, recorded_at) VALUES ($1, $2, $3, $4) ON CONFLICT (case_id, system) DO UPDATE SET outcome = excluded.outcome")
        .bind(id.to_string())
        .bind(system)
        .bind(outcome.to_string())
        .bind(ms(now))
        .execute(ctx.conn().await?)
        .await
        .map_err(db("record erasure result"))?;
    erased::keep_tombstone(ctx, &id.to_string(), &system_name, now).await?;
    sqlx::query(
        "UPDATE jobs SET state = 'done', lease_until = NULL, last_error = NULL WHERE id = $1",
    )
    .bind(job_id)
    .execute(ctx.conn().await?)
    .await
    .map_err(db("complete job"))?;
    let open: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE case_id = $1 AND state <> 'done'")
            .bind(id.to_string())
            .fetch_one(ctx.conn().await?)
            .await
            .map_err(db("count open jobs"))?;
    let case = load_case(ctx, id).await?;
    if open > 0 || case.state != CaseState::Erasing {
        return Ok(case);
    }
    let case = apply_in(ctx, id, &CaseCommand::CompleteErasure, now, "worker").await?;
    let outcomes: Vec<(String, serde_json::Value)> = sqlx::query(
        "SELECT system, outcome FROM erasure_results WHERE case_id = $1 ORDER BY system",
    )
    .bind(id.to_string())
    .fetch_all(ctx.conn().await?)
    .await
    .map_err(db("read erasure results"))?
    .iter()
    .map(|r| {
        (
            r.get::<String, _>(0),
            serde_json::from_str(&r.get::<String, _>(1)).unwrap_or(serde_json::Value::Null),
        )
    })
    .collect();
    let events = case_events(ctx.conn().await?, &id.to_string()).await?;
    let receipt = finish(&case, &outcomes, &events, now);
    let final_qid = ctx.last_qid().await?;
    // The final event is sequenced after this commit: the receipt names
    // it by queue id and is signed once it is in the tree.
    sqlx::query(
        "INSERT INTO receipts (case_id, body, created_at, final_qid) VALUES ($1, $2, $3, $4)",
    )
    .bind(id.to_string())
    .bind(receipt)
    .bind(ms(now))
    .bind(final_qid)
    .execute(ctx.conn().await?)
    .await
    .map_err(db("store receipt"))?;
    forget_subject(ctx, &case).await?;
    Ok(case)
}

/// The subject id is no longer needed once the case is erased: everything
/// Lethe kept of the case keeps the pseudonym instead (the case row and its
/// body, notification and case-event payloads), and what only served the
/// flow goes (messages sent, idempotency records showing the case).
pub(crate) async fn forget_subject(ctx: &mut WriteCtx, case: &Case) -> Result<(), StoreError> {
    let id = case.id.to_string();
    let pseudo = pseudonym_of(ctx, case.id).await?;
    let mut forgotten = case.clone();
    forgotten.subject =
        lethe_domain::SubjectId::parse(&pseudo).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query("UPDATE cases SET subject = subject_pseudonym, body = $2 WHERE id = $1")
        .bind(id.clone())
        .bind(to_json(&forgotten)?)
        .execute(ctx.conn().await?)
        .await
        .map_err(db("forget subject id"))?;
    for table in ["notifications", "case_events"] {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, payload FROM {table} WHERE case_id = $1"
        )))
        .bind(id.clone())
        .fetch_all(ctx.conn().await?)
        .await
        .map_err(db("read payloads to forget"))?;
        for r in rows {
            let Ok(mut payload) = serde_json::from_str::<serde_json::Value>(&r.get::<String, _>(1))
            else {
                continue;
            };
            let Some(obj) = payload.as_object_mut() else {
                continue;
            };
            if obj.remove("subject_id").is_none() {
                continue;
            }
            obj.insert("subject_ref".into(), pseudo.clone().into());
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET payload = $1 WHERE id = $2"
            )))
            .bind(payload.to_string())
            .bind(r.get::<i64, _>(0))
            .execute(ctx.conn().await?)
            .await
            .map_err(db("forget payload"))?;
        }
    }
    for sql in [
        "DELETE FROM outbox WHERE case_id = $1",
        "DELETE FROM idempotency WHERE case_id = $1",
    ] {
        sqlx::query(sql)
            .bind(id.clone())
            .execute(ctx.conn().await?)
            .await
            .map_err(db("forget the case's messages"))?;
    }
    Ok(())
}

pub(crate) async fn upsert_deadlines(
    ctx: &mut WriteCtx,
    case: &Case,
    ds: &[lethe_domain::deadline::Deadline],
) -> Result<(), StoreError> {
    let id = case.id;
    for d in ds {
        ctx.defer(
            Stmt::new(
                "store deadline",
                "INSERT INTO deadlines (case_id, kind, starts_at, due_at, warn_at, paused, met_at, problem, provisional) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (case_id, kind) DO UPDATE SET starts_at = excluded.starts_at, due_at = excluded.due_at, warn_at = excluded.warn_at,
                   paused = excluded.paused, met_at = excluded.met_at, problem = excluded.problem, provisional = excluded.provisional,
                   warned_at = CASE WHEN excluded.due_at > deadlines.due_at THEN NULL ELSE deadlines.warned_at END,
                   escalated_at = CASE WHEN excluded.due_at > deadlines.due_at THEN NULL ELSE deadlines.escalated_at END",
            )
            .arg(id.to_string())
            .arg(d.kind.as_str())
            .arg(ms(d.starts_at))
            .arg(d.due_at.map(ms))
            .arg(d.warn_at().map(ms))
            .arg(i64::from(d.paused))
            .arg(d.met_at.map(ms))
            .arg(d.problem.clone())
            .arg(i64::from(d.provisional)),
        )
        .await?;
    }
    // A closed case (erased, withdrawn, rejected) leaves no deadline open,
    // including one computed before it closed that no longer applies (the
    // erasure start of a case restored in cooling-off).
    if case.state.is_terminal()
        && let Some(closed) = case.closed_at
    {
        ctx.defer(
            Stmt::new(
                "close deadlines",
                "UPDATE deadlines SET met_at = $1 WHERE case_id = $2 AND met_at IS NULL",
            )
            .arg(ms(closed))
            .arg(id.to_string()),
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn append_audit(
    ctx: &mut WriteCtx,
    case: &Case,
    pseudonym: &str,
    change: &Change,
    actor: &str,
) -> Result<(), StoreError> {
    let event = AuditEvent {
        seq: 0,
        case_id: case.id.to_string(),
        subject: pseudonym.to_owned(),
        kind: change.kind.clone(),
        from_state: change.from.map(|s| s.as_str().to_owned()),
        to_state: change.to.as_str().to_owned(),
        actor: actor.to_owned(),
        at: change.at.to_string(),
        detail: change.detail.clone(),
    };
    insert_event(ctx, event).await
}

/// A case's events in the order they happened: those in the tree by
/// sequence number, then those still queued (sequence number 0, no hash
/// yet) by queue id.
pub(crate) async fn case_events(
    conn: &mut DbConn,
    case_id: &str,
) -> Result<Vec<RecordedEvent>, StoreError> {
    // One statement, one snapshot: each event with its leaf if it has one.
    // The leaf is looked up per event by its queue id (a join let
    // PostgreSQL hash the whole leaf table when its estimate of a case's
    // events was off: a millisecond a case at 14,000 leaves, more as the
    // log grows).
    let rows = sqlx::query("SELECT COALESCE(x.seq, 0), x.case_id, x.subject, x.kind, x.from_state, x.to_state, x.actor, x.at, x.detail, COALESCE(x.hash, ''), CAST(CASE WHEN x.seq IS NULL THEN 1 ELSE 0 END AS BIGINT), COALESCE(x.seq, x.qid)
         FROM (SELECT e.qid, e.case_id, e.subject, e.kind, e.from_state, e.to_state, e.actor, e.at, e.detail,
                      (SELECT l.seq FROM audit_leaves l WHERE l.qid = e.qid) AS seq,
                      (SELECT l.hash FROM audit_leaves l WHERE l.qid = e.qid) AS hash
               FROM audit_entries e WHERE e.case_id = $1) x")
        .bind(case_id.to_owned())
        .fetch_all(&mut *conn)
        .await
        .map_err(db("read audit"))?;
    let mut keyed = Vec::with_capacity(rows.len());
    for r in &rows {
        keyed.push(((r.get::<i64, _>(10), r.get::<i64, _>(11)), row_to_event(r)?));
    }
    // Sequenced first by sequence number, then queued by queue id.
    keyed.sort_unstable_by_key(|(k, _)| *k);
    Ok(keyed.into_iter().map(|(_, e)| e).collect())
}

impl Store {
    // ---------------------------------------------------------------- cases

    /// Stores a newly opened case and its creation event.
    pub async fn create_case(
        &self,
        case: Case,
        change: Change,
        pseudonym: String,
        principal: String,
        idem: Option<Idem>,
    ) -> Result<Case, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    ctx.defer(
                        Stmt::new(
                            "insert case",
                            "INSERT INTO cases (id, subject, subject_pseudonym, principal, channel, state, version, created_at, updated_at, cooling_off_ends_at, body)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                        )
                        .arg(case.id.to_string())
                        .arg(case.subject.expose())
                        .arg(pseudonym.clone())
                        .arg(principal.clone())
                        .arg(case.channel.as_str())
                        .arg(case.state.as_str())
                        .arg(i64::try_from(case.version).unwrap_or(i64::MAX))
                        .arg(ms(case.created_at))
                        .arg(ms(case.updated_at))
                        .arg(case.cooling_off_ends_at.map(ms))
                        .arg(to_json(&case)?),
                    )
                    .await?;
                    append_audit(ctx, &case, &pseudonym, &change, &principal).await?;
                    write_effects(ctx, &case, &change).await?;
                    finish_idem(ctx, idem.as_ref(), &case).await?;
                    Ok(case)
                })
            })
            .await
    }

    /// Applies a command to a case: loads it, runs the state machine, writes
    /// the new state, its audit event, any jobs and the idempotency record,
    /// all in one transaction.
    pub async fn apply(
        &self,
        id: CaseId,
        cmd: CaseCommand,
        now: Timestamp,
        actor: String,
        jobs: Vec<NewJob>,
        idem: Option<Idem>,
    ) -> Result<Case, StoreError> {
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let case = apply_in(ctx, id, &cmd, now, &actor).await?;
                    for j in &jobs {
                        enqueue(ctx, &case.id, j, now_wall()).await?;
                    }
                    finish_idem(ctx, idem.as_ref(), &case).await?;
                    Ok(case)
                })
            })
            .await
    }

    pub async fn get_case(&self, id: CaseId) -> Result<Option<Case>, StoreError> {
        let row = sqlx::query("SELECT body FROM cases WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(db("read case"))?;
        row.map(|r| from_json(&r.get::<String, _>(0))).transpose()
    }

    /// A case with the principal (API key name) that opened it, in one read.
    pub async fn get_case_and_principal(
        &self,
        id: CaseId,
    ) -> Result<Option<(String, Case)>, StoreError> {
        let row = sqlx::query("SELECT principal, body FROM cases WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(db("read case"))?;
        row.map(|r| Ok((r.get::<String, _>(0), from_json(&r.get::<String, _>(1))?)))
            .transpose()
    }

    /// The erased case of an account (by its pseudonym), if it was erased:
    /// the case id and its platform.
    pub async fn erased_case_of(
        &self,
        pseudonym: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let r = sqlx::query(
            "SELECT id, principal FROM cases WHERE subject_pseudonym = $1 AND state = 'erased' ORDER BY created_at DESC LIMIT 1",
        )
        .bind(pseudonym.to_owned())
        .fetch_optional(&self.read)
        .await
        .map_err(db("find an erased case"))?;
        Ok(r.map(|r| (r.get(0), r.get(1))))
    }

    /// The principal (API key name) that opened the case.
    pub async fn case_principal(&self, id: CaseId) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT principal FROM cases WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(db("read case"))
    }

    /// Starts the erasure of up to `limit` cases whose cooling-off has ended
    /// at `now`, each with its `jobs`, and returns what happened to each.
    /// The due cases are claimed with `FOR UPDATE SKIP LOCKED` on
    /// PostgreSQL, so instances running this timer at once take different
    /// cases. A case that cannot start is reported and leaves the others
    /// untouched (a savepoint of its own).
    pub async fn start_due_erasures(
        &self,
        now: Timestamp,
        today: jiff::civil::Date,
        limit: u32,
        actor: String,
    ) -> Result<Vec<(CaseId, Result<Case, StoreError>)>, StoreError> {
        let sql =
            "SELECT 1 FROM cases WHERE state = 'cooling_off' AND cooling_off_ends_at <= $1 LIMIT 1";
        if !self.any_due(sql, now, "find due cases").await? {
            return Ok(vec![]);
        }
        self.writer
            .run(move |ctx| {
                Box::pin(async move {
                    let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT id FROM cases WHERE state = 'cooling_off' AND cooling_off_ends_at <= $1 ORDER BY cooling_off_ends_at LIMIT $2 {}",
                        ctx.skip_locked()
                    )))
                    .bind(ms(now))
                    .bind(i64::from(limit.min(1000)))
                    .fetch_all(ctx.conn().await?)
                    .await
                    .map_err(db("claim due cases"))?;
                    let mut out = Vec::with_capacity(ids.len());
                    for id in ids {
                        let id = CaseId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                        sqlx::query("SAVEPOINT due_case")
                            .execute(ctx.conn().await?)
                            .await
                            .map_err(db("transaction control"))?;
                        // The settlement or erasure jobs are written with the
                        // change (see `write_effects`).
                        let mut r = apply_in(ctx, id, &CaseCommand::StartErasure { today }, now, &actor).await;
                        // The case's deferred statements run inside its
                        // savepoint: a failure undoes this case alone.
                        if r.is_ok()
                            && let Err(e) = ctx.flush().await
                        {
                            r = Err(e);
                        }
                        if r.is_err() {
                            ctx.discard();
                        }
                        let undo = if r.is_err() { "ROLLBACK TO due_case" } else { "RELEASE due_case" };
                        sqlx::query(undo)
                            .execute(ctx.conn().await?)
                            .await
                            .map_err(db("transaction control"))?;
                        out.push((id, r));
                    }
                    Ok(out)
                })
            })
            .await
    }

    /// The open case of a subject (not erased, withdrawn or rejected), the
    /// newest if several; for the user's pages, which find the case of the
    /// account the platform handed over.
    /// `principals`: the platform's and the console's (agents open cases
    /// that continue in the platform's app).
    pub async fn open_case_of(
        &self,
        principal: &str,
        subject: &str,
    ) -> Result<Option<CaseId>, StoreError> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM cases WHERE principal = $1 AND subject = $2 AND state NOT IN ('erased', 'withdrawn', 'rejected') ORDER BY created_at DESC LIMIT 1",
        )
        .bind(principal)
        .bind(subject)
        .fetch_optional(&self.read)
        .await
        .map_err(db("find the open case"))?;
        id.map(|i| CaseId::parse(&i).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    /// A console queue: cases in the given states, oldest first, each with
    /// its nearest open deadline.
    /// Only the cases of `platform` when it is given.
    pub async fn queue(
        &self,
        states: &[&'static str],
        limit: u32,
        platform: Option<&str>,
    ) -> Result<Vec<QueueRow>, StoreError> {
        if states.is_empty() {
            return Ok(vec![]);
        }
        let marks: Vec<String> = (0..states.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "SELECT c.id, c.state, c.channel, c.created_at, \
             (SELECT MIN(d.due_at) FROM deadlines d WHERE d.case_id = c.id AND d.met_at IS NULL AND d.due_at IS NOT NULL), \
             (SELECT d.kind FROM deadlines d WHERE d.case_id = c.id AND d.met_at IS NULL AND d.due_at IS NOT NULL ORDER BY d.due_at LIMIT 1) \
             FROM cases c WHERE c.state IN ({}) AND ($2 IS NULL OR c.principal = $2) ORDER BY c.created_at LIMIT $1",
            marks.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(limit))
            .bind(platform.map(str::to_owned));
        for s in states {
            q = q.bind(*s);
        }
        let rows = q.fetch_all(&self.read).await.map_err(db("read a queue"))?;
        Ok(rows
            .iter()
            .map(|r| QueueRow {
                id: r.get(0),
                state: r.get(1),
                channel: r.get(2),
                created_at: from_ms(r.get(3)),
                due_at: r.get::<Option<i64>, _>(4).map(from_ms),
                due_kind: r.get(5),
            })
            .collect())
    }

    /// Cases per state; only `platform`'s when given.
    pub async fn count_by_state(
        &self,
        platform: Option<&str>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) FROM cases WHERE ($1 IS NULL OR principal = $1) GROUP BY state",
        )
        .bind(platform.map(str::to_owned))
        .fetch_all(&self.read)
        .await
        .map_err(db("count cases"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

impl Store {
    // ---------------------------------------------------------------- audit

    pub async fn audit_for_case(&self, id: CaseId) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut conn = self.read.acquire().await.map_err(db("read audit"))?;
        case_events(&mut conn, &id.to_string()).await
    }

    /// Events `from_seq..` in order, at most `limit`.
    pub async fn audit_range(
        &self,
        from_seq: u64,
        limit: u32,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.seq, e.case_id, e.subject, e.kind, e.from_state, e.to_state, e.actor, e.at, e.detail, l.hash FROM audit_leaves l JOIN audit_entries e ON e.qid = l.qid WHERE l.seq >= $1 ORDER BY l.seq LIMIT $2",
        )
        .bind(i64::try_from(from_seq).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db("read audit"))?;
        rows.iter().map(row_to_event).collect()
    }
}
