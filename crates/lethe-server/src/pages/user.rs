//! The user's cancellation centre, `/u/`: nine steps over one case —
//! start (with the alternatives), verify, blockers and assets, consequences,
//! export, confirm, progress (live, server-sent events), restore during
//! cooling-off, receipt.
//!
//! The platform hands its signed-in user over with a single-use link
//! (`POST /v1/handoffs`); the page session is a sealed cookie naming the
//! platform, the account and the case. Each action calls the API handler
//! of the same name, so the pages and the API cannot drift apart.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use lethe_domain::asset::{OptionKind, SettlementStatus};
use lethe_domain::{Case, CaseState, Channel, SubjectId};
use minijinja::context;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::SiteForm;
use super::{Lang, answer, csrf_ok, csrf_token, local_time, problem_text, render};
use crate::AppState;
use crate::http::extract::ApiJson;
use crate::http::extract::CaseCall;
use crate::http::middleware::Principal;
use crate::http::problem::Problem;

const SESSION_COOKIE: &str = "lethe_u";
const LANG_COOKIE: &str = "lethe_lang";
/// A hand-off link works once, within this many seconds.
pub const HANDOFF_SECS: i64 = 600;
/// A page session lasts this long after the last page the user opened.
const SESSION_SECS: i64 = 1800;
/// One live-progress connection lasts at most this long; the browser
/// reconnects by itself.
const SSE_MAX_SECS: u64 = 600;
/// Live-progress connections open at once on this instance; more are told
/// to retry (the browser's EventSource does so by itself).
const MAX_LIVE: usize = 1_000;

static LIVE: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_LIVE)));

/// Live-progress connections one session may hold at once (a few tabs); so
/// one session cannot take the instance's slots.
const MAX_LIVE_PER_SESSION: u32 = 3;

static LIVE_BY_SESSION: std::sync::LazyLock<std::sync::Mutex<HashMap<String, u32>>> =
    std::sync::LazyLock::new(|| std::sync::Mutex::new(HashMap::new()));

/// One session's live connection; gives its place back when dropped.
struct SessionSlot(String);

impl SessionSlot {
    fn take(sid: String) -> Option<Self> {
        let mut m = LIVE_BY_SESSION.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(sid.clone()).or_insert(0);
        if *n >= MAX_LIVE_PER_SESSION {
            return None;
        }
        *n += 1;
        Some(Self(sid))
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut m = LIVE_BY_SESSION.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.0) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.0);
            }
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Handoff {
    p: String,
    s: String,
    ch: String,
    exp: i64,
    n: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserSession {
    /// The platform (API key name) that handed the user over.
    p: String,
    /// The account.
    s: String,
    ch: String,
    case: Option<String>,
    exp: i64,
    /// The session's secret, from which its CSRF token is derived.
    k: String,
}

// ------------------------------------------------------------ hand-off API

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffRequest {
    /// The platform's id of the signed-in account.
    #[schema(value_type = String, example = "10042")]
    pub subject_id: SubjectId,
    /// app (signed in) or recovery (signed out, found through account
    /// recovery); the cancellation centre verifies the holder either way.
    #[schema(value_type = String, example = "app")]
    pub channel: Channel,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HandoffLink {
    /// Send the user's browser here (once, within 10 minutes).
    pub url: String,
    pub expires_at: String,
}

/// Hand a user over to the cancellation centre: a single-use link that
/// opens the pages for this account. The platform calls this for its
/// signed-in user (or one it found through account recovery) and
/// redirects the browser to the link.
#[utoipa::path(post, path = "/v1/handoffs", request_body = HandoffRequest, tag = "pages",
    responses((status = 201, body = HandoffLink), (status = 422, body = Problem)), security(("api_key" = [])))]
pub async fn create_handoff(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(body): ApiJson<HandoffRequest>,
) -> Result<Response, Problem> {
    let link = handoff(&st, &p, &body.subject_id, body.channel).await?;
    Ok((StatusCode::CREATED, axum::Json(link)).into_response())
}

pub async fn handoff(
    st: &AppState,
    p: &Principal,
    subject: &SubjectId,
    channel: Channel,
) -> Result<HandoffLink, Problem> {
    if !matches!(channel, Channel::App | Channel::Recovery) {
        return Err(Problem::unprocessable(
            "the pages serve the app and recovery channels; agents use the console",
        )
        .field("channel")
        .fix("send app or recovery"));
    }
    crate::http::ownership::live_account(st, &p.0, subject).await?;
    let now = jiff::Timestamp::now().as_second();
    let h = Handoff {
        p: p.0.clone(),
        s: subject.expose().to_owned(),
        ch: channel.as_str().into(),
        exp: now + HANDOFF_SECS,
        n: hex::encode(rand::random::<[u8; 16]>()),
    };
    let token = super::seal(st.secrets.pages_key(), "handoff", &h);
    Ok(HandoffLink {
        url: format!("{}/u/enter?t={token}", st.public_url),
        expires_at: jiff::Timestamp::from_second(h.exp)
            .map(|t| t.to_string())
            .unwrap_or_default(),
    })
}

// ------------------------------------------------------------- the session

fn lang_of(headers: &HeaderMap) -> Lang {
    super::cookie(headers, LANG_COOKIE)
        .map(Lang::parse)
        .unwrap_or_default()
}

/// A page of the centre for its user: the language and the live session.
/// Without one (expired, signed out, never opened) the answer is the
/// "expired" page, before the handler runs.
pub struct Centre {
    lang: Lang,
    session: UserSession,
}

impl FromRequestParts<AppState> for Centre {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        let lang = lang_of(&parts.headers);
        match session_of(st, &parts.headers).await {
            Some(session) => Ok(Self { lang, session }),
            None => Err(expired(lang)),
        }
    }
}

async fn session_of(st: &AppState, headers: &HeaderMap) -> Option<UserSession> {
    let raw = super::cookie(headers, SESSION_COOKIE)?;
    let s: UserSession = super::open(st.secrets.pages_key(), "session", raw).ok()?;
    if s.exp <= jiff::Timestamp::now().as_second() {
        return None;
    }
    // A session signed out stays out, even if its cookie was kept.
    match st.store.signed_out(&s.sid()).await {
        Ok(false) => Some(s),
        _ => None,
    }
}

impl UserSession {
    /// The session's id: a hash of its secret (the secret itself stays in
    /// the cookie).
    fn sid(&self) -> String {
        crate::http::middleware::hash_api_key(&format!("session:{}", self.k))
    }
}

fn with_session(st: &AppState, mut r: Response, s: &UserSession) -> Response {
    let mut s = s.clone();
    s.exp = jiff::Timestamp::now().as_second() + SESSION_SECS;
    let v = super::seal(st.secrets.pages_key(), "session", &s);
    r.headers_mut().append(
        header::SET_COOKIE,
        super::set_cookie(SESSION_COOKIE, &v, "/u", SESSION_SECS, "Lax", !st.demo),
    );
    r
}

fn expired(lang: Lang) -> Response {
    super::with_status(
        render("u_expired.html", context! { lang => lang.tag() }),
        StatusCode::UNAUTHORIZED,
    )
}

#[derive(Debug, Deserialize)]
pub struct EnterQuery {
    t: Option<String>,
}

/// The hand-off link: opens the session (once) and goes to the case.
pub async fn enter(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<EnterQuery>,
) -> Response {
    let lang = lang_of(&headers);
    let Some(t) = q.t else {
        return expired(lang);
    };
    let Ok(h) = super::open::<Handoff>(st.secrets.pages_key(), "handoff", &t) else {
        return expired(lang);
    };
    let now = jiff::Timestamp::now();
    if h.exp < now.as_second() {
        return expired(lang);
    }
    match st
        .store
        .first_callback(format!("handoff:{}", h.n), now)
        .await
    {
        Ok(true) => {}
        Ok(false) => return expired(lang),
        Err(e) => return Problem::from(e).into_response(),
    }
    let case = match st.store.open_case_of(&h.p, &h.s).await {
        Ok(c) => c.map(|c| c.to_string()),
        Err(e) => return Problem::from(e).into_response(),
    };
    let s = UserSession {
        p: h.p,
        s: h.s,
        ch: h.ch,
        case,
        exp: 0,
        k: hex::encode(rand::random::<[u8; 16]>()),
    };
    with_session(&st, super::redirect("/u/"), &s)
}

#[derive(Debug, Deserialize)]
pub struct LangQuery {
    to: Option<String>,
    back: Option<String>,
}

/// Switches the language (zh-CN / en) and goes back to a local page.
/// A redirect target only if it is a path on this site after the
/// browser's own normalisation: starts with one `/`, and holds no
/// backslash, whitespace or control character (a browser drops a tab or a
/// newline and reads `/\t/evil.example` as `//evil.example`).
fn same_site_path(b: &str) -> Option<String> {
    if b.len() > 512
        || !b.starts_with('/')
        || b.chars()
            .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let base = url::Url::parse("https://lethe.invalid/").ok()?;
    let joined = base.join(b).ok()?;
    if joined.host_str() != Some("lethe.invalid") || joined.scheme() != "https" {
        return None;
    }
    let mut out = joined.path().to_owned();
    if out.starts_with("//") {
        return None;
    }
    if let Some(q) = joined.query() {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

pub async fn switch_lang(State(st): State<AppState>, Query(q): Query<LangQuery>) -> Response {
    let lang = Lang::parse(q.to.as_deref().unwrap_or_default());
    let back = q
        .back
        .as_deref()
        .and_then(same_site_path)
        .unwrap_or_else(|| "/u/".into());
    let mut r = super::redirect(&back);
    r.headers_mut().append(
        header::SET_COOKIE,
        super::set_cookie(LANG_COOKIE, lang.tag(), "/", 31_536_000, "Lax", !st.demo),
    );
    r
}

// ------------------------------------------------------------------- pages

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    step: Option<String>,
    /// `sent` after a support request was opened from the page.
    support: Option<String>,
}

/// The cancellation centre: the page of the step the case is at.
pub async fn page(
    State(st): State<AppState>,
    Query(q): Query<PageQuery>,
    Centre { lang, session: s }: Centre,
) -> Response {
    let r = show_with(&st, &s, lang, q.step.as_deref(), None, q.support.is_some()).await;
    with_session(&st, r, &s)
}

async fn load(st: &AppState, s: &UserSession) -> Result<Option<Case>, Problem> {
    let Some(id) = &s.case else {
        return Ok(None);
    };
    let id = lethe_domain::CaseId::parse(id).map_err(|_| Problem::internal())?;
    Ok(st.store.get_case(id).await?)
}

/// The step (1-9) a case is at.
fn step_of(c: Option<&Case>, want: Option<&str>) -> u8 {
    let Some(c) = c else { return 1 };
    match c.state {
        CaseState::Submitted => 2,
        CaseState::IdentityVerified | CaseState::ChecksBlocked => 3,
        CaseState::ChecksClear => {
            if c.assets.iter().all(|a| a.chosen()) {
                4
            } else {
                3
            }
        }
        CaseState::ConsequencesAcknowledged => {
            if want == Some("confirm") {
                6
            } else {
                5
            }
        }
        CaseState::UnderReview | CaseState::Settling | CaseState::Erasing | CaseState::Failed => 7,
        CaseState::CoolingOff => 7,
        CaseState::Erased => 9,
        CaseState::Withdrawn | CaseState::Rejected => 8,
    }
}

const STEPS: [&str; 9] = [
    "start",
    "verify",
    "assets",
    "consequences",
    "export",
    "confirm",
    "progress",
    "restore",
    "receipt",
];

async fn show(
    st: &AppState,
    s: &UserSession,
    lang: Lang,
    want: Option<&str>,
    error: Option<String>,
) -> Response {
    show_with(st, s, lang, want, error, false).await
}

async fn show_with(
    st: &AppState,
    s: &UserSession,
    lang: Lang,
    want: Option<&str>,
    error: Option<String>,
    support_sent: bool,
) -> Response {
    let case = match load(st, s).await {
        Ok(c) => c,
        Err(p) => return p.into_response(),
    };
    let csrf = csrf_token(st.secrets.pages_key(), &s.k);
    let step = step_of(case.as_ref(), want);
    let steps: Vec<_> = STEPS
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let n = i as u8 + 1;
            context! {
                n => n,
                key => format!("step.{k}"),
                state => if n < step { "done" } else if n == step { "current" } else { "todo" },
            }
        })
        .collect();
    let Some(case) = case else {
        let alternatives: Vec<_> = crate::api::cases::alternatives_list()
            .into_iter()
            .map(|a| {
                context! {
                    kind => a.kind,
                    title => if lang == Lang::En { a.title_en } else { a.title_zh },
                    description => if lang == Lang::En { a.description_en } else { a.description_zh },
                }
            })
            .collect();
        let r = render(
            "u_start.html",
            context! { lang => lang.tag(), csrf, steps, step, alternatives, error, support_sent,
            topics => super::support::topics(lang),
            cooling_days => st.policy.cooling_off.as_secs() / 86_400 },
        );
        return r;
    };
    let view = match case_context(st, &case, lang).await {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let dev_sms = if st.demo {
        st.store
            .outbox_for(case.id)
            .await
            .ok()
            .and_then(|m| m.into_iter().rev().find(|m| m.channel == "sms"))
            // Only a code sent at the current step (not the one that
            // verified the holder earlier).
            .filter(|m| m.created_at >= case.updated_at)
            .map(|m| m.body)
    } else {
        None
    };
    super::with_status(
        render(
            "u_case.html",
            context! { lang => lang.tag(), csrf, steps, step, case => view, error, dev_sms, support_sent,
            topics => super::support::topics(lang),
            otp_minutes => st.policy.otp_ttl.as_secs() / 60,
            cooling_days => st.policy.cooling_off.as_secs() / 86_400 },
        ),
        status,
    )
}

/// What the case page shows of a case.
async fn case_context(st: &AppState, c: &Case, lang: Lang) -> Result<minijinja::Value, Problem> {
    let en = lang == Lang::En;
    let today = st.clock.now().to_zoned_datetime(st.tz.clone()).date();
    let assets: Vec<_> = c
        .assets
        .iter()
        .map(|a| {
            let options: Vec<_> = a
                .kind
                .options()
                .iter()
                .map(|o| {
                    let (zh, en_text) = c.settlement_statement(a, *o, None, today);
                    context! {
                        value => o.as_str(),
                        label => super::i18n::text(lang, &format!("option.{}", o.as_str())),
                        statement => if en { en_text } else { zh },
                        transfer => *o == OptionKind::Transfer,
                    }
                })
                .collect();
            let settlement = a.settlement.as_ref().map(|s| {
                context! {
                    option => super::i18n::text(lang, &format!("option.{}", s.option.as_str())),
                    status => match s.status {
                        SettlementStatus::Chosen => "chosen",
                        SettlementStatus::Pending => "pending",
                        SettlementStatus::Done => "done",
                        SettlementStatus::Failed => "failed",
                        SettlementStatus::Forfeited => "forfeited",
                    },
                    statement => s.statement.clone(),
                    amount => s.amount.map(|m| m.get()),
                    reference => s.reference.clone(),
                    error => s.error.clone(),
                }
            });
            context! {
                id => a.id.clone(),
                kind => super::i18n::text(lang, &format!("asset.{}", a.kind.as_str())),
                label => a.label.clone(),
                amount => a.amount.map(|m| m.get()),
                quantity => a.quantity,
                period_end => a.period_end.map(|d| d.to_string()),
                auto_renew => a.auto_renew,
                options,
                settlement,
                open => a.settlement.as_ref().is_none_or(|s| s.status == SettlementStatus::Failed),
                early => a.settlement.as_ref().is_some_and(|s| s.early && s.status == SettlementStatus::Done),
            }
        })
        .collect();
    let consequences: Vec<_> = c
        .consequences
        .iter()
        .map(|q| {
            context! {
                id => q.id.clone(),
                version => q.version,
                text => if en { q.text_en.clone() } else { q.text_zh.clone() },
                acknowledged => c.acknowledgements.iter().any(|a| a.consequence_id == q.id && a.version == q.version),
            }
        })
        .collect();
    let blockers: Vec<_> = c
        .blockers
        .iter()
        .map(|b| {
            context! {
                message => if en { b.message_en.clone() } else { b.message_zh.clone() },
                items => b.items.clone(),
            }
        })
        .collect();
    let now = st.clock.now();
    let deadlines: Vec<_> = st
        .store
        .deadlines_for_case(c.id)
        .await?
        .iter()
        .map(|d| {
            let v = crate::api::cases::DeadlineView::from_row(d, now);
            context! {
                kind => super::i18n::text(lang, &format!("deadline.{}", v.kind)),
                due => v.due_at.as_deref().map(|t| local_time(t, &st.tz)),
                status => super::i18n::text(lang, &format!("dstatus.{}", v.status)),
            }
        })
        .collect();
    let exports: Vec<_> = crate::api::exports::views_for_case(st, &c.id.to_string())
        .await?
        .into_iter()
        .map(|e| {
            context! {
                state => e.state.clone(),
                state_label => super::i18n::text(lang, &format!("export.{}", e.state)),
                percent => e.percent,
                ready => e.state == "ready",
                url => e.download_url.filter(|_| e.state == "ready"),
                expires => local_time(&e.expires_at, &st.tz),
                systems => e.systems.iter().map(|s| context! { name => s.system.clone(), percent => s.percent }).collect::<Vec<_>>(),
            }
        })
        .collect();
    let progress = progress_context(st, c, lang).await?;
    let retention: Vec<_> = st
        .datamap
        .systems
        .iter()
        .flat_map(|sys| {
            sys.tables.iter().filter_map(move |t| match &t.action {
                lethe_connect::datamap::Action::Keep {
                    legal_basis,
                    retention_days,
                    ..
                } => Some(context! {
                    what => t.title(lang == Lang::Zh).to_owned(),
                    system => sys.name.to_string(),
                    why => t.legal_basis(lang == Lang::Zh).unwrap_or(legal_basis).to_owned(),
                    until => super::i18n::text(lang, "retain.for").replace("{n}", &retention_days.to_string()),
                }),
                _ => None,
            })
        })
        .collect();
    Ok(context! {
        id => c.id.to_string(),
        state => c.state.as_str(),
        state_label => super::i18n::text(lang, &format!("state.{}", c.state.as_str())),
        next => super::i18n::text(lang, &format!("next.{}", c.state.as_str())),
        channel => c.channel.as_str(),
        assets,
        consequences,
        all_acknowledged => c.consequences.iter().all(|q| c.acknowledgements.iter().any(|a| a.consequence_id == q.id && a.version == q.version)),
        blockers,
        deadlines,
        exports,
        progress,
        retention,
        checks_problem => c.checks_problem.clone(),
        cooling_off_ends => c.cooling_off_ends_at.map(|t| local_time(&t.to_string(), &st.tz)),
        rejection => c.rejection_reason.as_ref().map(|r| r.as_str().to_owned()),
        early => c.assets.iter().any(|a| a.settlement.as_ref().is_some_and(|s| s.early && s.status == SettlementStatus::Done)),
        was_cooling_off => c.state == CaseState::Withdrawn && st.store.audit_for_case(c.id).await?.iter().any(|e| e.event.to_state == "cooling_off"),
        stamp => stamp(st, c).await?,
    })
}

/// The progress list: what has happened and what happens next, and each
/// system's erasure.
async fn progress_context(
    st: &AppState,
    c: &Case,
    lang: Lang,
) -> Result<minijinja::Value, Problem> {
    let events: Vec<_> = st
        .store
        .audit_for_case(c.id)
        .await?
        .into_iter()
        .map(|e| {
            let key = format!("event.{}", e.event.kind);
            let what = match super::i18n::text(lang, &key) {
                t if t == key => {
                    super::i18n::text(lang, &format!("state.{}", e.event.to_state)).to_owned()
                }
                t => t.to_owned(),
            };
            context! {
                what,
                kind => e.event.kind,
                at => local_time(&e.event.at, &st.tz),
            }
        })
        .collect();
    let systems: Vec<_> = st
        .store
        .jobs_for_case(c.id)
        .await?
        .into_iter()
        .filter(|j| j.kind == "erase" || j.kind == "shred")
        .map(|j| {
            context! {
                system => j.system,
                state => j.state.clone(),
                label => super::i18n::text(lang, &format!("job.{}", j.state)),
            }
        })
        .collect();
    Ok(context! { events, systems })
}

/// A short fingerprint of everything the live progress shows; the page
/// refreshes its live part when it changes.
async fn stamp(st: &AppState, c: &Case) -> Result<String, Problem> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(c.state.as_str());
    h.update(c.updated_at.to_string());
    for j in st.store.jobs_for_case(c.id).await? {
        h.update(format!("{}:{}:{};", j.system, j.state, j.attempts));
    }
    for e in st.store.exports_for_case(&c.id.to_string()).await? {
        h.update(format!("{}:{:?};", e.id, e.state));
        h.update(serde_json::to_vec(&e.progress).unwrap_or_default());
    }
    Ok(hex::encode(&h.finalize()[..8]))
}

// ----------------------------------------------------------------- actions

/// Opens the session's case through the API's own handler (the account
/// and channel the hand-off named).
async fn open_case(
    st: &AppState,
    p: &Principal,
    s: &UserSession,
) -> Result<serde_json::Value, Problem> {
    let subject = SubjectId::parse(&s.s).map_err(|_| Problem::internal())?;
    let channel = Channel::parse(&s.ch).map_err(|_| Problem::internal())?;
    let body = crate::api::cases::CreateCase {
        subject_id: subject,
        channel,
    };
    let r = crate::api::cases::create_case(
        State(st.clone()),
        Extension(p.clone()),
        None,
        ApiJson(body),
    )
    .await;
    answer(r).await
}

/// A form post: session, CSRF token and origin checked, then the action.
pub async fn act(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Path(action): Path<String>,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> Response {
    let lang = lang_of(&headers);
    let Some(mut s) = session_of(&st, &headers).await else {
        return expired(lang);
    };
    if form.len() > super::MAX_FIELDS {
        return super::forbidden_post(lang);
    }
    let form: HashMap<String, String> = form.into_iter().collect();
    let token = form.get("_csrf").map(String::as_str).unwrap_or_default();
    if !super::same_origin(&headers, &st.public_url)
        || !csrf_ok(st.secrets.pages_key(), &s.k, token)
    {
        return super::forbidden_post(lang);
    }
    if action == "signout" {
        // The cookie goes, and the session is recorded as signed out, so a
        // copy of the cookie no longer opens the centre either.
        let until = jiff::Timestamp::from_second(s.exp).unwrap_or_else(|_| jiff::Timestamp::now());
        if let Err(e) = st.store.sign_out(s.sid(), until).await {
            return Problem::from(e).into_response();
        }
        let mut r = render(
            "u_expired.html",
            context! { lang => lang.tag(), signed_out => true },
        );
        r.headers_mut().append(
            header::SET_COOKIE,
            super::set_cookie(SESSION_COOKIE, "", "/u", 0, "Lax", !st.demo),
        );
        return r;
    }
    let field = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let p = Principal(s.p.clone());
    let case_id = s.case.clone().unwrap_or_default();
    // Each action is the API's own handler, called for this user's case.
    let call = || CaseCall::new(st.clone(), p.clone(), case_id.clone());
    let mut next = "/u/".to_owned();
    let result: Result<(), Problem> = async {
        match action.as_str() {
            "start" => {
                let v = open_case(&st, &p, &s).await;
                match v {
                    Ok(v) => s.case = v["id"].as_str().map(str::to_owned),
                    // An open case exists (another tab, or an agent's):
                    // continue it.
                    Err(e) if e.status == 409 => {
                        s.case = st
                            .store
                            .open_case_of(&s.p, &s.s)
                            .await?
                            .map(|c| c.to_string());
                    }
                    Err(e) => return Err(e),
                }
                Ok(())
            }
            "alternative" => {
                let kind = field("kind");
                if !crate::api::cases::alternatives_list()
                    .iter()
                    .any(|a| a.kind == kind)
                {
                    return Err(Problem::unprocessable("unknown alternative").field("kind"));
                }
                if s.case.is_none() {
                    let v = open_case(&st, &p, &s).await?;
                    s.case = v["id"].as_str().map(str::to_owned);
                }
                let id = s.case.clone().unwrap_or_default();
                answer(
                    crate::api::cases::choose_alternative(
                        CaseCall::new(st.clone(), p.clone(), id),
                        ApiJson(crate::api::cases::ChooseAlternative { kind }),
                    )
                    .await,
                )
                .await?;
                Ok(())
            }
            "send-code" => {
                let mut h = HeaderMap::new();
                h.insert(
                    "lethe-client-address",
                    HeaderValue::from_str(&peer.ip().to_string())
                        .unwrap_or(HeaderValue::from_static("0.0.0.0")),
                );
                answer(crate::api::cases::send_code(call(), ConnectInfo(peer), h).await).await?;
                Ok(())
            }
            "verify" | "restore" => {
                let code = lethe_domain::OtpCode::parse(&field("code"))
                    .map_err(|e| Problem::unprocessable(format!("the code {e}")).field("code"))?;
                let r = if action == "verify" {
                    crate::api::cases::verify_code(
                        call(),
                        ApiJson(crate::api::cases::VerifyCode { code }),
                    )
                    .await
                } else {
                    crate::api::cases::restore(call(), ApiJson(crate::api::cases::Restore { code }))
                        .await
                };
                answer(r).await?;
                Ok(())
            }
            "checks" => {
                answer(crate::api::cases::run_checks(call()).await).await?;
                Ok(())
            }
            "settle" => {
                let option: OptionKind = serde_json::from_value(serde_json::Value::String(field(
                    "option",
                )))
                .map_err(|_| Problem::unprocessable("choose one of the options").field("option"))?;
                let transfer_to = match field("transfer_to") {
                    t if t.is_empty() => None,
                    t => Some(SubjectId::parse(&t).map_err(|e| {
                        Problem::unprocessable(format!("the receiving account {e}"))
                            .field("transfer_to")
                    })?),
                };
                answer(
                    crate::api::settlement::settle(
                        call(),
                        ApiJson(crate::api::settlement::Settle {
                            asset_id: field("asset_id"),
                            option,
                            locale: lang.locale(),
                            transfer_to,
                        }),
                    )
                    .await,
                )
                .await?;
                Ok(())
            }
            "acknowledge" => {
                let version = field("version").parse::<u32>().map_err(|_| {
                    Problem::unprocessable("the text's version is missing").field("version")
                })?;
                answer(
                    crate::api::cases::acknowledge(
                        call(),
                        ApiJson(crate::api::cases::Acknowledge {
                            consequence_id: field("consequence_id"),
                            version,
                            locale: lang.locale(),
                        }),
                    )
                    .await,
                )
                .await?;
                Ok(())
            }
            "export" => {
                let mut h = HeaderMap::new();
                let key = uuid::Uuid::now_v7().to_string();
                h.insert(
                    "idempotency-key",
                    HeaderValue::from_str(&key).map_err(|_| Problem::internal())?,
                );
                answer(
                    crate::api::exports::create_for_case(
                        State(st.clone()),
                        Extension(p.clone()),
                        h,
                        Path(case_id.clone()),
                        ApiJson(crate::api::exports::CaseExportRequest { single_use: None }),
                    )
                    .await,
                )
                .await?;
                Ok(())
            }
            "confirm" => {
                if field("understood") != "yes" {
                    next = "/u/?step=confirm".into();
                    return Err(Problem::unprocessable(
                        "tick the box to confirm that you understand",
                    )
                    .field("understood"));
                }
                answer(crate::api::cases::confirm(call()).await).await?;
                Ok(())
            }
            "withdraw" => {
                answer(crate::api::cases::withdraw(call()).await).await?;
                Ok(())
            }
            // A support request tied to the live case (the same kind a
            // former holder opens with the receipt).
            "support" => {
                let ask = crate::api::support::Ask::parse(
                    &field("topic"),
                    &field("message"),
                    &field("contact"),
                )?;
                // Before any case: a question about cancelling, tied to
                // no case and naming no subject (the limit counts a keyed
                // hash of the account, emptied after a day).
                let (case, origin, limit_key) = if case_id.is_empty() {
                    (
                        None,
                        lethe_domain::support::Origin::Account,
                        format!("account:{}:{}", s.p, s.s),
                    )
                } else {
                    (
                        Some(case_id.clone()),
                        lethe_domain::support::Origin::Live,
                        format!("case:{case_id}"),
                    )
                };
                crate::api::support::open(
                    &st,
                    case,
                    s.p.clone(),
                    origin,
                    ask,
                    &limit_key,
                    crate::http::middleware::client_address(
                        &st.limits.trusted_proxies,
                        &headers,
                        peer.ip(),
                    ),
                    "holder:app".into(),
                )
                .await?;
                next = "/u/?support=sent#support".into();
                Ok(())
            }
            _ => Err(Problem::not_found("no such action")),
        }
    }
    .await;
    match result {
        Ok(()) => with_session(&st, super::redirect(&next), &s),
        Err(e) => {
            let want = (next.ends_with("confirm")).then_some("confirm");
            let r = show(&st, &s, lang, want, Some(problem_text(lang, &e))).await;
            with_session(&st, r, &s)
        }
    }
}

// ---------------------------------------------------------- live progress

/// Live progress as server-sent events: a `progress` event with the case's
/// state and fingerprint whenever either changes (checked every second).
pub async fn events(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let Some(s) = session_of(&st, &headers).await else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let Some(id) = s
        .case
        .as_deref()
        .and_then(|i| lethe_domain::CaseId::parse(i).ok())
    else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let Some(slot) = SessionSlot::take(s.sid()) else {
        return Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "busy",
            "Too many live connections",
            "this session already follows its case live in other tabs",
        )
        .retry_after(30)
        .into_response();
    };
    let Ok(permit) = LIVE.clone().try_acquire_owned() else {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "Too many live connections",
            "too many pages follow their case live right now",
        )
        .retry_after(5)
        .into_response();
    };
    let started = std::time::Instant::now();
    let stream = futures_util::stream::unfold(
        (st, String::new(), (permit, slot)),
        move |(st, last, permit)| async move {
            loop {
                if started.elapsed() > Duration::from_secs(SSE_MAX_SECS) {
                    return None;
                }
                let now = match st.store.get_case(id).await {
                    Ok(Some(c)) => stamp(&st, &c)
                        .await
                        .ok()
                        .map(|h| (c.state.as_str().to_owned(), h)),
                    _ => None,
                };
                if let Some((state, h)) = now
                    && h != last
                {
                    let ev = Event::default()
                        .event("progress")
                        .data(serde_json::json!({ "state": state, "stamp": h }).to_string());
                    return Some((Ok::<_, Infallible>(ev), (st, h, permit)));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The signed receipt of the erased case, as a page.
pub async fn receipt(State(st): State<AppState>, Centre { session: s, .. }: Centre) -> Response {
    let r = crate::api::audit::receipt_html(
        State(st.clone()),
        Extension(Principal(s.p.clone())),
        Path(s.case.clone().unwrap_or_default()),
    )
    .await;
    super::document(r)
}

// -------------------------------------------------------------- demo only

/// Demo Mart's "Settings" page: stands for the platform's app, which hands
/// its signed-in user over to the cancellation centre.
/// The demo platform's own sign-in (a sealed cookie naming the account).
const DEMO_COOKIE: &str = "demo_mart";
/// A demo sign-in lasts this long.
const DEMO_SESSION_SECS: i64 = 3600;

#[derive(Debug, Serialize, Deserialize)]
struct DemoUser {
    s: String,
    exp: i64,
}

/// The account signed in to the demo app, if any.
fn demo_user(st: &AppState, headers: &HeaderMap) -> Option<String> {
    let raw = super::cookie(headers, DEMO_COOKIE)?;
    let u: DemoUser = super::open(st.secrets.pages_key(), "demo_user", raw).ok()?;
    (u.exp > jiff::Timestamp::now().as_second()).then_some(u.s)
}

fn demo_page(lang: Lang, user: Option<String>, failed: bool) -> Response {
    render(
        "demo_app.html",
        context! { lang => lang.tag(), back => "/demo-platform/app", user, failed },
    )
}

pub async fn demo_app(State(st): State<AppState>, headers: HeaderMap) -> Response {
    demo_page(lang_of(&headers), demo_user(&st, &headers), false)
}

/// The demo app's sign-in: the account id and its registered phone number
/// (Demo Mart has no passwords; a real platform has its own sign-in).
pub async fn demo_signin(
    State(st): State<AppState>,
    SiteForm { lang, form, .. }: SiteForm,
) -> Response {
    let field = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let (Ok(id), phone) = (field("subject_id").parse::<i64>(), field("phone")) else {
        return super::with_status(demo_page(lang, None, true), StatusCode::UNAUTHORIZED);
    };
    let Some(mart) = st.systems.sql("demo_mart") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let found: Result<Option<i64>, _> =
        sqlx::query_scalar("SELECT id FROM users WHERE id = $1 AND phone = $2")
            .bind(id)
            .bind(phone)
            .fetch_optional(mart.pool())
            .await;
    match found {
        Ok(Some(_)) => {
            let v = super::seal(
                st.secrets.pages_key(),
                "demo_user",
                &DemoUser {
                    s: id.to_string(),
                    exp: jiff::Timestamp::now().as_second() + DEMO_SESSION_SECS,
                },
            );
            let mut r = super::redirect("/demo-platform/app");
            r.headers_mut().append(
                header::SET_COOKIE,
                super::set_cookie(
                    DEMO_COOKIE,
                    &v,
                    "/demo-platform",
                    DEMO_SESSION_SECS,
                    "Lax",
                    false,
                ),
            );
            r
        }
        Ok(None) => super::with_status(demo_page(lang, None, true), StatusCode::UNAUTHORIZED),
        Err(_) => Problem::internal().into_response(),
    }
}

/// What the platform's back end does when its user presses "cancel my
/// account": create a hand-off link and redirect the browser to it. In the
/// app only for the account signed in; through recovery (the user cannot
/// sign in) for the account named, which Lethe then verifies by SMS code.
pub async fn demo_cancel(
    State(st): State<AppState>,
    SiteForm { headers, form, .. }: SiteForm,
) -> Response {
    let channel = Channel::parse(form.get("channel").map(String::as_str).unwrap_or("app"));
    let subject = match channel {
        Ok(Channel::App) => demo_user(&st, &headers),
        Ok(Channel::Recovery) => form.get("subject_id").map(|s| s.trim().to_owned()),
        _ => None,
    };
    let (Some(Ok(subject)), Ok(channel)) = (subject.map(|s| SubjectId::parse(&s)), channel) else {
        return super::redirect("/demo-platform/app");
    };
    match handoff(&st, &Principal("demo".into()), &subject, channel).await {
        Ok(link) => super::redirect(&link.url),
        Err(p) => p.into_response(),
    }
}

#[cfg(test)]
mod redirect_tests {
    use super::same_site_path;

    #[test]
    fn only_same_site_paths() {
        assert_eq!(same_site_path("/u/?step=3").as_deref(), Some("/u/?step=3"));
        assert_eq!(same_site_path("/u/../u/").as_deref(), Some("/u/"));
        for bad in [
            "//evil.example/x",
            "/\t/evil.example/x",
            "/\\evil.example",
            "https://evil.example/",
            "/%09/evil.example/x",
            "/\n/evil.example",
            "evil.example",
            "",
        ] {
            let got = same_site_path(bad);
            assert!(
                got.as_deref()
                    .is_none_or(|p| p.starts_with('/') && !p.starts_with("//")),
                "{bad:?} -> {got:?}"
            );
        }
        assert_eq!(same_site_path("/\t/evil.example/x"), None);
        assert_eq!(same_site_path("//evil.example/x"), None);
    }
}
