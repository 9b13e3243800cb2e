//! Schema drift: the findings of the scheduled data-map check, and their
//! acceptance by an installation admin (audited).

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::console::Agent;
use crate::http::extract::ApiJson;
use crate::http::middleware::Principal;
use crate::http::problem::Problem;

/// Shortest and longest reason for accepting a finding.
const REASON_CHARS: std::ops::RangeInclusive<usize> = 10..=500;

/// One finding of the scheduled data-map check.
#[derive(Debug, Serialize, ToSchema)]
pub struct FindingView {
    #[schema(example = "3f1c2a9e3b7d4c60a1b2c3d4")]
    pub id: String,
    #[schema(example = "demo_mart")]
    pub system: String,
    /// personal_data, missing_column, uncovered_reference ...
    #[schema(example = "personal_data")]
    pub kind: String,
    /// `table` or `table.column`.
    #[schema(example = "delivery_notes.phone")]
    pub at: String,
    /// error or warning.
    pub severity: String,
    /// Erasure in the system waits until this is fixed.
    pub breaking: bool,
    pub message: String,
    /// What resolves it (often the data-map text to add).
    pub fix: String,
    /// open or accepted.
    pub state: String,
    pub first_seen: String,
    pub last_seen: String,
    pub accepted_by: Option<String>,
    pub accepted_reason: Option<String>,
}

impl From<lethe_store::DriftFinding> for FindingView {
    fn from(f: lethe_store::DriftFinding) -> Self {
        Self {
            id: f.id,
            system: f.system,
            kind: f.kind,
            at: f.at,
            severity: f.severity,
            breaking: f.breaking,
            message: f.message,
            fix: f.fix,
            state: f.state,
            first_seen: f.first_seen.to_string(),
            last_seen: f.last_seen.to_string(),
            accepted_by: f.accepted_by,
            accepted_reason: f.accepted_reason,
        }
    }
}

/// The drift state: when the check last ran, and what it found.
#[derive(Debug, Serialize, ToSchema)]
pub struct DriftView {
    /// When the scheduled check last ran (any instance).
    pub last_check_at: Option<String>,
    /// Why the last check failed, if it did.
    pub last_error: Option<String>,
    /// Open findings, breaking ones first, then accepted ones.
    pub findings: Vec<FindingView>,
}

pub async fn view(st: &AppState) -> Result<DriftView, Problem> {
    let state = st.store.drift_check_state().await?;
    Ok(DriftView {
        last_check_at: state.as_ref().map(|(t, _)| t.to_string()),
        last_error: state.and_then(|(_, e)| e),
        findings: st
            .store
            .drift_findings(None)
            .await?
            .into_iter()
            .map(FindingView::from)
            .collect(),
    })
}

/// What the scheduled data-map check found that is not fixed yet: open
/// findings (breaking ones hold erasure in their system) and accepted ones.
#[utoipa::path(get, path = "/v1/console/datamap/findings", tag = "console", responses((status = 200, body = DriftView)), security(("api_key" = []), ("console" = [])))]
pub async fn list(
    State(st): State<AppState>,
    p: Option<Extension<Principal>>,
    a: Option<Extension<Agent>>,
) -> Result<Response, Problem> {
    if p.is_none() {
        let Some(Extension(a)) = a else {
            return Err(Problem::internal());
        };
        crate::console::require(&a, "datamap")?;
    }
    Ok(axum::Json(view(&st).await?).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptFinding {
    /// Why the finding needs no change to the map (e.g. "holds warehouse
    /// shelf codes, not phone numbers"); kept in the audit log.
    #[schema(
        min_length = 10,
        max_length = 500,
        example = "column holds the courier's hotline, not the customer's phone"
    )]
    pub reason: String,
}

/// Accepts a finding (declares it not personal data, or dealt with) with a
/// reason: it leaves the banner and the alerts, and the acceptance is in
/// the audit log. Installation admins only; a finding that breaks erasure
/// cannot be accepted, it must be fixed.
#[utoipa::path(post, path = "/v1/console/datamap/findings/{id}/accept", tag = "console", params(("id" = String, Path)), request_body = AcceptFinding, responses((status = 200, body = FindingView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)), security(("console" = [])))]
pub async fn accept(
    State(st): State<AppState>,
    Extension(a): Extension<Agent>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AcceptFinding>,
) -> Result<Response, Problem> {
    let f = accept_as(&st, &a, &id, &body.reason).await?;
    Ok(axum::Json(FindingView::from(f)).into_response())
}

/// Accepts a finding for an agent (API and console page).
pub async fn accept_as(
    st: &AppState,
    a: &Agent,
    id: &str,
    reason: &str,
) -> Result<lethe_store::DriftFinding, Problem> {
    crate::console::require(a, "datamap_accept")?;
    if a.platform.is_some() {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Not allowed",
            "the data map is the installation's: an installation admin accepts its findings",
        )
        .fix("ask an admin who serves every platform"));
    }
    let reason = lethe_domain::ids::clean_text(reason.trim());
    if !REASON_CHARS.contains(&reason.chars().count()) {
        return Err(Problem::unprocessable(
            "reason must be 10 to 500 characters: say why the finding needs no change to the data map",
        )
        .field("reason"));
    }
    let Some(f) = st
        .store
        .drift_finding(id)
        .await?
        .filter(|f| f.state == "open")
    else {
        return Err(Problem::not_found("no open finding has this id"));
    };
    if f.breaking {
        return Err(Problem::conflict(
            "breaking-drift",
            "this finding breaks erasure in its system: fix the data map or the schema (see its fix); accepting it would not make erasure work",
        ));
    }
    st.store
        .accept_drift(
            id.to_owned(),
            format!("agent:{}", a.id),
            reason,
            st.clock.now(),
        )
        .await?
        .ok_or_else(|| Problem::not_found("no open finding has this id"))
}
