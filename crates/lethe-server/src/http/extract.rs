//! Request extractors that answer bad input with a problem naming the field
//! and what to send instead, never with axum's plain-text rejections.

use axum::Extension;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use lethe_domain::CaseId;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::http::middleware::IdemKey;
use crate::http::problem::{Problem, redact_serde};

/// JSON body extractor that answers with problem+json naming the field.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct_ok = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !ct_ok {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "media-type",
                "JSON expected",
                "the body must be JSON",
            )
            .field("Content-Type")
            .fix("send `Content-Type: application/json`")
            .into_response());
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    crate::http::middleware::too_large(None)
                } else {
                    Problem::bad_request("body", "the body could not be read").into_response()
                }
            })?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize::<_, T>(de) {
            Ok(v) => Ok(ApiJson(v)),
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let msg = redact_serde(&inner.to_string());
                let p = if inner.is_syntax() || inner.is_eof() {
                    Problem::bad_request(
                        "malformed-json",
                        format!("the body is not valid JSON: {msg}"),
                    )
                    .fix("send a well-formed JSON object")
                } else {
                    let field = if path == "." {
                        None
                    } else {
                        Some(path.clone())
                    };
                    let mut p = Problem::unprocessable(format!(
                        "{}: {msg}",
                        field.as_deref().unwrap_or("body")
                    ));
                    if let Some(f) = field {
                        p = p.field(f);
                    }
                    p.fix("see the request schema at /openapi.json")
                };
                Err(p.into_response())
            }
        }
    }
}

/// Query-string extractor that answers with problem+json (axum's own answers
/// in plain text), the message stripped of any value the client sent.
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::try_from_uri(&parts.uri) {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => {
                let msg = redact_serde(&e.body_text());
                Err(Problem::bad_request("query", msg)
                    .field("query")
                    .fix("see the parameters of this operation at /openapi.json")
                    .into_response())
            }
        }
    }
}

/// A case id from a request path.
pub fn parse_case_id(s: &str) -> Result<CaseId, Problem> {
    CaseId::parse(s).map_err(|e| {
        Problem::bad_request("case-id", format!("the case id in the path {e}")).field("id")
    })
}

/// What a handler of one case gets from the request: the shared state, the
/// caller (`Principal`, a platform's key; `Agent`, a signed-in agent), its
/// idempotency key (on the routes that take one) and the case id from the
/// path, not yet parsed. Extracting it never fails on a routed request, so
/// a handler still answers a bad body before a bad id; each resource's
/// `case()` parses the id and checks that the caller may reach the case
/// (another platform's case is not found).
pub struct CaseCall<C> {
    pub st: AppState,
    pub caller: C,
    pub key: Option<Extension<IdemKey>>,
    pub id: String,
}

impl<C> CaseCall<C> {
    /// A call the pages make on the caller's behalf (no idempotency key: a
    /// page's form is single use).
    pub fn new(st: AppState, caller: C, id: String) -> Self {
        Self {
            st,
            caller,
            key: None,
            id,
        }
    }
}

impl<C: Clone + Send + Sync + 'static> FromRequestParts<AppState> for CaseCall<C> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        let Path(id) = Path::<String>::from_request_parts(parts, st)
            .await
            .map_err(IntoResponse::into_response)?;
        let Extension(caller) = Extension::<C>::from_request_parts(parts, st)
            .await
            .map_err(IntoResponse::into_response)?;
        let key = parts.extensions.get::<IdemKey>().cloned().map(Extension);
        Ok(Self {
            st: st.clone(),
            caller,
            key,
            id,
        })
    }
}
