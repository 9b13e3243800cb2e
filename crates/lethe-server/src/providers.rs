//! Check providers and settlement instructions: the platform's signed HTTP
//! endpoints. Requests and answers are both signed (Standard Webhooks
//! headers, HMAC-SHA256); an unsigned or wrongly signed answer is refused,
//! so a check is never skipped on a forged "all clear".

use lethe_domain::asset::{Asset, AssetKind};
use lethe_domain::{Blocker, MinorUnits};
use serde::Deserialize;
use std::time::Duration;

use crate::webhook::{secret_bytes, sign};

/// Answers older or newer than this are refused (replay window).
const REPLAY_WINDOW_SECS: i64 = 300;
/// Largest answer read from a provider.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// POSTs a signed JSON body and returns the verified JSON answer.
pub async fn signed_call(
    http: &reqwest::Client,
    name: &str,
    url: &str,
    secret: &str,
    timeout_ms: u64,
    idempotency_key: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let payload = body.to_string();
    let id = format!("msg_{idempotency_key}");
    let ts = jiff::Timestamp::now().as_second();
    let resp = http
        .post(url)
        .timeout(Duration::from_millis(timeout_ms))
        .header("content-type", "application/json")
        .header("idempotency-key", idempotency_key)
        .header("webhook-id", &id)
        .header("webhook-timestamp", ts.to_string())
        .header(
            "webhook-signature",
            crate::webhook::sign_all(secret, &id, ts, payload.as_bytes()),
        )
        .body(payload)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                format!("{name} did not answer within {timeout_ms} ms")
            } else {
                format!("{name} could not be reached")
            }
        })?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp
        .bytes()
        .await
        .map_err(|_| format!("{name}: the answer could not be read"))?;
    if bytes.len() > MAX_ANSWER_BYTES {
        return Err(format!(
            "{name}: the answer is larger than {MAX_ANSWER_BYTES} bytes"
        ));
    }
    if !(200..300).contains(&status) {
        return Err(format!("{name} answered HTTP {status}"));
    }
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (Some(rid), Some(rts), Some(rsig)) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    ) else {
        return Err(format!(
            "{name}: the answer is not signed (webhook-id, webhook-timestamp and webhook-signature are required)"
        ));
    };
    let rts: i64 = rts
        .parse()
        .map_err(|_| format!("{name}: the answer's webhook-timestamp is not a number"))?;
    if jiff::Timestamp::now().as_second().abs_diff(rts) > REPLAY_WINDOW_SECS.unsigned_abs() {
        return Err(format!(
            "{name}: the answer's timestamp is outside the {REPLAY_WINDOW_SECS} s window"
        ));
    }
    let expected: Vec<String> = secret
        .split_whitespace()
        .take(2)
        .map(|k| sign(&secret_bytes(k), &rid, rts, &bytes))
        .collect();
    let ok = rsig.split(' ').any(|s| {
        expected
            .iter()
            .any(|e| subtle::ConstantTimeEq::ct_eq(s.as_bytes(), e.as_bytes()).into())
    });
    if !ok {
        return Err(format!("{name}: the answer's signature is invalid"));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{name}: the answer is not valid JSON ({})",
            crate::problem::redact_serde(&e.to_string())
        )
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderAnswer {
    #[serde(default)]
    blockers: Vec<ProviderBlocker>,
    #[serde(default)]
    assets: Vec<ProviderAsset>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderBlocker {
    code: String,
    message_zh: String,
    message_en: String,
    #[serde(default)]
    items: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderAsset {
    id: String,
    kind: String,
    label: Option<String>,
    amount_minor: Option<i64>,
    quantity: Option<u64>,
    period_start: Option<jiff::civil::Date>,
    period_end: Option<jiff::civil::Date>,
    #[serde(default)]
    auto_renew: bool,
}

/// Asks one provider for the subject's blockers and assets.
pub async fn check(
    http: &reqwest::Client,
    p: &lethe_connect::datamap::Provider,
    subject: &str,
    case_id: &str,
) -> Result<(Vec<Blocker>, Vec<Asset>), String> {
    let name = format!("provider {}", p.name);
    let url = std::env::var(&p.url_env).map_err(|_| format!("{name}: {} is not set", p.url_env))?;
    let secret =
        std::env::var(&p.secret_env).map_err(|_| format!("{name}: {} is not set", p.secret_env))?;
    let v = signed_call(
        http,
        &name,
        &url,
        &secret,
        p.timeout_ms,
        &format!("check-{case_id}-{}", p.name),
        &serde_json::json!({ "subject_id": subject, "case_id": case_id }),
    )
    .await?;
    let a: ProviderAnswer = serde_json::from_value(v).map_err(|e| {
        format!(
            "{name}: the answer does not match the provider schema ({})",
            crate::problem::redact_serde(&e.to_string())
        )
    })?;
    if a.blockers.len() > 100 || a.assets.len() > 500 {
        return Err(format!("{name}: too many blockers or assets in one answer"));
    }
    let blockers = a
        .blockers
        .into_iter()
        .map(|b| Blocker {
            code: b.code,
            system: p.name.to_string(),
            message_zh: b.message_zh,
            message_en: b.message_en,
            items: b.items.into_iter().take(50).collect(),
        })
        .collect();
    let mut assets = vec![];
    for x in a.assets {
        let kind = AssetKind::parse(&x.kind)
            .ok_or_else(|| format!("{name}: unknown asset kind '{}'", x.kind))?;
        let amount = x
            .amount_minor
            .map(MinorUnits::new)
            .transpose()
            .map_err(|e| format!("{name}: asset {}: amount_minor {e}", x.id))?;
        assets.push(Asset {
            id: x.id,
            kind,
            source: p.name.to_string(),
            label: x.label.unwrap_or_else(|| kind.as_str().into()),
            amount,
            quantity: x.quantity,
            period_start: x.period_start,
            period_end: x.period_end,
            auto_renew: x.auto_renew,
            settlement: None,
        });
    }
    Ok((blockers, assets))
}
