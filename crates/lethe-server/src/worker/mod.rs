//! The durable background worker: a timer that starts erasure when
//! cooling-off ends, and workers that run jobs under leases.

use jiff::{SignedDuration, Timestamp};
use lethe_domain::Case;
use lethe_ledger::{
    FinalEvent, KeyDestruction, Receipt, ReceiptStep, ReceiptSystem, ReceiptTable, RecordedEvent,
};
use lethe_store::{Job, NewJob, now_wall};
use std::time::Duration;
use tokio::sync::watch;

use crate::AppState;
use crate::outbound::settlement::{instruction_body, settlement_endpoint};
use drift::{drift_hold, drift_wait};

pub mod drift;
pub mod purge;
pub mod reapply;
pub mod sequencer;

/// How often an instance looks for its own tables to vacuum (PostgreSQL
/// with autovacuum off only; see `Store::vacuum_if_needed`).
const VACUUM_EVERY: Duration = Duration::from_secs(60);

/// The name under which the vault's key destruction is recorded.
pub const VAULT_SYSTEM: &str = "lethe_vault";

/// How often an instance records that it is alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// Expired idempotency records deleted per purge at most.
const IDEMPOTENCY_PURGE_BATCH: u32 = 10_000;

/// Cases moved to erasing per timer tick at most.
const DUE_BATCH: u32 = 500;

pub fn spawn(st: AppState, shutdown: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = vec![
        tokio::spawn(timer(st.clone(), shutdown.clone())),
        tokio::spawn(crate::worker::sequencer::run(st.clone(), shutdown.clone())),
    ];
    if st.notifications.url.is_some() || st.demo_platform.get().is_some() {
        handles.push(tokio::spawn(crate::outbound::webhook::deliver_loop(
            st.clone(),
            shutdown.clone(),
        )));
    }
    for n in 0..st.worker.concurrency {
        handles.push(tokio::spawn(work(st.clone(), shutdown.clone(), n)));
    }
    handles.extend(crate::api::exports::spawn(st.clone(), shutdown.clone()));
    if st.events.nats_url.is_some() {
        handles.push(tokio::spawn(crate::outbound::events::publish_loop(
            st.clone(),
            shutdown.clone(),
        )));
    }
    handles
}

/// The jobs of an erasure: one per system of the data map and, as one more
/// system, crypto-shredding (the subject's vault keys are destroyed).
pub fn erasure_jobs(systems: &crate::Systems, max_attempts: u32) -> Vec<NewJob> {
    systems
        .names()
        .map(|s| NewJob {
            kind: "erase".into(),
            system: s.to_owned(),
            max_attempts,
        })
        .chain(std::iter::once(NewJob {
            kind: "shred".into(),
            system: VAULT_SYSTEM.into(),
            max_attempts,
        }))
        .collect()
}

/// Deadlines are data: on start-up and every tick, every case whose
/// cooling-off ended (even while the process was down) starts erasing.
async fn timer(st: AppState, mut shutdown: watch::Receiver<bool>) {
    let every = Duration::from_millis(st.worker.timer_interval_ms);
    let mut tick: u64 = 0;
    let head_every = Duration::from_secs(st.worker.tree_head_interval_secs);
    let mut last_head: Option<std::time::Instant> = None;
    let mut reports_done: Option<jiff::civil::Date> = None;
    let cosigning = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let purge_every = Duration::from_secs(st.worker.purge_interval_secs);
    let mut last_purge: Option<std::time::Instant> = None;
    let mut last_vacuum: Option<std::time::Instant> = None;
    let mut last_beat: Option<std::time::Instant> = None;
    let mut warned_on: Option<jiff::civil::Date> = None;
    let drift_running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let purge_running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rules_running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut drift_started = false;
    loop {
        if *shutdown.borrow() {
            return;
        }
        // Say this instance is alive; the per-key rate is shared out among
        // the live instances.
        if last_beat.is_none_or(|t| t.elapsed() >= HEARTBEAT_EVERY) {
            last_beat = Some(std::time::Instant::now());
            match st.store.instance_alive(jiff::Timestamp::now()).await {
                Ok(n) => {
                    st.limiter.set_instances(n);
                    st.receipt_tries.set_instances(n);
                }
                Err(e) => tracing::warn!(error = %e, "instance heartbeat failed"),
            }
        }
        // Cooling-off ended: the chosen settlements go out (refunds
        // counted for today, in the platform's time zone), or the erasure
        // starts.
        let now = st.clock.now();
        let today = now.to_zoned_datetime(st.tz.clone()).date();
        match st
            .store
            .start_due_erasures(now, today, DUE_BATCH, "worker".into())
            .await
        {
            Ok(started) => {
                let mut any = false;
                for (id, r) in started {
                    match r {
                        Ok(_) => any = true,
                        Err(e) => tracing::warn!(case = %id, error = %e, "could not start erasure"),
                    }
                }
                if any {
                    st.wake.notify_waiters();
                }
            }
            Err(e) => tracing::error!(error = %e, "deadline check failed"),
        }
        // Deadlines are data: this runs at start-up too, so a deadline that
        // passed while the process was down is escalated at once.
        match st.store.deadline_alerts(st.clock.now(), DUE_BATCH).await {
            Ok(alerts) => {
                for a in alerts {
                    if a.overdue {
                        tracing::error!(case = %a.case_id, deadline = %a.kind, "deadline overdue: escalated");
                    } else {
                        tracing::warn!(case = %a.case_id, deadline = %a.kind, "deadline at 80%");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "deadline monitor failed"),
        }
        tick = tick.wrapping_add(1);
        // Support requests past their answer deadline escalate like cases.
        if tick % SUPPORT_EVERY == 1 {
            match st.store.support_waiting(st.clock.now()).await {
                Ok((_, 0)) => {}
                Ok((waiting, late)) => {
                    tracing::error!(
                        overdue = late,
                        waiting,
                        "support requests past their answer deadline: escalated"
                    )
                }
                Err(e) => tracing::warn!(error = %e, "reading the support queue failed"),
            }
            match crate::api::support::close_stale(&st).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    requests = n,
                    "answered support requests closed; their contacts destroyed"
                ),
                Err(e) => {
                    tracing::warn!(problem = %e.detail, "closing answered support requests failed")
                }
            }
            // Limit keys and client hashes count for a day; after that
            // they only link requests together, so they are emptied.
            let now = st.clock.now();
            let day_ago = now
                .checked_sub(jiff::SignedDuration::from_hours(25))
                .unwrap_or(now);
            match st
                .store
                .scrub_support_limits(day_ago, crate::api::support::CLOSE_BATCH)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::debug!(requests = n, "support limit keys emptied"),
                Err(e) => tracing::warn!(error = %e, "emptying support limit keys failed"),
            }
        }
        if tick % CALENDAR_EVERY == 1 {
            reload_calendar(&st).await;
        }
        if tick % COVERAGE_EVERY == 1 {
            warn_uncovered(&st, &mut warned_on);
        }
        // Signed tree heads on a schedule.
        if last_head.is_none_or(|t| t.elapsed() >= head_every) {
            last_head = Some(std::time::Instant::now());
            match st
                .store
                .sign_tree_head(st.signer.clone(), st.clock.now().to_string())
                .await
            {
                // Witnesses cosign the new checkpoint (beside the timer:
                // a slow witness must not hold it).
                Ok(Some(head)) if !st.transparency.witnesses.is_empty() => {
                    let st2 = st.clone();
                    if !cosigning.swap(true, std::sync::atomic::Ordering::AcqRel) {
                        let flag = cosigning.clone();
                        tokio::spawn(async move {
                            crate::outbound::witness::cosign(&st2, &head).await;
                            flag.store(false, std::sync::atomic::Ordering::Release);
                        });
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "signing a tree head failed"),
            }
        }
        // Last month's compliance reports, published once (by one instance).
        let month = st
            .clock
            .now()
            .to_zoned_datetime(st.tz.clone())
            .date()
            .first_of_month();
        if reports_done != Some(month) && crate::api::transparency::publish_due(&st).await {
            reports_done = Some(month);
        }
        // Receipts of cases closed just before a crash get signed now.
        if tick % SEAL_EVERY == 1 {
            match st.store.unsigned_receipts(50).await {
                Ok(list) => {
                    for (case_id, _) in list {
                        if let Err(e) = crate::receipt::seal_receipt_within(
                            &st,
                            &case_id,
                            std::time::Duration::ZERO,
                        )
                        .await
                        {
                            tracing::error!(case = %case_id, problem = %e.detail, "signing a receipt failed");
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "reading receipts failed"),
            }
        }
        // A purge whose notice period is over, or whose runner stopped.
        // Scheduled purge rules (their queries may take a while: beside the
        // timer).
        if !rules_running.swap(true, std::sync::atomic::Ordering::AcqRel) {
            let (st2, flag) = (st.clone(), rules_running.clone());
            tokio::spawn(async move {
                crate::worker::purge::run_scheduled(&st2).await;
                flag.store(false, std::sync::atomic::Ordering::Release);
            });
        }
        crate::worker::purge::run_due(&st, &purge_running).await;
        // The data map against the live schemas, on its schedule (one
        // instance claims each run; it runs beside the timer).
        if !drift_running.load(std::sync::atomic::Ordering::Acquire) {
            let now = st.clock.now();
            let every = SignedDuration::from_hours(i64::from(st.worker.datamap_check_hours));
            let due = match st
                .store
                .schedule_due(lethe_store::DATAMAP_CHECK, now, every)
                .await
            {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the data-map check's state failed");
                    false
                }
            };
            // Each instance checks once when it starts (a finding mapped
            // and restarted closes at once), then on the shared schedule.
            let claim = if drift_started {
                every
            } else {
                SignedDuration::ZERO
            };
            if (due || !drift_started)
                && st
                    .store
                    .claim_drift_check(now, claim)
                    .await
                    .unwrap_or(false)
            {
                drift_started = true;
                drift_running.store(true, std::sync::atomic::Ordering::Release);
                let (st2, flag) = (st.clone(), drift_running.clone());
                tokio::spawn(async move {
                    datamap_check(&st2).await;
                    flag.store(false, std::sync::atomic::Ordering::Release);
                });
            }
        }
        // PostgreSQL with autovacuum off: Lethe's own tables, every minute.
        if last_vacuum.is_none_or(|t| t.elapsed() >= VACUUM_EVERY) {
            last_vacuum = Some(std::time::Instant::now());
            match st.store.vacuum_if_needed().await {
                Ok(t) if t.is_empty() => {}
                Ok(t) => {
                    tracing::info!(tables = %t.join(", "), "vacuumed (PostgreSQL's autovacuum is off)")
                }
                Err(e) => tracing::warn!(error = %e, "vacuuming failed"),
            }
        }
        if last_purge.is_none_or(|t| t.elapsed() >= purge_every) {
            last_purge = Some(std::time::Instant::now());
            // Reapply runs whose instance stopped mid-run.
            if let Ok(before) = st.clock.now().checked_sub(SignedDuration::from_hours(1))
                && let Err(e) = st.store.fail_stale_reapply(before).await
            {
                tracing::warn!(error = %e, "closing interrupted reapply runs failed");
            }
            if let Err(e) = st.store.purge_tombstones(st.clock.now()).await {
                tracing::error!(error = %e, "purging tombstones failed");
            }
            if let Err(e) = st.store.purge_sessions(jiff::Timestamp::now()).await {
                tracing::error!(error = %e, "purging sessions failed");
            }
            // Idempotency records a day old answer no retry any more.
            match st.store.purge_idempotency(IDEMPOTENCY_PURGE_BATCH).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(records = n, "expired idempotency records purged"),
                Err(e) => tracing::error!(error = %e, "purging idempotency records failed"),
            }
            // Export links that expired, and what ended exports left.
            crate::api::exports::purge(&st).await;
            // Rows kept for a legal reason go when their retention ends.
            for (system, r) in st.systems.purge_expired(st.clock.now()).await {
                match r {
                    Ok(done) => {
                        for (case, table, rows) in done {
                            tracing::info!(%system, %case, %table, rows, "kept rows purged at the end of their retention");
                        }
                    }
                    Err(e) => {
                        tracing::error!(%system, error = %e, "purging expired kept rows failed")
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = st.timer_wake.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The scheduled data-map check: every SQL system's live schema (read-only,
/// sampling uncovered columns) against the data map; what is new opens a
/// finding, raises `datamap.drift` and shows on the console; what is gone
/// closes.
pub async fn datamap_check(st: &AppState) {
    let sample = st.worker.datamap_check_sample;
    let checked: Vec<String> = st
        .datamap
        .systems
        .iter()
        .filter(|s| s.kind.dialect().is_some())
        .map(|s| s.name.to_string())
        .collect();
    let (found, error) =
        match lethe_connect::check::check_systems(&st.datamap, sample, |_, _| {}, |_, _, _| {})
            .await
        {
            Ok(run) => (
                run.findings
                    .iter()
                    .filter(|f| lethe_connect::check::is_drift(f))
                    .map(|f| lethe_store::NewFinding {
                        system: f.system.clone(),
                        kind: f.kind.to_owned(),
                        at: f.at.clone(),
                        severity: match f.severity {
                            lethe_connect::check::Severity::Error => "error",
                            _ => "warning",
                        }
                        .to_owned(),
                        breaking: lethe_connect::check::is_breaking(f),
                        message: f.message.clone(),
                        fix: f.fix.clone(),
                    })
                    .collect(),
                None,
            ),
            Err(e) => (vec![], Some(e.to_string())),
        };
    // A failed check clears nothing: only systems it read are compared.
    let checked = if error.is_some() { vec![] } else { checked };
    match st
        .store
        .record_drift(checked, found, error.clone(), st.clock.now())
        .await
    {
        Ok(opened) => {
            for f in &opened {
                tracing::warn!(system = %f.system, kind = %f.kind, at = %f.at, breaking = f.breaking, "data map drift: {}", f.message);
            }
        }
        Err(e) => tracing::error!(error = %e, "recording the data-map check failed"),
    }
    if let Some(e) = error {
        tracing::error!(error = %e, "the scheduled data-map check failed");
    }
}

/// Ticks between checks of the support queue's deadlines.
const SUPPORT_EVERY: u64 = 60;
/// Ticks between checks of the operator's calendar file.
const CALENDAR_EVERY: u64 = 5;
/// Ticks between looks at the calendar's coverage (it warns once a day).
const COVERAGE_EVERY: u64 = 60;
const SEAL_EVERY: u64 = 50;

/// Days before the calendar's coverage ends from which a warning is logged
/// every day.
pub const COVERAGE_WARN_DAYS: i64 = 60;

/// The calendar's last covered day, when it is at most
/// [`COVERAGE_WARN_DAYS`] away (or already past) on `today`.
pub fn coverage_ending(
    cal: &lethe_domain::calendar::Calendar,
    today: jiff::civil::Date,
) -> Option<jiff::civil::Date> {
    let end_year = cal.years().map(|y| y.year).max()?;
    let end = jiff::civil::Date::new(end_year, 12, 31).ok()?;
    ((end - today).get_days() as i64 <= COVERAGE_WARN_DAYS).then_some(end)
}

/// Once a day from 60 days before the calendar's last covered day: a
/// warning (deadlines beyond it are provisional until the operator's
/// calendar file adds the next year's State Council notice); an error once
/// today itself is past it. `last` holds the day last warned.
fn warn_uncovered(st: &AppState, last: &mut Option<jiff::civil::Date>) {
    let today = st.clock.now().to_zoned_datetime(st.tz.clone()).date();
    if *last == Some(today) {
        return;
    }
    let cal = st.calendar.get();
    let Some(end_year) = cal.years().map(|y| y.year).max() else {
        return;
    };
    let Ok(end) = jiff::civil::Date::new(end_year, 12, 31) else {
        return;
    };
    let left = (end - today).get_days() as i64;
    if !cal.covers(today.year()) {
        *last = Some(today);
        tracing::error!(
            year = today.year(),
            "the working-day calendar does not cover this year: working-day deadlines are provisional (weekends and the fixed statutory holidays only); add the State Council notice to calendar_file"
        );
    } else if left <= COVERAGE_WARN_DAYS {
        *last = Some(today);
        tracing::warn!(
            covered_until = %end,
            days_left = left,
            "the working-day calendar ends soon: deadlines past it are provisional; add next year's State Council notice to calendar_file when it is published"
        );
    }
}

/// Reloads the operator's calendar file when it changed. A malformed file
/// is rejected with its line and reason and the calendar in force stays;
/// a good one replaces it and every open case's deadlines are recomputed.
pub async fn reload_calendar(st: &AppState) {
    let Some(file) = st.calendar.file.clone() else {
        return;
    };
    let stamp = std::fs::metadata(&file).and_then(|m| m.modified()).ok();
    {
        let mut last = st
            .calendar
            .file_stamp
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *last == stamp {
            return;
        }
        *last = stamp;
    }
    match crate::CalendarState::load(Some(&file)) {
        Ok(cal) => {
            *st.calendar
                .current
                .write()
                .unwrap_or_else(|p| p.into_inner()) = cal;
            *st.calendar
                .last_error
                .write()
                .unwrap_or_else(|p| p.into_inner()) = None;
            let mut after = None;
            loop {
                match st.store.recompute_deadlines(after.clone(), 500).await {
                    Ok(Some(last)) => after = Some(last),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "recomputing deadlines failed");
                        break;
                    }
                }
            }
            tracing::info!(file = %file.display(), "calendar reloaded; deadlines recomputed");
        }
        Err(e) => {
            tracing::error!(error = %e, "calendar file rejected; the previous calendar stays in force");
            *st.calendar
                .last_error
                .write()
                .unwrap_or_else(|p| p.into_inner()) = Some(e);
        }
    }
}

async fn work(st: AppState, mut shutdown: watch::Receiver<bool>, n: usize) {
    let lease = SignedDuration::from_secs(st.worker.lease_secs);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let job = match st.store.job_ready(now_wall()).await {
            Ok(true) => match st.store.claim_job(now_wall(), lease).await {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(error = %e, "claiming a job failed");
                    None
                }
            },
            Ok(false) => None,
            Err(e) => {
                tracing::error!(error = %e, "looking for jobs failed");
                None
            }
        };
        let Some(job) = job else {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = st.wake.notified() => {}
                _ = shutdown.changed() => {}
            }
            continue;
        };
        tracing::debug!(worker = n, job = job.id, kind = %job.kind, "job claimed");
        // Erase jobs of a SQL system run in set-based batches: take more
        // ready jobs of the same system, up to its batch size.
        let mut jobs = vec![job];
        if jobs[0].kind == "erase" {
            let more = st.systems.batch_size(&jobs[0].system).saturating_sub(1);
            if more > 0 {
                match st
                    .store
                    .claim_more_jobs(
                        "erase",
                        &jobs[0].system,
                        now_wall(),
                        lease,
                        u32::try_from(more).unwrap_or(u32::MAX),
                    )
                    .await
                {
                    Ok(extra) => jobs.extend(extra),
                    Err(e) => tracing::error!(error = %e, "claiming more erase jobs failed"),
                }
            }
        }
        // Keep the leases alive while the jobs run. If the process dies, the
        // leases expire and another worker (or the restarted process) takes
        // the jobs over.
        let hb = {
            let st = st.clone();
            let claims: Vec<(i64, u32)> = jobs.iter().map(|j| (j.id, j.attempts)).collect();
            tokio::spawn(async move {
                let every = Duration::from_secs(
                    u64::try_from((st.worker.lease_secs / 3).max(1)).unwrap_or(1),
                );
                loop {
                    tokio::time::sleep(every).await;
                    let until = now_wall()
                        .checked_add(SignedDuration::from_secs(st.worker.lease_secs))
                        .unwrap_or(now_wall());
                    // One transaction for the whole batch, so a batch of
                    // many jobs renews every lease in time.
                    if st.store.heartbeat(claims.clone(), until).await.is_err() {
                        return;
                    }
                }
            })
        };
        let result = if jobs[0].kind == "erase" {
            erase_jobs(&st, &jobs).await
        } else {
            run_job(&st, &jobs[0]).await
        };
        hb.abort();
        if let Err(err) = result {
            for job in &jobs {
                job_failed(&st, job, err.clone()).await;
            }
        }
    }
}

/// A failed job is retried with backoff, or after its last attempt fails
/// its case (an erasure) or its instruction (a settlement).
async fn job_failed(st: &AppState, job: &Job, err: String) {
    if job.attempts < job.max_attempts {
        let backoff = backoff(job.attempts, st.worker.max_backoff_secs);
        tracing::warn!(job = job.id, system = %job.system, attempt = job.attempts, error = %err, retry_in_s = backoff.as_secs(), "job failed; will retry");
        let at = now_wall().checked_add(backoff).unwrap_or(now_wall());
        if let Err(e) = st
            .store
            .retry_job(job.id, Some(job.attempts), err, Some(at))
            .await
        {
            tracing::error!(error = %e, "could not reschedule job");
        }
        return;
    }
    if job.kind == "settle" {
        tracing::error!(job = job.id, error = %err, "settlement instruction failed for the last time; the user may choose again");
        let cmd = lethe_domain::CaseCommand::SettlementResult {
            instruction_id: job.system.clone(),
            ok: false,
            reference: None,
            error: Some(err.clone()),
        };
        if let Err(e) = st
            .store
            .apply_completing_job(job.id, job.case_id, cmd, st.clock.now(), "worker".into())
            .await
        {
            tracing::error!(error = %e, "could not record the failed settlement");
        }
        return;
    }
    tracing::error!(job = job.id, error = %err, "job failed for the last time; the case needs an operator");
    if let Err(e) = st
        .store
        .fail_erasure(
            job.id,
            job.attempts,
            job.case_id,
            format!("erasure in system {} failed: {err}", job.system),
            st.clock.now(),
        )
        .await
    {
        tracing::error!(error = %e, "could not mark the case failed");
    }
}

/// Runs a batch of erase jobs of one system: keyed hashes of the subjects'
/// identifiers are kept first (tombstones), then the system erases the
/// whole batch (set-based on SQL) and verifies; each case's outcome is
/// recorded in its own transaction. An HTTP system that answers later
/// leaves its job to the callback (or to the next attempt); a manual system
/// opens a task for an operator.
async fn erase_jobs(st: &AppState, jobs: &[Job]) -> Result<(), String> {
    let Some(first) = jobs.first() else {
        return Ok(());
    };
    let system = first.system.clone();
    if let Some(why) = drift_hold(st, &system).await? {
        // Erasing now would fail part-way: wait without using an attempt,
        // the reason on each case's timeline (the job's note).
        let at = now_wall()
            .checked_add(SignedDuration::from_secs(drift_wait(st)))
            .unwrap_or(now_wall());
        for job in jobs {
            st.store
                .defer_job(job.id, job.attempts, why.clone(), at)
                .await
                .map_err(|e| e.to_string())?;
        }
        tracing::warn!(system = %system, jobs = jobs.len(), "erasure held: the system's schema no longer matches the data map");
        return Ok(());
    }
    let now = st.clock.now();
    let mut items = vec![];
    let mut live = vec![];
    for job in jobs {
        let case = job_case(st, job).await?;
        if case.state != lethe_domain::CaseState::Erasing {
            // Withdrawn or already finished: nothing to erase. Close the job.
            tracing::info!(job = job.id, state = %case.state, "erase job for a case not erasing; closing it");
            st.store
                .finish_job(job.id, job.attempts, format!("case is {}", case.state))
                .await
                .map_err(|e| e.to_string())?;
            continue;
        }
        // Keep keyed hashes of the identifiers before they are erased.
        let ids = match st.systems.sql(&job.system) {
            Some(sys) => sys
                .identifiers(&case.subject)
                .await
                .map_err(|e| e.to_string())?,
            None => vec![],
        };
        let stones: Vec<(String, String, jiff::Timestamp)> = ids
            .into_iter()
            .filter_map(|(kind, value)| {
                let days = st.tombstones.days(&kind);
                if days == 0 {
                    return None;
                }
                let until = now
                    .checked_add(SignedDuration::from_hours(24 * i64::from(days)))
                    .ok()?;
                Some((
                    kind.clone(),
                    st.secrets.identifier_hash(&kind, &value),
                    until,
                ))
            })
            .collect();
        if !stones.is_empty() {
            st.store
                .put_tombstones(case.id, stones, now)
                .await
                .map_err(|e| e.to_string())?;
        }
        items.push(lethe_connect::BatchItem {
            case_id: case.id.to_string(),
            subject: case.subject.clone(),
        });
        live.push((job, case));
    }
    if items.is_empty() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let callback = format!("{}/v1/erasure-callbacks/{system}", st.public_url);
    let results = st
        .systems
        .erase_batch(&system, &items, st.clock.now(), Some(&callback))
        .await
        .inspect_err(|_| st.metrics.connector_error(&system))?;
    st.metrics
        .erase_latency(&system, started.elapsed().as_secs_f64());
    for ((job, case), r) in live.into_iter().zip(results) {
        match r {
            crate::outbound::systems::Erased::Done(mut outcome) => {
                label_tables(st, &system, &mut outcome);
                let value = serde_json::to_value(&outcome).map_err(|e| e.to_string())?;
                let closed = st
                    .store
                    .record_erasure(
                        job.id,
                        case.id,
                        system.clone(),
                        value,
                        st.clock.now(),
                        build_receipt,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                seal_in_background(st, closed);
            }
            crate::outbound::systems::Erased::AwaitingCallback => {
                // Not a failure: the service accepted. Without its callback
                // in time, the request is sent again (same idempotency key).
                let at = now_wall()
                    .checked_add(SignedDuration::from_secs(st.worker.callback_wait_secs))
                    .unwrap_or(now_wall());
                st.store
                    .retry_job(
                        job.id,
                        Some(job.attempts),
                        format!("accepted by {system}; waiting for its signed callback"),
                        Some(at),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
            }
            crate::outbound::systems::Erased::Manual {
                instructions,
                due_days,
            } => {
                let now = st.clock.now();
                let due = now
                    .checked_add(SignedDuration::from_hours(24 * i64::from(due_days)))
                    .unwrap_or(now);
                let task = st
                    .store
                    .open_manual_task(job.id, case.id, system.clone(), instructions, due, now)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(case = %case.id, task, system = %system, "manual erasure task opened");
            }
        }
    }
    Ok(())
}

/// Sends one settlement instruction (idempotency key = instruction id) and
/// records the platform's signed answer, completing the job in the same
/// transaction. A retry after a crash sends the same key again, so the
/// platform settles once.
async fn settle(st: &AppState, job: &Job) -> Result<(), String> {
    let case = job_case(st, job).await?;
    // Withdrawn (or rejected) before the platform was instructed: nothing
    // is settled for a case that is closed.
    if case.state.is_terminal() {
        st.store
            .finish_job(job.id, job.attempts, "the case is closed".into())
            .await
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    let Some(asset) = case.assets.iter().find(|a| {
        a.settlement.as_ref().is_some_and(|s| {
            s.instruction_id == job.system
                && s.status == lethe_domain::asset::SettlementStatus::Pending
        })
    }) else {
        // Settled already (by an instance whose lease ran out while the
        // platform answered, say): the job's work is done.
        st.store
            .finish_job(
                job.id,
                job.attempts,
                "nothing pending for this instruction".into(),
            )
            .await
            .map_err(|e| e.to_string())?;
        return Ok(());
    };
    let Some(s) = asset.settlement.as_ref() else {
        return Ok(());
    };
    let endpoint = settlement_endpoint(st, &asset.source)?;
    let body = instruction_body(case.id, asset, s, Some(case.subject.expose()));
    let answer = crate::outbound::settlement::send(st, &endpoint, &s.instruction_id, &body).await?;
    let (ok, reference, error) = match answer["status"].as_str() {
        Some("done") => (true, answer["reference"].as_str().map(str::to_owned), None),
        Some("failed") => (
            false,
            None,
            Some(
                answer["reason"]
                    .as_str()
                    .unwrap_or("the platform refused")
                    .chars()
                    .take(300)
                    .collect(),
            ),
        ),
        _ => {
            return Err(
                "the settlement endpoint answered without a status of done or failed".into(),
            );
        }
    };
    let cmd = lethe_domain::CaseCommand::SettlementResult {
        instruction_id: s.instruction_id.clone(),
        ok,
        reference,
        error,
    };
    st.store
        .apply_completing_job(job.id, case.id, cmd, st.clock.now(), "worker".into())
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Signs the receipt right after the case closed (a tree head covering the
/// closing event is signed on demand). A failure here is retried by the
/// timer; the erasure itself is complete.
pub async fn seal_if_erased(st: &AppState, case: &Case) {
    if case.state == lethe_domain::CaseState::Erased
        && let Err(e) = crate::receipt::seal_receipt(st, &case.id.to_string()).await
    {
        tracing::error!(case = %case.id, problem = %e.detail, "signing the receipt failed; will retry");
    }
}

/// Receipts a worker hands off to be sealed at once, beside it, at most.
pub const SEALS_IN_FLIGHT: usize = 64;

/// Seals the receipt of a case a worker just closed without holding the
/// worker: the seal waits for the sequencer to integrate the closing
/// event, and the worker goes on to the next job meanwhile. At most
/// [`SEALS_IN_FLIGHT`] at once; beyond that the timer's next pass over
/// unsigned receipts seals it.
fn seal_in_background(st: &AppState, case: Case) {
    if case.state != lethe_domain::CaseState::Erased {
        return;
    }
    match st.seal_slots.clone().try_acquire_owned() {
        Ok(slot) => {
            let st = st.clone();
            tokio::spawn(async move {
                seal_if_erased(&st, &case).await;
                drop(slot);
            });
        }
        Err(_) => {
            tracing::debug!(case = %case.id, "many receipts being sealed; the timer seals this one");
        }
    }
}

/// 1 s, 2 s, 4 s ... capped.
fn backoff(attempt: u32, max_secs: i64) -> SignedDuration {
    let secs = 1i64
        .checked_shl(attempt.saturating_sub(1).min(30))
        .unwrap_or(i64::MAX)
        .min(max_secs);
    SignedDuration::from_secs(secs)
}

/// The case a job works for (a job outlives no case: "the case is gone"
/// is an error the job's retries report).
async fn job_case(st: &AppState, job: &Job) -> Result<Case, String> {
    st.store
        .get_case(job.case_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the case is gone".to_owned())
}

async fn run_job(st: &AppState, job: &Job) -> Result<(), String> {
    match job.kind.as_str() {
        "shred" => {
            let case = job_case(st, job).await?;
            if case.state != lethe_domain::CaseState::Erasing {
                st.store
                    .finish_job(job.id, job.attempts, format!("case is {}", case.state))
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(());
            }
            // The subject's exports go before the erasure can complete:
            // the case closes only once this job has recorded its outcome.
            let exports_deleted =
                crate::api::exports::delete_for_subject(st, case.subject.expose()).await?;
            let now = st.clock.now();
            // The subject's keys under every platform of the installation
            // (one data map: the account is gone for all of them), and the
            // key of the bare subject id that vaults before platform keys
            // used.
            let subject = case.subject.expose();
            let mut d = st
                .vault
                .destroy(subject, &now.to_string())
                .await
                .map_err(|e| e.to_string())?;
            for p in st.store.platforms().await.map_err(|e| e.to_string())? {
                let key = crate::api::vault::platform_subject(&p, subject);
                let more = st
                    .vault
                    .destroy(&key, &now.to_string())
                    .await
                    .map_err(|e| e.to_string())?;
                d.versions_destroyed += more.versions_destroyed;
            }
            let mut value = serde_json::to_value(&d).map_err(|e| e.to_string())?;
            if let Some(m) = value.as_object_mut() {
                m.insert("exports_deleted".into(), exports_deleted.into());
            }
            let closed = st
                .store
                .record_erasure(
                    job.id,
                    case.id,
                    job.system.clone(),
                    value,
                    now,
                    build_receipt,
                )
                .await
                .map_err(|e| e.to_string())?;
            seal_in_background(st, closed);
            Ok(())
        }
        "erase" => erase_jobs(st, std::slice::from_ref(job)).await,
        "settle" => settle(st, job).await,
        other => Err(format!("unknown job kind {other}")),
    }
}

/// Names each table of an outcome for users as the data map does (what it
/// holds and why it is kept, in Chinese and English), for the receipt.
fn label_tables(st: &AppState, system: &str, outcome: &mut lethe_connect::SystemOutcome) {
    let Some(sys) = st
        .datamap
        .systems
        .iter()
        .find(|s| s.name.as_str() == system)
    else {
        return;
    };
    for t in outcome.tables.iter_mut() {
        if let Some(mapped) = sys.tables.iter().find(|m| m.name.as_str() == t.table) {
            t.labels = mapped.labels.given().cloned();
        }
    }
}

/// Builds the sealed receipt from the per-system outcomes and the case's
/// audit events (the last of which is the `case.erased` event).
pub fn build_receipt(
    case: &Case,
    outcomes: &[(String, serde_json::Value)],
    events: &[RecordedEvent],
    now: Timestamp,
) -> String {
    let key_destruction = outcomes
        .iter()
        .find(|(name, _)| name == VAULT_SYSTEM)
        .and_then(|(_, v)| serde_json::from_value::<lethe_vault::Destruction>(v.clone()).ok())
        .map(|d| KeyDestruction {
            versions_destroyed: d.versions_destroyed,
            destroyed_at: d.destroyed_at,
        });
    let systems = outcomes
        .iter()
        .filter(|(name, _)| name != VAULT_SYSTEM)
        .map(|(name, v)| {
            let tables = serde_json::from_value::<lethe_connect::SystemOutcome>(v.clone())
                .map(|o| {
                    o.tables
                        .into_iter()
                        .map(|t| ReceiptTable {
                            table: t.table,
                            action: t.action,
                            rows: t.rows,
                            remaining: t.remaining,
                            legal_basis: t.legal_basis,
                            retain_until: t.retain_until.map(|x| x.to_string()),
                            shared_kept: t.shared_kept,
                            set_null: t.set_null,
                            hashed: t.hashed,
                            stub_for: t.stub_for,
                            stub_deleted: t.stub_deleted,
                            labels: t.labels,
                        })
                        .collect()
                })
                .unwrap_or_default();
            ReceiptSystem {
                system: name.clone(),
                tables,
            }
        })
        .collect();
    let steps = events
        .iter()
        .filter(|e| e.event.from_state.as_deref() != Some(e.event.to_state.as_str()))
        .map(|e| ReceiptStep {
            kind: e.event.kind.clone(),
            at: e.event.at.clone(),
        })
        .collect();
    // Filled when the receipt is signed if the event is still queued.
    let final_event = events
        .last()
        .filter(|e| !e.hash.is_empty())
        .map(|e| FinalEvent {
            seq: e.event.seq,
            hash: e.hash.clone(),
        });
    let subject = events
        .first()
        .map(|e| e.event.subject.clone())
        .unwrap_or_default();
    let settlements = case
        .assets
        .iter()
        .filter_map(|a| {
            let s = a.settlement.as_ref()?;
            Some(lethe_ledger::ReceiptSettlement {
                asset_id: a.id.clone(),
                kind: a.kind.as_str().to_owned(),
                option: s.option.as_str().to_owned(),
                status: match s.status {
                    lethe_domain::asset::SettlementStatus::Forfeited => "forfeited",
                    _ => "done",
                }
                .to_owned(),
                amount_minor: s.amount.map(|m| m.get()),
                amount_shown_minor: s.amount_shown.map(|m| m.get()),
                reference: s.reference.clone(),
            })
        })
        .collect();
    let receipt = Receipt {
        case_id: case.id.to_string(),
        subject,
        issued_at: now.to_string(),
        systems,
        key_destruction,
        steps,
        settlements,
        support_url: None,
        final_event,
        tree_head: None,
        inclusion_proof: vec![],
        digest: String::new(),
        signature: String::new(),
        public_key: String::new(),
    }
    .seal();
    serde_json::to_string(&receipt).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(super::backoff(1, 300).as_secs(), 1);
        assert_eq!(super::backoff(4, 300).as_secs(), 8);
        assert_eq!(super::backoff(40, 300).as_secs(), 300);
    }

    #[test]
    fn the_calendars_end_is_announced_60_days_ahead() {
        let cal = lethe_domain::calendar::Calendar::china().unwrap();
        let last = cal.years().map(|y| y.year).max().unwrap();
        let day = |y: i16, m: i8, d: i8| jiff::civil::Date::new(y, m, d).unwrap();
        let end = day(last, 12, 31);
        // 61 days before: quiet; 60 days before, on the day, after: announced.
        assert_eq!(
            super::coverage_ending(&cal, end - jiff::Span::new().days(61)),
            None
        );
        for today in [end - jiff::Span::new().days(60), end, day(last + 1, 1, 15)] {
            assert_eq!(super::coverage_ending(&cal, today), Some(end), "{today}");
        }
    }
}
