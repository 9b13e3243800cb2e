//! `lethe retention list|purge`: data kept past erasure under a legal hold, and its purge at expiry.

use anyhow::bail;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum RetentionCmd {
    /// What is kept, per case and table, until when, and what was purged
    /// (every SQL system of the data map; URLs from the environment).
    List {
        #[arg(long)]
        datamap: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Purge kept rows whose retention has ended. With --dry-run, only
    /// count what would be removed.
    Purge {
        #[arg(long)]
        datamap: PathBuf,
        /// Count, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Purge as at this time (RFC 3339; default now), e.g. to see what
        /// next month's purge will remove.
        #[arg(long)]
        at: Option<String>,
    },
}

pub(crate) async fn retention_cmd(cmd: RetentionCmd) -> anyhow::Result<()> {
    use lethe_connect::SqlSystem;
    const LIMIT: u32 = 1000;
    match cmd {
        RetentionCmd::List { datamap, json } => {
            let map = lethe_connect::DataMap::load(&datamap)?;
            let mut all = vec![];
            for s in map.systems.iter().filter(|s| s.kind.dialect().is_some()) {
                let sys = SqlSystem::connect_from_env(s).await?;
                for r in sys.retention_list(100_000).await? {
                    all.push((s.name.to_string(), r));
                }
            }
            if json {
                let v: Vec<serde_json::Value> = all
                    .iter()
                    .map(|(sys, r)| serde_json::json!({ "system": sys, "retention": r }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            for (sys, r) in &all {
                let until = r
                    .retain_until
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "-".into());
                let state = match (&r.purged_at, r.purged_rows) {
                    (Some(at), Some(n)) => format!("purged at {at} ({n} row(s))"),
                    _ => "kept".into(),
                };
                println!(
                    "{sys}.{:<24} case {:<38} until {until:<22} {state}  ({})",
                    r.table,
                    r.case_id,
                    r.legal_basis.as_deref().unwrap_or("")
                );
            }
            let kept = all.iter().filter(|(_, r)| r.purged_at.is_none()).count();
            println!(
                "{} retention record(s): {kept} kept, {} purged",
                all.len(),
                all.len() - kept
            );
            Ok(())
        }
        RetentionCmd::Purge {
            datamap,
            dry_run,
            at,
        } => {
            let at: jiff::Timestamp = match at {
                Some(t) => t.parse().map_err(|e| {
                    anyhow::anyhow!("--at: {e}; write RFC 3339, e.g. 2027-01-01T00:00:00Z")
                })?,
                None => jiff::Timestamp::now(),
            };
            if !dry_run && at > jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60) {
                bail!(
                    "--at {at} is in the future: a purge removes rows only when their retention has ended; use --dry-run to see what a later purge would remove"
                );
            }
            let map = lethe_connect::DataMap::load(&datamap)?;
            let mut total = 0u64;
            for s in map.systems.iter().filter(|s| s.kind.dialect().is_some()) {
                let sys = SqlSystem::connect_from_env(s).await?;
                let done = if dry_run {
                    sys.purge_dry_run(at, LIMIT).await?
                } else {
                    sys.purge_expired(at, LIMIT).await?
                };
                for (case, table, rows) in done {
                    total += rows;
                    let verb = if dry_run { "would be purged" } else { "purged" };
                    println!(
                        "{}.{table:<24} case {case:<38} {rows:>8} row(s) {verb}",
                        s.name
                    );
                }
            }
            if dry_run {
                println!(
                    "{total} row(s) would be purged as at {at} (dry run: nothing was removed)"
                );
            } else {
                println!("{total} row(s) purged");
            }
            Ok(())
        }
    }
}
