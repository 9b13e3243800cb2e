//! The app's session assertion: a short-lived JWT (HS256 or EdDSA) with
//! proof of a fresh re-authentication (`auth_time`). Only the configured
//! algorithm is accepted ("none" and algorithm switches are refused).

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// A token lives this long at most.
pub const MAX_LIFETIME_SECS: i64 = 600;
/// The re-authentication must be this recent.
pub const FRESH_AUTH_SECS: i64 = 300;
const SKEW_SECS: i64 = 60;

#[derive(Debug, Clone)]
pub enum Key {
    Hs256(Vec<u8>),
    EdDsa(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is not a JWT (three base64url parts)")]
    Malformed,
    #[error("the token's algorithm is not the configured one ({0})")]
    Algorithm(&'static str),
    #[error("the token's signature is invalid")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token lives longer than {MAX_LIFETIME_SECS} s; issue short-lived tokens")]
    TooLong,
    #[error("the token is not for Lethe (aud must be lethe)")]
    Audience,
    #[error("the token is for another account")]
    Subject,
    #[error(
        "the re-authentication is not fresh (auth_time older than {FRESH_AUTH_SECS} s); ask the user to re-enter the password or pass face verification in the app"
    )]
    NotFresh,
    #[error("the token misses the claim {0}")]
    Missing(&'static str),
    #[error(
        "the token's {0} is in the future (more than {SKEW_SECS} s ahead of Lethe's clock); check the issuer's clock"
    )]
    Future(&'static str),
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
}

#[derive(Debug, Deserialize)]
pub struct Claims {
    pub sub: Option<String>,
    pub aud: Option<serde_json::Value>,
    pub exp: Option<i64>,
    pub iat: Option<i64>,
    pub auth_time: Option<i64>,
    pub jti: Option<String>,
    #[serde(default)]
    pub amr: Vec<String>,
}

fn b64(s: &str) -> Result<Vec<u8>, JwtError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwtError::Malformed)
}

/// Verifies a session token for `subject` at `now`; returns its claims.
pub fn verify(token: &str, key: &Key, subject: &str, now: i64) -> Result<Claims, JwtError> {
    if token.len() > 8192 {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: Header = serde_json::from_slice(&b64(h)?).map_err(|_| JwtError::Malformed)?;
    let signed = format!("{h}.{p}");
    let sig = b64(sig)?;
    match key {
        Key::Hs256(secret) => {
            if header.alg != "HS256" {
                return Err(JwtError::Algorithm("HS256"));
            }
            let mut m =
                <Hmac<Sha256> as Mac>::new_from_slice(secret).map_err(|_| JwtError::Signature)?;
            m.update(signed.as_bytes());
            m.verify_slice(&sig).map_err(|_| JwtError::Signature)?;
        }
        Key::EdDsa(pk) => {
            if header.alg != "EdDSA" {
                return Err(JwtError::Algorithm("EdDSA"));
            }
            let b64sig = base64::engine::general_purpose::STANDARD.encode(&sig);
            if !lethe_ledger::verify_signature(pk, signed.as_bytes(), &b64sig) {
                return Err(JwtError::Signature);
            }
        }
    }
    let c: Claims = serde_json::from_slice(&b64(p)?).map_err(|_| JwtError::Malformed)?;
    let exp = c.exp.ok_or(JwtError::Missing("exp"))?;
    let iat = c.iat.ok_or(JwtError::Missing("iat"))?;
    let auth_time = c.auth_time.ok_or(JwtError::Missing("auth_time"))?;
    c.jti.as_ref().ok_or(JwtError::Missing("jti"))?;
    if now >= exp {
        return Err(JwtError::Expired);
    }
    // A time ahead of the clock is no proof of freshness: refused beyond
    // the skew allowed between the issuer's clock and Lethe's.
    if iat > now.saturating_add(SKEW_SECS) {
        return Err(JwtError::Future("iat"));
    }
    if auth_time > now.saturating_add(SKEW_SECS) {
        return Err(JwtError::Future("auth_time"));
    }
    if exp.saturating_sub(iat) > MAX_LIFETIME_SECS {
        return Err(JwtError::TooLong);
    }
    let aud_ok = match &c.aud {
        Some(serde_json::Value::String(a)) => a == "lethe",
        Some(serde_json::Value::Array(v)) => v.iter().any(|a| a == "lethe"),
        _ => false,
    };
    if !aud_ok {
        return Err(JwtError::Audience);
    }
    if c.sub.as_deref() != Some(subject) {
        return Err(JwtError::Subject);
    }
    if now.saturating_sub(auth_time) > FRESH_AUTH_SECS {
        return Err(JwtError::NotFresh);
    }
    Ok(c)
}

/// Builds an HS256 token (for tests and the demo's "try this").
pub fn sign_hs256(secret: &[u8], claims: &serde_json::Value) -> String {
    let e = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let signed = format!(
        "{}.{}",
        e(br#"{"alg":"HS256","typ":"JWT"}"#),
        e(claims.to_string().as_bytes())
    );
    // HMAC takes keys of any length: this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    m.update(signed.as_bytes());
    format!("{signed}.{}", e(&m.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64) -> serde_json::Value {
        serde_json::json!({"sub": "42", "aud": "lethe", "iat": now - 10, "exp": now + 290, "auth_time": now - 30, "jti": "j1"})
    }

    #[test]
    fn fresh_tokens_verify_and_every_flaw_is_named() {
        let k = Key::Hs256(b"secret".to_vec());
        let now = 1_800_000_000;
        assert!(verify(&sign_hs256(b"secret", &claims(now)), &k, "42", now).is_ok());
        assert_eq!(
            verify(&sign_hs256(b"other", &claims(now)), &k, "42", now).unwrap_err(),
            JwtError::Signature
        );
        assert_eq!(
            verify(&sign_hs256(b"secret", &claims(now)), &k, "43", now).unwrap_err(),
            JwtError::Subject
        );
        assert_eq!(
            verify(&sign_hs256(b"secret", &claims(now)), &k, "42", now + 400).unwrap_err(),
            JwtError::Expired
        );
        let mut stale = claims(now);
        // A re-authentication "in the future" is not fresh either.
        let mut ahead = claims(now);
        ahead["auth_time"] = serde_json::json!(now + 86_400 * 365);
        assert_eq!(
            verify(&sign_hs256(b"secret", &ahead), &k, "42", now).unwrap_err(),
            JwtError::Future("auth_time")
        );
        let mut ahead = claims(now);
        ahead["iat"] = serde_json::json!(now + 3600);
        ahead["exp"] = serde_json::json!(now + 3700);
        assert_eq!(
            verify(&sign_hs256(b"secret", &ahead), &k, "42", now).unwrap_err(),
            JwtError::Future("iat")
        );
        stale["auth_time"] = serde_json::json!(now - 3600);
        assert_eq!(
            verify(&sign_hs256(b"secret", &stale), &k, "42", now).unwrap_err(),
            JwtError::NotFresh
        );
        let mut long = claims(now);
        long["exp"] = serde_json::json!(now + 86_400);
        assert_eq!(
            verify(&sign_hs256(b"secret", &long), &k, "42", now).unwrap_err(),
            JwtError::TooLong
        );
        let mut aud = claims(now);
        aud["aud"] = serde_json::json!("another-service");
        assert_eq!(
            verify(&sign_hs256(b"secret", &aud), &k, "42", now).unwrap_err(),
            JwtError::Audience
        );
        // alg "none" and an algorithm switch are refused.
        let e = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let none = format!(
            "{}.{}.",
            e(br#"{"alg":"none"}"#),
            e(claims(now).to_string().as_bytes())
        );
        assert!(matches!(
            verify(&none, &k, "42", now),
            Err(JwtError::Algorithm(_)) | Err(JwtError::Malformed)
        ));
        assert_eq!(
            verify("a.b", &k, "42", now).unwrap_err(),
            JwtError::Malformed
        );
        let ed = Key::EdDsa(lethe_ledger::Signer::from_seed(&[1; 32]).public_key_hex());
        assert_eq!(
            verify(&sign_hs256(b"secret", &claims(now)), &ed, "42", now).unwrap_err(),
            JwtError::Algorithm("EdDSA")
        );
    }
}
