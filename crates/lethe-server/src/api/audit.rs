//! Proof over HTTP: tree heads, Merkle proofs, log export, signed receipts
//! and the signed compliance report.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lethe_ledger::Receipt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::http::extract::ApiQuery;
use crate::http::middleware::Principal;
use crate::http::problem::Problem;
use crate::receipt::caught_up;

#[derive(Debug, Serialize, ToSchema)]
pub struct PublicKey {
    /// Hex Ed25519 public key: verifies tree heads, receipts and reports.
    pub public_key: String,
    pub algorithm: String,
}

/// The public key third parties verify with.
#[utoipa::path(get, path = "/v1/audit/public-key", tag = "proof", responses((status = 200, body = PublicKey)), security(("api_key" = [])))]
pub async fn public_key(
    State(st): State<AppState>,
    Extension(_p): Extension<Principal>,
) -> Response {
    axum::Json(PublicKey {
        public_key: st.signer.public_key_hex(),
        algorithm: "ed25519".into(),
    })
    .into_response()
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TreeHeadView {
    pub tree_size: u64,
    pub root_hash: String,
    pub timestamp: String,
    pub signature: String,
}

impl From<lethe_ledger::TreeHead> for TreeHeadView {
    fn from(h: lethe_ledger::TreeHead) -> Self {
        Self {
            tree_size: h.tree_size,
            root_hash: h.root_hash,
            timestamp: h.timestamp,
            signature: h.signature,
        }
    }
}

/// The latest signed tree head.
#[utoipa::path(get, path = "/v1/audit/tree-head", tag = "proof", responses((status = 200, body = TreeHeadView), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn tree_head(
    State(st): State<AppState>,
    Extension(_p): Extension<Principal>,
) -> Result<Response, Problem> {
    let h = st.store.latest_tree_head().await?.ok_or_else(|| {
        Problem::not_found("no tree head signed yet").fix("POST /v1/audit/tree-heads signs one now")
    })?;
    Ok(axum::Json(TreeHeadView::from(h)).into_response())
}

/// Sign a tree head now (on demand).
#[utoipa::path(post, path = "/v1/audit/tree-heads", tag = "proof", responses((status = 200, body = TreeHeadView), (status = 503, description = "events committed before the request are not in the tree yet (the sequencer is behind); retry", body = Problem)), security(("api_key" = [])))]
pub async fn sign_now(
    State(st): State<AppState>,
    Extension(_p): Extension<Principal>,
) -> Result<Response, Problem> {
    // The head covers every event committed before this request.
    caught_up(&st).await?;
    let h = st
        .store
        .sign_tree_head(st.signer.clone(), st.clock.now().to_string())
        .await?
        .ok_or_else(|| Problem::conflict("empty-log", "the audit log is empty"))?;
    // Witnesses cosign it in the background (a slow one must not hold the
    // answer).
    if !st.transparency.witnesses.is_empty() {
        let (st, head) = (st.clone(), h.clone());
        tokio::spawn(async move { crate::outbound::witness::cosign(&st, &head).await });
    }
    Ok(axum::Json(TreeHeadView::from(h)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HeadsQuery {
    #[serde(default)]
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub from_size: i64,
}

/// Signed tree heads from a size on (at most 1000).
#[utoipa::path(get, path = "/v1/audit/tree-heads", tag = "proof", params(HeadsQuery), responses((status = 200, body = [TreeHeadView])), security(("api_key" = [])))]
pub async fn tree_heads(
    State(st): State<AppState>,
    Extension(_p): Extension<Principal>,
    ApiQuery(q): ApiQuery<HeadsQuery>,
) -> Result<Response, Problem> {
    let from = u64::try_from(q.from_size)
        .map_err(|_| Problem::unprocessable("from_size must be 0 or more").field("from_size"))?;
    let hs = st.store.tree_heads(from, 1000).await?;
    Ok(axum::Json(hs.into_iter().map(TreeHeadView::from).collect::<Vec<_>>()).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InclusionQuery {
    pub seq: u64,
    pub tree_size: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Proof {
    /// Hex hashes, in RFC 9162 order.
    pub proof: Vec<String>,
}

/// A proof as the API answers it (hex hashes), or the problem naming the
/// size that is out of range.
pub(crate) fn proof_answer(
    r: Result<Vec<lethe_ledger::Hash>, lethe_store::ProofError>,
) -> Result<Response, Problem> {
    let p = r.map_err(proof_problem)?;
    Ok(axum::Json(Proof {
        proof: p.iter().map(hex::encode).collect(),
    })
    .into_response())
}

pub(crate) fn proof_problem(e: lethe_store::ProofError) -> Problem {
    match e {
        lethe_store::ProofError::OutOfRange { what, .. } => {
            Problem::unprocessable(e.to_string()).field(what)
        }
        lethe_store::ProofError::Store(s) => s.into(),
    }
}

/// The inclusion proof of event `seq` in the tree of `tree_size` events.
#[utoipa::path(get, path = "/v1/audit/proofs/inclusion", tag = "proof", params(InclusionQuery), responses((status = 200, body = Proof), (status = 422, body = Problem)), security(("api_key" = [])))]
pub async fn inclusion(
    State(st): State<AppState>,
    Extension(_p): Extension<Principal>,
    ApiQuery(q): ApiQuery<InclusionQuery>,
) -> Result<Response, Problem> {
    proof_answer(st.store.inclusion_proof(q.seq, q.tree_size).await)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    pub first: u64,
    pub second: u64,
}

/// The consistency proof between two tree sizes.
#[utoipa::path(get, path = "/v1/audit/proofs/consistency", tag = "proof", params(ConsistencyQuery), responses((status = 200, body = Proof), (status = 422, body = Problem)), security(("api_key" = [])))]
pub async fn consistency(
    State(st): State<AppState>,
    Extension(_p): Extension<Principal>,
    ApiQuery(q): ApiQuery<ConsistencyQuery>,
) -> Result<Response, Problem> {
    proof_answer(st.store.consistency_proof(q.first, q.second).await)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    #[serde(default = "one")]
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub from: i64,
    #[serde(default = "page")]
    #[param(minimum = 1, maximum = 100000)]
    pub limit: u32,
}

fn one() -> i64 {
    1
}

fn page() -> u32 {
    10_000
}

/// Export events (with recorded leaf hashes) and the tree heads, for
/// offline verification with `lethe audit verify`. Events of other
/// platforms' cases, claims and exports, and installation events, come redacted:
/// their sequence number and leaf hash only (`redacted: true`).
#[utoipa::path(get, path = "/v1/audit/export", tag = "proof", params(ExportQuery), responses((status = 200, description = "a LogExport: events and tree heads"), (status = 503, description = "events committed before the request are not in the tree yet (the sequencer is behind); retry", body = Problem)), security(("api_key" = [])))]
pub async fn export(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, Problem> {
    if q.limit == 0 || q.limit > 100_000 {
        return Err(Problem::unprocessable("limit must be between 1 and 100000").field("limit"));
    }
    let from = u64::try_from(q.from)
        .ok()
        .filter(|f| *f >= 1)
        .ok_or_else(|| Problem::unprocessable("from must be 1 or more").field("from"))?;
    caught_up(&st).await?;
    let events = st.store.export_events(from, q.limit).await?;
    // One tree for the installation: another platform's events keep their
    // place and leaf hash (the tree still verifies), not their content.
    let mut ids: Vec<&str> = events.iter().map(|e| e.event.case_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let own = st.store.owned_ids(&p.0, &ids).await?;
    let events = events
        .into_iter()
        .map(|e| {
            if own.contains(&e.event.case_id) {
                e
            } else {
                e.redact()
            }
        })
        .collect();
    let tree_heads = st.store.tree_heads(0, 100_000).await?;
    Ok(axum::Json(lethe_ledger::LogExport { events, tree_heads }).into_response())
}

/// The deletion receipt as a readable page.
#[utoipa::path(get, path = "/v1/cases/{id}/receipt.html", tag = "proof", params(("id" = String, Path)), responses((status = 200, description = "HTML")), security(("api_key" = [])))]
pub async fn receipt_html(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let body = crate::api::cases::receipt_body(&st, &p, &id).await?;
    let r: Receipt = serde_json::from_str(&body).map_err(|_| Problem::internal())?;
    Ok((
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        crate::report::receipt_page(&r),
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// Start (a date in the platform's time zone, or RFC 3339).
    pub from: String,
    /// End, exclusive.
    pub to: String,
    /// json (default) or html.
    pub format: Option<String>,
}

/// The compliance report for a period, signed (JSON, or HTML with inline SVG
/// charts; the `Lethe-Signature` header signs the body).
#[utoipa::path(get, path = "/v1/reports/compliance", tag = "proof", params(ReportQuery), responses((status = 200, description = "signed report")), security(("api_key" = [])))]
pub async fn compliance(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Response, Problem> {
    let from = crate::report::parse_when(&q.from, &st.tz)
        .map_err(|e| Problem::unprocessable(e).field("from"))?;
    let to = crate::report::parse_when(&q.to, &st.tz)
        .map_err(|e| Problem::unprocessable(e).field("to"))?;
    if to <= from {
        return Err(Problem::unprocessable("to must be after from").field("to"));
    }
    let signed =
        crate::report::compliance(&st.store, &st.signer, from, to, st.clock.now(), Some(&p.0))
            .await?;
    let (body, ctype) = match q.format.as_deref() {
        None | Some("json") => (
            serde_json::to_string_pretty(&signed).map_err(|_| Problem::internal())?,
            "application/json",
        ),
        Some("html") => (
            crate::report::report_page(&signed),
            "text/html; charset=utf-8",
        ),
        Some(_) => {
            return Err(Problem::unprocessable("format must be json or html").field("format"));
        }
    };
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, ctype)],
        body.clone(),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("ed25519={}", st.signer.sign(body.as_bytes()))) {
        resp.headers_mut().insert("lethe-signature", v);
    }
    Ok(resp)
}
