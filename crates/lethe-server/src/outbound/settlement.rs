//! Settlement instructions as the platform (or the asset's provider)
//! receives them, and where they go.

use crate::AppState;

/// A settlement instruction as the platform receives it. With the subject
/// it is the first sending (the transfer target and whether to end the
/// auto-renewal with it); without, it is a re-send after erasure, which
/// the platform answers from its record of that instruction id.
pub fn instruction_body(
    case: lethe_domain::CaseId,
    asset: &lethe_domain::asset::Asset,
    s: &lethe_domain::asset::Settlement,
    subject: Option<&str>,
) -> serde_json::Value {
    let mut body = serde_json::json!({
        "instruction_id": s.instruction_id,
        "case_id": case.to_string(),
        "asset": { "id": asset.id, "kind": asset.kind.as_str(), "label": asset.label, "source": asset.source },
        "option": s.option.as_str(),
        "amount_minor": s.amount.map(|m| m.get()),
        "currency": "CNY",
    });
    match subject {
        Some(subject) => {
            body["subject_id"] = serde_json::json!(subject);
            body["transfer_to"] =
                serde_json::json!(s.transfer_to.as_ref().map(|t| t.expose().to_owned()));
            body["cancel_auto_renewal"] =
                serde_json::json!(asset.kind == lethe_domain::asset::AssetKind::Subscription);
        }
        None => body["resend"] = serde_json::json!(true),
    }
    body
}

/// Where the settlement instruction of an asset from `source` goes: its
/// provider's settlement endpoint, else the platform's (URL, secret,
/// timeout in ms).
pub fn settlement_endpoint(st: &AppState, source: &str) -> Result<(String, String, u64), String> {
    match st
        .datamap
        .providers
        .iter()
        .find(|p| p.name.as_str() == source && p.settlement_url_env.is_some())
    {
        Some(p) => {
            let env = p.settlement_url_env.as_deref().unwrap_or_default();
            let url = std::env::var(env).map_err(|_| format!("{env} is not set"))?;
            let secret =
                std::env::var(&p.secret_env).map_err(|_| format!("{} is not set", p.secret_env))?;
            Ok((url, secret, p.timeout_ms))
        }
        None => settlement_target(st),
    }
}

fn settlement_target(st: &AppState) -> Result<(String, String, u64), String> {
    if let Some(d) = st.demo_platform.get() {
        return Ok((d.settlements(), d.secret.clone(), 5000));
    }
    let t = st
        .datamap
        .settlement
        .as_ref()
        .ok_or("no settlement endpoint is configured ([settlement] in the data map)")?;
    let url = std::env::var(&t.url_env).map_err(|_| format!("{} is not set", t.url_env))?;
    let secret =
        std::env::var(&t.secret_env).map_err(|_| format!("{} is not set", t.secret_env))?;
    Ok((url, secret, t.timeout_ms))
}

/// Sends one settlement instruction, signed, to `endpoint` (from
/// [`settlement_endpoint`]) with its instruction id as the Idempotency-Key,
/// the first time and on every re-send, and returns the platform's signed
/// answer.
pub async fn send(
    st: &AppState,
    endpoint: &(String, String, u64),
    instruction_id: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let (url, secret, timeout) = endpoint;
    crate::outbound::providers::signed_call(
        &st.http,
        "the settlement endpoint",
        url,
        secret,
        *timeout,
        instruction_id,
        body,
    )
    .await
}
