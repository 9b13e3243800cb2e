//! Support that still answers after the account is gone.
//!
//! A former holder opens a request with the deletion receipt (its signature
//! must verify and match the receipt this installation issued), or a user
//! opens one from the cancellation centre while the case is live. The
//! message, the one-time contact and the answer are sealed under the
//! request's own vault key; closing destroys the key and empties the
//! columns. A request points at the case's non-personal record (timeline,
//! settlements, receipt), never at the subject. Agents answer from the
//! console within the configured working days; for a refund that never
//! arrived they re-send the settlement instruction with its original
//! idempotency key, so the platform settles once.

use axum::Extension;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use lethe_domain::support::{Contact, Origin, Text, Topic};
use lethe_ledger::Receipt;
use lethe_store::{NewSupport, OutboxDraft, SupportLimits, SupportRow, Throttled};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::http::agent::{Agent, require};
use crate::http::extract::ApiJson;
use crate::http::problem::Problem;

/// Largest pasted receipt read.
pub const MAX_RECEIPT_BYTES: usize = 256 * 1024;
/// Body limit of the routes that take a receipt (a pasted receipt grows up
/// to three times when a form encodes it).
pub const BODY_LIMIT: usize = 1024 * 1024;
/// Attempts to deliver an answer.
const DELIVERY_ATTEMPTS: u64 = 3;
/// Requests the worker closes per pass at most.
pub(crate) const CLOSE_BATCH: u32 = 100;

fn vault_subject(id: &str) -> String {
    format!("support:{id}")
}

fn field(name: &str) -> Result<lethe_vault::FieldName, Problem> {
    lethe_vault::FieldName::parse(name).map_err(|_| Problem::internal())
}

async fn seal(st: &AppState, id: &str, name: &str, text: &str) -> Result<String, Problem> {
    let env = st
        .vault
        .encrypt(&vault_subject(id), &field(name)?, text.as_bytes())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "sealing a support request failed");
            Problem::internal()
        })?;
    Ok(lethe_vault::to_text(&env))
}

async fn open_sealed(
    st: &AppState,
    id: &str,
    name: &str,
    sealed: Option<&str>,
) -> Result<Option<String>, Problem> {
    let Some(s) = sealed else { return Ok(None) };
    let env = lethe_vault::from_text(s).map_err(|_| Problem::internal())?;
    match st
        .vault
        .decrypt(&vault_subject(id), &field(name)?, &env)
        .await
    {
        Ok(p) => Ok(Some(String::from_utf8_lossy(&p).into_owned())),
        Err(lethe_vault::VaultError::Erased { .. }) => Ok(None),
        Err(e) => {
            tracing::error!(error = %e, "opening a support request failed");
            Err(Problem::internal())
        }
    }
}

/// The receipt a request is opened with: the whole receipt (as the user
/// saved it), or its case id and signature (the receipt page's link).
#[derive(Debug, Clone)]
pub struct ReceiptProof {
    /// The signed receipt, as downloaded.
    pub receipt: Option<serde_json::Value>,
    /// With `signature`: the receipt's case id.
    pub case_id: Option<String>,
    /// With `case_id`: the receipt's base64 signature.
    pub signature: Option<String>,
}

/// One answer for every receipt that does not verify (a forged one, a
/// wrong signature, a case with no receipt): which of them it was would
/// tell a prober whether a case id was erased.
fn not_a_receipt() -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "receipt-not-verified",
        "The receipt does not verify",
        "the receipt does not verify against the receipts this service issued",
    )
    .field("receipt")
    .fix("use the deletion receipt exactly as it was issued (the file, or the support link on its page)")
}

/// Checks a receipt: signed by this installation and the one it issued for
/// that case. Returns the case id, its platform and the receipt's digest.
pub async fn verify_receipt(
    st: &AppState,
    proof: &ReceiptProof,
) -> Result<(String, String, String), Problem> {
    let given: Option<Receipt> = match &proof.receipt {
        Some(v) => Some(serde_json::from_value(v.clone()).map_err(|_| not_a_receipt())?),
        None => None,
    };
    if given.is_some() && (proof.case_id.is_some() || proof.signature.is_some()) {
        return Err(Problem::unprocessable(
            "give the receipt, or its case_id and signature, not both",
        )
        .field("receipt"));
    }
    let case_id = match (&given, &proof.case_id) {
        (Some(r), _) => r.case_id.clone(),
        (None, Some(c)) => c.clone(),
        (None, None) => {
            return Err(Problem::unprocessable(
                "give the receipt (the file's JSON), or its case_id and signature",
            )
            .field("receipt"));
        }
    };
    if lethe_domain::CaseId::parse(&case_id).is_err() {
        return Err(not_a_receipt());
    }
    let stored = st
        .store
        .receipt_of(&case_id)
        .await?
        .ok_or_else(not_a_receipt)?;
    let ours: Receipt = serde_json::from_str(&stored).map_err(|_| Problem::internal())?;
    let signature_matches = match (&given, &proof.signature) {
        (Some(r), _) => r.digest == ours.digest && r.signature == ours.signature,
        (None, Some(sig)) => {
            // The link carries the signature URL-safe; compare the bytes.
            let std = base64::engine::general_purpose::STANDARD.decode(&ours.signature);
            let url =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig.trim_end_matches('='));
            let plain = base64::engine::general_purpose::STANDARD.decode(sig);
            match std {
                Ok(s) => {
                    use subtle::ConstantTimeEq;
                    [url.ok(), plain.ok()]
                        .into_iter()
                        .flatten()
                        .any(|g| g.len() == s.len() && bool::from(g.ct_eq(&s)))
                }
                Err(_) => false,
            }
        }
        (None, None) => false,
    };
    if !signature_matches {
        return Err(not_a_receipt());
    }
    let r = given.as_ref().unwrap_or(&ours);
    r.verify(&st.signer.public_key_hex())
        .map_err(|_| not_a_receipt())?;
    let principal = match lethe_domain::CaseId::parse(&case_id) {
        Ok(id) => st.store.case_principal(id).await?,
        Err(_) => None,
    }
    .ok_or_else(not_a_receipt)?;
    Ok((case_id, principal, ours.digest))
}

/// What a request says, parsed.
#[derive(Debug)]
pub struct Ask {
    pub topic: Topic,
    pub message: Text,
    pub contact: Contact,
}

impl Ask {
    pub fn parse(topic: &str, message: &str, contact: &str) -> Result<Self, Problem> {
        Ok(Self {
            topic: Topic::parse(topic)
                .map_err(|e| Problem::unprocessable(e.to_string()).field("topic"))?,
            message: Text::parse(message)
                .map_err(|e| Problem::unprocessable(e.to_string()).field("message"))?,
            contact: Contact::parse(contact)
                .map_err(|e| Problem::unprocessable(e.to_string()).field("contact"))?,
        })
    }
}

/// Opens a request on `case_id` (checked by the caller: a verified receipt
/// or the user's own live case).
#[allow(clippy::too_many_arguments)]
pub async fn open(
    st: &AppState,
    case_id: Option<String>,
    principal: String,
    origin: Origin,
    ask: Ask,
    limit_key: &str,
    client: std::net::IpAddr,
    actor: String,
) -> Result<SupportRow, Problem> {
    let id = format!("sup_{}", uuid::Uuid::new_v4().simple());
    let now = st.clock.now();
    let (due_at, provisional) = {
        let cal = st
            .calendar
            .current
            .read()
            .map_err(|_| Problem::internal())?;
        cal.end_of_nth_working_day_provisional(now, st.support.answer_within_working_days, &st.tz)
            .map_err(|_| Problem::internal())?
    };
    let message_sealed = seal(st, &id, "message", ask.message.expose()).await?;
    let contact_sealed = seal(st, &id, "contact", ask.contact.expose()).await?;
    let r = st
        .store
        .open_support(
            NewSupport {
                id: id.clone(),
                case_id,
                principal,
                origin: origin.as_str().into(),
                topic: ask.topic.as_str().into(),
                message_sealed,
                contact_sealed,
                contact_kind: ask.contact.kind().into(),
                contact_hint: ask.contact.masked(),
                due_at,
                provisional,
                limit_key: st.secrets.identifier_hash("support_limit", limit_key),
                client_hash: st
                    .secrets
                    .identifier_hash("client_address", &client.to_string()),
                actor,
            },
            SupportLimits {
                per_receipt_per_day: st.support.per_receipt_per_day,
                per_client_per_hour: st.support.per_client_per_hour,
            },
            now,
        )
        .await?;
    match r {
        Ok(row) => Ok(row),
        Err(t) => {
            // Nothing was stored: the sealed texts' key goes too.
            let _ = st
                .vault
                .destroy(&vault_subject(&id), &now.to_string())
                .await;
            let (what, wait) = match t {
                Throttled::Receipt(w) => (
                    "too many requests were opened with this receipt (or case, or account) today",
                    w,
                ),
                Throttled::Client(w) => (
                    "too many requests were opened from this address in the last hour",
                    w,
                ),
            };
            Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "support-throttled",
                "Too many requests",
                what,
            )
            .retry_after(wait)
            .fix("an agent answers the request already open; wait for the answer"))
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenRequest {
    /// The signed deletion receipt, as downloaded (or give `case_id` and
    /// `signature` instead, as the receipt page's support link does).
    #[schema(value_type = Option<Object>)]
    pub receipt: Option<serde_json::Value>,
    /// With `signature`: the receipt's case id.
    pub case_id: Option<String>,
    /// With `case_id`: the receipt's signature (base64, standard or
    /// URL-safe).
    pub signature: Option<String>,
    /// refund_not_received, settlement_dispute, data_still_visible,
    /// export_problem or other.
    pub topic: String,
    /// What happened (1-2000 characters).
    pub message: String,
    /// A phone number or email address for the answer, used once and
    /// destroyed when the request closes.
    pub contact: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Opened {
    pub id: String,
    pub state: String,
    pub topic: String,
    /// The answer is due by then (working days, the platform's calendar).
    pub due_at: String,
}

fn opened(r: &SupportRow) -> Opened {
    Opened {
        id: r.id.clone(),
        state: r.state.clone(),
        topic: r.topic.clone(),
        due_at: r.due_at.to_string(),
    }
}

/// Opens a request on the case of a verified receipt (the API and the
/// public form).
pub async fn open_with_receipt_proof(
    st: &AppState,
    proof: &ReceiptProof,
    ask: Ask,
    headers: &HeaderMap,
    peer: std::net::SocketAddr,
) -> Result<SupportRow, Problem> {
    let client =
        crate::http::middleware::client_address(&st.limits.trusted_proxies, headers, peer.ip());
    // Failed tries are counted per address, apart from the request rate:
    // once an address has spent them, it is refused before any check.
    let tries = format!("receipt:{client}");
    st.receipt_tries.available(&tries).map_err(too_many_tries)?;
    let (case_id, principal, digest) = match verify_receipt(st, proof).await {
        Ok(v) => v,
        Err(p) => {
            if p.status == 422 {
                st.receipt_tries.check(&tries).map_err(too_many_tries)?;
            }
            return Err(p);
        }
    };
    open(
        st,
        Some(case_id),
        principal,
        Origin::Receipt,
        ask,
        &format!("receipt:{digest}"),
        // The connection's own address, or what a trusted proxy says: a
        // public route takes no caller's word for it.
        client,
        "holder:receipt".into(),
    )
    .await
}

fn too_many_tries(wait: i64) -> Problem {
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "receipt-tries-exhausted",
        "Too many receipts that did not verify",
        "this address sent too many receipts that did not verify",
    )
    .retry_after(wait)
    .fix("use the deletion receipt exactly as it was issued; try again later")
}

/// Open a support request with a deletion receipt (no account needed: the
/// account is gone). The receipt must verify and be the one this service
/// issued.
#[utoipa::path(post, path = "/v1/support/requests", tag = "support", request_body = OpenRequest, responses((status = 201, body = Opened), (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn open_with_receipt(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<OpenRequest>,
) -> Result<Response, Problem> {
    // Every attempt counts against the address's rate, failed ones too.
    crate::http::middleware::limited(&st, &headers, peer)?;
    let ask = Ask::parse(&req.topic, &req.message, &req.contact)?;
    let proof = ReceiptProof {
        receipt: req.receipt,
        case_id: req.case_id,
        signature: req.signature,
    };
    let row = open_with_receipt_proof(&st, &proof, ask, &headers, peer).await?;
    Ok((StatusCode::CREATED, axum::Json(opened(&row))).into_response())
}

// ------------------------------------------------------------ console side

/// A request as the console shows it, with the case's non-personal record.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestView {
    #[schema(value_type = Object)]
    pub request: SupportRow,
    /// The holder's message (absent once closed).
    pub message: Option<String>,
    /// The answer given (absent once closed).
    pub answer: Option<String>,
    /// Seconds left before the answer is due (negative: overdue).
    pub seconds_left: i64,
    /// The case's record (none for a question asked before any case).
    pub case: Option<CaseRecord>,
    /// The request's own audit trail, when it has no case.
    pub timeline: Vec<TimelineItem>,
}

/// The case as the agent may see it after erasure: state, settlements,
/// timeline, receipt; no subject.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseRecord {
    pub id: String,
    pub state: String,
    pub channel: String,
    pub settlements: Vec<SettlementView>,
    pub timeline: Vec<TimelineItem>,
    /// The receipt's digest, when one was issued.
    pub receipt_digest: Option<String>,
    /// The signed receipt itself (what was erased, kept, settled; no
    /// subject: its pseudonym only).
    #[schema(value_type = Option<Object>)]
    pub receipt: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SettlementView {
    pub asset_id: String,
    pub kind: String,
    pub label: String,
    pub option: String,
    pub status: String,
    pub amount_minor: Option<i64>,
    pub instruction_id: String,
    pub reference: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineItem {
    pub seq: u64,
    pub kind: String,
    pub to_state: String,
    pub actor: String,
    pub at: String,
}

/// A request the agent serves (another platform's is not found).
async fn load(st: &AppState, a: &Agent, id: &str) -> Result<SupportRow, Problem> {
    if id.len() > 64 {
        return Err(Problem::not_found("no support request with this id"));
    }
    match st.store.support_request(id).await? {
        Some(r) if a.serves(&r.principal) => Ok(r),
        _ => Err(Problem::not_found("no support request with this id")),
    }
}

fn timeline_item(e: lethe_ledger::RecordedEvent) -> TimelineItem {
    TimelineItem {
        seq: e.event.seq,
        kind: e.event.kind,
        to_state: e.event.to_state,
        actor: e.event.actor,
        at: e.event.at,
    }
}

pub async fn case_record(st: &AppState, case_id: &str) -> Result<CaseRecord, Problem> {
    let id = lethe_domain::CaseId::parse(case_id).map_err(|_| Problem::internal())?;
    let case = st
        .store
        .get_case(id)
        .await?
        .ok_or_else(|| Problem::not_found("the case is gone"))?;
    let settlements = case
        .assets
        .iter()
        .filter_map(|a| {
            let s = a.settlement.as_ref()?;
            Some(SettlementView {
                asset_id: a.id.clone(),
                kind: a.kind.as_str().into(),
                label: a.label.clone(),
                option: s.option.as_str().into(),
                status: serde_json::to_value(s.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                amount_minor: s.amount.map(|m| m.get()),
                instruction_id: s.instruction_id.clone(),
                reference: s.reference.clone(),
            })
        })
        .collect();
    let timeline = st
        .store
        .audit_for_case(id)
        .await?
        .into_iter()
        .map(timeline_item)
        .collect();
    let receipt: Option<Receipt> = st
        .store
        .receipt_of(case_id)
        .await?
        .and_then(|b| serde_json::from_str::<Receipt>(&b).ok());
    let receipt_digest = receipt.as_ref().map(|r| r.digest.clone());
    let receipt = receipt.and_then(|r| serde_json::to_value(r).ok());
    Ok(CaseRecord {
        id: case_id.to_owned(),
        state: case.state.as_str().into(),
        channel: case.channel.as_str().into(),
        settlements,
        timeline,
        receipt_digest,
        receipt,
    })
}

/// The receipt of a request's case as its readable page, for the agent
/// answering the request.
pub async fn receipt_page(st: &AppState, a: &Agent, id: &str) -> Result<Response, Problem> {
    require(a, "support_read")?;
    let r = load(st, a, id).await?;
    let case_id = r
        .case_id
        .as_deref()
        .ok_or_else(|| Problem::not_found("the request names no case, so no receipt"))?;
    let body = st
        .store
        .receipt_of(case_id)
        .await?
        .ok_or_else(|| Problem::not_found("the case has no signed receipt (yet)"))?;
    let receipt: Receipt = serde_json::from_str(&body).map_err(|_| Problem::internal())?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        crate::report::receipt_page(&receipt),
    )
        .into_response())
}

/// The request as `reader` sees it; opening its sealed texts is an audit
/// event (who read a holder's message, and when).
pub async fn view(st: &AppState, reader: &Agent, r: SupportRow) -> Result<RequestView, Problem> {
    if r.message_sealed.is_some() {
        st.store
            .support_action(
                r.id.clone(),
                "support.read".into(),
                format!("agent:{}", reader.id),
                serde_json::json!({}),
                st.clock.now(),
            )
            .await?;
    }
    let message = open_sealed(st, &r.id, "message", r.message_sealed.as_deref()).await?;
    let answer = open_sealed(st, &r.id, "answer", r.answer_sealed.as_deref()).await?;
    let (case, timeline) = match &r.case_id {
        Some(c) => (Some(case_record(st, c).await?), Vec::new()),
        None => (
            None,
            st.store
                .support_events(&r.id)
                .await?
                .into_iter()
                .map(timeline_item)
                .collect(),
        ),
    };
    Ok(RequestView {
        timeline,
        seconds_left: r.due_at.as_second() - st.clock.now().as_second(),
        message,
        answer,
        case,
        request: r,
    })
}

/// The support queue: requests not closed, soonest due first.
#[utoipa::path(get, path = "/v1/console/support", tag = "support", responses((status = 200, description = "the queue")), security(("console" = [])))]
pub async fn queue(
    State(st): State<AppState>,
    Extension(a): Extension<Agent>,
) -> Result<Response, Problem> {
    require(&a, "support_read")?;
    let rows = st
        .store
        .support_queue(a.platform.as_deref(), lethe_store::MAX_SUPPORT_QUEUE)
        .await?;
    Ok(axum::Json(rows).into_response())
}

/// One request, its message and the case's non-personal record.
#[utoipa::path(get, path = "/v1/console/support/{id}", tag = "support", params(("id" = String, Path)), responses((status = 200, body = RequestView), (status = 404, body = Problem)), security(("console" = [])))]
pub async fn read(
    State(st): State<AppState>,
    Extension(a): Extension<Agent>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    require(&a, "support_read")?;
    let r = load(&st, &a, &id).await?;
    Ok(axum::Json(view(&st, &a, r).await?).into_response())
}

/// Delivers an answer to the sealed contact: the configured delivery
/// webhook (signed), or in the demo the dev outbox (masked address).
async fn deliver(
    st: &AppState,
    r: &SupportRow,
    contact: &Contact,
    text: &str,
) -> Result<Option<OutboxDraft>, Problem> {
    let body = format!("【客服回复 Support】{text}");
    match (&st.support.delivery_url, &st.support.delivery_secret_env) {
        (Some(url), Some(env)) => {
            let secret = std::env::var(env).map_err(|_| Problem::internal())?;
            let msg = serde_json::json!({
                "type": "support.answer",
                "request_id": r.id,
                "channel": contact.kind(),
                "to": contact.expose(),
                "text": body,
            });
            let mut last = String::new();
            for attempt in 0..DELIVERY_ATTEMPTS {
                match crate::outbound::providers::signed_call(
                    &st.http,
                    "the support delivery endpoint",
                    url,
                    &secret,
                    5000,
                    &format!(
                        "{}-answer-{}",
                        r.id,
                        r.answered_at.map_or(0, |t| t.as_millisecond())
                    ),
                    &msg,
                )
                .await
                {
                    Ok(_) => return Ok(None),
                    Err(e) => last = e,
                }
                tokio::time::sleep(std::time::Duration::from_millis(200 * (attempt + 1))).await;
            }
            tracing::warn!(request = %r.id, error = %last, "delivering a support answer failed");
            Err(Problem::new(
                StatusCode::BAD_GATEWAY,
                "delivery-failed",
                "The answer was not delivered",
                "the delivery endpoint did not take the answer",
            )
            .retry_after(30)
            .fix("try again; if it persists, check support.delivery_url"))
        }
        _ if st.demo => Ok(Some(OutboxDraft {
            channel: contact.kind().into(),
            destination: contact.masked(),
            body,
        })),
        _ => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "delivery-not-configured",
            "Answers cannot be delivered",
            "no support delivery endpoint is configured",
        )
        .fix("set support.delivery_url and support.delivery_secret_env")),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    /// The answer (1-2000 characters), sent to the holder's contact.
    pub answer: String,
}

/// Answer a request: the text goes to the sealed contact.
pub async fn answer_with(st: &AppState, a: &Agent, id: &str, text: &str) -> Result<(), Problem> {
    require(a, "support")?;
    let text =
        Text::parse(text).map_err(|e| Problem::unprocessable(e.to_string()).field("answer"))?;
    let r = load(st, a, id).await?;
    if r.state == "closed" {
        return Err(Problem::conflict(
            "support-closed",
            "the request is closed; its contact is destroyed",
        ));
    }
    let contact = open_sealed(st, &r.id, "contact", r.contact_sealed.as_deref())
        .await?
        .and_then(|c| Contact::parse(&c).ok())
        .ok_or_else(|| Problem::conflict("support-closed", "the request's contact is destroyed"))?;
    let outbox = deliver(st, &r, &contact, text.expose()).await?;
    let sealed = seal(st, &r.id, "answer", text.expose()).await?;
    if !st
        .store
        .answer_support(
            r.id.clone(),
            sealed,
            outbox,
            format!("agent:{}", a.id),
            st.clock.now(),
        )
        .await?
    {
        return Err(Problem::conflict("support-closed", "the request is closed"));
    }
    Ok(())
}

/// Answer a request: the text goes to the holder's sealed contact.
#[utoipa::path(post, path = "/v1/console/support/{id}/answer", tag = "support", params(("id" = String, Path)), request_body = AnswerRequest, responses((status = 204, description = "delivered"), (status = 404, body = Problem), (status = 409, body = Problem)), security(("console" = [])))]
pub async fn answer(
    State(st): State<AppState>,
    Extension(a): Extension<Agent>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AnswerRequest>,
) -> Result<Response, Problem> {
    answer_with(&st, &a, &id, &req.answer).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendRequest {
    /// The settlement instruction to send again (its id is its
    /// idempotency key: the platform settles once).
    pub instruction_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Resent {
    pub instruction_id: String,
    /// The platform's answer: done or failed.
    pub status: String,
    pub reference: Option<String>,
    pub reason: Option<String>,
}

/// Re-sends a settlement instruction of the request's case, with the same
/// idempotency key; the platform answers what it did (once).
pub async fn resend_with(
    st: &AppState,
    a: &Agent,
    id: &str,
    instruction_id: &str,
) -> Result<Resent, Problem> {
    require(a, "support")?;
    let r = load(st, a, id).await?;
    if r.state == "closed" {
        return Err(Problem::conflict(
            "support-closed",
            "the request is closed; open a new one to act again",
        ));
    }
    let case_id = r.case_id.as_deref().ok_or_else(|| {
        Problem::conflict(
            "support-no-case",
            "the request was asked before any case existed; there is no settlement to re-send",
        )
    })?;
    let case_id = lethe_domain::CaseId::parse(case_id).map_err(|_| Problem::internal())?;
    let case = st
        .store
        .get_case(case_id)
        .await?
        .ok_or_else(|| Problem::not_found("the case is gone"))?;
    let (asset, s) = case
        .assets
        .iter()
        .find_map(|a| {
            a.settlement
                .as_ref()
                .filter(|s| s.instruction_id == instruction_id)
                .map(|s| (a, s))
        })
        .ok_or_else(|| {
            Problem::unprocessable("the case has no settlement with this instruction id")
                .field("instruction_id")
        })?;
    if s.option.as_str() == "forfeit" {
        return Err(
            Problem::unprocessable("a forfeit sends no instruction").field("instruction_id")
        );
    }
    let endpoint =
        crate::outbound::settlement::settlement_endpoint(st, &asset.source).map_err(|e| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "settlement-not-configured",
                "No settlement endpoint",
                e,
            )
        })?;
    // The same instruction, without the subject (the account is gone; the
    // platform knows the instruction by its id).
    let body = crate::outbound::settlement::instruction_body(case.id, asset, s, None);
    let answer = crate::outbound::settlement::send(st, &endpoint, &s.instruction_id, &body)
        .await
        .map_err(|e| {
        tracing::warn!(request = %r.id, error = %e, "re-sending a settlement instruction failed");
        Problem::new(
            StatusCode::BAD_GATEWAY,
            "settlement-unreachable",
            "The platform did not answer",
            "the settlement endpoint did not answer the instruction",
        )
        .retry_after(30)
    })?;
    let resent = Resent {
        instruction_id: s.instruction_id.clone(),
        status: answer["status"].as_str().unwrap_or("unknown").to_owned(),
        reference: answer["reference"].as_str().map(str::to_owned),
        reason: answer["reason"]
            .as_str()
            .map(|r| r.chars().take(300).collect()),
    };
    st.store
        .support_action(
            r.id.clone(),
            "support.settlement_resent".into(),
            format!("agent:{}", a.id),
            serde_json::json!({ "instruction_id": resent.instruction_id, "status": resent.status, "reference": resent.reference }),
            st.clock.now(),
        )
        .await?;
    Ok(resent)
}

/// Re-send a settlement instruction of the request's case (same
/// idempotency key: the platform settles once and answers what it did).
#[utoipa::path(post, path = "/v1/console/support/{id}/resend", tag = "support", params(("id" = String, Path)), request_body = ResendRequest, responses((status = 200, body = Resent), (status = 404, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem)), security(("console" = [])))]
pub async fn resend(
    State(st): State<AppState>,
    Extension(a): Extension<Agent>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ResendRequest>,
) -> Result<Response, Problem> {
    Ok(axum::Json(resend_with(&st, &a, &id, &req.instruction_id).await?).into_response())
}

/// Closes a request as an agent (see [`close_request`]).
pub async fn close_with(st: &AppState, a: &Agent, id: &str) -> Result<(), Problem> {
    require(a, "support")?;
    let r = load(st, a, id).await?;
    if r.state == "closed" {
        return Ok(());
    }
    close_request(st, &r.id, format!("agent:{}", a.id)).await
}

/// Closes a request: its key is destroyed (contact, message and answer
/// unreadable), then the sealed columns are emptied.
pub async fn close_request(st: &AppState, id: &str, actor: String) -> Result<(), Problem> {
    let now = st.clock.now();
    let d = st
        .vault
        .destroy(&vault_subject(id), &now.to_string())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "destroying a support request's key failed");
            Problem::internal()
        })?;
    st.store
        .close_support(id.to_owned(), actor, d.versions_destroyed, now)
        .await?;
    Ok(())
}

/// Requests answered more than `support.close_answered_after_days` ago are
/// closed by the worker: no contact is kept longer than that.
pub async fn close_stale(st: &AppState) -> Result<usize, Problem> {
    let days = i64::from(st.support.close_answered_after_days);
    let now = st.clock.now();
    let before = now
        .checked_sub(jiff::SignedDuration::from_hours(24 * days))
        .unwrap_or(now);
    let ids = st.store.answered_before(before, CLOSE_BATCH).await?;
    for id in &ids {
        close_request(st, id, "worker".into()).await?;
    }
    Ok(ids.len())
}

/// Close a request: its key, contact, message and answer are destroyed.
#[utoipa::path(post, path = "/v1/console/support/{id}/close", tag = "support", params(("id" = String, Path)), responses((status = 204, description = "closed; the contact is destroyed"), (status = 404, body = Problem)), security(("console" = [])))]
pub async fn close(
    State(st): State<AppState>,
    Extension(a): Extension<Agent>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    close_with(&st, &a, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
