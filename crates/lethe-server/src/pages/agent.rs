//! The agent console, `/console/`: sign-in with password and TOTP, the
//! queues (new, in review, overdue, manual tasks, real-name disputes) with
//! a countdown to each deadline, the case with its whole timeline, the
//! hotline and counter checks, the dispute review with its document
//! viewer, the data-map check and the compliance report.
//!
//! The session is the console API's own session token, kept in an
//! HttpOnly, SameSite=Strict cookie scoped to `/console`; each form carries
//! a CSRF token derived from it. Every action calls the console API's
//! handler, so roles and audit events are the API's.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde::Deserialize;

use super::SiteForm;
use super::{Lang, answer, csrf_ok, csrf_token, local_time, problem_text, render};
use crate::AppState;
use crate::console::{Agent, Role};
use crate::http::extract::{ApiJson, ApiQuery};
use crate::http::problem::Problem;

const COOKIE: &str = "lethe_console";
/// Rows per queue on the page.
const QUEUE_ROWS: u32 = 200;
/// Rows sampled per uncovered column by the data-map check page.
const CHECK_SAMPLE: u32 = 50;

fn lang_of(headers: &HeaderMap) -> Lang {
    super::cookie(headers, "lethe_lang")
        .map(Lang::parse)
        .unwrap_or_default()
}

/// The signed-in agent and the session token, from the cookie.
pub(super) async fn agent_of(st: &AppState, headers: &HeaderMap) -> Option<(Agent, String)> {
    let token = super::cookie(headers, COOKIE)?;
    if !token.starts_with("ls_") || token.len() > 100 {
        return None;
    }
    let hash = crate::http::middleware::hash_api_key(token);
    let (id, role, platform) = st
        .store
        .console_session(&hash, jiff::Timestamp::now())
        .await
        .ok()??;
    Some((
        Agent {
            id,
            role: Role::parse(&role)?,
            platform,
        },
        token.to_owned(),
    ))
}

/// A console page's request: the state, the language (the `lethe_lang`
/// cookie), the signed-in agent and the session token its forms are bound
/// to. A request without a live session gets the sign-in page instead,
/// before the handler runs; the pages that take a form read it first and
/// check the session after (`agent_of`), as they always did.
pub struct Console {
    pub st: AppState,
    pub lang: Lang,
    pub agent: Agent,
    pub token: String,
}

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        match agent_of(st, &parts.headers).await {
            Some((agent, token)) => Ok(Console::of(st, lang_of(&parts.headers), agent, token)),
            None => Err(to_login()),
        }
    }
}

impl Console {
    pub(super) fn of(st: &AppState, lang: Lang, agent: Agent, token: String) -> Self {
        Self {
            st: st.clone(),
            lang,
            agent,
            token,
        }
    }
}

/// A console form as posted, checked in the order the pages always had:
/// the form is read first (a malformed one is refused), then the session
/// (else the sign-in page), then the form's origin and CSRF token (else
/// 403).
pub struct Posted {
    pub console: Console,
    pub form: HashMap<String, String>,
}

impl FromRequest<AppState> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, Response> {
        let headers = req.headers().clone();
        let axum::Form(form) = axum::Form::<Vec<(String, String)>>::from_request(req, st)
            .await
            .map_err(IntoResponse::into_response)?;
        let lang = lang_of(&headers);
        let Some((agent, token)) = agent_of(st, &headers).await else {
            return Err(to_login());
        };
        let Some(form) = checked_form(st, &headers, &token, form) else {
            return Err(super::forbidden_post(lang));
        };
        Ok(Self {
            console: Console::of(st, lang, agent, token),
            form,
        })
    }
}

impl Console {
    /// The state, the language, the agent and the session token, owned.
    pub(super) fn parts(self) -> (AppState, Lang, Agent, String) {
        (self.st, self.lang, self.agent, self.token)
    }
}

pub(super) fn to_login() -> Response {
    super::redirect("/console/login")
}

pub(super) fn base_ctx(
    lang: Lang,
    a: &Agent,
    token: &str,
    st: &AppState,
    back: &str,
) -> minijinja::Value {
    context! {
        lang => lang.tag(),
        csrf => csrf_token(st.secrets.pages_key(), token),
        agent => context! { id => a.id.clone(), role => a.role.as_str() },
        back => back,
    }
}

// ------------------------------------------------------------------ login

pub async fn login_page(headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    render(
        "c_login.html",
        context! { lang => lang.tag(), back => "/console/login" },
    )
}

pub async fn login(
    State(st): State<AppState>,
    peer: axum::extract::ConnectInfo<std::net::SocketAddr>,
    SiteForm { lang, form, .. }: SiteForm,
) -> Response {
    let f = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let username = f("username");
    let r = crate::console::login(
        State(st.clone()),
        peer,
        ApiJson(crate::console::Login {
            username: username.clone(),
            password: form.get("password").cloned().unwrap_or_default(),
            totp: f("totp"),
        }),
    )
    .await;
    match answer(r).await {
        Ok(v) => {
            let token = v["token"].as_str().unwrap_or_default();
            let mut r = super::redirect("/console/");
            r.headers_mut().append(
                header::SET_COOKIE,
                super::set_cookie(COOKIE, token, "/console", 8 * 3600, "Strict", !st.demo),
            );
            r
        }
        Err(p) => super::with_status(
            render(
                "c_login.html",
                context! { lang => lang.tag(), error => problem_text(lang, &p), username, back => "/console/login" },
            ),
            StatusCode::from_u16(p.status).unwrap_or(StatusCode::UNAUTHORIZED),
        ),
    }
}

/// Signs out: the session ends in the store (the token stops working
/// everywhere) and the cookie is cleared.
pub async fn logout(Posted { console, .. }: Posted) -> Response {
    let (st, _, _, token) = console.parts();
    if let Err(e) = st
        .store
        .end_console_session(crate::http::middleware::hash_api_key(&token))
        .await
    {
        return Problem::from(e).into_response();
    }
    let mut r = to_login();
    r.headers_mut().append(
        header::SET_COOKIE,
        super::set_cookie(COOKIE, "", "/console", 0, "Strict", !st.demo),
    );
    r
}

// ----------------------------------------------------------------- queues

pub async fn queues(console: Console) -> Response {
    let (st, lang, a, token) = console.parts();
    match queues_ctx(&st, lang, a.platform.as_deref()).await {
        Ok(q) => render(
            "c_queues.html",
            context! { ..base_ctx(lang, &a, &token, &st, "/console/"), ..q },
        ),
        Err(p) => p.into_response(),
    }
}

async fn queues_ctx(
    st: &AppState,
    lang: Lang,
    platform: Option<&str>,
) -> Result<minijinja::Value, Problem> {
    let now = st.clock.now();
    let row = |r: &lethe_store::QueueRow| {
        context! {
            id => r.id.clone(),
            state => super::i18n::text(lang, &format!("state.{}", r.state)),
            channel => super::i18n::text(lang, &format!("channel.{}", r.channel)),
            created => local_time(&r.created_at.to_string(), &st.tz),
            due => r.due_at.map(|d| d.to_string()),
            due_local => r.due_at.map(|d| local_time(&d.to_string(), &st.tz)),
            due_kind => r.due_kind.as_ref().map(|k| super::i18n::text(lang, &format!("deadline.{k}")).to_owned()),
            left => r.due_at.map(|d| d.as_second() - now.as_second()),
        }
    };
    let new: Vec<_> = st
        .store
        .queue(
            &[
                "submitted",
                "identity_verified",
                "checks_blocked",
                "checks_clear",
                "consequences_acknowledged",
            ],
            QUEUE_ROWS,
            platform,
        )
        .await?
        .iter()
        .map(row)
        .collect();
    let review: Vec<_> = st
        .store
        .queue(&["under_review"], QUEUE_ROWS, platform)
        .await?
        .iter()
        .map(row)
        .collect();
    let overdue: Vec<_> = st
        .store
        .overdue(now, QUEUE_ROWS, platform)
        .await?
        .iter()
        .map(|d| {
            context! {
                id => d.case_id.clone(),
                state => super::i18n::text(lang, &format!("state.{}", d.case_state)),
                due_kind => super::i18n::text(lang, &format!("deadline.{}", d.kind)),
                due => d.due_at.map(|t| t.to_string()),
                due_local => d.due_at.map(|t| local_time(&t.to_string(), &st.tz)),
                left => d.due_at.map(|t| t.as_second() - now.as_second()),
            }
        })
        .collect();
    let tasks: Vec<_> = st
        .store
        .manual_tasks_of(platform, true, QUEUE_ROWS)
        .await?
        .into_iter()
        .map(|t| {
            context! {
                id => t.id,
                case_id => t.case_id,
                system => t.system,
                instructions => t.instructions,
                due => t.due_at.to_string(),
                due_local => local_time(&t.due_at.to_string(), &st.tz),
                left => t.due_at.as_second() - now.as_second(),
            }
        })
        .collect();
    let mut claims = vec![];
    for id in st.store.open_claims(QUEUE_ROWS, platform).await? {
        if let Some(c) = st.store.claim(&id).await? {
            claims.push(context! {
                id => c.id,
                created => local_time(&c.created_at.to_string(), &st.tz),
                documents => c.documents.len(),
            });
        }
    }
    let counts: HashMap<String, i64> = st
        .store
        .count_by_state(platform)
        .await?
        .into_iter()
        .collect();
    // A banner while the calendar's coverage ends within 60 days: deadlines
    // past it are provisional.
    let today = now.to_zoned_datetime(st.tz.clone()).date();
    let calendar_ends =
        crate::worker::coverage_ending(&st.calendar.get(), today).map(|d| d.to_string());
    // Installation staff choose the platform of a case they open.
    let platforms = match platform {
        Some(_) => vec![],
        None => st.store.live_platforms().await?,
    };
    // A banner while the scheduled data-map check has open findings.
    let drift: Vec<_> = st
        .store
        .drift_findings(Some("open"))
        .await?
        .into_iter()
        .take(QUEUE_ROWS as usize)
        .map(drift_row)
        .collect();
    Ok(
        context! { new, review, overdue, tasks, claims, platforms, calendar_ends, drift, counts => minijinja::Value::from(minijinja::value::Serde(&counts)), now => now.to_string() },
    )
}

// ------------------------------------------------------------------- cases

pub async fn case_page(Path(id): Path<String>, c: Console) -> Response {
    show_case(&c, &id, None).await
}

async fn show_case(c: &Console, id: &str, error: Option<String>) -> Response {
    let (st, lang, a, token) = (&c.st, c.lang, &c.agent, c.token.as_str());
    let r = crate::console::read_case(crate::http::extract::CaseCall::new(
        st.clone(),
        a.clone(),
        id.to_owned(),
    ))
    .await;
    let v = match answer(r).await {
        Ok(v) => v,
        Err(p) => {
            return super::with_status(
                render(
                    "c_case.html",
                    context! { missing => problem_text(lang, &p), ..base_ctx(lang, a, token, st, "/console/") },
                ),
                StatusCode::from_u16(p.status).unwrap_or(StatusCode::NOT_FOUND),
            );
        }
    };
    let Ok(case_id) = lethe_domain::CaseId::parse(id) else {
        return Problem::not_found("no case with this id").into_response();
    };
    let now = st.clock.now();
    let events = match st.store.audit_for_case(case_id).await {
        Ok(e) => e,
        Err(e) => return Problem::from(e).into_response(),
    };
    let timeline: Vec<_> = events
        .into_iter()
        .map(|e| {
            context! {
                seq => e.event.seq,
                kind => e.event.kind,
                from => e.event.from_state,
                to => e.event.to_state,
                actor => e.event.actor,
                at => local_time(&e.event.at, &st.tz),
                // None while the event waits for the sequencer.
                hash => e.hash.get(..16).filter(|h| !h.is_empty()).map(str::to_owned),
            }
        })
        .collect();
    let jobs: Vec<_> = match st.store.jobs_for_case(case_id).await {
        Ok(j) => j
            .into_iter()
            .map(|j| context! { kind => j.kind, system => j.system, state => j.state, attempts => j.attempts, error => j.last_error })
            .collect(),
        Err(e) => return Problem::from(e).into_response(),
    };
    let deadlines: Vec<_> = match st.store.deadlines_for_case(case_id).await {
        Ok(d) => d
            .iter()
            .map(|d| {
                let v = crate::api::cases::DeadlineView::from_row(d, now);
                context! {
                    kind => super::i18n::text(lang, &format!("deadline.{}", v.kind)),
                    due => v.due_at.clone(),
                    due_local => v.due_at.as_deref().map(|t| local_time(t, &st.tz)),
                    left => d.due_at.filter(|_| d.met_at.is_none()).map(|t| t.as_second() - now.as_second()),
                    status => super::i18n::text(lang, &format!("dstatus.{}", v.status)),
                }
            })
            .collect(),
        Err(e) => return Problem::from(e).into_response(),
    };
    let state = v["state"].as_str().unwrap_or_default().to_owned();
    let channel = v["channel"].as_str().unwrap_or_default().to_owned();
    let role = a.role;
    render(
        "c_case.html",
        context! {
            ..base_ctx(lang, a, token, st, &format!("/console/cases/{id}")),
            ..context! {
                case => minijinja::Value::from(minijinja::value::Serde(&v)),
                state_label => super::i18n::text(lang, &format!("state.{state}")),
                channel_label => super::i18n::text(lang, &format!("channel.{channel}")),
                timeline, jobs, deadlines, error,
                documents => crate::config::COUNTER_DOCUMENTS
                    .iter()
                    .filter(|(c, _)| st.identity.counter_documents.iter().any(|d| d == c))
                    .map(|(c, _)| context! { code => *c, label => super::i18n::text(lang, &format!("counter.{c}")) })
                    .collect::<Vec<_>>(),
                can_verify => state == "submitted" && role == Role::Agent,
                can_review => state == "under_review" && role == Role::Reviewer,
            }
        },
    )
}

/// Opens a hotline or counter case, then shows it.
pub async fn new_case(Posted { console, form }: Posted) -> Response {
    let (st, lang, a, token) = console.parts();
    let f = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let mut body = serde_json::json!({ "subject_id": f("subject_id"), "channel": f("channel") });
    // Installation staff name the platform when there are several.
    if !f("platform").is_empty() {
        body["platform"] = serde_json::Value::String(f("platform"));
    }
    let parsed: Result<crate::console::ConsoleCase, _> = serde_json::from_value(body);
    let r = match parsed {
        Ok(b) => {
            answer(
                crate::console::create_case(State(st.clone()), Extension(a.clone()), ApiJson(b))
                    .await,
            )
            .await
        }
        Err(_) => Err(Problem::unprocessable(
            "enter the account's id and choose hotline or counter",
        )),
    };
    match r {
        Ok(v) => super::redirect(&format!(
            "/console/cases/{}",
            v["id"].as_str().unwrap_or_default()
        )),
        Err(p) => match queues_ctx(&st, lang, a.platform.as_deref()).await {
            Ok(q) => super::with_status(
                render(
                    "c_queues.html",
                    context! { ..base_ctx(lang, &a, &token, &st, "/console/"), ..context! { error => problem_text(lang, &p), ..q } },
                ),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            Err(p) => p.into_response(),
        },
    }
}

pub(super) fn checked_form(
    st: &AppState,
    headers: &HeaderMap,
    token: &str,
    form: Vec<(String, String)>,
) -> Option<HashMap<String, String>> {
    let form = super::site_form(headers, &st.public_url, form)?;
    let given = form.get("_csrf").map(String::as_str).unwrap_or_default();
    csrf_ok(st.secrets.pages_key(), token, given).then_some(form)
}

/// Actions on a case: hotline, counter, review.
pub async fn case_action(
    Path((id, action)): Path<(String, String)>,
    Posted { console, form }: Posted,
) -> Response {
    let (st, lang, a, token) = console.parts();
    let f = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let call = || crate::http::extract::CaseCall::new(st.clone(), a.clone(), id.clone());
    let r = match action.as_str() {
        "hotline" => {
            crate::console::hotline(
                call(),
                ApiJson(crate::console::Hotline {
                    name: f("name"),
                    id_number: f("id_number"),
                    phone: f("phone"),
                }),
            )
            .await
        }
        "counter" => {
            crate::console::counter(
                call(),
                ApiJson(crate::console::Counter {
                    document_type: f("document_type"),
                    last4: f("last4"),
                    branch: f("branch"),
                }),
            )
            .await
        }
        "review" => {
            let body = serde_json::json!({
                "decision": f("decision"),
                "reason": Some(f("reason")).filter(|r| !r.is_empty()),
            });
            match serde_json::from_value::<crate::console::ConsoleReview>(body) {
                Ok(b) => crate::console::review(call(), ApiJson(b)).await,
                Err(_) => Err(Problem::unprocessable(
                    "choose approve or reject; a rejection needs a reason",
                )),
            }
        }
        _ => Err(Problem::not_found("no such action")),
    };
    match answer(r).await {
        Ok(_) => super::redirect(&format!("/console/cases/{id}")),
        Err(p) => {
            let r = show_case(
                &Console::of(&st, lang, a, token),
                &id,
                Some(problem_text(lang, &p)),
            )
            .await;
            if r.status().is_success() {
                super::with_status(r, StatusCode::UNPROCESSABLE_ENTITY)
            } else {
                r
            }
        }
    }
}

/// An operator completes a manual erasure task: what was done, and how
/// many records; recorded as done by this agent.
pub async fn complete_task(Path(id): Path<String>, Posted { console, form }: Posted) -> Response {
    let (st, lang, a, token) = console.parts();
    let f = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let r = match (
        crate::console::require(&a, "manual_task"),
        f("records").parse::<u64>(),
    ) {
        (Err(p), _) => Err(p),
        (Ok(()), Err(_)) => Err(Problem::unprocessable(
            "records must be the number of records erased by hand (0 or more)",
        )
        .field("records")),
        (Ok(()), Ok(records)) => {
            crate::api::erasure::complete_as(
                &st,
                crate::api::erasure::TaskActor::Agent(a.id.clone(), a.platform.clone()),
                &id,
                crate::api::erasure::CompleteTask {
                    note: f("note"),
                    records,
                    why_none: Some(f("why_none")).filter(|w| !w.is_empty()),
                },
            )
            .await
        }
    };
    match answer(r).await {
        Ok(_) => super::redirect("/console/"),
        Err(p) => match queues_ctx(&st, lang, a.platform.as_deref()).await {
            Ok(q) => super::with_status(
                render(
                    "c_queues.html",
                    context! { ..base_ctx(lang, &a, &token, &st, "/console/"), ..context! { error => problem_text(lang, &p), ..q } },
                ),
                StatusCode::from_u16(p.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
            ),
            Err(p) => p.into_response(),
        },
    }
}

// ----------------------------------------------------------------- claims

pub async fn claim_page(Path(id): Path<String>, c: Console) -> Response {
    show_claim(&c, &id, None).await
}

async fn show_claim(c: &Console, id: &str, error: Option<String>) -> Response {
    let (st, lang, a, token) = (&c.st, c.lang, &c.agent, c.token.as_str());
    if let Err(p) = crate::console::require(a, "claims") {
        return super::with_status(
            render(
                "c_claim.html",
                context! { missing => problem_text(lang, &p), ..base_ctx(lang, a, token, st, "/console/") },
            ),
            StatusCode::FORBIDDEN,
        );
    }
    let c = match st.store.claim(id).await {
        Ok(Some(c)) if a.serves(&c.principal) => c,
        Ok(_) => {
            return super::with_status(
                render(
                    "c_claim.html",
                    context! { missing => super::i18n::text(lang, "claim.missing"), ..base_ctx(lang, a, token, st, "/console/") },
                ),
                StatusCode::NOT_FOUND,
            );
        }
        Err(e) => return Problem::from(e).into_response(),
    };
    render(
        "c_claim.html",
        context! {
            ..base_ctx(lang, a, token, st, &format!("/console/claims/{id}")),
            ..context! {
                claim => context! {
                    id => c.id.clone(),
                    state => c.state.clone(),
                    created => local_time(&c.created_at.to_string(), &st.tz),
                    documents => c.documents.iter().map(|(n, kind)| context! { n => *n, kind => kind.clone() }).collect::<Vec<_>>(),
                    destroyed => c.documents_destroyed_at.is_some(),
                },
                error,
            }
        },
    )
}

/// A claim's document for the viewer, decrypted and audited by the API
/// handler; served with its image type when it is one.
pub async fn claim_document(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path((id, n)): Path<(String, i64)>,
) -> Response {
    let Some((a, _)) = agent_of(&st, &headers).await else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let r = crate::api::claims::document(State(st.clone()), Extension(a), Path((id, n))).await;
    let mut r = match r {
        Ok(r) => r,
        Err(p) => return p.into_response(),
    };
    let (parts, body) = r.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 << 20).await else {
        return Problem::internal().into_response();
    };
    let kind = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if bytes.starts_with(b"\xff\xd8\xff") {
        "image/jpeg"
    } else if bytes.starts_with(b"%PDF-") {
        "application/pdf"
    } else {
        "application/octet-stream"
    };
    r = Response::from_parts(parts, axum::body::Body::from(bytes));
    if let Ok(v) = axum::http::HeaderValue::from_str(kind) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    r
}

pub async fn claim_decide(Path(id): Path<String>, Posted { console, form }: Posted) -> Response {
    let (st, lang, a, token) = console.parts();
    let f = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let body = serde_json::json!({
        "decision": f("decision"),
        "reason": Some(f("reason")).filter(|r| !r.is_empty()),
    });
    let r = match serde_json::from_value::<crate::api::claims::ClaimDecision>(body) {
        Ok(b) => {
            crate::api::claims::decide(
                State(st.clone()),
                Extension(a.clone()),
                Path(id.clone()),
                ApiJson(b),
            )
            .await
        }
        Err(_) => Err(Problem::unprocessable(
            "choose approve or reject; a rejection needs a reason",
        )),
    };
    match answer(r).await {
        Ok(_) => super::redirect(&format!("/console/claims/{id}")),
        Err(p) => super::with_status(
            show_claim(
                &Console::of(&st, lang, a, token),
                &id,
                Some(problem_text(lang, &p)),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    }
}

// ------------------------------------------------- data map and the report

fn drift_row(f: lethe_store::DriftFinding) -> minijinja::Value {
    context! {
        id => f.id, system => f.system, kind => f.kind, at => f.at, severity => f.severity,
        breaking => f.breaking, message => f.message, fix => f.fix, state => f.state,
        accepted_by => f.accepted_by, accepted_reason => f.accepted_reason,
    }
}

pub async fn datamap(console: Console) -> Response {
    let (st, lang, a, token) = console.parts();
    datamap_page(&st, lang, &a, &token, None).await
}

async fn datamap_page(
    st: &AppState,
    lang: Lang,
    a: &crate::console::Agent,
    token: &str,
    error: Option<String>,
) -> Response {
    let drift: Vec<_> = match st.store.drift_findings(None).await {
        Ok(list) => list.into_iter().map(drift_row).collect(),
        Err(e) => return Problem::from(e).into_response(),
    };
    let drift_checked = match st.store.drift_check_state().await {
        Ok(s) => s.map(|(t, _)| local_time(&t.to_string(), &st.tz)),
        Err(e) => return Problem::from(e).into_response(),
    };
    let can_accept = a.role == crate::console::Role::Admin && a.platform.is_none();
    let run =
        lethe_connect::check::check_systems(&st.datamap, CHECK_SAMPLE, |_, _| {}, |_, _, _| {})
            .await;
    let (run, failure) = match run {
        Ok(r) => (r, None),
        Err(e) => (Default::default(), Some(e.to_string())),
    };
    let errors = run.errors();
    let (findings, unchecked) = (run.findings, run.unchecked);
    let findings: Vec<_> = findings
        .iter()
        .map(|f| {
            context! {
                severity => match f.severity { lethe_connect::check::Severity::Error => "error", lethe_connect::check::Severity::Warning => "warning", lethe_connect::check::Severity::Accepted => "accepted" },
                system => f.system.clone(), kind => f.kind, at => f.at.clone(), message => f.message.clone(), fix => f.fix.clone(),
            }
        })
        .collect();
    let systems: Vec<_> = st
        .datamap
        .systems
        .iter()
        .map(|s| context! { name => s.name.to_string(), kind => s.kind.as_str(), tables => s.tables.len() })
        .collect();
    render(
        "c_datamap.html",
        context! { ..base_ctx(lang, a, token, st, "/console/datamap"), ..context! { findings, unchecked, errors, systems, failure, drift, drift_checked, can_accept, error } },
    )
}

/// An installation admin accepts a drift finding with a reason (audited).
pub async fn accept_finding(Path(id): Path<String>, Posted { console, form }: Posted) -> Response {
    let (st, lang, a, token) = console.parts();
    let reason = form.get("reason").cloned().unwrap_or_default();
    match crate::api::drift::accept_as(&st, &a, &id, &reason).await {
        Ok(_) => super::redirect("/console/datamap#drift"),
        Err(p) => super::with_status(
            datamap_page(&st, lang, &a, &token, Some(problem_text(lang, &p))).await,
            StatusCode::from_u16(p.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
        ),
    }
}

#[derive(Debug, Deserialize)]
pub struct ReportForm {
    from: Option<String>,
    to: Option<String>,
}

pub async fn report(Query(q): Query<ReportForm>, console: Console) -> Response {
    let (st, lang, a, token) = console.parts();
    let today = st.clock.now().to_zoned_datetime(st.tz.clone()).date();
    let from = q
        .from
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| today.saturating_sub(jiff::Span::new().days(30)).to_string());
    let to =
        q.to.filter(|s| !s.is_empty())
            .unwrap_or_else(|| today.saturating_add(jiff::Span::new().days(1)).to_string());
    let r = crate::console::report(
        State(st.clone()),
        Extension(a.clone()),
        ApiQuery(crate::console::ReportQuery {
            from: from.clone(),
            to: to.clone(),
        }),
    )
    .await;
    let (report, error) = match answer(r).await {
        Ok(v) => (
            Some(minijinja::Value::from(minijinja::value::Serde(&v))),
            None,
        ),
        Err(p) => (None, Some(problem_text(lang, &p))),
    };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    super::with_status(
        render(
            "c_report.html",
            context! { ..base_ctx(lang, &a, &token, &st, "/console/report"), ..context! { report, error, from, to } },
        ),
        status,
    )
}
