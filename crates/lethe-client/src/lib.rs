//! A client for platforms: encrypt and decrypt fields through Lethe's vault
//! (bound to a subject and a field name), compute blind indexes, and read
//! cases. Every call has a timeout; batches are checked against the
//! server's limit before they are sent.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The server's batch limit.
pub const MAX_BATCH: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused the request (RFC 9457 problem details).
    #[error("HTTP {status}: {title}: {detail}")]
    Refused {
        status: u16,
        title: String,
        detail: String,
        field: Option<String>,
    },
    #[error("could not reach Lethe: {0}")]
    Transport(String),
    #[error("unexpected answer from Lethe: {0}")]
    Decode(String),
    #[error("a batch holds at most {MAX_BATCH} items")]
    BatchTooLarge,
}

/// Why one field could not be encrypted or decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The subject's keys were destroyed: the data is erased for good.
    #[error("erased: {0}")]
    Erased(String),
    #[error("the ciphertext was modified, or belongs to another subject or field")]
    Tampered,
    #[error("no key opens this ciphertext for this subject")]
    UnknownKey,
    #[error("{code}: {detail}")]
    Other { code: String, detail: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct EncryptItem<'a> {
    pub subject_id: &'a str,
    pub field: &'a str,
    pub plaintext: &'a str,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecryptItem<'a> {
    pub subject_id: &'a str,
    pub field: &'a str,
    pub ciphertext: &'a str,
}

#[derive(Deserialize)]
struct ItemError {
    code: String,
    detail: String,
}

#[derive(Deserialize)]
struct ItemResult {
    ciphertext: Option<String>,
    plaintext: Option<String>,
    error: Option<ItemError>,
}

#[derive(Deserialize)]
struct Batch {
    items: Vec<ItemResult>,
}

#[derive(Deserialize)]
struct Problem {
    title: Option<String>,
    detail: Option<String>,
    field: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    pub fn new(base_url: &str, api_key: &str) -> Result<Self, ClientError> {
        // https needs a TLS crypto provider; install ring unless the
        // application installed one already (then this is a no-op).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            key: api_key.to_owned(),
        })
    }

    async fn post<B: Serialize, T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(body)
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.without_url().to_string()))?;
        decode(r).await
    }

    /// Encrypts each field for its subject; per-item results in order.
    pub async fn encrypt(
        &self,
        items: &[EncryptItem<'_>],
    ) -> Result<Vec<Result<String, FieldError>>, ClientError> {
        if items.len() > MAX_BATCH {
            return Err(ClientError::BatchTooLarge);
        }
        let b: Batch = self
            .post("/v1/vault/encrypt", &serde_json::json!({ "items": items }))
            .await?;
        Ok(b.items
            .into_iter()
            .map(|i| result(i.ciphertext, i.error))
            .collect())
    }

    /// Decrypts each field; an erased subject gives [`FieldError::Erased`].
    pub async fn decrypt(
        &self,
        items: &[DecryptItem<'_>],
    ) -> Result<Vec<Result<String, FieldError>>, ClientError> {
        if items.len() > MAX_BATCH {
            return Err(ClientError::BatchTooLarge);
        }
        let b: Batch = self
            .post("/v1/vault/decrypt", &serde_json::json!({ "items": items }))
            .await?;
        Ok(b.items
            .into_iter()
            .map(|i| result(i.plaintext, i.error))
            .collect())
    }

    /// Blind indexes of values of one kind (`phone`, `id_number`...).
    pub async fn blind_index(
        &self,
        kind: &str,
        values: &[&str],
    ) -> Result<Vec<String>, ClientError> {
        if values.len() > MAX_BATCH {
            return Err(ClientError::BatchTooLarge);
        }
        #[derive(Deserialize)]
        struct R {
            indexes: Vec<String>,
        }
        let items: Vec<_> = values
            .iter()
            .map(|v| serde_json::json!({ "kind": kind, "value": v }))
            .collect();
        let r: R = self
            .post(
                "/v1/vault/blind-index",
                &serde_json::json!({ "items": items }),
            )
            .await?;
        Ok(r.indexes)
    }

    /// A case as JSON (state, next step, blockers, consequences...).
    pub async fn case(&self, id: &str) -> Result<serde_json::Value, ClientError> {
        let r = self
            .http
            .get(format!("{}/v1/cases/{id}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.without_url().to_string()))?;
        decode(r).await
    }
}

fn result(value: Option<String>, error: Option<ItemError>) -> Result<String, FieldError> {
    match (value, error) {
        (Some(v), None) => Ok(v),
        (_, Some(e)) => Err(match e.code.as_str() {
            "erased" => FieldError::Erased(e.detail),
            "tampered" => FieldError::Tampered,
            "unknown_key" => FieldError::UnknownKey,
            _ => FieldError::Other {
                code: e.code,
                detail: e.detail,
            },
        }),
        (None, None) => Err(FieldError::Other {
            code: "empty".into(),
            detail: "the server returned neither a value nor an error".into(),
        }),
    }
}

async fn decode<T: for<'de> Deserialize<'de>>(r: reqwest::Response) -> Result<T, ClientError> {
    let status = r.status().as_u16();
    let bytes = r
        .bytes()
        .await
        .map_err(|e| ClientError::Transport(e.without_url().to_string()))?;
    if !(200..300).contains(&status) {
        let p: Problem = serde_json::from_slice(&bytes).unwrap_or(Problem {
            title: None,
            detail: None,
            field: None,
        });
        return Err(ClientError::Refused {
            status,
            title: p.title.unwrap_or_else(|| "error".into()),
            detail: p.detail.unwrap_or_default(),
            field: p.field,
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
}
