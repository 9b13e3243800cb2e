//! The API of reapply, for a platform's restore runbook: start a run after
//! a backup restore, then read its signed report.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::http::extract::ApiJson;
use crate::http::middleware::Principal;
use crate::http::problem::Problem;
use crate::worker::reapply::{self, Deps, Request};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartReapply {
    /// The restored system, as named in the data map.
    #[schema(example = "shop")]
    pub system: String,
    /// The time of the backup that was restored: erasures at or after it
    /// are applied again. RFC 3339, or a date (midnight in the platform's
    /// time zone).
    #[schema(example = "2026-12-01T02:00:00Z")]
    pub since: String,
    /// Count only; erase nothing (default false).
    #[serde(default)]
    pub dry_run: bool,
}

/// A reapply run and, once done, its signed report (counts only).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReapplyRunView {
    #[schema(example = "reapply-5f1c2a9e3b7d4c60")]
    pub id: String,
    pub system: String,
    pub since: String,
    pub dry_run: bool,
    /// running, done or failed.
    #[schema(example = "done")]
    pub state: String,
    pub created_at: String,
    pub finished_at: Option<String>,
    /// `{"report": Report, "public_key": ..., "signature": ...}`; the
    /// signature covers the JSON of `report`.
    #[schema(value_type = Option<Object>)]
    pub signed_report: Option<serde_json::Value>,
    /// Why a failed run failed.
    pub error: Option<String>,
}

fn view(r: lethe_store::ReapplyRun) -> ReapplyRunView {
    ReapplyRunView {
        id: r.id,
        system: r.system,
        since: r.since.to_string(),
        dry_run: r.dry_run,
        state: r.state,
        created_at: r.created_at.to_string(),
        finished_at: r.finished_at.map(|t| t.to_string()),
        signed_report: r.report,
        error: r.error,
    }
}

/// Starts a reapply run after a backup restore of one system: its subject
/// ids are read, those of subjects this platform's cases erased since
/// `since` are erased again with the data map and verified. Runs in the
/// background; poll the run for its signed report.
#[utoipa::path(post, path = "/v1/reapply-runs", tag = "erasure", request_body = StartReapply, responses((status = 202, body = ReapplyRunView), (status = 404, body = Problem), (status = 422, body = Problem)), security(("api_key" = [])))]
pub async fn start(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(body): ApiJson<StartReapply>,
) -> Result<Response, Problem> {
    if st.systems.get(&body.system).is_none() {
        return Err(
            Problem::not_found("no system with this name in the data map")
                .field("system")
                .fix(format!(
                    "use one of: {}",
                    st.systems.names().collect::<Vec<_>>().join(", ")
                )),
        );
    }
    let since = crate::report::parse_when(&body.since, &st.tz)
        .map_err(|e| Problem::unprocessable(format!("since: {e}")).field("since"))?;
    if since > st.clock.now() {
        return Err(Problem::unprocessable(
            "since is in the future: give the time of the backup that was restored",
        )
        .field("since"));
    }
    let id = reapply::new_run_id();
    let req = Request {
        system: body.system,
        since,
        dry_run: body.dry_run,
        platform: Some(p.0.clone()),
    };
    st.store
        .open_reapply(
            id.clone(),
            req.system.clone(),
            req.platform.clone(),
            since,
            req.dry_run,
            st.clock.now(),
        )
        .await?;
    let task = st.clone();
    let run_id = id.clone();
    let actor = format!("platform:{}", p.0);
    tokio::spawn(async move {
        let deps = Deps {
            store: &task.store,
            datamap: &task.datamap,
            systems: task.systems.clone(),
            secrets: &task.secrets,
            signer: &task.signer,
        };
        let clock = task.clock.clone();
        let now = move || clock.now();
        if let Err(e) = reapply::run_recorded(&deps, &run_id, &req, &actor, &now).await {
            tracing::warn!(run = %run_id, error = %e, "reapply run failed");
        }
    });
    let run = st
        .store
        .reapply_run(&id, Some(&p.0))
        .await?
        .ok_or_else(Problem::internal)?;
    Ok((
        StatusCode::ACCEPTED,
        [(
            axum::http::header::LOCATION,
            format!("/v1/reapply-runs/{id}"),
        )],
        axum::Json(view(run)),
    )
        .into_response())
}

/// This platform's reapply runs, newest first (up to 100).
#[utoipa::path(get, path = "/v1/reapply-runs", tag = "erasure", responses((status = 200, body = [ReapplyRunView])), security(("api_key" = [])))]
pub async fn list(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Response, Problem> {
    let runs = st.store.reapply_runs(Some(&p.0), 100).await?;
    Ok(axum::Json(runs.into_iter().map(view).collect::<Vec<_>>()).into_response())
}

/// One reapply run with its signed report once done.
#[utoipa::path(get, path = "/v1/reapply-runs/{id}", tag = "erasure", params(("id" = String, Path)), responses((status = 200, body = ReapplyRunView), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn get_run(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let run = st
        .store
        .reapply_run(&id, Some(&p.0))
        .await?
        .ok_or_else(|| Problem::not_found("no reapply run of this platform has this id"))?;
    Ok(axum::Json(view(run)).into_response())
}
