//! Demo only: Demo Mart's settlement and notification endpoints, as a real
//! platform would run them. Settlement: it checks the instruction's
//! signature, applies it to Demo Mart's database once per instruction id (a
//! replay returns the first answer), and answers signed. Notifications: a
//! freeze marks the account frozen and pauses its auto-renewals, a restore
//! undoes exactly that (both are idempotent, so a repeated delivery is
//! harmless).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sqlx::Row;

use crate::AppState;
use crate::outbound::webhook::{secret_bytes, sign};
pub use crate::state::Link;

/// A call from Lethe as a platform should take it: every signature sent
/// compared in constant time, within the timestamp window (else 401), and
/// a JSON body (else 400).
fn signed_json(
    secret: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<serde_json::Value, Response> {
    let now = jiff::Timestamp::now().as_second();
    if crate::outbound::webhook::verify_inbound(secret, headers, body, now).is_err() {
        return Err(StatusCode::UNAUTHORIZED.into_response());
    }
    serde_json::from_slice(body).map_err(|_| StatusCode::BAD_REQUEST.into_response())
}

/// A notification from Lethe (signed like every webhook). Only the demo
/// platform's own cases touch Demo Mart; others are acknowledged.
pub async fn notification(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(link) = st.demo_platform.get() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let v = match signed_json(&link.secret, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let kind = v["type"].as_str().unwrap_or_default();
    if !matches!(kind, "account.freeze" | "account.restore") {
        return StatusCode::NO_CONTENT.into_response();
    }
    let data = &v["data"];
    let ours = match data["case_id"]
        .as_str()
        .and_then(|c| lethe_domain::CaseId::parse(c).ok())
    {
        Some(id) => st
            .store
            .case_principal(id)
            .await
            .ok()
            .flatten()
            .is_some_and(|p| p == "demo"),
        None => false,
    };
    let Some(sys) = st.systems.sql("demo_mart") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !ours {
        return StatusCode::NO_CONTENT.into_response();
    }
    match freeze(sys.pool(), kind == "account.freeze", data).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "demo platform could not apply a notification");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// Freezes the account and pauses the named renewals, or unfreezes it and
/// resumes them: reversible, nothing is cancelled or paid out.
async fn freeze(
    pool: &sqlx::AnyPool,
    frozen: bool,
    data: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    let user: i64 = data["subject_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1);
    let list = if frozen {
        "pause_auto_renewal"
    } else {
        "resume_auto_renewal"
    };
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE users SET status = $1 WHERE id = $2")
        .bind(if frozen { "frozen" } else { "active" })
        .bind(user)
        .execute(&mut *tx)
        .await?;
    for id in data[list].as_array().into_iter().flatten() {
        let Some(sub) = id.as_str().and_then(|a| num(a, "sub-")) else {
            continue;
        };
        sqlx::query("UPDATE subscriptions SET renewal_paused = $1 WHERE id = $2 AND user_id = $3")
            .bind(i64::from(frozen))
            .bind(sub)
            .bind(user)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

fn signed(key: &[u8], status: StatusCode, body: serde_json::Value) -> Response {
    let text = body.to_string();
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let ts = jiff::Timestamp::now().as_second();
    let sig = sign(key, &id, ts, text.as_bytes());
    (
        status,
        [
            ("content-type", "application/json".to_owned()),
            ("webhook-id", id),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", sig),
        ],
        text,
    )
        .into_response()
}

fn num(id: &str, prefix: &str) -> Option<i64> {
    id.strip_prefix(prefix)?.parse().ok()
}

pub async fn settle(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(link) = st.demo_platform.get() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let secret = &link.secret;
    let key = secret_bytes(secret);
    let v = match signed_json(secret, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    // Demo Mart keys a settlement by its Idempotency-Key, as a payment back
    // end does: Lethe sends the instruction id there, the first time and on
    // every re-send (a support agent's included), so a re-send is answered
    // from the record of the first and never pays twice.
    let idem = headers
        .get("idempotency-key")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if idem.is_empty() || v["instruction_id"].as_str() != Some(idem) {
        return signed(
            &key,
            StatusCode::UNPROCESSABLE_ENTITY,
            serde_json::json!({ "error": "the Idempotency-Key header must be the instruction id" }),
        );
    }
    let Some(sys) = st.systems.sql("demo_mart") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match apply(sys.pool(), &v).await {
        Ok(answer) => signed(&key, StatusCode::OK, answer),
        Err(e) => {
            tracing::warn!(error = %e, "demo platform could not apply a settlement");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

async fn apply(
    pool: &sqlx::AnyPool,
    v: &serde_json::Value,
) -> Result<serde_json::Value, sqlx::Error> {
    let instr = v["instruction_id"].as_str().unwrap_or_default().to_owned();
    let user: i64 = v["subject_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1);
    let asset = v["asset"]["id"].as_str().unwrap_or_default().to_owned();
    let option = v["option"].as_str().unwrap_or_default().to_owned();
    let amount = v["amount_minor"].as_i64().unwrap_or(0);
    let target: Option<i64> = v["transfer_to"].as_str().and_then(|s| s.parse().ok());
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    if let Some(r) = sqlx::query(
        "SELECT status, reference, reason FROM settlement_log WHERE instruction_id = $1",
    )
    .bind(instr.clone())
    .fetch_optional(&mut *tx)
    .await?
    {
        tx.rollback().await?;
        return Ok(
            serde_json::json!({ "status": r.get::<String, _>(0), "reference": r.get::<Option<String>, _>(1), "reason": r.get::<Option<String>, _>(2) }),
        );
    }
    // A re-sent instruction (support after erasure) carries no account: the
    // platform acts on it only from its record of the first one.
    if v["resend"] == true {
        tx.rollback().await?;
        return Ok(
            serde_json::json!({ "status": "failed", "reference": null, "reason": "no record of this instruction" }),
        );
    }
    let mut outcome: Result<(), String> = Ok(());
    let now = jiff::Timestamp::now().to_string();
    match option.as_str() {
        "refund_pro_rata" => {
            let id = num(&asset, "sub-").unwrap_or(-1);
            sqlx::query("UPDATE subscriptions SET auto_renew = 0, renewal_paused = 0 WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO refunds (user_id, instruction_id, amount_fen, reason, created_at) VALUES ($1, $2, $3, 'subscription pro-rata refund', $4)").bind(user).bind(instr.clone()).bind(amount).bind(now.clone()).execute(&mut *tx).await?;
        }
        "withdraw" => {
            sqlx::query("UPDATE wallets SET balance_fen = 0 WHERE user_id = $1")
                .bind(user)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO refunds (user_id, instruction_id, amount_fen, reason, created_at) VALUES ($1, $2, $3, 'balance withdrawal', $4)").bind(user).bind(instr.clone()).bind(amount).bind(now.clone()).execute(&mut *tx).await?;
        }
        "transfer" => {
            let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1")
                .bind(target.unwrap_or(-1))
                .fetch_optional(&mut *tx)
                .await?;
            match (exists, asset.as_str()) {
                (None, _) => outcome = Err("the account to transfer to does not exist".into()),
                (Some(t), "points") => {
                    sqlx::query("INSERT INTO points (user_id, balance) VALUES ($1, 0) ON CONFLICT (user_id) DO NOTHING").bind(t).execute(&mut *tx).await?;
                    sqlx::query("UPDATE points SET balance = balance + (SELECT balance FROM points WHERE user_id = $1) WHERE user_id = $2").bind(user).bind(t).execute(&mut *tx).await?;
                    sqlx::query("UPDATE points SET balance = 0 WHERE user_id = $1")
                        .bind(user)
                        .execute(&mut *tx)
                        .await?;
                }
                (Some(t), a) => {
                    let id = num(a, "coupon-").unwrap_or(-1);
                    sqlx::query("UPDATE coupons SET user_id = $1 WHERE id = $2 AND user_id = $3")
                        .bind(t)
                        .bind(id)
                        .bind(user)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        "unbind" => {
            let id = num(&asset, "card-").unwrap_or(-1);
            sqlx::query("DELETE FROM bank_cards WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user)
                .execute(&mut *tx)
                .await?;
        }
        _ => outcome = Err(format!("unknown option {option}")),
    }
    let (status, reference, reason) = match outcome {
        Ok(()) => (
            "done",
            Some(format!("DM-{}", &instr[instr.len().saturating_sub(12)..])),
            None,
        ),
        Err(r) => ("failed", None, Some(r)),
    };
    sqlx::query("INSERT INTO settlement_log (instruction_id, user_id, option, status, reference, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(instr)
        .bind(user)
        .bind(option)
        .bind(status)
        .bind(reference.clone())
        .bind(reason.clone())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(serde_json::json!({ "status": status, "reference": reference, "reason": reason }))
}
