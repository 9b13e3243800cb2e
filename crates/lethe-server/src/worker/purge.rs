//! Purges: many subjects erased on one legal basis (PIPL Art. 47:
//! retention ended, dormant accounts), each without a case of its own.
//!
//! `POST /v1/purges` names the legal basis and the subjects (a list, or a
//! purge rule of the data map whose query selects them) and an optional
//! notice period, in which each subject is told (`purge.notice`) and can
//! object by signing in (the platform reports it). Then one instance takes
//! the purge's lease and runs it in batches: a subject with an open case,
//! a blocker (an unfinished order) or money to settle (a balance, a paid
//! subscription) is skipped and listed with the reason, never erased; the rest go through
//! the same erasure engine as cases (set-based SQL batches, every system
//! of the data map, verification, vault keys destroyed). Each subject's
//! outcome is one audit event, written with its state in one transaction
//! per batch; the signed report lists every subject by pseudonym.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use jiff::{SignedDuration, Timestamp};
use lethe_connect::BatchItem;
use lethe_domain::SubjectId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::http::extract::ApiJson;
use crate::http::middleware::Principal;
use crate::http::problem::Problem;
use crate::outbound::systems::Erased;

/// Subjects one request (or rule) may name.
pub const MAX_SUBJECTS: usize = 1_000_000;
/// The largest purge request (a million ids of up to 16 characters).
pub const BODY_LIMIT: usize = 24 * 1024 * 1024;
/// Subjects checked and erased per batch.
const BATCH: u32 = 500;
/// Subjects checked at once (blocker and asset rules).
const CHECK_CONCURRENCY: usize = 16;
/// The lease of a running purge; renewed every `LEASE_SECS / 3` while it
/// runs.
const LEASE_SECS: i64 = 60;
/// Failed runs in a row before a purge fails for good.
const MAX_FAILURES: u32 = 10;
/// Seconds before a failed run is tried again.
const RETRY_SECS: i64 = 60;
/// The longest notice period.
const MAX_NOTICE_DAYS: u32 = 90;
/// The report's type.
pub const REPORT_TYPE: &str = "lethe.purge.v1";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePurge {
    /// Why these accounts are erased (kept in the audit log and the report).
    #[schema(
        min_length = 10,
        max_length = 500,
        example = "PIPL Art. 47: accounts dormant for 3 years; the retention period ended"
    )]
    pub legal_basis: String,
    /// The accounts, by subject id (or give `rule`).
    #[serde(default)]
    #[schema(max_items = 1000000, example = json!(["1042", "1043"]))]
    pub subjects: Option<Vec<String>>,
    /// A purge rule of the data map (`[[purge_rules]]`) whose query selects
    /// the accounts (or give `subjects`).
    #[serde(default)]
    #[schema(example = "dormant_3y")]
    pub rule: Option<String>,
    /// Days each account is told first and can object by signing in (0 to
    /// 90; default 0: no notice).
    #[serde(default)]
    #[schema(maximum = 90, example = 30)]
    pub notice_days: u32,
}

/// A purge and where it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct PurgeView {
    #[schema(example = "purge-5f1c2a9e3b7d4c60")]
    pub id: String,
    pub legal_basis: String,
    pub rule: Option<String>,
    /// When the notice period ends, if there is one.
    pub notice_until: Option<String>,
    /// noticing, running, done or failed.
    #[schema(example = "running")]
    pub state: String,
    pub requested: u64,
    pub pending: u64,
    pub erased: u64,
    pub skipped: u64,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
}

impl From<lethe_store::PurgeRow> for PurgeView {
    fn from(r: lethe_store::PurgeRow) -> Self {
        Self {
            id: r.id,
            legal_basis: r.legal_basis,
            rule: r.rule,
            notice_until: r.notice_until.map(|t| t.to_string()),
            state: r.state,
            requested: r.requested,
            pending: r.pending,
            erased: r.erased,
            skipped: r.skipped,
            created_at: r.created_at.to_string(),
            finished_at: r.finished_at.map(|t| t.to_string()),
            error: r.error,
        }
    }
}

/// Erases many accounts on one legal basis: a list, or a purge rule of the
/// data map, and an optional notice period. Accounts with an open case, an
/// unfinished order or assets to settle are skipped and listed with the
/// reason. Runs in the background; read the purge for its progress and,
/// when done, its signed report.
#[utoipa::path(post, path = "/v1/purges", tag = "erasure", request_body = CreatePurge, responses((status = 202, body = PurgeView), (status = 404, body = Problem), (status = 422, body = Problem)), security(("api_key" = [])))]
pub async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(body): ApiJson<CreatePurge>,
) -> Result<Response, Problem> {
    let legal_basis = lethe_domain::ids::clean_text(body.legal_basis.trim());
    if !(10..=500).contains(&legal_basis.chars().count()) {
        return Err(Problem::unprocessable(
            "legal_basis must be 10 to 500 characters: name the law and why it applies (e.g. PIPL Art. 47: retention ended)",
        )
        .field("legal_basis"));
    }
    if body.notice_days > MAX_NOTICE_DAYS {
        return Err(
            Problem::unprocessable(format!("notice_days must be 0 to {MAX_NOTICE_DAYS}"))
                .field("notice_days"),
        );
    }
    let ids: Vec<String> = match (body.subjects, &body.rule) {
        (Some(list), None) => list,
        (None, Some(rule)) => rule_subjects(&st, rule).await?,
        _ => {
            return Err(Problem::unprocessable(
                "give either subjects (a list of subject ids) or rule (a purge rule of the data map), not both",
            )
            .field("subjects"));
        }
    };
    let id = open_purge(&st, &p.0, legal_basis, body.rule, ids, body.notice_days).await?;
    st.timer_wake.notify_waiters();
    let row = st
        .store
        .purge(&id, Some(&p.0))
        .await?
        .ok_or_else(Problem::internal)?;
    Ok((
        StatusCode::ACCEPTED,
        [(axum::http::header::LOCATION, format!("/v1/purges/{id}"))],
        axum::Json(PurgeView::from(row)),
    )
        .into_response())
}

/// Opens a purge for `principal` (a request, or a scheduled rule): the
/// ids parsed and pseudonymised, duplicates dropped. Its id.
pub async fn open_purge(
    st: &AppState,
    principal: &str,
    legal_basis: String,
    rule: Option<String>,
    ids: Vec<String>,
    notice_days: u32,
) -> Result<String, Problem> {
    if ids.is_empty() || ids.len() > MAX_SUBJECTS {
        return Err(Problem::unprocessable(format!(
            "a purge names 1 to {MAX_SUBJECTS} accounts; this one names {}",
            ids.len()
        ))
        .field("subjects"));
    }
    let pseudo = st.secrets.pseudonymizer();
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    let mut subjects = Vec::with_capacity(ids.len());
    for (i, raw) in ids.into_iter().enumerate() {
        let s = SubjectId::parse(&raw).map_err(|e| {
            Problem::unprocessable(format!("subjects[{i}] {e}")).field(format!("subjects[{i}]"))
        })?;
        let hash = pseudo.of(s.expose());
        if seen.insert(hash.clone()) {
            subjects.push((s.expose().to_owned(), hash));
        }
    }
    let now = st.clock.now();
    let notice_until = (notice_days > 0)
        .then(|| now.checked_add(SignedDuration::from_hours(24 * i64::from(notice_days))))
        .transpose()
        .map_err(|_| Problem::internal())?;
    let id = format!("purge-{}", hex::encode(rand::random::<[u8; 8]>()));
    st.store
        .create_purge(
            lethe_store::NewPurge {
                id: id.clone(),
                principal: principal.to_owned(),
                legal_basis,
                rule,
                notice_until,
                subjects,
            },
            now,
        )
        .await?;
    Ok(id)
}

/// The subject ids a data-map purge rule selects (bounded).
async fn rule_subjects(st: &AppState, name: &str) -> Result<Vec<String>, Problem> {
    let Some(rule) = st
        .datamap
        .purge_rules
        .iter()
        .find(|r| r.name.as_str() == name)
    else {
        return Err(
            Problem::not_found("no purge rule with this name in the data map")
                .field("rule")
                .fix(format!(
                    "use one of: {}",
                    st.datamap
                        .purge_rules
                        .iter()
                        .map(|r| r.name.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
        );
    };
    let Some(sys) = st.systems.sql(rule.system.as_str()) else {
        return Err(Problem::unprocessable("the rule's system is not a SQL system").field("rule"));
    };
    Ok(sys.select_subjects(&rule.query, MAX_SUBJECTS).await?)
}

/// This platform's purges, newest first (up to 100), with their counts.
#[utoipa::path(get, path = "/v1/purges", tag = "erasure", responses((status = 200, body = [PurgeView])), security(("api_key" = [])))]
pub async fn list(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Response, Problem> {
    let mut out = vec![];
    for id in st.store.purge_ids(&p.0, 100).await? {
        if let Some(row) = st.store.purge(&id, Some(&p.0)).await? {
            out.push(PurgeView::from(row));
        }
    }
    Ok(axum::Json(out).into_response())
}

/// Purge rules with a schedule (`every_days`): when one is due (one
/// instance claims it; the first run one period after the rule appears),
/// its query selects the accounts and a purge opens for the rule's
/// platform, with the rule's legal basis and notice period.
pub async fn run_scheduled(st: &AppState) {
    let now = st.clock.now();
    for rule in &st.datamap.purge_rules {
        let (Some(days), Some(basis), Some(platform)) =
            (rule.every_days, &rule.legal_basis, &rule.platform)
        else {
            continue;
        };
        let name = format!("purge_rule:{}", rule.name);
        let every = SignedDuration::from_hours(24 * i64::from(days));
        let due = match st.store.schedule_due(&name, now, every).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, rule = %rule.name, "reading a purge rule's schedule failed");
                false
            }
        };
        if !due
            || !st
                .store
                .claim_schedule(name.clone(), now, every, false)
                .await
                .unwrap_or(false)
        {
            continue;
        }
        let opened = async {
            if !st.store.live_platforms().await?.contains(platform) {
                return Err(Problem::unprocessable(format!(
                    "purge rule {}: no live API key is named {platform}; create it (lethe apikey create --name {platform}) or correct platform",
                    rule.name
                )));
            }
            let ids = rule_subjects(st, rule.name.as_str()).await?;
            if ids.is_empty() {
                return Ok(None);
            }
            open_purge(
                st,
                platform,
                basis.trim().to_owned(),
                Some(rule.name.to_string()),
                ids,
                rule.notice_days,
            )
            .await
            .map(Some)
        }
        .await;
        let error = match opened {
            Ok(Some(id)) => {
                tracing::info!(rule = %rule.name, purge = %id, "scheduled purge opened");
                None
            }
            Ok(None) => {
                tracing::info!(rule = %rule.name, "scheduled purge rule selected no account");
                None
            }
            Err(p) => {
                tracing::error!(rule = %rule.name, problem = %p.detail, "scheduled purge failed");
                Some(p.detail)
            }
        };
        if let Err(e) = st.store.schedule_error(name, error).await {
            tracing::warn!(error = %e, "recording a purge rule's run failed");
        }
    }
}

/// A purge of the platform (another platform's is not found).
async fn owned(st: &AppState, platform: &str, id: &str) -> Result<lethe_store::PurgeRow, Problem> {
    st.store
        .purge(id, Some(platform))
        .await?
        .ok_or_else(|| Problem::not_found("no purge of this platform has this id"))
}

/// A purge of this platform: its state and counts.
#[utoipa::path(get, path = "/v1/purges/{id}", tag = "erasure", params(("id" = String, Path)), responses((status = 200, body = PurgeView), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn read(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let row = owned(&st, &p.0, &id).await?;
    Ok(axum::Json(PurgeView::from(row)).into_response())
}

/// The signed report of a finished purge: every account by pseudonym,
/// erased or skipped with the reason, and the counts.
#[utoipa::path(get, path = "/v1/purges/{id}/report", tag = "erasure", params(("id" = String, Path)), responses((status = 200, description = "the signed report: {report, public_key, signature}"), (status = 404, body = Problem), (status = 409, body = Problem)), security(("api_key" = [])))]
pub async fn report(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let row = owned(&st, &p.0, &id).await?;
    match st.store.purge_report(&id, Some(&p.0)).await? {
        Some(r) => {
            Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], r).into_response())
        }
        None => Err(Problem::conflict(
            "purge-not-done",
            format!(
                "the purge is {}: its report is signed when it is done",
                row.state
            ),
        )),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Objection {
    /// The account that signed in during the notice period.
    #[schema(example = "1042")]
    pub subject_id: String,
}

/// An account signed in during the purge's notice period: it is kept
/// (skipped, with the reason), audited.
#[utoipa::path(post, path = "/v1/purges/{id}/objections", tag = "erasure", params(("id" = String, Path)), request_body = Objection, responses((status = 200, description = "the account is kept"), (status = 404, body = Problem), (status = 409, body = Problem)), security(("api_key" = [])))]
pub async fn object(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Objection>,
) -> Result<Response, Problem> {
    let row = owned(&st, &p.0, &id).await?;
    if row.state != "noticing" {
        return Err(Problem::conflict(
            "notice-over",
            "the purge's notice period is over: an objection comes before it ends",
        ));
    }
    let s = SubjectId::parse(&body.subject_id)
        .map_err(|e| Problem::unprocessable(format!("subject_id {e}")).field("subject_id"))?;
    let hash = st.secrets.pseudonym(s.expose());
    if !st
        .store
        .object_to_purge(id, p.0, hash, st.clock.now())
        .await?
    {
        return Err(Problem::not_found(
            "this account is not waiting in the purge's notice period",
        ));
    }
    Ok(axum::Json(serde_json::json!({"kept": true})).into_response())
}

// ------------------------------------------------------------------ engine

/// Runs a purge that is due, if any (called by the timer): this instance
/// takes its lease and works through it in batches, renewing the lease.
pub async fn run_due(st: &AppState, running: &Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::Ordering;
    if running.load(Ordering::Acquire) {
        return;
    }
    let wall = Timestamp::now();
    let lease = wall
        .checked_add(SignedDuration::from_secs(LEASE_SECS))
        .unwrap_or(wall);
    let owner = hex::encode(rand::random::<[u8; 12]>());
    let id = match st
        .store
        .claim_purge(st.clock.now(), wall, lease, owner.clone())
        .await
    {
        Ok(Some(id)) => id,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "looking for a due purge failed");
            return;
        }
    };
    running.store(true, Ordering::Release);
    let (st, flag) = (st.clone(), running.clone());
    tokio::spawn(async move {
        match run(&st, &id, &owner).await {
            Ok(()) => {}
            Err(Stop::Lost) => {
                tracing::warn!(purge = %id, "another instance took the purge over; this run stops");
            }
            Err(Stop::Wait(why)) => {
                // Not the purge's fault (schema drift): tried again later,
                // without counting.
                tracing::warn!(purge = %id, reason = %why, "purge waits");
                let at = later(crate::worker::drift::drift_wait(&st));
                let _ = st
                    .store
                    .purge_failed(id.clone(), owner.clone(), why, u32::MAX, at, st.clock.now())
                    .await;
            }
            Err(Stop::Failed(e)) => {
                // Tried again later from the last recorded batch; at the
                // limit the purge fails with the reason.
                match st
                    .store
                    .purge_failed(
                        id.clone(),
                        owner.clone(),
                        e.clone(),
                        MAX_FAILURES,
                        later(RETRY_SECS),
                        st.clock.now(),
                    )
                    .await
                {
                    Ok(true) => tracing::error!(purge = %id, error = %e, "purge failed for good"),
                    _ => {
                        tracing::warn!(purge = %id, error = %e, "purge batch failed; it resumes later")
                    }
                }
            }
        }
        flag.store(false, Ordering::Release);
    });
}

/// Wall-clock time `secs` from now (leases and retries run on it).
fn later(secs: i64) -> Timestamp {
    let now = Timestamp::now();
    now.checked_add(SignedDuration::from_secs(secs))
        .unwrap_or(now)
}

/// Why a purge run stopped before its end.
enum Stop {
    /// Another instance holds the lease now.
    Lost,
    /// A system's schema would break the erasure: wait, uncounted.
    Wait(String),
    /// Counted toward [`MAX_FAILURES`].
    Failed(String),
}

impl From<String> for Stop {
    fn from(e: String) -> Self {
        Self::Failed(e)
    }
}

impl From<lethe_store::StoreError> for Stop {
    fn from(e: lethe_store::StoreError) -> Self {
        match e {
            lethe_store::StoreError::Refused(_) => Self::Lost,
            e => Self::Failed(e.to_string()),
        }
    }
}

/// Works through a leased purge to its end.
async fn run(st: &AppState, id: &str, owner: &str) -> Result<(), Stop> {
    let row = st
        .store
        .purge(id, None)
        .await?
        .ok_or("the purge is gone".to_owned())?;
    // The lease is renewed on a timer while the run lasts (a batch calling
    // HTTP services may take longer than the lease); a lost lease stops it.
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let beat = {
        let (st, id, owner, lost) = (st.clone(), id.to_owned(), owner.to_owned(), lost.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(
                    (LEASE_SECS / 3).unsigned_abs(),
                ))
                .await;
                let until = Timestamp::now()
                    .checked_add(SignedDuration::from_secs(LEASE_SECS))
                    .unwrap_or_else(|_| Timestamp::now());
                if !st
                    .store
                    .renew_purge(id.clone(), owner.clone(), until)
                    .await
                    .unwrap_or(true)
                {
                    lost.store(true, std::sync::atomic::Ordering::Release);
                    return;
                }
            }
        })
    };
    let out = run_batches(st, id, owner, &row, &lost).await;
    beat.abort();
    out?;
    finish(st, id, owner).await
}

/// The batches of a leased purge, in a pipeline of two: the next batch is
/// checked (its rule queries) while this one is erased and recorded.
async fn run_batches(
    st: &AppState,
    id: &str,
    owner: &str,
    row: &lethe_store::PurgeRow,
    lost: &std::sync::atomic::AtomicBool,
) -> Result<(), Stop> {
    let mut after = -1i64;
    let mut current = next_batch(st, id, &mut after).await?;
    let mut checked = check_batch(st, current.clone()).await?;
    while !current.is_empty() {
        if lost.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Stop::Lost);
        }
        let upcoming = next_batch(st, id, &mut after).await?;
        let n = current.len();
        let t = std::time::Instant::now();
        let (done, next_checked) = tokio::join!(
            async {
                let outcomes = erase_checked(st, checked).await?;
                st.store
                    .record_purge_batch(
                        id.to_owned(),
                        owner.to_owned(),
                        row.principal.clone(),
                        outcomes,
                        st.clock.now(),
                    )
                    .await
                    .map_err(Stop::from)
            },
            check_batch(st, upcoming.clone())
        );
        done?;
        checked = next_checked?;
        current = upcoming;
        tracing::debug!(purge = %id, subjects = n, ms = t.elapsed().as_millis() as u64, "purge batch done");
    }
    Ok(())
}

/// The next pending subjects after `after` (and moves it on).
async fn next_batch(
    st: &AppState,
    id: &str,
    after: &mut i64,
) -> Result<Vec<lethe_store::PendingSubject>, String> {
    let batch = st
        .store
        .pending_purge_subjects(id, *after, BATCH)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(last) = batch.last() {
        *after = last.n;
    }
    Ok(batch)
}

/// A checked batch: the outcomes of those that stay, and those that go
/// with what is forfeited with them.
struct Checked {
    kept: Vec<lethe_store::PurgeOutcome>,
    go: Vec<(lethe_store::PendingSubject, Option<String>)>,
}

/// Checks a batch: an open case, a blocker or money to settle keep a
/// subject.
async fn check_batch(
    st: &AppState,
    batch: Vec<lethe_store::PendingSubject>,
) -> Result<Checked, String> {
    let hashes: Vec<String> = batch.iter().map(|s| s.subject_hash.clone()).collect();
    let open = st
        .store
        .open_case_subjects(&hashes)
        .await
        .map_err(|e| e.to_string())?;
    // Why each subject must stay, if it must: an open case, a blocker,
    // assets to settle.
    let futures: Vec<_> = batch
        .iter()
        .map(|s| {
            let (st, subject) = (st.clone(), s.subject.clone());
            let open = open.contains(&s.subject_hash);
            async move {
                if open {
                    return Ok(Hold::Keep("has an open cancellation case".to_owned()));
                }
                let Ok(subject) = SubjectId::parse(&subject) else {
                    return Ok(Hold::Keep("not a valid subject id".to_owned()));
                };
                hold_reason(&st, &subject).await
            }
        })
        .collect();
    let checks: Vec<Result<Hold, String>> = futures_util::stream::iter(futures)
        .buffered(CHECK_CONCURRENCY)
        .collect()
        .await;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut go = vec![];
    for (s, c) in batch.into_iter().zip(checks) {
        match c? {
            Hold::Keep(reason) => outcomes.push(lethe_store::PurgeOutcome {
                n: s.n,
                subject_hash: s.subject_hash,
                erased: false,
                reason: Some(reason),
                rows: 0,
                systems: vec![],
            }),
            Hold::Go(forfeited) => go.push((s, forfeited)),
        }
    }
    Ok(Checked { kept: outcomes, go })
}

/// Erases the subjects a check let go, and says each subject's outcome.
async fn erase_checked(
    st: &AppState,
    checked: Checked,
) -> Result<Vec<lethe_store::PurgeOutcome>, Stop> {
    let Checked {
        kept: mut outcomes,
        go,
    } = checked;
    if go.is_empty() {
        return Ok(outcomes);
    }
    // The same engine as cases: each system in set-based batches, verified.
    let items: Vec<BatchItem> = go
        .iter()
        .filter_map(|(s, _)| {
            Some(BatchItem {
                case_id: format!("{}-{}", short(&s.subject_hash), s.n),
                subject: SubjectId::parse(&s.subject).ok()?,
            })
        })
        .collect();
    let mut rows = vec![0u64; items.len()];
    // Systems that only accepted (HTTP in callback mode): not confirmed.
    let mut unconfirmed: Vec<Vec<String>> = vec![vec![]; items.len()];
    let mut systems = vec![];
    let names: Vec<String> = st.systems.names().map(str::to_owned).collect();
    for system in names {
        if matches!(
            st.systems.get(&system),
            Some(
                crate::outbound::systems::Connector::Manual(_)
                    | crate::outbound::systems::Connector::Event
            )
        ) {
            // Done by hand or by a service's own listener: not part of a
            // purge (the report says so).
            continue;
        }
        // Like a case's erasure, a purge waits while the system's schema
        // would break it.
        if let Some(why) = crate::worker::drift::drift_hold(st, &system).await? {
            return Err(Stop::Wait(why));
        }
        let mut i = 0;
        for chunk in items.chunks(st.systems.batch_size(&system).max(1)) {
            for r in st
                .systems
                .erase_batch(&system, chunk, st.clock.now(), None)
                .await?
            {
                match r {
                    Erased::Done(o) => {
                        if o.tables
                            .iter()
                            .any(|t| t.action != "keep" && t.remaining.is_some_and(|n| n > 0))
                        {
                            return Err(Stop::Failed(format!(
                                "{system}: rows remain after the erasure"
                            )));
                        }
                        rows[i] += o
                            .tables
                            .iter()
                            .filter(|t| t.action != "keep")
                            .map(|t| t.rows)
                            .sum::<u64>();
                    }
                    Erased::AwaitingCallback => unconfirmed[i].push(system.clone()),
                    Erased::Manual { .. } => {}
                }
                i += 1;
            }
        }
        systems.push(system);
    }
    // Crypto-shredding: the subjects' vault keys, under every platform, in
    // one write.
    let platforms = st.store.platforms().await.map_err(|e| e.to_string())?;
    let at = st.clock.now().to_string();
    let mut keys = Vec::with_capacity(items.len() * (1 + platforms.len()));
    for it in &items {
        let subject = it.subject.expose();
        keys.push(subject.to_owned());
        keys.extend(
            platforms
                .iter()
                .map(|p| crate::api::vault::platform_subject(p, subject)),
        );
    }
    st.vault
        .destroy_many(&keys, &at)
        .await
        .map_err(|e| e.to_string())?;
    for (((s, forfeited), n), waiting) in go.into_iter().zip(rows).zip(unconfirmed) {
        // What the entry says beside "erased": what was forfeited, and the
        // services that accepted but have not confirmed.
        let mut notes: Vec<String> = forfeited.into_iter().collect();
        if !waiting.is_empty() {
            notes.push(format!("accepted, not confirmed: {}", waiting.join(", ")));
        }
        outcomes.push(lethe_store::PurgeOutcome {
            n: s.n,
            subject_hash: s.subject_hash,
            erased: true,
            reason: (!notes.is_empty()).then(|| notes.join("; ")),
            rows: n,
            systems: systems.clone(),
        });
    }
    outcomes.sort_by_key(|o| o.n);
    Ok(outcomes)
}

fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}

/// Asset kinds that hold money the account's holder is owed: a purge
/// never erases an account holding one (settling needs the holder's
/// choice). Points, coupons and bindings carry no money and are forfeited
/// with the account, listed in its entry.
const MONEY: [lethe_domain::asset::AssetKind; 4] = [
    lethe_domain::asset::AssetKind::Balance,
    lethe_domain::asset::AssetKind::GiftCard,
    lethe_domain::asset::AssetKind::Deposit,
    lethe_domain::asset::AssetKind::Subscription,
];

/// Whether a subject must stay (Err(reason)) or may go (Ok(what is
/// forfeited with it)): a blocker (an unfinished order) or money to settle
/// keep it.
async fn hold_reason(st: &AppState, subject: &SubjectId) -> Result<Hold, String> {
    let (blockers, _) = st
        .systems
        .checks(&st.datamap, subject)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(b) = blockers.first() {
        return Ok(Hold::Keep(format!("blocker {}: {}", b.code, b.message_en)));
    }
    let assets = st
        .systems
        .assets(&st.datamap, subject)
        .await
        .map_err(|e| e.to_string())?;
    let money: Vec<&str> = assets
        .iter()
        .filter(|a| MONEY.contains(&a.kind))
        .map(|a| a.kind.as_str())
        .collect();
    if !money.is_empty() {
        return Ok(Hold::Keep(format!(
            "holds assets to settle: {}",
            money.join(", ")
        )));
    }
    let mut forfeited: Vec<&str> = assets.iter().map(|a| a.kind.as_str()).collect();
    forfeited.dedup();
    Ok(Hold::Go(
        (!forfeited.is_empty()).then(|| format!("forfeited: {}", forfeited.join(", "))),
    ))
}

enum Hold {
    /// Skipped, with the reason.
    Keep(String),
    /// Erased; what goes with it, if anything.
    Go(Option<String>),
}

/// The report of a purge whose subjects are all done, signed.
async fn finish(st: &AppState, id: &str, owner: &str) -> Result<(), Stop> {
    let row = st
        .store
        .purge(id, None)
        .await?
        .ok_or("the purge is gone".to_owned())?;
    let entries = st
        .store
        .purge_entries(id)
        .await
        .map_err(|e| e.to_string())?;
    let mut skipped_by_reason: std::collections::BTreeMap<String, u64> = Default::default();
    for e in entries.iter().filter(|e| e.outcome == "skipped") {
        let key = e
            .reason
            .as_deref()
            .map(|r| r.split(':').next().unwrap_or(r).to_owned())
            .unwrap_or_default();
        *skipped_by_reason.entry(key).or_default() += 1;
    }
    let now = st.clock.now();
    let manual: Vec<String> = st
        .systems
        .names()
        .filter(|n| {
            matches!(
                st.systems.get(n),
                Some(
                    crate::outbound::systems::Connector::Manual(_)
                        | crate::outbound::systems::Connector::Event
                )
            )
        })
        .map(str::to_owned)
        .collect();
    let report = serde_json::json!({
        "type": REPORT_TYPE,
        "purge_id": id,
        "legal_basis": row.legal_basis,
        "rule": row.rule,
        "notice_until": row.notice_until.map(|t| t.to_string()),
        "created_at": row.created_at.to_string(),
        "started_at": row.started_at.map(|t| t.to_string()),
        "finished_at": now.to_string(),
        "requested": row.requested,
        "erased": row.erased,
        "skipped": row.skipped,
        "skipped_by_reason": skipped_by_reason,
        "systems_not_covered": manual,
        "subjects": entries,
    });
    let signed = lethe_ledger::report::SignedDoc::sign(&report, &st.signer);
    let detail = serde_json::json!({
        "requested": row.requested,
        "erased": row.erased,
        "skipped": row.skipped,
    });
    st.store
        .finish_purge(
            id.to_owned(),
            owner.to_owned(),
            serde_json::to_value(&signed).map_err(|e| e.to_string()),
            detail,
            now,
        )
        .await
        .map_err(Stop::from)
}
