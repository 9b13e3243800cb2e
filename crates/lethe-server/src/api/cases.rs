//! The HTTP JSON API for the platform's back end.

use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use lethe_domain::{Case, CaseCommand, CaseId, Channel, Locale, OtpCode, Reason, SubjectId};
use lethe_store::{Idem, NewJob, OutboxDraft};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::http::extract::{ApiJson, CaseCall, parse_case_id};
use crate::http::middleware::{IdemKey, IdemStored, Principal};
use crate::http::ownership::{open_case, owned};
use crate::http::problem::Problem;

// ---------------------------------------------------------------------- views

#[derive(Debug, Serialize, ToSchema)]
pub struct CaseView {
    pub id: String,
    /// One of: submitted, identity_verified, checks_blocked, checks_clear,
    /// consequences_acknowledged, under_review, cooling_off, settling (the
    /// cancellation is final and the chosen settlements are carried out),
    /// erasing, erased, withdrawn, rejected, failed.
    pub state: String,
    pub channel: String,
    /// What has to happen next.
    pub next_step: String,
    pub created_at: String,
    pub updated_at: String,
    pub assurance_level: u8,
    pub verified_by: Option<String>,
    pub blockers: Vec<BlockerView>,
    pub consequences: Vec<ConsequenceView>,
    pub cooling_off_ends_at: Option<String>,
    pub erasure_started_at: Option<String>,
    pub closed_at: Option<String>,
    pub rejection_reason: Option<String>,
    pub failure: Option<String>,
    pub assets: Vec<AssetView>,
    /// Why the last checks could not run; the case waits.
    pub checks_problem: Option<String>,
    /// The case's deadlines (in GET responses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadlines: Option<Vec<DeadlineView>>,
    /// Copies of the data taken before cancelling, with their progress per
    /// system (in GET responses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exports: Option<Vec<crate::api::exports::ExportView>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadlineView {
    /// review, erasure_start, completion, acknowledge or response.
    pub kind: String,
    pub starts_at: String,
    /// Absent while paused (waiting for the user) or not computable.
    pub due_at: Option<String>,
    /// met, late, paused, on_track, warning, overdue or unknown.
    pub status: String,
    pub met_at: Option<String>,
    /// Why the deadline cannot be computed, or why it is provisional.
    pub problem: Option<String>,
    /// Computed over days the working-day calendar does not cover yet
    /// (weekends and the certain statutory holidays only: the earliest the
    /// official notice could make it); recomputed when the calendar adds
    /// the year.
    pub provisional: bool,
}

impl DeadlineView {
    pub fn from_row(d: &lethe_store::DeadlineRow, now: jiff::Timestamp) -> Self {
        let status = match (d.met_at, d.due_at) {
            (Some(m), Some(due)) if m > due => "late",
            (Some(_), _) => "met",
            (None, None) if d.paused => "paused",
            (None, None) => "unknown",
            (None, Some(due)) if now > due => "overdue",
            (None, Some(_)) if d.warned_at.is_some() => "warning",
            (None, Some(_)) => "on_track",
        };
        Self {
            kind: d.kind.clone(),
            starts_at: d.starts_at.to_string(),
            due_at: d.due_at.map(|t| t.to_string()),
            status: status.into(),
            met_at: d.met_at.map(|t| t.to_string()),
            problem: d.problem.clone(),
            provisional: d.provisional,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssetView {
    pub id: String,
    pub kind: String,
    pub source: String,
    pub label: String,
    pub amount_minor: Option<i64>,
    pub quantity: Option<u64>,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    pub auto_renew: bool,
    /// The options offered for this kind.
    pub options: Vec<String>,
    pub settlement: Option<SettlementView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SettlementView {
    pub option: String,
    /// chosen (recorded; carried out when cooling-off ends), pending (the
    /// instruction is with the platform), done, failed (choose again) or
    /// forfeited.
    pub status: String,
    pub instruction_id: String,
    /// For a refund, counted on the day the instruction goes out (before
    /// that: as of today).
    pub amount_minor: Option<i64>,
    /// The amount the acknowledged statement named, when the one paid out
    /// differs (days passed between choosing and the end of cooling-off).
    pub amount_shown_minor: Option<i64>,
    /// Settled when chosen, before confirming (the policy's
    /// `settle_early`): restoring does not undo it.
    pub early: bool,
    /// The statement the user acknowledged, exactly as shown.
    pub statement: String,
    pub statement_version: u32,
    pub reference: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BlockerView {
    pub code: String,
    pub system: String,
    pub message_zh: String,
    pub message_en: String,
    /// The platform's references (order numbers).
    pub items: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsequenceView {
    pub id: String,
    pub version: u32,
    pub text_zh: String,
    pub text_en: String,
    pub acknowledged: bool,
}

impl From<&Case> for CaseView {
    fn from(c: &Case) -> Self {
        Self {
            id: c.id.to_string(),
            state: c.state.as_str().into(),
            channel: c.channel.as_str().into(),
            next_step: c.state.next_step().into(),
            created_at: c.created_at.to_string(),
            updated_at: c.updated_at.to_string(),
            assurance_level: c.assurance.get(),
            verified_by: c.verified_by.clone(),
            blockers: c
                .blockers
                .iter()
                .map(|b| BlockerView {
                    code: b.code.clone(),
                    system: b.system.clone(),
                    message_zh: b.message_zh.clone(),
                    message_en: b.message_en.clone(),
                    items: b.items.clone(),
                })
                .collect(),
            consequences: c
                .consequences
                .iter()
                .map(|q| ConsequenceView {
                    id: q.id.clone(),
                    version: q.version,
                    text_zh: q.text_zh.clone(),
                    text_en: q.text_en.clone(),
                    acknowledged: c
                        .acknowledgements
                        .iter()
                        .any(|a| a.consequence_id == q.id && a.version == q.version),
                })
                .collect(),
            cooling_off_ends_at: c.cooling_off_ends_at.map(|t| t.to_string()),
            erasure_started_at: c.erasure_started_at.map(|t| t.to_string()),
            closed_at: c.closed_at.map(|t| t.to_string()),
            rejection_reason: c.rejection_reason.as_ref().map(|r| r.as_str().to_owned()),
            failure: c.failure.clone(),
            assets: c
                .assets
                .iter()
                .map(|a| AssetView {
                    id: a.id.clone(),
                    kind: a.kind.as_str().into(),
                    source: a.source.clone(),
                    label: a.label.clone(),
                    amount_minor: a.amount.map(|m| m.get()),
                    quantity: a.quantity,
                    period_start: a.period_start.map(|d| d.to_string()),
                    period_end: a.period_end.map(|d| d.to_string()),
                    auto_renew: a.auto_renew,
                    options: a
                        .kind
                        .options()
                        .iter()
                        .map(|o| o.as_str().to_owned())
                        .collect(),
                    settlement: a.settlement.as_ref().map(|s| SettlementView {
                        option: s.option.as_str().into(),
                        status: serde_json::to_value(s.status)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        instruction_id: s.instruction_id.clone(),
                        amount_minor: s.amount.map(|m| m.get()),
                        amount_shown_minor: s.amount_shown.map(|m| m.get()),
                        early: s.early,
                        statement: s.statement.clone(),
                        statement_version: s.statement_version,
                        reference: s.reference.clone(),
                        error: s.error.clone(),
                    }),
                })
                .collect(),
            checks_problem: c.checks_problem.clone(),
            deadlines: None,
            exports: None,
        }
    }
}

pub fn render_case(c: &Case) -> String {
    serde_json::to_string(&CaseView::from(c)).unwrap_or_default()
}

fn case_response(status: StatusCode, c: &Case, stored: bool) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        render_case(c),
    )
        .into_response();
    if stored {
        r.extensions_mut().insert(IdemStored);
    }
    r
}

fn idem(k: Option<Extension<IdemKey>>, status: StatusCode) -> Option<Idem> {
    k.map(|Extension(k)| Idem {
        principal: k.principal,
        key: k.key,
        request_hash: k.request_hash,
        status: status.as_u16(),
        render: render_case,
    })
}

// ------------------------------------------------------------------ one case

impl CaseCall<Principal> {
    /// The case named in the path, if the calling platform owns it.
    pub async fn case(&self) -> Result<Case, Problem> {
        owned(&self.st, &self.caller, parse_case_id(&self.id)?).await
    }

    /// Applies one command to the caller's case, with the jobs it starts,
    /// in one transaction with its audit event (and the idempotency
    /// record), and answers with the case.
    pub async fn apply(self, cmd: CaseCommand, jobs: Vec<NewJob>) -> Result<Response, Problem> {
        let case = self.case().await?;
        self.apply_to(case.id, cmd, jobs).await
    }

    async fn apply_to(
        self,
        id: CaseId,
        cmd: CaseCommand,
        jobs: Vec<NewJob>,
    ) -> Result<Response, Problem> {
        self.record(async |st, actor, idem| {
            st.store
                .apply(id, cmd, st.clock.now(), actor, jobs, idem)
                .await
        })
        .await
    }

    /// Runs one store operation for the caller (its actor,
    /// `platform:<name>`, and the idempotency record go into the
    /// operation's own transaction) and answers with the case it returns.
    async fn record<E>(
        self,
        op: impl AsyncFnOnce(&AppState, String, Option<Idem>) -> Result<Case, E>,
    ) -> Result<Response, Problem>
    where
        Problem: From<E>,
    {
        let stored = self.key.is_some();
        let actor = format!("platform:{}", self.caller.0);
        let case = op(&self.st, actor, idem(self.key, StatusCode::OK)).await?;
        Ok(case_response(StatusCode::OK, &case, stored))
    }
}

// ------------------------------------------------------------------- handlers

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCase {
    /// The platform's id of the account to cancel.
    #[schema(value_type = String, example = "10042")]
    pub subject_id: SubjectId,
    /// app, recovery, hotline or counter.
    #[schema(value_type = String, example = "app")]
    pub channel: Channel,
}

/// Open a cancellation case.
#[utoipa::path(post, path = "/v1/cases", request_body = CreateCase, tag = "cases",
    params(("Idempotency-Key" = String, Header, description = "unique per request; repeat it to retry safely")),
    responses((status = 201, body = CaseView), (status = 409, body = Problem, description = "an open case exists"), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn create_case(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    key: Option<Extension<IdemKey>>,
    ApiJson(body): ApiJson<CreateCase>,
) -> Result<Response, Problem> {
    let (case, change, pseudo) = open_case(&st, &p.0, body.subject_id, body.channel).await?;
    let stored = key.is_some();
    let case = st
        .store
        .create_case(
            case,
            change,
            pseudo,
            p.0.clone(),
            idem(key, StatusCode::CREATED),
        )
        .await
        .map_err(|e| match e {
            lethe_store::StoreError::Db { message, .. } if message.contains("cases.subject") => {
                Problem::conflict(
                    "open-case-exists",
                    "this account already has an open cancellation case",
                )
                .field("subject_id")
                .fix("continue or withdraw the open case")
            }
            other => other.into(),
        })?;
    Ok(case_response(StatusCode::CREATED, &case, stored))
}

/// Read a case: its state, the next step, blockers and consequences.
#[utoipa::path(get, path = "/v1/cases/{id}", tag = "cases", params(("id" = String, Path)),
    responses((status = 200, body = CaseView), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn get_case(call: CaseCall<Principal>) -> Result<Response, Problem> {
    let case = call.case().await?;
    let st = &call.st;
    let now = st.clock.now();
    let mut view = CaseView::from(&case);
    view.deadlines = Some(
        st.store
            .deadlines_for_case(case.id)
            .await?
            .iter()
            .map(|d| DeadlineView::from_row(d, now))
            .collect(),
    );
    view.exports = Some(crate::api::exports::views_for_case(st, &case.id.to_string()).await?);
    Ok(axum::Json(view).into_response())
}

/// Send a one-time code to the account's registered phone. Throttled per
/// phone and per client address: forward the end user's address in the
/// `Lethe-Client-Address` header (else the caller's address counts).
#[utoipa::path(post, path = "/v1/cases/{id}/verification/sms/send", tag = "verification", params(("id" = String, Path)),
    responses((status = 200, body = CaseView), (status = 429, body = Problem)), security(("api_key" = [])))]
pub async fn send_code(
    call: CaseCall<Principal>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
) -> Result<Response, Problem> {
    let case = call.case().await?;
    let CaseCall {
        st, caller: p, key, ..
    } = call;
    if !st.identity.methods.iter().any(|m| m == "sms") {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "method-disabled",
            "Method not enabled",
            "the sms method is not enabled on this installation",
        ));
    }
    let gateway = match (&st.identity.sms_url, &st.identity.sms_secret_env) {
        (Some(u), Some(env)) => Some((
            u.clone(),
            std::env::var(env).map_err(|_| Problem::internal())?,
        )),
        _ if st.demo => None,
        _ => {
            return Err(Problem::new(StatusCode::SERVICE_UNAVAILABLE, "sms-not-configured", "SMS delivery is not configured", "no SMS gateway is configured on this server")
                .fix("set identity.sms_url and identity.sms_secret_env, or verify through another channel"));
        }
    };
    let phone = st.systems.phone(&case.subject).await?.ok_or_else(|| {
        Problem::unprocessable("the account has no registered phone")
            .fix("verify through the hotline or a counter")
    })?;
    // Throttles per phone number (keyed hash) and per client address.
    let phone_key = format!("phone:{}", st.secrets.identifier_hash("phone", &phone));
    // The end user's address as the platform forwards it, else the peer's.
    let client = headers
        .get("lethe-client-address")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<std::net::IpAddr>().ok())
        .unwrap_or(peer.ip());
    let ip_key = format!(
        "addr:{}",
        st.secrets
            .identifier_hash("client_address", &client.to_string())
    );
    // Only codes actually sent count against the quotas: checked here,
    // recorded once the code is handed over. The counts are in the store,
    // so every instance sees every code.
    let now_wall = jiff::Timestamp::now();
    let hour_ago = now_wall
        .checked_sub(jiff::SignedDuration::from_hours(1))
        .unwrap_or(now_wall);
    for (key, max, what) in [
        (
            &phone_key,
            st.identity.sms_per_phone_per_hour,
            "too many codes were sent to this phone number in the last hour",
        ),
        (
            &ip_key,
            st.identity.sms_per_client_per_hour,
            "too many codes were requested from this address in the last hour",
        ),
    ] {
        let (sent, oldest) = st.store.sms_quota(key, hour_ago).await?;
        if sent >= max {
            let wait = oldest
                .map(|o| 3600 - (now_wall.as_second() - o.as_second()))
                .unwrap_or(1)
                .max(1);
            return Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "sms-throttled",
                "Too many codes",
                what,
            )
            .retry_after(wait));
        }
    }
    let code = format!("{:06}", rand::random_range(0..1_000_000u32));
    let hash = st.secrets.code_hash(&case.id.to_string(), &code);
    let text = format!(
        "【注销验证】验证码 {code}，{} 分钟内有效。如非本人操作请忽略。Your cancellation code is {code}.",
        st.policy.otp_ttl.as_secs() / 60
    );
    let body = match &gateway {
        // Demo: the dev outbox stands for the gateway and shows the message.
        None => text.clone(),
        // Production: the code is never stored; only the fact of sending.
        Some(_) => "[sent through the SMS gateway]".into(),
    };
    let draft = OutboxDraft {
        channel: "sms".into(),
        destination: mask_phone(&phone),
        body,
    };
    let stored = key.is_some();
    let case = st
        .store
        .send_code(
            case.id,
            hash,
            draft,
            st.clock.now(),
            st.policy.otp_ttl,
            st.otp_resend,
            format!("platform:{}", p.0),
            idem(key, StatusCode::OK),
        )
        .await?;
    if let Some((url, secret)) = gateway {
        let msg = serde_json::json!({ "type": "sms.send", "to": phone, "text": text, "case_id": case.id.to_string() });
        let mut delivered = Err(String::new());
        for attempt in 0..3u64 {
            delivered = crate::outbound::providers::signed_call(
                &st.http,
                "the SMS gateway",
                &url,
                &secret,
                5000,
                &format!("sms-{}-{attempt}", case.id),
                &msg,
            )
            .await
            .map(|_| ());
            if delivered.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200 * (attempt + 1))).await;
        }
        if let Err(e) = delivered {
            tracing::warn!(case = %case.id, error = %e, "SMS gateway delivery failed");
            return Err(Problem::new(
                StatusCode::BAD_GATEWAY,
                "sms-gateway",
                "The SMS could not be sent",
                e,
            )
            .fix("request a new code shortly")
            .retry_after(60));
        }
    }
    st.store
        .sms_sent(vec![phone_key, ip_key], jiff::Timestamp::now(), hour_ago)
        .await?;
    Ok(case_response(StatusCode::OK, &case, stored))
}

fn mask_phone(p: &str) -> String {
    let digits: Vec<char> = p.chars().collect();
    if digits.len() < 7 {
        return "****".into();
    }
    let head: String = digits[..3].iter().collect();
    let tail: String = digits[digits.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyCode {
    /// The six digits the user received.
    #[schema(value_type = String, example = "123456")]
    pub code: OtpCode,
}

/// Check the one-time code; on success the identity is verified.
#[utoipa::path(post, path = "/v1/cases/{id}/verification/sms/verify", request_body = VerifyCode, tag = "verification", params(("id" = String, Path)),
    responses((status = 200, body = CaseView), (status = 422, body = Problem), (status = 429, body = Problem)), security(("api_key" = [])))]
pub async fn verify_code(
    call: CaseCall<Principal>,
    ApiJson(body): ApiJson<VerifyCode>,
) -> Result<Response, Problem> {
    check_code(call, &body.code, lethe_store::CodePurpose::Verify).await
}

/// Checks a one-time code for a purpose; the store applies the command and
/// its audit event in one transaction (attempt limits and lockout included).
async fn check_code(
    call: CaseCall<Principal>,
    code: &OtpCode,
    purpose: lethe_store::CodePurpose,
) -> Result<Response, Problem> {
    let case = call.case().await?;
    let hash = call
        .st
        .secrets
        .code_hash(&case.id.to_string(), code.expose());
    call.record(async |st, actor, idem| {
        st.store
            .verify_code(
                case.id,
                purpose,
                hash,
                st.clock.now(),
                st.policy.otp_max_attempts,
                st.otp_lockout,
                actor,
                idem,
            )
            .await
    })
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Restore {
    /// A code sent during cooling-off with /verification/sms/send.
    #[schema(value_type = String, example = "123456")]
    pub code: OtpCode,
}

/// Restore the account during cooling-off: one verified step (a fresh code)
/// withdraws the case and the platform is told to unfreeze the account.
#[utoipa::path(post, path = "/v1/cases/{id}/restore", request_body = Restore, tag = "cases", params(("id" = String, Path)),
    responses((status = 200, body = CaseView), (status = 409, body = Problem), (status = 422, body = Problem)), security(("api_key" = [])))]
pub async fn restore(
    call: CaseCall<Principal>,
    ApiJson(body): ApiJson<Restore>,
) -> Result<Response, Problem> {
    check_code(call, &body.code, lethe_store::CodePurpose::Restore).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Extend {
    /// The reason given to the user in the extension notice.
    #[schema(value_type = String)]
    pub reason: Reason,
}

/// Extend the response deadline once (GDPR: +2 months, CCPA: +45 days), with a notice to the user.
#[utoipa::path(post, path = "/v1/cases/{id}/extend", request_body = Extend, tag = "cases", params(("id" = String, Path)),
    responses((status = 200, body = CaseView), (status = 409, body = Problem)), security(("api_key" = [])))]
pub async fn extend(
    call: CaseCall<Principal>,
    ApiJson(body): ApiJson<Extend>,
) -> Result<Response, Problem> {
    let cmd = CaseCommand::Extend {
        reason: body.reason,
    };
    call.apply(cmd, vec![]).await
}

/// Run the checks: blockers (unfinished orders...) and the consequences to acknowledge.
#[utoipa::path(post, path = "/v1/cases/{id}/checks", tag = "cases", params(("id" = String, Path)),
    responses((status = 200, body = CaseView)), security(("api_key" = [])))]
pub async fn run_checks(call: CaseCall<Principal>) -> Result<Response, Problem> {
    let case = call.case().await?;
    let (st, p) = (call.st.clone(), call.caller.clone());
    let (mut blockers, consequences) = st.systems.checks(&st.datamap, &case.subject).await?;
    let mut assets = st.systems.assets(&st.datamap, &case.subject).await?;
    for provider in &st.datamap.providers {
        match crate::outbound::providers::check(
            &st.http,
            provider,
            case.subject.expose(),
            &case.id.to_string(),
        )
        .await
        {
            Ok((b, a)) => {
                blockers.extend(b);
                assets.extend(a);
            }
            Err(reason) => {
                // The check is never skipped: the case waits, with the reason.
                tracing::warn!(case = %case.id, reason = %reason, "a check provider failed");
                st.store
                    .apply(
                        case.id,
                        CaseCommand::ChecksUnavailable {
                            reason: reason.clone(),
                        },
                        st.clock.now(),
                        format!("platform:{}", p.0),
                        vec![],
                        None,
                    )
                    .await?;
                return Err(Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "checks-unavailable",
                    "The checks could not run",
                    reason,
                )
                .fix("the case waits; run the checks again once the provider answers")
                .retry_after(30));
            }
        }
    }
    let cmd = CaseCommand::RecordChecks {
        blockers,
        consequences,
        assets,
    };
    call.apply_to(case.id, cmd, vec![]).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Alternative {
    /// deactivate, change_password or unbind_real_name.
    pub kind: String,
    pub title_zh: String,
    pub title_en: String,
    pub description_zh: String,
    pub description_en: String,
}

pub fn alternatives_list() -> Vec<Alternative> {
    vec![
        Alternative {
            kind: "deactivate".into(),
            title_zh: "暂时停用".into(),
            title_en: "Deactivate for a while".into(),
            description_zh: "账号暂停使用，数据保留，随时可以恢复。".into(),
            description_en:
                "The account is paused and its data kept; you can come back at any time.".into(),
        },
        Alternative {
            kind: "change_password".into(),
            title_zh: "修改密码".into(),
            title_en: "Change the password".into(),
            description_zh: "如果担心账号安全，修改密码即可，无需注销。".into(),
            description_en:
                "If you worry about the account's safety, a new password may be enough.".into(),
        },
        Alternative {
            kind: "unbind_real_name".into(),
            title_zh: "仅解除实名信息".into(),
            title_en: "Unbind only the real-name identity".into(),
            description_zh: "实名信息不是本人时，可只解除实名绑定，保留账号。".into(),
            description_en:
                "If the real-name identity is not yours, unbind just that and keep the account."
                    .into(),
        },
    ]
}

/// The alternatives to cancelling (shown before the user starts).
#[utoipa::path(get, path = "/v1/alternatives", tag = "cases", responses((status = 200, body = [Alternative])), security(("api_key" = [])))]
pub async fn alternatives(Extension(_p): Extension<Principal>) -> Response {
    axum::Json(alternatives_list()).into_response()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChooseAlternative {
    /// deactivate, change_password or unbind_real_name.
    pub kind: String,
}

/// The user takes an alternative instead: the case is withdrawn and the
/// platform is told what to do.
#[utoipa::path(post, path = "/v1/cases/{id}/alternative", request_body = ChooseAlternative, tag = "cases", params(("id" = String, Path)),
    responses((status = 200, body = CaseView), (status = 422, body = Problem)), security(("api_key" = [])))]
pub async fn choose_alternative(
    call: CaseCall<Principal>,
    ApiJson(body): ApiJson<ChooseAlternative>,
) -> Result<Response, Problem> {
    let case = call.case().await?;
    if !alternatives_list().iter().any(|a| a.kind == body.kind) {
        return Err(Problem::unprocessable("unknown alternative")
            .field("kind")
            .fix("use deactivate, change_password or unbind_real_name"));
    }
    if case.state == lethe_domain::CaseState::CoolingOff {
        return Err(Problem::conflict(
            "restore-needs-code",
            "during cooling-off the account is restored with one verified step",
        )
        .fix("use /restore"));
    }
    let cmd = CaseCommand::ChooseAlternative { kind: body.kind };
    call.apply_to(case.id, cmd, vec![]).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Acknowledge {
    pub consequence_id: String,
    /// The version of the text that was shown.
    pub version: u32,
    /// The language the text was shown in: zh-CN or en.
    #[schema(value_type = String, example = "zh-CN")]
    pub locale: Locale,
}

/// Acknowledge one stated consequence (the exact text and its version are recorded).
#[utoipa::path(post, path = "/v1/cases/{id}/acknowledgements", request_body = Acknowledge, tag = "cases", params(("id" = String, Path)),
    responses((status = 200, body = CaseView), (status = 422, body = Problem)), security(("api_key" = [])))]
pub async fn acknowledge(
    call: CaseCall<Principal>,
    ApiJson(body): ApiJson<Acknowledge>,
) -> Result<Response, Problem> {
    let cmd = CaseCommand::Acknowledge {
        consequence_id: body.consequence_id,
        version: body.version,
        locale: body.locale,
    };
    call.apply(cmd, vec![]).await
}

/// Confirm the cancellation: cooling-off starts (or review, if the policy asks).
#[utoipa::path(post, path = "/v1/cases/{id}/confirm", tag = "cases", params(("id" = String, Path)),
    responses((status = 200, body = CaseView), (status = 409, body = Problem)), security(("api_key" = [])))]
pub async fn confirm(call: CaseCall<Principal>) -> Result<Response, Problem> {
    call.apply(CaseCommand::Confirm, vec![]).await
}

/// Withdraw the case and keep the account (before cooling-off; during it, use /restore).
#[utoipa::path(post, path = "/v1/cases/{id}/withdraw", tag = "cases", params(("id" = String, Path)),
    responses((status = 200, body = CaseView), (status = 409, body = Problem)), security(("api_key" = [])))]
pub async fn withdraw(call: CaseCall<Principal>) -> Result<Response, Problem> {
    let case = call.case().await?;
    if case.state == lethe_domain::CaseState::CoolingOff {
        return Err(Problem::conflict("restore-needs-code", "during cooling-off the account is restored with one verified step")
            .fix("send a code (POST /v1/cases/{id}/verification/sms/send), then POST /v1/cases/{id}/restore with it"));
    }
    call.apply_to(case.id, CaseCommand::Withdraw, vec![]).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Review {
    pub decision: Decision,
    /// Shown to the user; required to reject.
    #[schema(value_type = Option<String>)]
    pub reason: Option<Reason>,
}

/// Review decisions are a reviewer's, made in the agent console
/// (`POST /v1/console/cases/{id}/review`, role reviewer), never a platform
/// key's: a platform approving its own cases would make review meaningless.
/// This route stays to answer platforms that call it with where to go.
#[utoipa::path(post, path = "/v1/cases/{id}/review", request_body = Review, tag = "cases", params(("id" = String, Path)),
    responses((status = 403, description = "a platform key cannot review; a reviewer decides in the console", body = Problem), (status = 404, description = "no such case for this key", body = Problem)),
    security(("api_key" = [])))]
pub async fn review(call: CaseCall<Principal>) -> Result<Response, Problem> {
    call.case().await?;
    Err(Problem::new(
        StatusCode::FORBIDDEN,
        "reviewer-only",
        "Review is a reviewer's decision",
        "a platform key cannot approve or reject a case, its own included",
    )
    .fix("a reviewer signs in to the console and decides there: POST /v1/console/cases/{id}/review with the console session"))
}

/// Retry the erasure of a failed case (operator action).
#[utoipa::path(post, path = "/v1/cases/{id}/retry", tag = "cases", params(("id" = String, Path)),
    responses((status = 200, body = CaseView), (status = 409, body = Problem)), security(("api_key" = [])))]
pub async fn retry(call: CaseCall<Principal>) -> Result<Response, Problem> {
    let id = call.case().await?.id;
    let st = call.st.clone();
    let resp = call
        .record(async |st, actor, idem| {
            st.store
                .retry_erasure(id, st.clock.now(), actor, idem)
                .await
        })
        .await?;
    st.wake.notify_waiters();
    Ok(resp)
}

/// The deletion receipt of an erased case.
#[utoipa::path(get, path = "/v1/cases/{id}/receipt", tag = "proof", params(("id" = String, Path)),
    responses((status = 200, description = "the receipt (JSON)"), (status = 404, body = Problem), (status = 503, description = "the case's last event is not in the audit log's tree yet; retry", body = Problem)), security(("api_key" = [])))]
pub async fn receipt(call: CaseCall<Principal>) -> Result<Response, Problem> {
    let body = receipt_body(&call.st, &call.caller, &call.id).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The signed receipt of an owned, erased case (signed now if needed).
pub async fn receipt_body(st: &AppState, p: &Principal, id: &str) -> Result<String, Problem> {
    let id = parse_case_id(id)?;
    let case = owned(st, p, id).await?;
    match crate::receipt::seal_receipt(st, &id.to_string()).await? {
        Some(body) => Ok(body),
        None => Err(
            Problem::not_found(format!("no receipt yet: the case is {}", case.state))
                .fix("the receipt exists once the case is erased"),
        ),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineEntry {
    /// The event's place in the audit log; 0 while it waits for the
    /// sequencer (at most the maximum merge delay, usually milliseconds).
    pub seq: u64,
    pub kind: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub actor: String,
    pub at: String,
    /// Hex leaf hash; empty while the event waits for the sequencer.
    pub hash: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Timeline {
    pub events: Vec<TimelineEntry>,
    pub jobs: Vec<JobView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub kind: String,
    pub system: String,
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// The case's audit events and background jobs.
#[utoipa::path(get, path = "/v1/cases/{id}/timeline", tag = "proof", params(("id" = String, Path)),
    responses((status = 200, body = Timeline)), security(("api_key" = [])))]
pub async fn timeline(call: CaseCall<Principal>) -> Result<Response, Problem> {
    let id = call.case().await?.id;
    let st = &call.st;
    let events = st.store.audit_for_case(id).await?;
    let jobs = st.store.jobs_for_case(id).await?;
    Ok(axum::Json(Timeline {
        events: events
            .into_iter()
            .map(|e| TimelineEntry {
                seq: e.event.seq,
                kind: e.event.kind,
                from_state: e.event.from_state,
                to_state: e.event.to_state,
                actor: e.event.actor,
                at: e.event.at,
                hash: e.hash,
            })
            .collect(),
        jobs: jobs
            .into_iter()
            .map(|j| JobView {
                kind: j.kind,
                system: j.system,
                state: j.state,
                attempts: j.attempts,
                last_error: j.last_error,
            })
            .collect(),
    })
    .into_response())
}

// ------------------------------------------------------------------- dev only

#[derive(Debug, Serialize, ToSchema)]
pub struct OutboxView {
    pub channel: String,
    /// Masked destination.
    pub destination: String,
    pub body: String,
    pub created_at: String,
}

/// Demo only: messages the SMS gateway would have delivered for a case.
#[utoipa::path(get, path = "/v1/dev/outbox/{id}", tag = "demo", params(("id" = String, Path)),
    responses((status = 200, body = [OutboxView])), security(("api_key" = [])))]
pub async fn dev_outbox(call: CaseCall<Principal>) -> Result<Response, Problem> {
    let id = call.case().await?.id;
    let st = &call.st;
    let msgs = st.store.outbox_for(id).await?;
    Ok(axum::Json(
        msgs.into_iter()
            .map(|m| OutboxView {
                channel: m.channel,
                destination: m.destination,
                body: m.body,
                created_at: m.created_at.to_string(),
            })
            .collect::<Vec<_>>(),
    )
    .into_response())
}

#[derive(Debug, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Advance {
    /// Seconds to move the demo clock forward (at most 400 days).
    pub seconds: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClockView {
    pub now: String,
    pub offset_seconds: i64,
}

/// Demo only: move the clock forward (a production server has no such route).
#[utoipa::path(post, path = "/v1/dev/clock/advance", request_body = Advance, tag = "demo",
    responses((status = 200, body = ClockView)), security(("api_key" = [])))]
pub async fn dev_advance(
    State(st): State<AppState>,
    ApiJson(body): ApiJson<Advance>,
) -> Result<Response, Problem> {
    let Some(clock) = &st.manual_clock else {
        return Err(Problem::not_found("no such route"));
    };
    if !(0..=400 * 86_400).contains(&body.seconds) {
        return Err(
            Problem::unprocessable("seconds must be between 0 and 34560000 (400 days)")
                .field("seconds"),
        );
    }
    let off = clock
        .advance(jiff::SignedDuration::from_secs(body.seconds))
        .map_err(|m| Problem::unprocessable(m).field("seconds"))?;
    if let Some(path) = &st.clock_file
        && std::fs::write(path, off.as_secs().to_string()).is_err()
    {
        tracing::warn!("could not persist the demo clock offset");
    }
    st.wake.notify_waiters();
    st.timer_wake.notify_waiters();
    Ok(axum::Json(ClockView {
        now: clock_now(&st),
        offset_seconds: off.as_secs(),
    })
    .into_response())
}

fn clock_now(st: &AppState) -> String {
    st.clock.now().to_string()
}

// ----------------------------------------------------------------- operations

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the store answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "ready"), (status = 503, body = Problem)))]
pub async fn readyz(State(st): State<AppState>) -> Result<&'static str, Problem> {
    let not_ready = |what: &str| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "Not ready",
            what.to_owned(),
        )
        .retry_after(5)
    };
    st.store
        .ping()
        .await
        .map_err(|_| not_ready("the store does not answer"))?;
    for f in ["lethe.key", "vault.kek", "audit.key"] {
        let ok = std::fs::metadata(st.data_dir.join(f)).is_ok_and(|m| m.is_file() && m.len() > 0);
        if !ok {
            return Err(not_ready(&format!(
                "the key file {f} is missing or empty; restore it from its backup"
            )));
        }
    }
    Ok("ready")
}
