//! The agent console's API: local accounts (argon2id password + TOTP),
//! roles (agent, reviewer, admin, auditor), and the hotline and counter
//! channels. Every agent action is audited with the agent's id.

pub mod totp;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lethe_domain::{AssuranceLevel, Case, CaseCommand, CaseId, Channel, SubjectId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::cases::CaseView;
use crate::http::agent::hash_token;
pub use crate::http::agent::{Agent, Role, allowed, platform_for, require};
use crate::http::extract::{ApiJson, ApiQuery, CaseCall, parse_case_id};
use crate::http::problem::Problem;

/// Failed logins (from any address) before each further attempt waits a
/// little (a backoff of at most about a minute). The lockout that lasts is
/// per account and address (`lethe_store` login_throttle).
const MAX_FAILED_LOGINS: u32 = 10;
/// A console session lasts this long.
const SESSION_HOURS: i64 = 8;

/// Creates an agent: returns the initial password and the TOTP secret's
/// otpauth:// URL, shown once. The TOTP secret is stored sealed by the vault.
pub async fn create_agent(
    st: &AppState,
    username: &str,
    role: Role,
    platform: Option<String>,
) -> Result<(String, String), Problem> {
    if let Some(p) = &platform
        && !st.store.platforms().await?.iter().any(|k| k == p)
    {
        return Err(
            Problem::unprocessable("no platform of this installation has this name")
                .field("platform")
                .fix("name a platform by its API key name (lethe apikey create --name)"),
        );
    }
    let ok = (3..=64).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if !ok {
        return Err(
            Problem::unprocessable("the username must be 3-64 of a-z, 0-9, '.', '_', '-'")
                .field("username"),
        );
    }
    let password = format!("lp_{}", hex::encode(rand::random::<[u8; 12]>()));
    let salt =
        SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|_| Problem::internal())?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|_| Problem::internal())?
        .to_string();
    let secret = crate::console::totp::new_secret();
    let id = format!("ag_{}", uuid::Uuid::now_v7().simple());
    let field = lethe_vault::FieldName::parse("totp_secret").map_err(|_| Problem::internal())?;
    let sealed = st
        .vault
        .encrypt(&id, &field, &secret)
        .await
        .map_err(|_| Problem::internal())?;
    st.store
        .insert_agent(
            id,
            username.to_owned(),
            hash,
            lethe_vault::to_text(&sealed),
            role.as_str().to_owned(),
            platform,
        )
        .await
        .map_err(|e| match e {
            lethe_store::StoreError::Db { message, .. } if message.contains("taken") => {
                Problem::conflict("username-taken", "the username is taken").field("username")
            }
            other => other.into(),
        })?;
    Ok((
        password,
        crate::console::totp::otpauth_url(username, &secret),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub username: String,
    pub password: String,
    /// The six digits of the authenticator app.
    pub totp: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    /// Send as `Authorization: Bearer <token>` to /v1/console/*.
    pub token: String,
    pub role: Role,
    pub expires_at: String,
}

fn login_refused() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "login",
        "Not signed in",
        "the username, password or code is wrong",
    )
    .fix("check all three; after 5 failures from one address the account is locked for that address for a while")
}

/// Argon2 verifications running at once (each takes tens of milliseconds
/// and a good share of memory).
static ARGON_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// A hash of the same parameters as real ones, verified for unknown users.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    // A fixed, valid salt: this hash is never a credential.
    match SaltString::encode_b64(&[7u8; 16]) {
        Ok(salt) => Argon2::default()
            .hash_password(b"no such agent", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
});

/// Sign in to the console: password (argon2id) and TOTP code.
#[utoipa::path(post, path = "/v1/console/login", request_body = Login, tag = "console",
    responses((status = 200, body = Session), (status = 401, body = Problem), (status = 429, body = Problem)))]
pub async fn login(
    State(st): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    ApiJson(body): ApiJson<Login>,
) -> Result<Response, Problem> {
    let now = jiff::Timestamp::now();
    // The client address only as a keyed hash (it is personal data).
    let addr = st
        .secrets
        .identifier_hash("client_address", &peer.ip().to_string());
    // An address that failed too often waits, before any work is spent.
    if let Some(until) = st.store.login_throttled(&addr, None, now).await? {
        return Err(Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "Too many failed sign-ins",
            "too many failed sign-ins from this address; wait before trying again",
        )
        .retry_after((until.as_second() - now.as_second()).max(1)));
    }
    let agent = st.store.agent_by_username(&body.username).await?;
    // One Argon2 verification whatever the account (unknown, disabled,
    // locked or live), so the answer's timing does not tell which; on the
    // blocking pool, a few at a time, so sign-ins never slow the rest.
    let hash = agent
        .as_ref()
        .map(|a| a.password_hash.clone())
        .unwrap_or_else(|| DUMMY_HASH.clone());
    let password = body.password.clone();
    let pw_ok = {
        let _slot = ARGON_SLOTS
            .acquire()
            .await
            .map_err(|_| Problem::internal())?;
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .map_err(|_| Problem::internal())?
    };
    let Some(agent) = agent.filter(|a| !a.disabled) else {
        st.store
            .login_throttle_failed(addr.clone(), None, now)
            .await?;
        return Err(login_refused());
    };
    // Locked: this account from this address (5 failures from it), or the
    // account's short backoff (10 failures from anywhere).
    let here = st
        .store
        .login_throttled(&addr, Some(&agent.id), now)
        .await?;
    let locked = match (agent.locked_until.filter(|u| *u > now), here) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    if let Some(until) = locked {
        // Only the holder of the password learns that the account is locked.
        if !pw_ok {
            st.store
                .login_throttle_failed(addr.clone(), Some(agent.id.clone()), now)
                .await?;
            return Err(login_refused());
        }
        return Err(Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "locked",
            "Account locked",
            format!("too many failed sign-ins; locked until {until}"),
        )
        .retry_after(until.as_second() - now.as_second()));
    }
    let field = lethe_vault::FieldName::parse("totp_secret").map_err(|_| Problem::internal())?;
    let secret = match lethe_vault::from_text(&agent.totp_secret) {
        Ok(env) => st
            .vault
            .decrypt(&agent.id, &field, &env)
            .await
            .map_err(|_| Problem::internal())?,
        Err(_) => return Err(Problem::internal()),
    };
    let step = crate::console::totp::verify(&secret, &body.totp, now.as_second());
    let (Some(step), true) = (step, pw_ok) else {
        st.store
            .login_failed(agent.id.clone(), MAX_FAILED_LOGINS, now)
            .await?;
        st.store
            .login_throttle_failed(addr.clone(), Some(agent.id.clone()), now)
            .await?;
        return Err(login_refused());
    };
    if agent.last_totp_step.is_some_and(|s| s >= step) {
        return Err(login_refused().fix("this code was already used; wait for the next one"));
    }
    let token = format!("ls_{}", hex::encode(rand::random::<[u8; 24]>()));
    let expires = now
        .checked_add(jiff::SignedDuration::from_hours(SESSION_HOURS))
        .unwrap_or(now);
    let role = Role::parse(&agent.role).ok_or_else(Problem::internal)?;
    if !st
        .store
        .login_succeeded(
            agent.id.clone(),
            agent.role.clone(),
            step,
            hash_token(&token),
            expires,
        )
        .await?
    {
        return Err(login_refused().fix("this code was already used; wait for the next one"));
    }
    st.store
        .login_throttle_cleared(addr, agent.id.clone())
        .await?;
    Ok(axum::Json(Session {
        token,
        role,
        expires_at: expires.to_string(),
    })
    .into_response())
}

/// A case the agent serves (another platform's case is not found).
pub async fn load(st: &AppState, a: &Agent, id: CaseId) -> Result<Case, Problem> {
    match st.store.get_case_and_principal(id).await? {
        Some((owner, case)) if a.serves(&owner) => Ok(case),
        _ => Err(Problem::not_found("no case with this id")),
    }
}

impl CaseCall<Agent> {
    /// The case named in the path, if the agent serves its platform.
    pub async fn case(&self) -> Result<Case, Problem> {
        load(&self.st, &self.caller, parse_case_id(&self.id)?).await
    }

    /// Applies one command as this agent (the actor the audit log records)
    /// and answers with the case.
    pub async fn apply(&self, id: CaseId, cmd: CaseCommand) -> Result<Response, Problem> {
        let st = &self.st;
        let case = st
            .store
            .apply(id, cmd, st.clock.now(), self.caller.actor(), vec![], None)
            .await?;
        Ok(view(&case))
    }
}

fn view(c: &Case) -> Response {
    axum::Json(CaseView::from(c)).into_response()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsoleCase {
    #[schema(value_type = String)]
    pub subject_id: SubjectId,
    /// hotline or counter.
    #[schema(value_type = String)]
    pub channel: Channel,
    /// The platform (API key name) whose user this is. Agents of one
    /// platform leave it out; installation staff name it when the
    /// installation serves several platforms.
    #[serde(default)]
    pub platform: Option<String>,
}

/// An agent opens a case for a caller (hotline) or a visitor (counter).
#[utoipa::path(post, path = "/v1/console/cases", request_body = ConsoleCase, tag = "console", responses((status = 201, body = CaseView)), security(("console" = [])))]
pub async fn create_case(
    State(st): State<AppState>,
    Extension(a): Extension<Agent>,
    ApiJson(body): ApiJson<ConsoleCase>,
) -> Result<Response, Problem> {
    require(&a, "create_case")?;
    if !matches!(body.channel, Channel::Hotline | Channel::Counter) {
        return Err(
            Problem::unprocessable("agents open hotline or counter cases").field("channel"),
        );
    }
    let platform = platform_for(&st, &a, body.platform.as_deref()).await?;
    let (case, change, pseudo) =
        crate::http::ownership::open_case(&st, &platform, body.subject_id, body.channel).await?;
    let case = st
        .store
        .create_case(case, change, pseudo, platform, None)
        .await?;
    Ok((StatusCode::CREATED, view(&case)).into_response())
}

/// Read a case (never the subject's ID number).
#[utoipa::path(get, path = "/v1/console/cases/{id}", tag = "console", params(("id" = String, Path)), responses((status = 200, body = CaseView)), security(("console" = [])))]
pub async fn read_case(call: CaseCall<Agent>) -> Result<Response, Problem> {
    require(&call.caller, "read_case")?;
    Ok(view(&call.case().await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Hotline {
    /// As the caller says them; compared by keyed hash, never shown.
    pub name: String,
    pub id_number: String,
    pub phone: String,
}

/// Failed hotline or counter checks allowed per case within the window.
pub const CHECK_FAILURES_PER_CASE: u32 = 5;
/// Failed checks allowed per agent (any case) within the window.
pub const CHECK_FAILURES_PER_AGENT: u32 = 10;
/// The window of those limits.
pub const CHECK_WINDOW_SECS: i64 = 3600;

/// Refuses a hotline or counter check once the case, or the agent, has
/// used up its failed attempts in the last hour: otherwise the check is an
/// oracle (try ID numbers until one matches).
async fn check_attempts_left(st: &AppState, case: &Case, a: &Agent) -> Result<(), Problem> {
    let since = st
        .clock
        .now()
        .checked_sub(jiff::SignedDuration::from_secs(CHECK_WINDOW_SECS))
        .unwrap_or(st.clock.now());
    let (on_case, by_agent) = st
        .store
        .identity_failures(case.id, &a.actor(), since)
        .await?;
    let locked = |what: &str| {
        Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "identity-check-locked",
            "Too many failed identity checks",
            format!("{what} had too many failed identity checks in the last hour"),
        )
        .fix("the caller verifies another way (an SMS code, a counter with the document); a supervisor reviews the failures in the case timeline")
        .retry_after(CHECK_WINDOW_SECS)
    };
    if on_case >= CHECK_FAILURES_PER_CASE {
        return Err(locked("this case"));
    }
    if by_agent >= CHECK_FAILURES_PER_AGENT {
        return Err(locked("this agent"));
    }
    Ok(())
}

/// Records a failed check (an audit event with the agent, never what was
/// said), and raises an alert when an agent's failures burst.
async fn identity_check_failed(
    st: &AppState,
    case: &Case,
    a: &Agent,
    method: &'static str,
) -> Result<(), Problem> {
    let now = st.clock.now();
    st.store
        .record_identity_failure(case.id, method, a.actor(), now)
        .await?;
    let since = now
        .checked_sub(jiff::SignedDuration::from_secs(CHECK_WINDOW_SECS))
        .unwrap_or(now);
    let (_, by_agent) = st
        .store
        .identity_failures(case.id, &a.actor(), since)
        .await?;
    if by_agent >= CHECK_FAILURES_PER_AGENT / 2 {
        tracing::warn!(
            agent = %a.actor(),
            failures = by_agent,
            "alert: identity check failures burst (an agent trying details one after another?)"
        );
    }
    Ok(())
}

/// Hotline: the agent confirms name, ID number and registered phone against
/// the platform's record by keyed-hash comparison, without seeing the record.
#[utoipa::path(post, path = "/v1/console/cases/{id}/hotline", request_body = Hotline, tag = "console", params(("id" = String, Path)), responses((status = 200, body = CaseView), (status = 422, body = Problem), (status = 429, description = "too many failed checks on this case or by this agent in the last hour", body = Problem)), security(("console" = [])))]
pub async fn hotline(
    call: CaseCall<Agent>,
    ApiJson(body): ApiJson<Hotline>,
) -> Result<Response, Problem> {
    let (st, a) = (&call.st, &call.caller);
    require(a, "hotline")?;
    let case = call.case().await?;
    check_attempts_left(st, &case, a).await?;
    let record = st.systems.identifiers(&case.subject).await?;
    let matches = |kind: &str, said: &str| {
        let said = st.secrets.identifier_hash(kind, said);
        record.iter().any(|(k, v)| {
            k == kind
                && subtle::ConstantTimeEq::ct_eq(
                    st.secrets.identifier_hash(k, v).as_bytes(),
                    said.as_bytes(),
                )
                .into()
        })
    };
    let all = matches("name", &body.name)
        & matches("id_number", &body.id_number)
        & matches("phone", &body.phone);
    if !all {
        identity_check_failed(st, &case, a, "hotline").await?;
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "identity-mismatch",
            "The details do not match",
            "the details given do not match the platform's record",
        )
        .fix("ask the caller again; the agent is not told which detail differs"));
    }
    let cmd = CaseCommand::VerifyIdentity {
        method: "hotline".into(),
        level: AssuranceLevel::PHONE,
    };
    call.apply(case.id, cmd).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Counter {
    /// One of the documents the platform accepts at its counters
    /// (`identity.counter_documents`): id_card, passport, hk_macao_permit,
    /// taiwan_permit, foreign_permanent_residence (or the Chinese name).
    pub document_type: String,
    /// The last 4 characters of the document number, as seen.
    pub last4: String,
    /// The branch or station where the document was seen.
    pub branch: String,
}

/// Counter: the agent records the physical ID check (document type, its
/// last 4 digits, the branch); the digits must match the platform's record.
#[utoipa::path(post, path = "/v1/console/cases/{id}/counter", request_body = Counter, tag = "console", params(("id" = String, Path)), responses((status = 200, body = CaseView), (status = 422, body = Problem), (status = 429, description = "too many failed checks on this case or by this agent in the last hour", body = Problem)), security(("console" = [])))]
pub async fn counter(
    call: CaseCall<Agent>,
    ApiJson(body): ApiJson<Counter>,
) -> Result<Response, Problem> {
    let (st, a) = (&call.st, &call.caller);
    require(a, "counter")?;
    if body.last4.chars().count() != 4 || !body.last4.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Problem::unprocessable(
            "last4 must be the last 4 characters of the document number",
        )
        .field("last4"));
    }
    // Only the identity documents the platform accepts at its counters.
    let Some(document) = st.identity.counter_document(&body.document_type) else {
        let accepted: Vec<&str> = crate::config::COUNTER_DOCUMENTS
            .iter()
            .filter(|(c, _)| st.identity.counter_documents.iter().any(|d| d == c))
            .map(|(c, _)| *c)
            .collect();
        return Err(
            Problem::unprocessable("this document is not one the counter may accept")
                .field("document_type")
                .fix(format!("accepted: {}", accepted.join(", "))),
        );
    };
    if !(1..=100).contains(&body.branch.chars().count()) {
        return Err(
            Problem::unprocessable("branch (1-100 characters) is required").field("branch"),
        );
    }
    let case = call.case().await?;
    check_attempts_left(st, &case, a).await?;
    let record = st.systems.identifiers(&case.subject).await?;
    let ok = record.iter().any(|(k, v)| {
        k == "id_number" && v.len() >= 4 && v[v.len() - 4..].eq_ignore_ascii_case(&body.last4)
    });
    if !ok {
        identity_check_failed(st, &case, a, "counter").await?;
        return Err(Problem::unprocessable(
            "the document does not match the account's real-name record",
        )
        .field("last4"));
    }
    // The record of the check: document type, the last 4 digits seen (never
    // the whole number) and the branch.
    let method = format!(
        "counter:{}:*{}@{}",
        document,
        body.last4.to_ascii_uppercase(),
        body.branch
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect::<String>()
    );
    let cmd = CaseCommand::VerifyIdentity {
        method,
        level: AssuranceLevel::STRONG,
    };
    call.apply(case.id, cmd).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsoleReview {
    pub decision: crate::api::cases::Decision,
    #[schema(value_type = Option<String>)]
    pub reason: Option<lethe_domain::Reason>,
}

/// A reviewer decides on a case under review.
#[utoipa::path(post, path = "/v1/console/cases/{id}/review", request_body = ConsoleReview, tag = "console", params(("id" = String, Path)), responses((status = 200, body = CaseView)), security(("console" = [])))]
pub async fn review(
    call: CaseCall<Agent>,
    ApiJson(body): ApiJson<ConsoleReview>,
) -> Result<Response, Problem> {
    require(&call.caller, "review")?;
    let id = call.case().await?.id;
    let cmd = match (body.decision, body.reason) {
        (crate::api::cases::Decision::Approve, _) => CaseCommand::Approve,
        (crate::api::cases::Decision::Reject, Some(reason)) => CaseCommand::Reject { reason },
        (crate::api::cases::Decision::Reject, None) => {
            return Err(
                Problem::unprocessable("a rejection needs a reason the user can read")
                    .field("reason"),
            );
        }
    };
    call.apply(id, cmd).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    pub username: String,
    pub role: Role,
    /// The platform the new agent serves; an admin of one platform creates
    /// agents of that platform only. Left out by installation staff, the
    /// agent is installation staff too.
    #[serde(default)]
    pub platform: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NewAgentCredentials {
    pub password: String,
    pub otpauth_url: String,
}

/// An admin creates an agent account; the credentials are shown once.
#[utoipa::path(post, path = "/v1/console/agents", request_body = NewAgent, tag = "console", responses((status = 201, body = NewAgentCredentials)), security(("console" = [])))]
pub async fn create_agent_route(
    State(st): State<AppState>,
    Extension(a): Extension<Agent>,
    ApiJson(body): ApiJson<NewAgent>,
) -> Result<Response, Problem> {
    require(&a, "create_agent")?;
    let platform = match (&a.platform, body.platform) {
        (None, named) => named,
        (Some(own), None) => Some(own.clone()),
        (Some(own), Some(n)) if &n == own => Some(n),
        (Some(_), Some(_)) => {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Not allowed",
                "an admin of one platform creates agents of that platform only",
            )
            .field("platform"));
        }
    };
    let (password, otpauth_url) = create_agent(&st, &body.username, body.role, platform).await?;
    st.store
        .audit_claim(
            format!("agent:{}", body.username),
            "-".into(),
            "console.agent_created",
            a.actor(),
            serde_json::json!({ "role": body.role.as_str() }),
            st.clock.now(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(NewAgentCredentials {
            password,
            otpauth_url,
        }),
    )
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    pub from: String,
    pub to: String,
}

/// The signed compliance report, for auditors and admins.
#[utoipa::path(get, path = "/v1/console/report", tag = "console", params(ReportQuery), responses((status = 200, description = "signed report")), security(("console" = [])))]
pub async fn report(
    State(st): State<AppState>,
    Extension(a): Extension<Agent>,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Response, Problem> {
    require(&a, "report")?;
    let from = crate::report::parse_when(&q.from, &st.tz)
        .map_err(|e| Problem::unprocessable(e).field("from"))?;
    let to = crate::report::parse_when(&q.to, &st.tz)
        .map_err(|e| Problem::unprocessable(e).field("to"))?;
    Ok(axum::Json(
        crate::report::compliance(
            &st.store,
            &st.signer,
            from,
            to,
            st.clock.now(),
            a.platform.as_deref(),
        )
        .await?,
    )
    .into_response())
}
