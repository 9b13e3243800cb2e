//! Witnesses: the log's checkpoint (C2SP signed note) sent to each
//! configured witness (c2sp.org/tlog-witness `add-checkpoint`) with a
//! consistency proof from the last size it cosigned; the cosignatures that
//! verify are kept and shown on the transparency page.

use lethe_ledger::note::{self, Checkpoint, Note};

use crate::AppState;
use crate::http::problem::Problem;

/// How long one witness may take to answer.
const WITNESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Largest witness answer read.
const WITNESS_ANSWER_BYTES: usize = 16 * 1024;

/// The log's origin line: configured, or the public URL's host and path
/// followed by `/audit-log`.
pub fn origin(st: &AppState) -> String {
    if let Some(o) = &st.transparency.origin {
        return o.clone();
    }
    let host = st
        .public_url
        .split_once("://")
        .map_or(st.public_url.as_str(), |(_, r)| r)
        .trim_end_matches('/');
    format!("{host}/audit-log")
}

/// The checkpoint of a signed head, with the log's note signature and the
/// cosignatures its witnesses answered.
pub async fn checkpoint(st: &AppState, head: &lethe_ledger::TreeHead) -> Result<Note, Problem> {
    let root = head.root().ok_or_else(Problem::internal)?;
    let origin = origin(st);
    let text = Checkpoint {
        origin: origin.clone(),
        size: head.tree_size,
        root,
    }
    .body();
    let mut signatures = vec![note::sign_text(&st.signer, &origin, &text)];
    for (_, line) in st.store.cosignatures(head.tree_size).await? {
        if let Ok(mut s) = note::parse_signature_lines(&line) {
            signatures.append(&mut s);
        }
    }
    Ok(Note { text, signatures })
}

/// Asks each configured witness to cosign the checkpoint of `head`
/// (c2sp.org/tlog-witness `add-checkpoint`), with a consistency proof from
/// the last checkpoint it cosigned; keeps the cosignatures that verify.
pub async fn cosign(st: &AppState, head: &lethe_ledger::TreeHead) {
    if st.transparency.witnesses.is_empty() {
        return;
    }
    let cp = match checkpoint(st, head).await {
        Ok(cp) => cp,
        Err(e) => {
            tracing::error!(problem = %e.detail, "building the checkpoint failed");
            return;
        }
    };
    // Only the log's own signature goes to the witness.
    let signed = Note {
        text: cp.text.clone(),
        signatures: cp.signatures.iter().take(1).cloned().collect(),
    };
    for w in &st.transparency.witnesses {
        if let Err(e) = cosign_one(st, w, head, &signed).await {
            tracing::warn!(witness = %w.name(), error = %e, "a witness did not cosign");
        }
    }
}

async fn cosign_one(
    st: &AppState,
    w: &crate::config::WitnessConfig,
    head: &lethe_ledger::TreeHead,
    signed: &Note,
) -> Result<(), String> {
    let (name, _, key) = note::parse_vkey(&w.vkey).map_err(|e| e.to_string())?;
    let mut old = st
        .store
        .last_cosigned(&name)
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or(0);
    if old >= head.tree_size {
        return Ok(());
    }
    // A witness that remembers another size says so (409): one retry with it.
    for _ in 0..2 {
        let proof = if old == 0 {
            vec![]
        } else {
            st.store
                .consistency_proof(old, head.tree_size)
                .await
                .map_err(|e| e.to_string())?
        };
        let body = note::add_checkpoint_body(old, &proof, signed);
        let url = format!("{}/add-checkpoint", w.url.trim_end_matches('/'));
        let resp = st
            .http
            .post(&url)
            .timeout(WITNESS_TIMEOUT)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        if bytes.len() > WITNESS_ANSWER_BYTES {
            return Err("the witness answered more than 16 KiB".into());
        }
        let text = String::from_utf8_lossy(&bytes);
        match status.as_u16() {
            200 => {
                let sigs = note::parse_signature_lines(&text).map_err(|e| e.to_string())?;
                let good: Vec<_> = sigs
                    .iter()
                    .filter(|s| note::verify_cosignature(&signed.text, &name, &key, s).is_some())
                    .collect();
                let Some(s) = good.first() else {
                    return Err(
                        "no cosignature in the answer verifies under the witness's key".into(),
                    );
                };
                st.store
                    .store_cosignature(head.tree_size, name.clone(), s.line(), st.clock.now())
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(());
            }
            409 if old != text.trim().parse::<u64>().unwrap_or(old) => {
                old = text.trim().parse::<u64>().unwrap_or(old);
                if old > head.tree_size {
                    return Err(format!(
                        "the witness has cosigned {old} events, more than this log's {}: a fork or a rollback",
                        head.tree_size
                    ));
                }
            }
            s => return Err(format!("the witness answered {s}: {}", text.trim())),
        }
    }
    Err("the witness kept answering 409".into())
}
