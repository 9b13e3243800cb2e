//! Check providers and settlement instructions: the platform's signed HTTP
//! endpoints. Requests and answers are both signed (Standard Webhooks
//! headers, HMAC-SHA256); an unsigned or wrongly signed answer is refused,
//! so a check is never skipped on a forged "all clear".

use lethe_domain::asset::{Asset, AssetKind};
use lethe_domain::{Blocker, MinorUnits};
use serde::Deserialize;

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
    lethe_connect::http::signed_call(http, name, url, secret, timeout_ms, idempotency_key, body)
        .await
        .map(|a| a.body)
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
            crate::http::problem::redact_serde(&e.to_string())
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
