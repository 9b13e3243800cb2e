//! The app's session assertion: a short-lived JWT (HS256 or EdDSA) with
//! proof of a fresh re-authentication (`auth_time`). Only the configured
//! algorithm is accepted ("none" and algorithm switches are refused).

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;

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

impl Key {
    fn decoding(&self) -> Result<(Algorithm, DecodingKey), JwtError> {
        match self {
            Key::Hs256(secret) => Ok((Algorithm::HS256, DecodingKey::from_secret(secret))),
            Key::EdDsa(pk_hex) => {
                // The configured key is the raw Ed25519 public key in hex;
                // the JWK form wants it in base64url.
                let raw = hex::decode(pk_hex.trim()).map_err(|_| JwtError::Signature)?;
                let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
                let key = DecodingKey::from_ed_components(&x).map_err(|_| JwtError::Signature)?;
                Ok((Algorithm::EdDSA, key))
            }
        }
    }
}

/// Verifies a session token for `subject` at `now`; returns its claims.
///
/// The `jsonwebtoken` crate parses the token, pins the algorithm to the
/// configured key's (so "none" and algorithm switches fail), checks the
/// signature, the audience and the subject. The times are checked here
/// against `now` (Lethe's clock, which the demo moves), not the system
/// clock: expiry, lifetime, freshness, and no `iat` or `auth_time` ahead.
pub fn verify(token: &str, key: &Key, subject: &str, now: i64) -> Result<Claims, JwtError> {
    if token.len() > 8192 {
        return Err(JwtError::Malformed);
    }
    let (alg, decoding) = key.decoding()?;
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.set_audience(&["lethe"]);
    v.sub = Some(subject.to_owned());
    v.set_required_spec_claims(&["exp", "aud", "sub"]);
    let c = match decode::<Claims>(token, &decoding, &v) {
        Ok(d) => d.claims,
        Err(e) => {
            return Err(match e.kind() {
                ErrorKind::InvalidSignature => JwtError::Signature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    JwtError::Algorithm(match key {
                        Key::Hs256(_) => "HS256",
                        Key::EdDsa(_) => "EdDSA",
                    })
                }
                ErrorKind::InvalidAudience => JwtError::Audience,
                ErrorKind::InvalidSubject => JwtError::Subject,
                ErrorKind::MissingRequiredClaim(c) => JwtError::Missing(match c.as_str() {
                    "exp" => "exp",
                    "aud" => "aud",
                    _ => "sub",
                }),
                _ => JwtError::Malformed,
            });
        }
    };
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
    if now.saturating_sub(auth_time) > FRESH_AUTH_SECS {
        return Err(JwtError::NotFresh);
    }
    Ok(c)
}

/// Builds an HS256 token (for tests and the demo's "try this").
pub fn sign_hs256(secret: &[u8], claims: &serde_json::Value) -> String {
    // Encoding a JSON value with an HMAC key does not fail.
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap_or_default()
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
        // An EdDSA token of the configured key verifies; one of another
        // key does not.
        let signer = lethe_ledger::Signer::from_seed(&[1; 32]);
        let ed_token = |signer: &lethe_ledger::Signer| {
            let signed = format!(
                "{}.{}",
                e(br#"{"alg":"EdDSA","typ":"JWT"}"#),
                e(claims(now).to_string().as_bytes())
            );
            let sig = base64::engine::general_purpose::STANDARD
                .decode(signer.sign(signed.as_bytes()))
                .unwrap();
            format!("{signed}.{}", e(&sig))
        };
        let ed = Key::EdDsa(signer.public_key_hex());
        assert!(verify(&ed_token(&signer), &ed, "42", now).is_ok());
        assert_eq!(
            verify(
                &ed_token(&lethe_ledger::Signer::from_seed(&[2; 32])),
                &ed,
                "42",
                now
            )
            .unwrap_err(),
            JwtError::Signature
        );
        assert_eq!(
            verify(&ed_token(&signer), &k, "42", now).unwrap_err(),
            JwtError::Algorithm("HS256")
        );
        assert_eq!(
            verify(&sign_hs256(b"secret", &claims(now)), &ed, "42", now).unwrap_err(),
            JwtError::Algorithm("EdDSA")
        );
    }
}
