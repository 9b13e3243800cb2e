//! `lethe receipt verify`: a deletion receipt checked offline.

use anyhow::{Context, bail};
use std::path::PathBuf;

pub(crate) fn verify(receipt: PathBuf, public_key: String) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&receipt)
        .with_context(|| format!("reading {}", receipt.display()))?;
    let r: lethe_ledger::Receipt = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a Lethe receipt: {e}", receipt.display()))?;
    match r.verify(&public_key) {
        Ok(()) => {
            println!(
                "receipt for case {} is genuine: signed, and its final event #{} is in the signed audit log of size {}",
                r.case_id,
                r.final_event.as_ref().map_or(0, |f| f.seq),
                r.tree_head.as_ref().map_or(0, |h| h.tree_size)
            );
            Ok(())
        }
        Err(e) => bail!("receipt {} does NOT verify: {e}", receipt.display()),
    }
}
