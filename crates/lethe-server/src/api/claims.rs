//! Identity claims (real-name disputes, seed 000): a person says their ID
//! card was used on an account they do not control. They file a claim with
//! ID document images and a selfie; a reviewer decides in the console. On
//! approval the platform is told to unbind that real-name identity and
//! freeze the account(s). The claimant never sees any account data. The
//! documents are sealed under a per-claim vault key, shown only to
//! reviewers, and destroyed when the claim closes; its receipt says so.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::console::Agent;
use crate::http::extract::ApiJson;
use crate::http::middleware::Principal;
use crate::http::problem::Problem;

/// Documents per claim, and bytes per document, at most.
pub const MAX_DOCUMENTS: usize = 5;
pub const MAX_DOCUMENT_BYTES: usize = 2 * 1024 * 1024;
/// Largest claim body (base64-inflated documents).
pub const CLAIM_BODY_LIMIT: usize = 16 * 1024 * 1024;

fn vault_subject(id: &str) -> String {
    format!("claim:{id}")
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// id_front, id_back or selfie.
    pub kind: String,
    pub content_base64: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClaim {
    /// The claimant's ID number (never echoed).
    pub id_number: String,
    pub documents: Vec<Document>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimView {
    pub id: String,
    /// submitted, approved or rejected.
    pub state: String,
    pub decision_reason: Option<String>,
    pub created_at: String,
    pub closed_at: Option<String>,
    /// When the documents were destroyed (the claim closed).
    pub documents_destroyed_at: Option<String>,
}

fn view(c: &lethe_store::ClaimRow) -> ClaimView {
    ClaimView {
        id: c.id.clone(),
        state: c.state.clone(),
        decision_reason: c.decision_reason.clone(),
        created_at: c.created_at.to_string(),
        closed_at: c.closed_at.map(|t| t.to_string()),
        documents_destroyed_at: c.documents_destroyed_at.clone(),
    }
}

/// File an identity claim on behalf of a claimant.
#[utoipa::path(post, path = "/v1/claims", request_body = NewClaim, tag = "claims", responses((status = 201, body = ClaimView), (status = 422, body = Problem)), security(("api_key" = [])))]
pub async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(body): ApiJson<NewClaim>,
) -> Result<Response, Problem> {
    let idn: String = body
        .id_number
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_uppercase();
    if !(15..=18).contains(&idn.len()) {
        return Err(
            Problem::unprocessable("id_number must be a 15- or 18-character ID number")
                .field("id_number"),
        );
    }
    if body.documents.is_empty() || body.documents.len() > MAX_DOCUMENTS {
        return Err(Problem::unprocessable(format!(
            "send 1 to {MAX_DOCUMENTS} documents (ID front, back, selfie)"
        ))
        .field("documents"));
    }
    let id = format!("clm_{}", uuid::Uuid::now_v7().simple());
    let subject = vault_subject(&id);
    let mut sealed_docs = vec![];
    for (i, d) in body.documents.iter().enumerate() {
        if !["id_front", "id_back", "selfie"].contains(&d.kind.as_str()) {
            return Err(
                Problem::unprocessable("kind must be id_front, id_back or selfie")
                    .field(format!("documents[{i}].kind")),
            );
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&d.content_base64)
            .map_err(|_| {
                Problem::unprocessable("content_base64 is not base64")
                    .field(format!("documents[{i}].content_base64"))
            })?;
        if bytes.is_empty() || bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(Problem::unprocessable(format!(
                "a document must be 1 byte to {MAX_DOCUMENT_BYTES} bytes"
            ))
            .field(format!("documents[{i}].content_base64")));
        }
        let field = lethe_vault::FieldName::parse(&format!("document.{i}"))
            .map_err(|_| Problem::internal())?;
        let env = st
            .vault
            .encrypt(&subject, &field, &bytes)
            .await
            .map_err(|_| Problem::internal())?;
        sealed_docs.push((d.kind.clone(), lethe_vault::to_text(&env)));
    }
    let field = lethe_vault::FieldName::parse("id_number").map_err(|_| Problem::internal())?;
    let sealed_idn = lethe_vault::to_text(
        &st.vault
            .encrypt(&subject, &field, idn.as_bytes())
            .await
            .map_err(|_| Problem::internal())?,
    );
    let pseudo = st.secrets.pseudonym(&format!(
        "id_number:{}",
        st.secrets.identifier_hash("id_number", &idn)
    ));
    st.store
        .insert_claim(
            id.clone(),
            p.0.clone(),
            pseudo,
            sealed_idn,
            sealed_docs,
            st.clock.now(),
        )
        .await?;
    let c = st.store.claim(&id).await?.ok_or_else(Problem::internal)?;
    Ok((StatusCode::CREATED, axum::Json(view(&c))).into_response())
}

/// A claim of the calling platform (another platform's is not found).
async fn own_claim(
    st: &AppState,
    p: &Principal,
    id: &str,
) -> Result<lethe_store::ClaimRow, Problem> {
    st.store
        .claim(id)
        .await?
        .filter(|c| c.principal == p.0)
        .ok_or_else(|| Problem::not_found("no claim with this id"))
}

/// A claim an agent with the claims role may see (its platform's).
async fn served_claim(
    st: &AppState,
    a: &Agent,
    id: &str,
) -> Result<lethe_store::ClaimRow, Problem> {
    crate::console::require(a, "claims")?;
    st.store
        .claim(id)
        .await?
        .filter(|c| a.serves(&c.principal))
        .ok_or_else(|| Problem::not_found("no claim with this id"))
}

/// The claim's status (never any account data).
#[utoipa::path(get, path = "/v1/claims/{id}", tag = "claims", params(("id" = String, Path)), responses((status = 200, body = ClaimView)), security(("api_key" = [])))]
pub async fn read(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let c = own_claim(&st, &p, &id).await?;
    Ok(axum::Json(view(&c)).into_response())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClaimReceipt {
    pub claim_id: String,
    pub decision: String,
    pub decided_at: Option<String>,
    pub documents_destroyed_at: Option<String>,
    pub public_key: String,
    /// Ed25519 over the JSON of the fields above (signature empty).
    pub signature: String,
}

/// The signed receipt of a closed claim, recording the documents' destruction.
#[utoipa::path(get, path = "/v1/claims/{id}/receipt", tag = "claims", params(("id" = String, Path)), responses((status = 200, body = ClaimReceipt)), security(("api_key" = [])))]
pub async fn receipt(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let c = own_claim(&st, &p, &id).await?;
    if c.state == "submitted" {
        return Err(Problem::not_found("the claim is still under review")
            .fix("the receipt exists once a reviewer decided"));
    }
    let mut r = ClaimReceipt {
        claim_id: c.id,
        decision: c.state,
        decided_at: c.closed_at.map(|t| t.to_string()),
        documents_destroyed_at: c.documents_destroyed_at,
        public_key: st.signer.public_key_hex(),
        signature: String::new(),
    };
    r.signature = st
        .signer
        .sign(&serde_json::to_vec(&r).map_err(|_| Problem::internal())?);
    Ok(axum::Json(r).into_response())
}

// ------------------------------------------------------------------ console

#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewClaim {
    pub id: String,
    pub state: String,
    pub created_at: String,
    /// Document numbers and kinds, each a pair `[n, kind]` (GET
    /// .../documents/{n} shows one).
    #[schema(value_type = Vec<Vec<serde_json::Value>>, example = json!([[1, "id_card"]]))]
    pub documents: Vec<(i64, String)>,
}

/// Reviewers: open claims.
#[utoipa::path(get, path = "/v1/console/claims", tag = "console", responses((status = 200, body = [ReviewClaim])), security(("console" = [])))]
pub async fn list(
    State(st): State<AppState>,
    Extension(a): Extension<Agent>,
) -> Result<Response, Problem> {
    crate::console::require(&a, "claims")?;
    let mut out = vec![];
    for id in st.store.open_claims(200, a.platform.as_deref()).await? {
        if let Some(c) = st.store.claim(&id).await? {
            out.push(ReviewClaim {
                id: c.id,
                state: c.state,
                created_at: c.created_at.to_string(),
                documents: c.documents,
            });
        }
    }
    Ok(axum::Json(out).into_response())
}

/// Reviewers: one document, decrypted (audited with the reviewer's id).
#[utoipa::path(get, path = "/v1/console/claims/{id}/documents/{n}", tag = "console", params(("id" = String, Path), ("n" = i64, Path)), responses((status = 200, description = "the document's bytes")), security(("console" = [])))]
pub async fn document(
    State(st): State<AppState>,
    Extension(a): Extension<Agent>,
    Path((id, n)): Path<(String, i64)>,
) -> Result<Response, Problem> {
    let c = served_claim(&st, &a, &id).await?;
    let Some((kind, sealed)) = st.store.claim_document(&id, n).await? else {
        return Err(Problem::not_found(if c.documents_destroyed_at.is_some() {
            "the documents were destroyed when the claim closed"
        } else {
            "no such document"
        }));
    };
    let field =
        lethe_vault::FieldName::parse(&format!("document.{n}")).map_err(|_| Problem::internal())?;
    let env = lethe_vault::from_text(&sealed).map_err(|_| Problem::internal())?;
    let bytes = st
        .vault
        .decrypt(&vault_subject(&id), &field, &env)
        .await
        .map_err(|e| match e {
            lethe_vault::VaultError::Erased { .. } => {
                Problem::not_found("the documents were destroyed when the claim closed")
            }
            _ => Problem::internal(),
        })?;
    st.store
        .audit_claim(
            id,
            c.subject,
            "claim.document_viewed",
            format!("agent:{}", a.id),
            serde_json::json!({ "document": n, "kind": kind }),
            st.clock.now(),
        )
        .await?;
    let mut resp = (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        bytes.to_vec(),
    )
        .into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimDecision {
    pub decision: crate::api::cases::Decision,
    #[schema(value_type = Option<String>)]
    pub reason: Option<lethe_domain::Reason>,
}

/// Reviewers: decide. Approval tells the platform to unbind the real-name
/// identity from, and freeze, every account carrying that ID number. Either
/// way the claim closes and its documents are destroyed.
#[utoipa::path(post, path = "/v1/console/claims/{id}/decision", request_body = ClaimDecision, tag = "console", params(("id" = String, Path)), responses((status = 200, body = ClaimView)), security(("console" = [])))]
pub async fn decide(
    State(st): State<AppState>,
    Extension(a): Extension<Agent>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ClaimDecision>,
) -> Result<Response, Problem> {
    let c = served_claim(&st, &a, &id).await?;
    if c.state != "submitted" {
        return Err(Problem::conflict(
            "claim-closed",
            "the claim is already decided",
        ));
    }
    let approved = matches!(body.decision, crate::api::cases::Decision::Approve);
    if !approved && body.reason.is_none() {
        return Err(
            Problem::unprocessable("a rejection needs a reason the claimant can read")
                .field("reason"),
        );
    }
    let accounts = if approved {
        let field = lethe_vault::FieldName::parse("id_number").map_err(|_| Problem::internal())?;
        let sealed = c
            .id_number_sealed
            .as_deref()
            .ok_or_else(Problem::internal)?;
        let env = lethe_vault::from_text(sealed).map_err(|_| Problem::internal())?;
        let idn = st
            .vault
            .decrypt(&vault_subject(&id), &field, &env)
            .await
            .map_err(|_| Problem::internal())?;
        st.systems
            .accounts_with_id_number(&String::from_utf8_lossy(&idn))
            .await?
    } else {
        vec![]
    };
    let now = st.clock.now();
    // Destroy the per-claim key: every copy of the documents is unreadable.
    let d = st
        .vault
        .destroy(&vault_subject(&id), &now.to_string())
        .await
        .map_err(|_| Problem::internal())?;
    let reason = body.reason.map(|r| r.as_str().to_owned());
    st.store
        .decide_claim(
            id.clone(),
            approved,
            reason,
            accounts,
            format!("agent:{}", a.id),
            d.destroyed_at,
            now,
        )
        .await?;
    let c = st.store.claim(&id).await?.ok_or_else(Problem::internal)?;
    Ok(axum::Json(view(&c)).into_response())
}
