//! Authentication, rate limiting, idempotency and request ids.

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::time::Instant;

use crate::AppState;
use crate::http::problem::Problem;

/// The authenticated platform (the API key's name).
#[derive(Debug, Clone)]
pub struct Principal(pub String);

/// The idempotency key of a POST, for the handler to store in its own
/// transaction.
#[derive(Debug, Clone)]
pub struct IdemKey {
    pub principal: String,
    pub key: String,
    pub request_hash: String,
}

/// Set on a response whose idempotency record the handler already stored.
#[derive(Debug, Clone, Copy)]
pub struct IdemStored;

/// The client's address on a public route: the connection's own, unless
/// it comes from a trusted reverse proxy; then the rightmost address of
/// `X-Forwarded-For` that is not itself a trusted proxy (the leftmost ones
/// are the client's word, which anyone can write).
pub fn client_address(
    trusted: &[std::net::IpAddr],
    headers: &axum::http::HeaderMap,
    peer: std::net::IpAddr,
) -> std::net::IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let mut hops: Vec<std::net::IpAddr> = vec![];
    for v in headers.get_all("x-forwarded-for").iter().take(8) {
        let Ok(v) = v.to_str() else { return peer };
        for part in v.split(',').take(32) {
            match part.trim().parse() {
                Ok(ip) => hops.push(ip),
                // A malformed hop: nothing left of it can be trusted.
                Err(_) => hops.clear(),
            }
        }
    }
    hops.into_iter()
        .rev()
        .find(|ip| !trusted.contains(ip))
        .unwrap_or(peer)
}

pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn unauthorized(detail: &str) -> Response {
    let mut r = Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Not authenticated",
        detail,
    )
    .field("Authorization")
    .fix("send the header `Authorization: Bearer <API key>` with a live key (lethe apikey create)")
    .into_response();
    r.headers_mut()
        .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    r
}

pub async fn auth(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(value) = req.headers().get("authorization") else {
        return unauthorized("the Authorization header is missing");
    };
    let Some(key) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) else {
        return unauthorized("the Authorization header is not of the form `Bearer <key>`");
    };
    if key.is_empty() || key.len() > 200 {
        return unauthorized("the API key is not valid");
    }
    let hash = hash_api_key(key.trim());
    let name = match st.keys.get(&hash) {
        Some(n) => n,
        None => match st.store.api_key_name(&hash).await {
            Ok(Some(n)) => {
                st.keys.put(hash, n.clone());
                n
            }
            Ok(None) => return unauthorized("the API key is not valid or was revoked"),
            Err(e) => return Problem::from(e).into_response(),
        },
    };
    if let Err(wait) = st.limiter.check(&name) {
        return Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            "this API key is over its request rate",
        )
        .fix("slow down, or raise limits.rate_per_second")
        .retry_after(wait)
        .into_response();
    }
    req.extensions_mut().insert(Principal(name));
    next.run(req).await
}

fn valid_idem_key(k: &str) -> bool {
    (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic())
}

/// Every POST carries an `Idempotency-Key`. A repeat with the same body gets
/// the stored response; a repeat with another body is refused.
/// The `Idempotency-Key` header every POST needs.
pub fn idem_key_of(headers: &axum::http::HeaderMap) -> Result<String, Problem> {
    match headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        Some(k) if valid_idem_key(k) => Ok(k.to_owned()),
        Some(_) => Err(Problem::bad_request(
            "idempotency",
            "the Idempotency-Key header is not valid",
        )
        .field("Idempotency-Key")
        .fix("use 1 to 255 visible ASCII characters, for example a UUID")),
        None => Err(Problem::bad_request(
            "idempotency",
            "every POST needs an Idempotency-Key header",
        )
        .field("Idempotency-Key")
        .fix("add `Idempotency-Key: <a new UUID>`; repeat the same key to retry safely")),
    }
}

pub async fn idempotency(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let principal = match req.extensions().get::<Principal>() {
        Some(p) => p.0.clone(),
        None => return unauthorized("not authenticated"),
    };
    let key = match idem_key_of(req.headers()) {
        Ok(k) => k,
        Err(p) => return p.into_response(),
    };
    // A route with a larger body limit of its own says so (purges).
    let limit = req
        .extensions()
        .get::<BodyLimit>()
        .map_or(st.limits.body_bytes, |l| l.0);
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return too_large(Some(limit)),
    };
    let request_hash = st
        .secrets
        .request_hash(parts.method.as_str(), parts.uri.path(), &bytes);
    // The case a response is about, so its erasure removes the record.
    let case_id = parts
        .uri
        .path()
        .strip_prefix("/v1/cases/")
        .and_then(|rest| rest.split('/').next())
        .filter(|id| lethe_domain::CaseId::parse(id).is_ok())
        .map(str::to_owned);
    match st.store.idem_get(&principal, &key).await {
        Ok(Some(rec)) => {
            if rec.request_hash != request_hash {
                return Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-mismatch", "Idempotency key reused", "this Idempotency-Key was used for a different request")
                    .field("Idempotency-Key")
                    .fix("use a new key for a new request; a retry must repeat the original request exactly")
                    .into_response();
            }
            let status = StatusCode::from_u16(rec.status).unwrap_or(StatusCode::OK);
            let mut r = (status, rec.body).into_response();
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            r.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return r;
        }
        Ok(None) => {}
        Err(e) => return Problem::from(e).into_response(),
    }
    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(IdemKey {
        principal: principal.clone(),
        key: key.clone(),
        request_hash: request_hash.clone(),
    });
    let resp = next.run(req).await;
    if resp.extensions().get::<IdemStored>().is_some() || !resp.status().is_success() {
        return resp;
    }
    // A POST that changed no case (demo clock): store its response now.
    let (parts, body) = resp.into_parts();
    let bytes: Bytes = match to_bytes(body, 4 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => return Problem::internal().into_response(),
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if let Err(e) = st
        .store
        .idem_put(
            principal,
            key,
            request_hash,
            parts.status.as_u16(),
            text,
            case_id,
        )
        .await
    {
        return Problem::from(e).into_response();
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The body limit of a route that accepts more than `limits.body_bytes`
/// (set with its `DefaultBodyLimit`), for the idempotency layer that reads
/// the body first.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

pub fn too_large(limit: Option<usize>) -> Response {
    let detail = match limit {
        Some(l) => format!("the body is larger than {l} bytes"),
        None => "the body is larger than this server accepts".to_owned(),
    };
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        "Request body too large",
        detail,
    )
    .fix("send a smaller body")
    .into_response()
}

/// Gives each request an id (or keeps the caller's `x-request-id`), logs
/// method, route, status and duration, never the body or query values.
pub async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let span = tracing::info_span!("request", request_id = %id, %method, route = %route);
    let mut resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    let status = resp.status().as_u16();
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(
                status,
                ms = started.elapsed().as_millis() as u64,
                "request failed"
            );
        } else {
            tracing::debug!(status, ms = started.elapsed().as_millis() as u64, "request");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Every answer carries a Content-Security-Policy that forbids framing
/// (pages set their own; the API documentation gets one that lets Swagger
/// UI run from this origin; everything else, JSON and the receipt and
/// report documents, one that loads nothing), and a body refused as too
/// large is answered as a problem document like every other error.
pub async fn security_headers(req: Request, next: Next) -> Response {
    use axum::http::header;
    let docs = req.uri().path().starts_with("/docs");
    let mut r = next.run(req).await;
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE
        && r.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|t| !t.starts_with("application/problem+json"))
    {
        r = Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Request body too large",
            "the request body is larger than this endpoint accepts",
        )
        .fix("send a smaller body (see the limits in docs/configuration.md)")
        .into_response();
    }
    let h = r.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(if docs {
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
            } else {
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
            }),
        );
    }
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    h.entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    r
}

/// A per-address rate limit for the public routes (they have no key).
pub fn limited(
    st: &AppState,
    headers: &HeaderMap,
    peer: std::net::SocketAddr,
) -> Result<(), Problem> {
    let ip = client_address(&st.limits.trusted_proxies, headers, peer.ip());
    st.limiter.check(&format!("public:{ip}")).map_err(|wait| {
        Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            "this address is over its request rate",
        )
        .retry_after(wait)
        .fix("slow down")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::limits::RateLimiter;

    #[test]
    fn the_client_address_is_forwarded_only_by_trusted_proxies() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let proxy = ip("10.0.0.1");
        let mut h = axum::http::HeaderMap::new();
        h.insert("x-forwarded-for", "9.9.9.9, 1.2.3.4".parse().unwrap());
        // From anyone else the header is the caller's word: ignored.
        assert_eq!(client_address(&[proxy], &h, ip("5.5.5.5")), ip("5.5.5.5"));
        assert_eq!(client_address(&[], &h, proxy), proxy);
        // From the proxy: the rightmost hop it saw, not the spoofable left.
        assert_eq!(client_address(&[proxy], &h, proxy), ip("1.2.3.4"));
        // Two proxies in a row: skip the trusted one.
        h.insert(
            "x-forwarded-for",
            "9.9.9.9, 1.2.3.4, 10.0.0.2".parse().unwrap(),
        );
        assert_eq!(
            client_address(&[proxy, ip("10.0.0.2")], &h, proxy),
            ip("1.2.3.4")
        );
        // Garbage, or no header: the proxy's own address.
        h.insert("x-forwarded-for", "nonsense".parse().unwrap());
        assert_eq!(client_address(&[proxy], &h, proxy), proxy);
        assert_eq!(
            client_address(&[proxy], &axum::http::HeaderMap::new(), proxy),
            proxy
        );
    }

    #[test]
    fn the_rate_limiter_allows_the_burst_then_refuses() {
        let l = RateLimiter::new(1, 3);
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        assert_eq!(l.check("a"), Err(1));
        // Another key has its own bucket.
        assert!(l.check("b").is_ok());
    }

    #[test]
    fn idempotency_keys_are_bounded_visible_ascii() {
        assert!(valid_idem_key("0b7c1e4e-2f7a-4a53-9a55-4d3b3f0e9d0c"));
        assert!(!valid_idem_key(""));
        assert!(!valid_idem_key("has space"));
        assert!(!valid_idem_key(&"x".repeat(256)));
    }
}
