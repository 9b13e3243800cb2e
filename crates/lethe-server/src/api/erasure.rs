//! Erasure work that completes outside the worker: manual tasks done by an
//! operator, and HTTP services that call back, signed, with their result.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use lethe_domain::CaseId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::http::extract::ApiJson;
use crate::http::middleware::Principal;
use crate::http::problem::Problem;

/// Longest operator note on a manual task.
const MAX_NOTE: usize = 2000;

#[derive(Debug, Serialize, ToSchema)]
pub struct ManualTaskView {
    pub id: i64,
    pub case_id: String,
    pub system: String,
    /// What to erase where, and how (from the data map).
    pub instructions: String,
    pub due_at: String,
    pub overdue: bool,
    pub created_at: String,
    pub completed_at: Option<String>,
    pub completed_by: Option<String>,
    pub note: Option<String>,
    pub records: Option<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    /// Only open tasks (default true).
    pub open: Option<bool>,
}

/// The operator queue of manual erasure tasks: open ones first, oldest
/// due first.
#[utoipa::path(get, path = "/v1/console/manual-tasks", tag = "console", params(TaskQuery), responses((status = 200, body = [ManualTaskView])), security(("api_key" = [])))]
pub async fn list(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    q: crate::http::extract::ApiQuery<TaskQuery>,
) -> Result<Response, Problem> {
    let now = st.clock.now();
    // A platform key sees the tasks of its own cases only.
    let tasks = st
        .store
        .manual_tasks_of(Some(&p.0), q.0.open.unwrap_or(true), 500)
        .await?;
    let out: Vec<ManualTaskView> = tasks
        .into_iter()
        .map(|t| ManualTaskView {
            overdue: t.completed_at.is_none() && t.due_at < now,
            id: t.id,
            case_id: t.case_id,
            system: t.system,
            instructions: t.instructions,
            due_at: t.due_at.to_string(),
            created_at: t.created_at.to_string(),
            completed_at: t.completed_at.map(|x| x.to_string()),
            completed_by: t.completed_by,
            note: t.note,
            records: t.records,
        })
        .collect();
    Ok(axum::Json(out).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteTask {
    /// What was done (no personal data: it is kept with the task).
    #[schema(min_length = 1, max_length = 2000)]
    pub note: String,
    /// How many records were erased by hand.
    pub records: u64,
    /// Required when `records` is 0: why nothing was there to erase (no
    /// personal data).
    #[serde(default)]
    #[schema(max_length = 500)]
    pub why_none: Option<String>,
}

/// Who completes a manual task: the platform that opened the case (its own
/// tasks only), or an agent whose role the console checked.
#[derive(Debug, Clone)]
pub enum TaskActor {
    Platform(String),
    /// An agent's id and the platform it serves (None: every platform).
    Agent(String, Option<String>),
}

/// Completes a manual task with a note; its system's erasure is recorded
/// and, when it was the last system, the case closes with its receipt.
#[utoipa::path(post, path = "/v1/console/manual-tasks/{id}/complete", tag = "console", params(("id" = i64, Path)), request_body = CompleteTask, responses((status = 200, description = "completed"), (status = 404, body = Problem), (status = 409, body = Problem)), security(("api_key" = [])))]
pub async fn complete(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CompleteTask>,
) -> Result<Response, Problem> {
    complete_as(&st, TaskActor::Platform(p.0), &id, body).await
}

/// Completes a manual task for a platform (its own cases) or an agent.
pub async fn complete_as(
    st: &AppState,
    actor: TaskActor,
    id: &str,
    body: CompleteTask,
) -> Result<Response, Problem> {
    let id: i64 = id.parse().map_err(|_| {
        Problem::bad_request("task-id", "the task id in the path must be a number")
            .field("id")
            .fix("use the id from GET /v1/console/manual-tasks")
    })?;
    let note = body.note.trim().to_owned();
    if note.is_empty() || note.chars().count() > MAX_NOTE {
        return Err(Problem::unprocessable(format!(
            "note must be 1 to {MAX_NOTE} characters: say what was erased where"
        ))
        .field("note"));
    }
    let why_none = body.why_none.as_deref().map(str::trim).unwrap_or("");
    if body.records == 0 && !(10..=500).contains(&why_none.chars().count()) {
        return Err(Problem::unprocessable(
            "records is 0: say why there was nothing to erase (10 to 500 characters, no personal data)",
        )
        .field("why_none")
        .fix("add \"why_none\": \"the archive box held no contract for this account\", or give the number of records erased"));
    }
    let (owner, actor) = match &actor {
        TaskActor::Platform(p) => (Some(p.as_str()), format!("platform:{p}")),
        TaskActor::Agent(a, platform) => (platform.as_deref(), format!("agent:{a}")),
    };
    let tasks = st.store.manual_tasks_of(owner, false, 1000).await?;
    let Some(task) = tasks.iter().find(|t| t.id == id) else {
        return Err(Problem::not_found("no manual task with this id"));
    };
    let note = if body.records == 0 {
        format!("{note} (nothing to erase: {why_none})")
    } else {
        note
    };
    if task.completed_at.is_some() {
        return Err(Problem::conflict(
            "completed",
            "this task is already completed",
        ));
    }
    let outcome = lethe_connect::SystemOutcome {
        system: task.system.clone(),
        tables: vec![lethe_connect::TableOutcome {
            table: format!("manual task {id}"),
            action: "delete".into(),
            rows: body.records,
            remaining: Some(0),
            legal_basis: None,
            retain_until: None,
            ..Default::default()
        }],
        replayed: false,
    };
    let value = serde_json::to_value(&outcome).map_err(|_| Problem::internal())?;
    let closed = st
        .store
        .complete_manual_task(
            id,
            actor,
            note,
            body.records,
            value,
            st.clock.now(),
            crate::worker::build_receipt,
        )
        .await?
        .ok_or_else(|| Problem::conflict("completed", "this task is already completed"))?;
    crate::worker::seal_if_erased(st, &closed).await;
    Ok(
        axum::Json(serde_json::json!({ "task": id, "case_state": closed.state.to_string() }))
            .into_response(),
    )
}

/// An HTTP system's signed callback with the result of an erasure it
/// accepted earlier. Signed with the system's secret (Standard Webhooks);
/// replays are refused.
#[utoipa::path(post, path = "/v1/erasure-callbacks/{system}", tag = "erasure", params(("system" = String, Path)), responses((status = 200, description = "recorded"), (status = 401, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn callback(
    State(st): State<AppState>,
    Path(system): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let Some(http) = st.systems.http(&system) else {
        return Err(Problem::not_found(
            "no HTTP system with this name in the data map",
        ));
    };
    crate::outbound::webhook::accept_callback(
        &st,
        http.secret(),
        &headers,
        &body,
        &format!("erasure:{system}"),
    )
    .await?;
    let report: lethe_connect::http::ErasureReport = serde_json::from_slice(&body)
        .map_err(|e| Problem::unprocessable(crate::http::problem::redact_serde(&e.to_string())))?;
    let case_id = report
        .case_id
        .as_deref()
        .ok_or_else(|| Problem::unprocessable("case_id is required").field("case_id"))
        .and_then(|c| {
            CaseId::parse(c)
                .map_err(|e| Problem::unprocessable(format!("case_id {e}")).field("case_id"))
        })?;
    let outcome = http.outcome(report);
    record_report(&st, case_id, system, outcome).await
}

/// Records a service's report of an erasure as its system's result, or
/// sends the job back to retry when the service reports a failure.
async fn record_report(
    st: &AppState,
    case_id: CaseId,
    system: String,
    outcome: Result<lethe_connect::SystemOutcome, lethe_connect::ConnectError>,
) -> Result<Response, Problem> {
    let Some(job) = st.store.open_erase_job(case_id, &system).await? else {
        return Err(Problem::conflict(
            "no-open-erasure",
            "this case has no open erasure in this system (already recorded, or never asked)",
        ));
    };
    match outcome {
        Ok(outcome) => {
            let value = serde_json::to_value(&outcome).map_err(|_| Problem::internal())?;
            let closed = st
                .store
                .record_erasure(
                    job,
                    case_id,
                    system,
                    value,
                    st.clock.now(),
                    crate::worker::build_receipt,
                )
                .await?;
            crate::worker::seal_if_erased(st, &closed).await;
            Ok(axum::Json(
                serde_json::json!({ "recorded": true, "case_state": closed.state.to_string() }),
            )
            .into_response())
        }
        Err(e) => {
            // The service reports a failure: the job retries with backoff;
            // the error is visible on the case.
            let at = lethe_store::now_wall()
                .checked_add(jiff::SignedDuration::from_secs(60))
                .unwrap_or(lethe_store::now_wall());
            st.store
                .retry_job(job, None, e.to_string(), Some(at))
                .await?;
            Ok(axum::Json(serde_json::json!({ "recorded": false, "retry": true })).into_response())
        }
    }
}

/// A service that erases on the `erasure_requested` case event (a data-map
/// system of kind `event`) acknowledges its erasure here, with the same
/// report as an HTTP system's callback; that is the system's result.
#[utoipa::path(post, path = "/v1/cases/{id}/erasures/{system}", tag = "erasure", params(("id" = String, Path), ("system" = String, Path)),
    request_body(content = Object, description = "{\"status\": \"erased\" | \"failed\", \"items\": [{\"name\", \"action\", \"count\", \"remaining\", \"legal_basis\", \"retain_until\"}], \"reason\"}"),
    responses((status = 200, description = "recorded, or sent back to retry"), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)), security(("api_key" = [])))]
pub async fn acknowledge(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((id, system)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Problem> {
    let case = crate::http::ownership::owned_case(&st, &p, &id).await?;
    if !matches!(
        st.systems.get(&system),
        Some(crate::outbound::systems::Connector::Event)
    ) {
        return Err(
            Problem::not_found("no system of kind event with this name in the data map")
                .field("system"),
        );
    }
    let report: lethe_connect::http::ErasureReport = serde_json::from_slice(&body)
        .map_err(|e| Problem::unprocessable(crate::http::problem::redact_serde(&e.to_string())))?;
    if report.case_id.as_deref().is_some_and(|c| c != id) {
        return Err(
            Problem::unprocessable("case_id differs from the case in the path").field("case_id"),
        );
    }
    let outcome = lethe_connect::http::report_outcome(&system, report);
    record_report(&st, case.id, system, outcome).await
}
