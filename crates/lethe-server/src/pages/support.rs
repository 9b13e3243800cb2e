//! Support pages: the public form a former holder opens with the receipt
//! (`/support`, no account), and the console's support queue and request
//! page (`/console/support`). Every action calls the same functions as the
//! API (`crate::api::support`), so checks, limits and audit events are the
//! API's.

use std::collections::HashMap;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lethe_domain::support::Topic;
use minijinja::context;
use serde::Deserialize;

use super::SiteForm;
use super::agent::{Console, Posted, base_ctx};
use super::{Lang, csrf_ok, csrf_token, local_time, problem_text, render};
use crate::AppState;
use crate::api::support::{Ask, ReceiptProof};
use crate::http::problem::Problem;

/// The public form's CSRF secret lives in this cookie (no session here).
const FORM_COOKIE: &str = "lethe_support";
/// How long a form stays valid (a slow writer keeps a day).
const FORM_COOKIE_SECS: i64 = 86_400;

pub(super) fn topics(lang: Lang) -> Vec<minijinja::Value> {
    Topic::ALL
        .iter()
        .map(|t| context! { value => t.as_str(), label => super::i18n::text(lang, &format!("support.topic.{}", t.as_str())) })
        .collect()
}

#[derive(Debug, Default, Deserialize)]
pub struct FormQuery {
    case: Option<String>,
    sig: Option<String>,
    lang: Option<String>,
}

/// The values a re-shown form keeps.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct Filled {
    case: String,
    sig: String,
    receipt: String,
    topic: String,
    message: String,
    contact: String,
}

impl Filled {
    fn from_form(form: &HashMap<String, String>) -> Self {
        let get = |k: &str| form.get(k).cloned().unwrap_or_default();
        Self {
            case: get("case"),
            sig: get("sig"),
            receipt: get("receipt")
                .chars()
                .take(crate::api::support::MAX_RECEIPT_BYTES)
                .collect(),
            topic: get("topic"),
            message: get("message"),
            contact: get("contact"),
        }
    }
}

fn form_page(
    st: &AppState,
    lang: Lang,
    secret: &str,
    filled: &Filled,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let safe = |v: &str| {
        !v.is_empty()
            && v.len() <= 200
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let linked = safe(&filled.case) && safe(&filled.sig);
    // The language switch comes back with the receipt's link ('&' written
    // %26: it travels inside the switch's own query).
    let back = if linked {
        format!("/support?case={}%26sig={}", filled.case, filled.sig)
    } else {
        "/support".to_owned()
    };
    let mut r = super::with_status(
        render(
            "support.html",
            context! {
                lang => lang.tag(),
                back,
                csrf => csrf_token(st.secrets.pages_key(), secret),
                topics => topics(lang),
                f => minijinja::Value::from(minijinja::value::Serde(filled)),
                linked,
                error,
                days => st.support.answer_within_working_days,
            },
        ),
        status,
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        super::set_cookie(
            FORM_COOKIE,
            secret,
            "/support",
            FORM_COOKIE_SECS,
            "Strict",
            !st.demo,
        ),
    );
    r
}

/// The form: with the receipt page's link the receipt is already known;
/// else the holder pastes the receipt.
pub async fn form(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<FormQuery>,
) -> Response {
    let lang = super::lang_of(&headers, q.lang.as_deref());
    let secret = super::cookie(&headers, FORM_COOKIE)
        .filter(|c| c.len() == 32 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()));
    let filled = Filled {
        case: q.case.unwrap_or_default().chars().take(64).collect(),
        sig: q.sig.unwrap_or_default().chars().take(200).collect(),
        ..Default::default()
    };
    form_page(&st, lang, &secret, &filled, None, StatusCode::OK)
}

/// Opens the request; shows what happens next.
pub async fn submit(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    SiteForm {
        lang,
        headers,
        form,
    }: SiteForm,
) -> Response {
    // A post from another site is refused outright.
    let secret = super::cookie(&headers, FORM_COOKIE).map(str::to_owned);
    let given = form.get("_csrf").map(String::as_str).unwrap_or_default();
    if !secret
        .as_deref()
        .is_some_and(|s| csrf_ok(st.secrets.pages_key(), s, given))
    {
        // From this site but expired (or the cookie was cleared): nothing
        // is sent, nothing is lost — the form comes back filled in.
        let filled = Filled::from_form(&form);
        let fresh = hex::encode(rand::random::<[u8; 16]>());
        return form_page(
            &st,
            lang,
            &fresh,
            &filled,
            Some(super::i18n::text(lang, "support.expired").to_owned()),
            StatusCode::FORBIDDEN,
        );
    }
    let secret = secret.unwrap_or_default();
    let filled = Filled::from_form(&form);
    let result: Result<lethe_store::SupportRow, Problem> = async {
        crate::http::middleware::limited(&st, &headers, peer)?;
        let ask = Ask::parse(&filled.topic, &filled.message, &filled.contact)?;
        let proof = if filled.receipt.trim().is_empty() {
            ReceiptProof {
                receipt: None,
                case_id: Some(filled.case.clone()).filter(|c| !c.is_empty()),
                signature: Some(filled.sig.clone()).filter(|c| !c.is_empty()),
            }
        } else {
            ReceiptProof {
                receipt: Some(serde_json::from_str(filled.receipt.trim()).map_err(|_| {
                    Problem::unprocessable("the pasted text is not a receipt (JSON)")
                        .field("receipt")
                })?),
                case_id: None,
                signature: None,
            }
        };
        crate::api::support::open_with_receipt_proof(&st, &proof, ask, &headers, peer).await
    }
    .await;
    match result {
        Ok(row) => render(
            "support_done.html",
            context! {
                lang => lang.tag(),
                back => "/support",
                id => row.id,
                // Due at midnight: the answer comes by the end of the day before.
                due => row.due_at.checked_sub(jiff::SignedDuration::from_secs(1)).unwrap_or(row.due_at).to_zoned_datetime(st.tz.clone()).date().to_string(),
                contact => row.contact_hint,
            },
        ),
        Err(p) => {
            let mut filled = filled;
            if p.kind.ends_with("receipt-not-verified") {
                // The link did not verify: offer the paste box instead.
                filled.case.clear();
                filled.sig.clear();
            }
            form_page(
                &st,
                lang,
                &secret,
                &filled,
                Some(problem_text(lang, &p)),
                StatusCode::from_u16(p.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
            )
        }
    }
}

// ------------------------------------------------------------------ console

fn row_ctx(st: &AppState, lang: Lang, r: &lethe_store::SupportRow) -> minijinja::Value {
    let now = st.clock.now();
    context! {
        id => r.id.clone(),
        case_id => r.case_id.clone(),
        topic => super::i18n::text(lang, &format!("support.topic.{}", r.topic)),
        origin => super::i18n::text(lang, &format!("support.origin.{}", r.origin)),
        state => super::i18n::text(lang, &format!("support.state.{}", r.state)),
        state_key => r.state.clone(),
        platform => r.principal.clone(),
        created => local_time(&r.created_at.to_string(), &st.tz),
        due => r.due_at.to_string(),
        due_local => local_time(&r.due_at.to_string(), &st.tz),
        left => r.due_at.as_second() - now.as_second(),
        contact => r.contact_hint.clone(),
    }
}

pub async fn queue(console: Console) -> Response {
    let (st, lang, a, token) = console.parts();
    if let Err(p) = crate::console::require(&a, "support_read") {
        return p.into_response();
    }
    let rows = match st
        .store
        .support_queue(a.platform.as_deref(), lethe_store::MAX_SUPPORT_QUEUE)
        .await
    {
        Ok(r) => r,
        Err(e) => return Problem::from(e).into_response(),
    };
    let rows: Vec<_> = rows.iter().map(|r| row_ctx(&st, lang, r)).collect();
    render(
        "c_support_queue.html",
        context! { ..base_ctx(lang, &a, &token, &st, "/console/support"), ..context! { rows } },
    )
}

async fn show(c: &Console, id: &str, error: Option<String>, notice: Option<String>) -> Response {
    let (st, lang, a, token) = (&c.st, c.lang, &c.agent, c.token.as_str());
    if let Err(p) = crate::console::require(a, "support_read") {
        return p.into_response();
    }
    let r = match st.store.support_request(id).await {
        Ok(Some(r)) if a.serves(&r.principal) && id.len() <= 64 => r,
        Ok(_) => return Problem::not_found("no support request with this id").into_response(),
        Err(e) => return Problem::from(e).into_response(),
    };
    let row = row_ctx(st, lang, &r);
    let v = match crate::api::support::view(st, a, r).await {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    let can_act = crate::console::allowed("support").contains(&a.role);
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    super::with_status(
        render(
            "c_support.html",
            context! { ..base_ctx(lang, a, token, st, &format!("/console/support/{id}")), ..context! {
                r => row,
                message => v.message,
                answer => v.answer,
                case => minijinja::Value::from(minijinja::value::Serde(&v.case)),
                timeline => minijinja::Value::from(minijinja::value::Serde(&v.timeline)),
                can_act, error, notice,
            } },
        ),
        status,
    )
}

/// The receipt of the request's case, as the holder got it.
pub async fn receipt(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Console { agent: a, .. }: Console,
) -> Response {
    super::document(crate::api::support::receipt_page(&st, &a, &id).await)
}

pub async fn request_page(Path(id): Path<String>, c: Console) -> Response {
    show(&c, &id, None, None).await
}

/// answer, resend or close.
pub async fn request_action(
    Path((id, action)): Path<(String, String)>,
    Posted { console, form }: Posted,
) -> Response {
    let (st, lang, a, token) = console.parts();
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let r: Result<Option<String>, Problem> = match action.as_str() {
        "answer" => crate::api::support::answer_with(&st, &a, &id, &get("answer"))
            .await
            .map(|()| Some(super::i18n::text(lang, "support.answered").to_owned())),
        "resend" => crate::api::support::resend_with(&st, &a, &id, &get("instruction_id"))
            .await
            .map(|r| {
                Some(format!(
                    "{} {} · {}{}",
                    super::i18n::text(lang, "support.resent"),
                    r.instruction_id,
                    r.status,
                    r.reference.map(|x| format!(" · {x}")).unwrap_or_default()
                ))
            }),
        "close" => crate::api::support::close_with(&st, &a, &id)
            .await
            .map(|()| Some(super::i18n::text(lang, "support.closed").to_owned())),
        _ => Err(Problem::not_found("no such action")),
    };
    match r {
        Ok(notice) => show(&Console::of(&st, lang, a, token), &id, None, notice).await,
        Err(p) => {
            show(
                &Console::of(&st, lang, a, token),
                &id,
                Some(problem_text(lang, &p)),
                None,
            )
            .await
        }
    }
}
