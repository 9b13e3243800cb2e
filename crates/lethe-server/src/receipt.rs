//! Sealing a deletion receipt: once the case's final event is integrated
//! into the audit log's tree, the receipt is built with its inclusion proof,
//! signed, and kept (the API, the pages and the worker all seal through
//! here).

use lethe_ledger::{FinalEvent, Receipt};
use lethe_store::FinalEventState;

use axum::http::StatusCode;

use crate::AppState;
use crate::http::problem::Problem;

/// How long signing a receipt waits for its final event to be integrated.
const SEAL_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

const SEAL_POLL: std::time::Duration = std::time::Duration::from_millis(25);

/// Waits (up to the maximum merge delay) until every audit event committed
/// before now is in the tree, so that a head signed or a log read next
/// shows what the caller just did.
pub async fn caught_up(st: &AppState) -> Result<(), Problem> {
    st.store
        .integrate_queued(lethe_store::MAX_MERGE_DELAY)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "events wait for the sequencer");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "sequencer-behind",
                "The audit log's sequencer is behind",
                "events committed before this request are not in the tree yet",
            )
            .retry_after(5)
            .fix("retry shortly; if it persists, check lethe_audit_merge_delay_seconds")
        })
}

/// Signs the receipt of an erased case if it is not signed yet: a tree head
/// covering its final event is signed (on demand), the inclusion proof of
/// that event is attached, and the whole receipt is signed.
pub async fn seal_receipt(st: &AppState, case_id: &str) -> Result<Option<String>, Problem> {
    seal_receipt_within(st, case_id, SEAL_WAIT).await
}

/// [`seal_receipt`], waiting at most `wait` for the final event (the
/// timer, sealing many, does not wait: a receipt still waiting is taken up
/// on a later tick).
pub async fn seal_receipt_within(
    st: &AppState,
    case_id: &str,
    wait: std::time::Duration,
) -> Result<Option<String>, Problem> {
    let Some((body, signed)) = st.store.receipt_signed(case_id).await? else {
        return Ok(None);
    };
    if signed {
        return Ok(Some(body));
    }
    let mut receipt: Receipt = serde_json::from_str(&body).map_err(|_| Problem::internal())?;
    // The closing event is integrated into the tree by the sequencer after
    // the case closed; the receipt waits for it (briefly here, else the
    // timer signs it later).
    let mut waited = std::time::Duration::ZERO;
    loop {
        match st.store.receipt_final_event(case_id).await? {
            FinalEventState::InBody => break,
            FinalEventState::Sequenced(seq, hash) => {
                receipt.final_event = Some(FinalEvent { seq, hash });
                break;
            }
            FinalEventState::Queued if waited < wait => {
                tokio::time::sleep(SEAL_POLL).await;
                waited += SEAL_POLL;
            }
            FinalEventState::Queued => {
                return Err(Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "receipt-pending",
                    "The receipt is being sealed",
                    "the case's last event is not in the audit log's tree yet",
                )
                .retry_after(2)
                .fix("retry in a few seconds"));
            }
        }
    }
    let seq = receipt
        .final_event
        .as_ref()
        .map(|f| f.seq)
        .ok_or_else(Problem::internal)?;
    // A signed head that already covers the event serves; else one now.
    let head = match st.store.latest_tree_head().await? {
        Some(h) if h.tree_size >= seq => h,
        _ => st
            .store
            .sign_tree_head(st.signer.clone(), st.clock.now().to_string())
            .await?
            .ok_or_else(Problem::internal)?,
    };
    let proof = st
        .store
        .inclusion_proof(seq, head.tree_size)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "receipt proof");
            Problem::internal()
        })?;
    // The signed receipt says where its holder finds support after erasure.
    if receipt.support_url.is_none() {
        receipt.support_url = Some(format!("{}/support", st.public_url));
    }
    let sealed = receipt.sign(&st.signer, head, proof);
    let text = serde_json::to_string(&sealed).map_err(|_| Problem::internal())?;
    st.store
        .store_signed_receipt(case_id.to_owned(), text.clone())
        .await?;
    Ok(Some(text))
}
