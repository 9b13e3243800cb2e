//! Outbound webhooks, signed as Standard Webhooks: `webhook-id`,
//! `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">` under the secret (`whsec_<base64>`).
//! Deliveries are retried with backoff; after the last attempt a
//! notification is dead and listed at GET /v1/notifications?state=dead.

use jiff::SignedDuration;
use std::time::Duration;
use tokio::sync::watch;

use crate::AppState;

/// Notifications sent per round at most.
/// Notifications claimed at a time (delivered one after the other).
const BATCH: u32 = 20;

pub use lethe_connect::http::{secret_bytes, sign, sign_all};

/// Replay window for inbound callbacks.
pub const REPLAY_WINDOW_SECS: i64 = 300;

/// Accepts an inbound signed callback once: the signature must verify
/// (401 otherwise) and its webhook-id must be new in `scope` (409 for a
/// replay). Returns the webhook-id.
pub async fn accept_callback(
    st: &AppState,
    secret: &str,
    headers: &axum::http::HeaderMap,
    body: &[u8],
    scope: &str,
) -> Result<String, crate::http::problem::Problem> {
    use crate::http::problem::Problem;
    let now = jiff::Timestamp::now();
    let id = verify_inbound(secret, headers, body, now.as_second()).map_err(|e| {
        Problem::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "callback-signature",
            "Callback refused",
            e,
        )
        .field("webhook-signature")
    })?;
    if !st
        .store
        .first_callback(format!("{scope}:{id}"), now)
        .await?
    {
        return Err(Problem::conflict(
            "replayed",
            "this callback (webhook-id) was already received",
        )
        .field("webhook-id"));
    }
    Ok(id)
}

/// Verifies an inbound signed callback; returns its webhook-id. Several
/// signatures may be sent (space separated) during a secret rotation.
pub fn verify_inbound(
    secret: &str,
    headers: &axum::http::HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<String, String> {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (Some(id), Some(ts), Some(sig)) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    ) else {
        return Err("the callback is not signed (webhook-id, webhook-timestamp and webhook-signature are required)".into());
    };
    let ts: i64 = ts
        .parse()
        .map_err(|_| "webhook-timestamp is not a number".to_owned())?;
    if now.abs_diff(ts) > REPLAY_WINDOW_SECS.unsigned_abs() {
        return Err(format!(
            "webhook-timestamp is outside the {REPLAY_WINDOW_SECS} s window"
        ));
    }
    // During a rotation the setting holds two secrets: either one verifies.
    if lethe_connect::http::signature_ok(secret, &id, ts, body, &sig) {
        Ok(id)
    } else {
        Err("the signature is invalid".into())
    }
}

pub async fn deliver_loop(st: AppState, mut shutdown: watch::Receiver<bool>) {
    // The configured endpoint; in the demo without one, the demo
    // platform's (it freezes, restores and resumes renewals as told).
    let (url, secrets) = match (&st.notifications.url, st.demo_platform.get()) {
        (Some(u), _) => (
            u.clone(),
            std::env::var(&st.notifications.secret_env).unwrap_or_default(),
        ),
        (None, Some(d)) => (d.notifications(), d.secret.clone()),
        (None, None) => return,
    };
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(st.notifications.timeout_secs))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook client");
            return;
        }
    };
    // A claimed batch is this instance's for as long as delivering all of it
    // can take; then another instance may deliver what is left.
    let lease = SignedDuration::from_secs(
        i64::try_from(
            st.notifications
                .timeout_secs
                .saturating_mul(u64::from(BATCH)),
        )
        .unwrap_or(i64::MAX / 2)
        .saturating_add(30),
    );
    loop {
        if *shutdown.borrow() {
            return;
        }
        let due = st
            .store
            .notifications_due(lethe_store::now_wall(), BATCH, lease)
            .await
            .unwrap_or_default();
        for n in &due {
            let body = serde_json::json!({ "type": n.kind, "timestamp": n.created_at.to_string(), "data": n.payload }).to_string();
            let id = format!("msg_{}", n.id);
            let ts = lethe_store::now_wall().as_second();
            let res = http
                .post(&url)
                .header("content-type", "application/json")
                .header("webhook-id", &id)
                .header("webhook-timestamp", ts.to_string())
                .header(
                    "webhook-signature",
                    sign_all(&secrets, &id, ts, body.as_bytes()),
                )
                .body(body)
                .send()
                .await;
            let outcome = match res {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("the endpoint answered {}", r.status().as_u16())),
                Err(e) => Err(format!("delivery failed: {}", e.without_url())),
            };
            let attempt = n.attempts + 1;
            let retry_at = if outcome.is_err() && attempt < st.notifications.max_attempts {
                let secs = 1i64
                    .checked_shl(attempt.min(20))
                    .unwrap_or(i64::MAX)
                    .min(3600);
                lethe_store::now_wall()
                    .checked_add(SignedDuration::from_secs(secs))
                    .ok()
            } else {
                None
            };
            if let Err(e) = &outcome {
                st.metrics.webhook_failure();
                tracing::warn!(notification = n.id, kind = %n.kind, attempt, error = %e, "webhook delivery failed");
            }
            if let Err(e) = st.store.notification_attempt(n.id, outcome, retry_at).await {
                tracing::error!(error = %e, "recording a delivery failed");
            }
        }
        if due.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_extreme_timestamp_is_refused_not_overflowed() {
        // Found by the webhook fuzz target: i64::MIN + 1 once overflowed.
        let mut h = axum::http::HeaderMap::new();
        h.insert("webhook-id", "".parse().unwrap());
        h.insert(
            "webhook-timestamp",
            "-000000000000009223372036854775807".parse().unwrap(),
        );
        h.insert("webhook-signature", "".parse().unwrap());
        assert!(
            super::verify_inbound("whsec_c2VjcmV0", &h, b"", 1_700_000_000)
                .unwrap_err()
                .contains("window")
        );
    }

    #[test]
    fn two_secrets_sign_twice_and_either_verifies() {
        let both = "whsec_bmV3LXNlY3JldA== whsec_b2xkLXNlY3JldA==";
        let header = super::sign_all(both, "msg_1", 1_700_000_000, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        let mut h = axum::http::HeaderMap::new();
        h.insert("webhook-id", "msg_1".parse().unwrap());
        h.insert("webhook-timestamp", "1700000000".parse().unwrap());
        h.insert(
            "webhook-signature",
            super::sign_all("whsec_b2xkLXNlY3JldA==", "msg_1", 1_700_000_000, b"{}")
                .parse()
                .unwrap(),
        );
        assert!(
            super::verify_inbound(both, &h, b"{}", 1_700_000_000).is_ok(),
            "a sender still on the old secret verifies"
        );
        assert!(super::verify_inbound("whsec_b3RoZXI=", &h, b"{}", 1_700_000_000).is_err());
    }

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example from the Standard Webhooks specification.
        let key = super::secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            super::sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
