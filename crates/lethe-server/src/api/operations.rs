//! Deadlines, identifiers and the console's queues.

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::api::cases::DeadlineView;
use crate::http::extract::ApiJson;
use crate::http::extract::ApiQuery;
use crate::http::middleware::Principal;
use crate::http::problem::Problem;

const KINDS: [&str; 3] = ["phone", "email", "id_number"];

fn kind_ok(kind: &str, field: &str) -> Result<(), Problem> {
    if KINDS.contains(&kind) {
        Ok(())
    } else {
        Err(Problem::unprocessable("unknown identifier kind")
            .field(field.to_owned())
            .fix("use phone, email or id_number"))
    }
}

fn value_ok(v: &str, field: &str) -> Result<(), Problem> {
    if v.trim().is_empty() || v.len() > 256 {
        return Err(
            Problem::unprocessable("the value must be 1-256 characters").field(field.to_owned())
        );
    }
    Ok(())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CheckQuery {
    /// phone, email or id_number.
    #[param(pattern = "^(phone|email|id_number)$")]
    pub kind: String,
    #[param(min_length = 1, max_length = 256)]
    pub value: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckResult {
    pub kind: String,
    /// Whether an account may be registered with this identifier now.
    pub allowed: bool,
    /// When it may, if not now.
    pub allowed_from: Option<String>,
}

/// The re-registration rule: may this identifier register again? Only keyed
/// hashes of erased accounts' identifiers are kept, each until its rule ends.
#[utoipa::path(get, path = "/v1/identifiers/check", tag = "identifiers", params(CheckQuery),
    responses((status = 200, body = CheckResult), (status = 422, body = Problem)), security(("api_key" = [])))]
pub async fn check(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<CheckQuery>,
) -> Result<Response, Problem> {
    kind_ok(&q.kind, "kind")?;
    value_ok(&q.value, "value")?;
    let hash = st.secrets.identifier_hash(&q.kind, &q.value);
    let until = st
        .store
        .tombstone(&q.kind, &hash, st.clock.now(), Some(&p.0))
        .await?;
    Ok(axum::Json(CheckResult {
        kind: q.kind,
        allowed: until.is_none(),
        allowed_from: until.map(|t| t.to_string()),
    })
    .into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum CarrierEventKind {
    /// The carrier gave the number to a new person (二次号码).
    Recycled,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CarrierEvent {
    pub event: CarrierEventKind,
    pub phone: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CarrierResult {
    /// Whether a tombstone of an erased account was released.
    pub tombstone_released: bool,
    /// Live accounts the platform is told to unbind the number from.
    pub accounts_to_unbind: usize,
}

/// A carrier event: a recycled number releases its tombstone and is unbound
/// from any live account (the platform is notified with the account ids).
#[utoipa::path(post, path = "/v1/carrier-events", request_body = CarrierEvent, tag = "identifiers",
    responses((status = 200, body = CarrierResult)), security(("api_key" = [])))]
pub async fn carrier_event(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(ev): ApiJson<CarrierEvent>,
) -> Result<Response, Problem> {
    apply_carrier_event(&st, ev, Some(p.0)).await
}

/// The same carrier event sent by the carrier itself, signed as Standard
/// Webhooks with the secret in `identity.carrier_secret_env`; replays are
/// refused.
#[utoipa::path(post, path = "/v1/callbacks/carrier", request_body = CarrierEvent, tag = "identifiers",
    responses((status = 200, body = CarrierResult), (status = 401, body = Problem), (status = 409, body = Problem)))]
pub async fn carrier_callback(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    let Some(secret) = st
        .identity
        .carrier_secret_env
        .as_ref()
        .and_then(|v| std::env::var(v).ok())
    else {
        return Err(Problem::not_found("carrier callbacks are not configured")
            .fix("set identity.carrier_secret_env to the variable holding the carrier's whsec_ secret"));
    };
    crate::outbound::webhook::accept_callback(&st, &secret, &headers, &body, "carrier").await?;
    let ev: CarrierEvent = serde_json::from_slice(&body)
        .map_err(|e| Problem::unprocessable(crate::http::problem::redact_serde(&e.to_string())))?;
    apply_carrier_event(&st, ev, None).await
}

/// `platform`: the key that reported it (its tombstones only), or None for
/// the carrier's own signed callback (every platform's).
async fn apply_carrier_event(
    st: &AppState,
    ev: CarrierEvent,
    platform: Option<String>,
) -> Result<Response, Problem> {
    value_ok(&ev.phone, "phone")?;
    let CarrierEventKind::Recycled = ev.event;
    let now = st.clock.now();
    let hash = st.secrets.identifier_hash("phone", &ev.phone);
    let released = st
        .store
        .release_tombstone("phone".into(), hash, now, platform.clone())
        .await?;
    // The platform stores national numbers: look up the normalised form
    // (+86, 0086 and separators removed), and the number as sent.
    let mut accounts = st.systems.accounts_with_phone(&ev.phone).await?;
    if let Some(key) = lethe_domain::phone_key(&ev.phone)
        && key != ev.phone
    {
        for a in st.systems.accounts_with_phone(&key).await? {
            if !accounts.contains(&a) {
                accounts.push(a);
            }
        }
    }
    if !accounts.is_empty() {
        st.store.notify(lethe_domain::notice::IDENTIFIER_UNBIND, serde_json::json!({ "kind": "phone", "reason": "recycled_number", "subject_ids": accounts }), platform.clone(), now).await?;
    }
    Ok(axum::Json(CarrierResult {
        tombstone_released: released,
        accounts_to_unbind: accounts.len(),
    })
    .into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueEntry {
    pub case_id: String,
    pub case_state: String,
    pub deadline: DeadlineView,
}

/// The console's overdue queue: open deadlines past due, oldest first. A
/// platform key or an agent's console token: each sees its platform's
/// cases (installation staff see every platform's).
#[utoipa::path(get, path = "/v1/console/overdue", tag = "console", responses((status = 200, body = [QueueEntry]), (status = 401, body = Problem), (status = 403, body = Problem)), security(("api_key" = []), ("console" = [])))]
pub async fn overdue(
    State(st): State<AppState>,
    p: Option<Extension<Principal>>,
    a: Option<Extension<crate::console::Agent>>,
) -> Result<Response, Problem> {
    let platform = match (p, a) {
        (Some(Extension(p)), _) => Some(p.0),
        (None, Some(Extension(a))) => {
            crate::console::require(&a, "overdue")?;
            a.platform
        }
        (None, None) => return Err(Problem::internal()),
    };
    let now = st.clock.now();
    let rows = st.store.overdue(now, 500, platform.as_deref()).await?;
    let out: Vec<QueueEntry> = rows
        .iter()
        .map(|d| QueueEntry {
            case_id: d.case_id.clone(),
            case_state: d.case_state.clone(),
            deadline: DeadlineView::from_row(d, now),
        })
        .collect();
    Ok(axum::Json(out).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// pending, delivered or dead (the dead-letter list).
    #[param(pattern = "^(pending|delivered|dead)$")]
    pub state: Option<String>,
    pub case_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationView {
    pub id: i64,
    pub kind: String,
    pub case_id: Option<String>,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub created_at: String,
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// Notifications for the platform, newest first (at most 500).
#[utoipa::path(get, path = "/v1/notifications", tag = "console", params(NotificationQuery), responses((status = 200, body = [NotificationView])), security(("api_key" = [])))]
pub async fn notifications(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<NotificationQuery>,
) -> Result<Response, Problem> {
    if let Some(s) = &q.state
        && !["pending", "delivered", "dead"].contains(&s.as_str())
    {
        return Err(Problem::unprocessable("unknown state")
            .field("state")
            .fix("use pending, delivered or dead"));
    }
    let case = match &q.case_id {
        Some(c) => Some(
            lethe_domain::CaseId::parse(c)
                .map_err(|e| Problem::unprocessable(format!("case_id {e}")).field("case_id"))?,
        ),
        None => None,
    };
    let rows = st
        .store
        .notifications(q.state, case, Some(&p.0), 500)
        .await?;
    Ok(axum::Json(
        rows.into_iter()
            .map(|n| NotificationView {
                id: n.id,
                kind: n.kind,
                case_id: n.case_id,
                payload: n.payload,
                created_at: n.created_at.to_string(),
                state: n.state,
                attempts: n.attempts,
                last_error: n.last_error,
            })
            .collect::<Vec<_>>(),
    )
    .into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CalendarYear {
    pub year: i16,
    /// The State Council notice.
    pub source: String,
    pub urls: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CalendarStatus {
    pub time_zone: String,
    pub years: Vec<CalendarYear>,
    pub operator_file: Option<String>,
    /// The last reload's error; the calendar in force is the previous one.
    pub last_error: Option<String>,
}

/// The working-day calendar in force: covered years and their notices.
#[utoipa::path(get, path = "/v1/calendar", tag = "console", responses((status = 200, body = CalendarStatus)), security(("api_key" = [])))]
pub async fn calendar(
    State(st): State<AppState>,
    Extension(_p): Extension<Principal>,
) -> Result<Response, Problem> {
    let cal = st.calendar.get();
    let last_error = st
        .calendar
        .last_error
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(axum::Json(CalendarStatus {
        time_zone: st.tz.iana_name().unwrap_or("?").to_owned(),
        years: cal
            .years()
            .map(|y| CalendarYear {
                year: y.year,
                source: y.source.clone(),
                urls: y.urls.clone(),
            })
            .collect(),
        operator_file: st.calendar.file.as_ref().map(|f| f.display().to_string()),
        last_error,
    })
    .into_response())
}
