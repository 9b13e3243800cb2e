//! Identity channels outside the console: the app's session assertion (a
//! fresh re-authentication) and the face-verification provider's signed
//! callback.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use lethe_domain::{AssuranceLevel, CaseCommand, CaseId, CaseState};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::api::cases::CaseView;
use crate::http::extract::ApiJson;
use crate::http::middleware::{IdemKey, Principal};
use crate::http::problem::Problem;

fn method_enabled(st: &AppState, m: &str) -> Result<(), Problem> {
    if st.identity.methods.iter().any(|x| x == m) {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            "method-disabled",
            "Method not enabled",
            format!("the {m} method is not enabled on this installation"),
        )
        .fix("use another channel, or enable it under [identity] methods"))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionProof {
    /// A short-lived JWT from the platform's back end (HS256 or EdDSA) with
    /// sub = the account, aud = "lethe", and auth_time of a fresh re-authentication.
    pub token: String,
}

/// App, logged in: the platform asserts the session and a fresh
/// re-authentication with a signed, short-lived token (each token once).
#[utoipa::path(post, path = "/v1/cases/{id}/verification/session", request_body = SessionProof, tag = "verification", params(("id" = String, Path)),
    responses((status = 200, body = CaseView), (status = 401, body = Problem)), security(("api_key" = [])))]
pub async fn session(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    _key: Option<Extension<IdemKey>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SessionProof>,
) -> Result<Response, Problem> {
    method_enabled(&st, "app")?;
    let id = CaseId::parse(&id).map_err(|e| {
        Problem::bad_request("case-id", format!("the case id in the path {e}")).field("id")
    })?;
    let case = crate::http::ownership::owned(&st, &p, id).await?;
    let key = st.session_key.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no-session-key",
            "Session tokens not configured",
            "no session key is configured",
        )
        .fix("set identity.session_secret_env or identity.session_public_key")
    })?;
    let now = st.clock.now().as_second();
    let claims = crate::jwt::verify(&body.token, key, case.subject.expose(), now).map_err(|e| {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "session-token",
            "Session token refused",
            e.to_string(),
        )
        .field("token")
    })?;
    let jti = claims.jti.unwrap_or_default();
    if !st
        .store
        .first_callback(format!("jwt:{jti}"), jiff::Timestamp::now())
        .await?
    {
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "session-token",
            "Session token refused",
            "this token was already used",
        )
        .field("token")
        .fix("issue a new token for each verification"));
    }
    let face = claims.amr.iter().any(|m| m == "face")
        && st.identity.platform_holds.iter().any(|h| h == "face");
    let level = if face {
        AssuranceLevel::STRONG
    } else {
        AssuranceLevel::PHONE
    };
    let cmd = CaseCommand::VerifyIdentity {
        method: "app_session".into(),
        level,
    };
    let case = st
        .store
        .apply(
            id,
            cmd,
            st.clock.now(),
            format!("platform:{}", p.0),
            vec![],
            None,
        )
        .await?;
    Ok(axum::Json(CaseView::from(&case)).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FaceResult {
    pub case_id: String,
    /// pass or fail.
    pub result: String,
    /// The provider's reference of the check.
    pub provider_ref: Option<String>,
}

/// Face-verification provider's callback (signed, Standard Webhooks): a
/// pass verifies the holder at level 2. Replays are refused.
#[utoipa::path(post, path = "/v1/callbacks/face", request_body = FaceResult, tag = "verification", responses((status = 200, description = "recorded"), (status = 401, body = Problem), (status = 409, body = Problem)))]
pub async fn face(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    method_enabled(&st, "face")?;
    let secret = st
        .identity
        .face_secret_env
        .as_ref()
        .and_then(|v| std::env::var(v).ok())
        .ok_or_else(Problem::internal)?;
    crate::outbound::webhook::accept_callback(&st, &secret, &headers, &body, "face").await?;
    let r: FaceResult = serde_json::from_slice(&body)
        .map_err(|e| Problem::unprocessable(crate::http::problem::redact_serde(&e.to_string())))?;
    let case_id = CaseId::parse(&r.case_id)
        .map_err(|e| Problem::unprocessable(format!("case_id {e}")).field("case_id"))?;
    let case = st
        .store
        .get_case(case_id)
        .await?
        .ok_or_else(|| Problem::not_found("no case with this id"))?;
    match r.result.as_str() {
        "pass" => {
            let cmd = CaseCommand::VerifyIdentity {
                method: "face".into(),
                level: AssuranceLevel::STRONG,
            };
            if case.state == CaseState::Submitted || case.assurance < AssuranceLevel::STRONG {
                st.store
                    .apply(
                        case_id,
                        cmd,
                        st.clock.now(),
                        "provider:face".into(),
                        vec![],
                        None,
                    )
                    .await?;
            }
            Ok(axum::Json(serde_json::json!({ "recorded": "pass" })).into_response())
        }
        "fail" => {
            tracing::info!(case = %case_id, "face verification failed");
            Ok(axum::Json(serde_json::json!({ "recorded": "fail" })).into_response())
        }
        _ => Err(Problem::unprocessable("result must be pass or fail").field("result")),
    }
}
