//! `lethe audit export|verify|monitor|public-key`: the audit log from outside.

use anyhow::{Context, bail};
use clap::Subcommand;
use std::path::PathBuf;

use crate::shared::*;

#[derive(Subcommand)]
pub(crate) enum AuditCmd {
    /// Write the log (events, recorded hashes, signed tree heads) to a file.
    Export {
        #[arg(long, default_value = "lethe.toml")]
        config: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify an exported log offline; only the public key is needed.
    Verify {
        #[arg(long)]
        log: PathBuf,
        /// Hex Ed25519 public key (GET /v1/audit/public-key).
        #[arg(long)]
        public_key: String,
    },
    /// Watch an installation's published log as a third party: each new
    /// head must extend the last one seen (exit code 3 on a fork, a
    /// rollback or a changed key).
    Monitor {
        /// The installation's URL; its /transparency.json is read.
        #[arg(long)]
        url: String,
        /// Where the monitor keeps the last head it checked (made on the
        /// first run).
        #[arg(long, default_value = "lethe-monitor.json")]
        state: PathBuf,
        /// The log's hex Ed25519 key, if known; else the first key seen is
        /// pinned in the state file.
        #[arg(long)]
        public_key: Option<String>,
        /// Keep watching, checking every this many seconds (5-86400);
        /// without it, check once (for cron).
        #[arg(long)]
        every: Option<u64>,
    },
    /// Print the public key that signs tree heads, receipts and reports.
    PublicKey {
        #[arg(long, default_value = "lethe.toml")]
        config: PathBuf,
    },
}

pub(crate) async fn audit(cmd: AuditCmd) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::Export { config, out } => {
            let (_, store) = open_store(&config).await?;
            integrate_audit(&store).await?;
            let mut events = vec![];
            loop {
                let page = store.export_events(events.len() as u64 + 1, 50_000).await?;
                if page.is_empty() {
                    break;
                }
                events.extend(page);
            }
            let tree_heads = store.tree_heads(0, u32::MAX).await?;
            let n = (events.len(), tree_heads.len());
            let mut bytes = vec![];
            lethe_ledger::write_log_file(&mut bytes, &events, &tree_heads);
            std::fs::write(&out, bytes)?;
            eprintln!(
                "exported {} events and {} signed tree heads to {}",
                n.0,
                n.1,
                out.display()
            );
            Ok(())
        }
        AuditCmd::Verify { log, public_key } => {
            let text = std::fs::read_to_string(&log)
                .with_context(|| format!("reading {}", log.display()))?;
            // A log file (`lethe audit export`) or the JSON of GET /v1/audit/export.
            let result = if text.starts_with("{\"format\"") {
                lethe_ledger::verify_log_file(&text, &public_key).map_err(|e| e.to_string())
            } else {
                let export: lethe_ledger::LogExport = serde_json::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("{} is not a Lethe log export: {e}", log.display())
                })?;
                lethe_ledger::verify_log(&export, &public_key).map_err(|e| e.to_string())
            };
            match result {
                Ok(v) => {
                    println!(
                        "log verified: {} events, {} signed tree heads; {} event(s) after the last signed head",
                        v.events, v.tree_heads, v.unsigned_tail
                    );
                    Ok(())
                }
                Err(e) => bail!("log does NOT verify: {e}"),
            }
        }
        AuditCmd::Monitor {
            url,
            state,
            public_key,
            every,
        } => super::monitor::run(url, state, public_key, every).await,
        AuditCmd::PublicKey { config } => {
            let cfg = load_config(&config)?;
            println!(
                "{}",
                lethe_server::secrets::load_or_create_signer(&cfg.data_dir)?.public_key_hex()
            );
            Ok(())
        }
    }
}
