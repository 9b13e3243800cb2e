//! The vault's HTTP API: batch encryption and decryption of fields bound to
//! a subject, blind indexes, and KEK rotation.
//!
//! These routes are outside the idempotency layer on purpose: storing their
//! responses for replay would persist plaintext (decrypt) or let a retry
//! return a stale ciphertext. Encrypting twice is harmless (two valid
//! ciphertexts) and decrypting is read-only, so plain retries are safe.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lethe_domain::SubjectId;
use lethe_vault::{FieldName, VaultError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::http::extract::ApiJson;
use crate::http::middleware::Principal;
use crate::http::problem::Problem;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EncryptItem {
    #[schema(value_type = String, example = "10042")]
    pub subject_id: SubjectId,
    /// Field name, bound into the ciphertext: 1-64 of a-z, 0-9, '_', '.'.
    #[schema(example = "id_number")]
    pub field: String,
    /// The value to protect (UTF-8, at most 64 KiB).
    pub plaintext: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EncryptRequest {
    /// At most 1000 items.
    #[schema(min_items = 1, max_items = 1000)]
    pub items: Vec<EncryptItem>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecryptItem {
    #[schema(value_type = String, example = "10042")]
    pub subject_id: SubjectId,
    pub field: String,
    /// A ciphertext from /v1/vault/encrypt (`lv1:...`).
    pub ciphertext: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecryptRequest {
    #[schema(min_items = 1, max_items = 1000)]
    pub items: Vec<DecryptItem>,
}

/// Why one item failed. `code` is one of: erased (the subject's keys were
/// destroyed), tampered, unknown_key, malformed, too_large, bad_field.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ItemError {
    pub code: String,
    pub detail: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ItemResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ciphertext: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemError>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    /// One result per item, in order.
    pub items: Vec<ItemResult>,
}

/// The vault's key id of a platform's subject: each platform's fields are
/// sealed under keys of its own (platform names have no '/'), so one
/// platform's key never opens another's ciphertext.
pub fn platform_subject(platform: &str, subject: &str) -> String {
    format!("{platform}/{subject}")
}

fn item_error(e: &VaultError) -> Option<ItemError> {
    let code = match e {
        VaultError::Erased { .. } => "erased",
        VaultError::Tampered => "tampered",
        VaultError::UnknownKey => "unknown_key",
        VaultError::Malformed(_) => "malformed",
        VaultError::TooLarge { .. } => "too_large",
        VaultError::BadField => "bad_field",
        _ => return None,
    };
    Some(ItemError {
        code: code.into(),
        detail: e.to_string(),
    })
}

/// A failure of the vault itself (not of one item) fails the request.
fn fatal(e: VaultError) -> Problem {
    match e {
        VaultError::BatchTooLarge { max } => {
            Problem::unprocessable(format!("a batch holds at most {max} items"))
                .field("items")
                .fix("split the batch")
        }
        other => {
            tracing::error!(error = %other, "vault failure");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "vault",
                "Vault unavailable",
                "the vault could not complete the request; nothing was changed",
            )
            .retry_after(1)
        }
    }
}

fn check_batch(n: usize) -> Result<(), Problem> {
    if n == 0 {
        return Err(Problem::unprocessable("the batch is empty").field("items"));
    }
    if n > lethe_vault::MAX_BATCH {
        return Err(fatal(VaultError::BatchTooLarge {
            max: lethe_vault::MAX_BATCH,
        }));
    }
    Ok(())
}

/// Runs one vault operation per item of a batch, in order: an item's own
/// error (a bad field name or ciphertext, an erased subject, tampering) is
/// answered in its place; any other error fails the whole batch.
async fn each<F: Future<Output = Result<ItemResult, VaultError>>>(
    n: usize,
    op: impl Fn(usize) -> F,
) -> Result<Response, Problem> {
    check_batch(n)?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(match op(i).await {
            Ok(r) => r,
            Err(e) => ItemResult {
                ciphertext: None,
                plaintext: None,
                error: Some(item_error(&e).ok_or_else(|| fatal(e))?),
            },
        });
    }
    Ok(axum::Json(BatchResponse { items: out }).into_response())
}

/// Encrypt fields, each bound to its subject and field name.
#[utoipa::path(post, path = "/v1/vault/encrypt", request_body = EncryptRequest, tag = "vault",
    responses((status = 200, body = BatchResponse), (status = 422, body = Problem)), security(("api_key" = [])))]
pub async fn encrypt(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<EncryptRequest>,
) -> Result<Response, Problem> {
    each(req.items.len(), |i| encrypt_one(&st, &p, &req.items[i])).await
}

async fn encrypt_one(
    st: &AppState,
    p: &Principal,
    it: &EncryptItem,
) -> Result<ItemResult, VaultError> {
    let f = FieldName::parse(&it.field)?;
    let subject = platform_subject(&p.0, it.subject_id.expose());
    let ct = st
        .vault
        .encrypt(&subject, &f, it.plaintext.as_bytes())
        .await?;
    Ok(ItemResult {
        ciphertext: Some(lethe_vault::to_text(&ct)),
        plaintext: None,
        error: None,
    })
}

/// Decrypt fields. A subject whose keys were destroyed gives the item error `erased`.
#[utoipa::path(post, path = "/v1/vault/decrypt", request_body = DecryptRequest, tag = "vault",
    responses((status = 200, body = BatchResponse), (status = 422, body = Problem)), security(("api_key" = [])))]
pub async fn decrypt(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<DecryptRequest>,
) -> Result<Response, Problem> {
    each(req.items.len(), |i| decrypt_one(&st, &p, &req.items[i])).await
}

async fn decrypt_one(
    st: &AppState,
    p: &Principal,
    it: &DecryptItem,
) -> Result<ItemResult, VaultError> {
    let (f, ct) = (
        FieldName::parse(&it.field),
        lethe_vault::from_text(&it.ciphertext),
    );
    let (f, ct) = (f?, ct?);
    let subject = platform_subject(&p.0, it.subject_id.expose());
    let pt = st.vault.decrypt(&subject, &f, &ct).await?;
    Ok(ItemResult {
        ciphertext: None,
        plaintext: Some(String::from_utf8_lossy(&pt).into_owned()),
        error: None,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlindIndexItem {
    /// The kind of value, e.g. phone or id_number (indexes of different kinds never match).
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlindIndexRequest {
    #[schema(min_items = 1, max_items = 1000)]
    pub items: Vec<BlindIndexItem>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BlindIndexResponse {
    /// Hex HMAC per item, in order: equal values give equal indexes.
    pub indexes: Vec<String>,
}

/// Blind indexes (keyed HMAC) for equality look-ups without plaintext.
#[utoipa::path(post, path = "/v1/vault/blind-index", request_body = BlindIndexRequest, tag = "vault",
    responses((status = 200, body = BlindIndexResponse)), security(("api_key" = [])))]
pub async fn blind_index(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<BlindIndexRequest>,
) -> Result<Response, Problem> {
    check_batch(req.items.len())?;
    let mut indexes = Vec::with_capacity(req.items.len());
    for (i, it) in req.items.iter().enumerate() {
        let kind = FieldName::parse(&it.kind)
            .map_err(|e| Problem::unprocessable(e.to_string()).field(format!("items[{i}].kind")))?;
        indexes.push(st.vault.blind_index_in(&p.0, &kind, &it.value));
    }
    Ok(axum::Json(BlindIndexResponse { indexes }).into_response())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RotateResponse {
    /// The new current key-encryption key version.
    pub kek_version: u32,
}

/// Rotate the key-encryption key (an installation admin's action: it
/// touches every platform's keys). Data keys are re-wrapped in the
/// background; reads and writes go on meanwhile.
#[utoipa::path(post, path = "/v1/console/vault/kek/rotate", tag = "console",
    responses((status = 200, body = RotateResponse), (status = 403, body = Problem, description = "not an installation admin")), security(("console" = [])))]
pub async fn rotate(
    State(st): State<AppState>,
    Extension(a): Extension<crate::console::Agent>,
) -> Result<Response, Problem> {
    crate::console::require(&a, "rotate_kek")?;
    if a.platform.is_some() {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Not allowed",
            "the KEK protects every platform's keys: only an installation admin (an admin of no platform) rotates it",
        ));
    }
    let v = st.vault.rotate_kek().map_err(fatal)?;
    st.store
        .audit_claim(
            "vault".into(),
            "-".into(),
            "vault.kek_rotated",
            format!("agent:{}", a.id),
            serde_json::json!({ "kek_version": v }),
            st.clock.now(),
        )
        .await?;
    let vault = st.vault.clone();
    tokio::spawn(async move {
        let mut total = 0usize;
        loop {
            match vault.rewrap_batch(500).await {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) => {
                    tracing::error!(error = %e, "re-wrapping data keys failed; rotate again to resume");
                    return;
                }
            }
        }
        tracing::info!(kek_version = v, rewrapped = total, "data keys re-wrapped");
    });
    Ok(axum::Json(RotateResponse { kek_version: v }).into_response())
}
