//! `lethe erasures`: after a platform restored a backup, erase again what
//! had been erased since (reapply), list the runs, verify a run's report.

use anyhow::{Context, bail};
use clap::Subcommand;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Subcommand)]
pub enum ErasuresCmd {
    /// Erase again, in one restored system, every subject erased since the
    /// backup's time: reads the system's subject ids, matches their keyed
    /// pseudonyms against the erasure tombstones, erases the matches with
    /// the data map and verifies. Writes a signed report (counts only).
    /// Safe to run twice. Start with --dry-run to see the counts.
    Reapply {
        #[arg(long, default_value = "lethe.toml")]
        config: PathBuf,
        /// The restored system, as named in the data map.
        #[arg(long)]
        system: String,
        /// The time of the restored backup (RFC 3339, or a date in the
        /// platform's time zone): erasures at or after it are reapplied.
        #[arg(long)]
        since: String,
        /// Count only: erase nothing (the run is listed; nothing enters the
        /// audit log).
        #[arg(long)]
        dry_run: bool,
        /// Also write the signed report to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The reapply runs, newest first.
    Runs {
        #[arg(long, default_value = "lethe.toml")]
        config: PathBuf,
    },
    /// Verify a signed report (reapply or purge) against a public key.
    Verify {
        report: PathBuf,
        /// The installation's public key (`lethe audit public-key`).
        #[arg(long)]
        public_key: String,
    },
}

pub async fn run(cmd: ErasuresCmd) -> anyhow::Result<()> {
    match cmd {
        ErasuresCmd::Reapply {
            config,
            system,
            since,
            dry_run,
            out,
        } => reapply(config, system, since, dry_run, out).await,
        ErasuresCmd::Runs { config } => {
            let (_, store) = crate::shared::open_store(&config).await?;
            let runs = store.reapply_runs(None, 100).await?;
            if runs.is_empty() {
                println!("no reapply runs yet");
            }
            for r in runs {
                let counts = r
                    .report
                    .as_ref()
                    .map(|d| {
                        let x = &d["report"];
                        format!(
                            "scanned {} matched {} erased {} verified {}",
                            x["scanned"], x["matched"], x["erased"], x["verified"]
                        )
                    })
                    .or(r.error.clone())
                    .unwrap_or_default();
                println!(
                    "{}  {:<8} {:<12} since {}{}  {counts}",
                    r.id,
                    r.state,
                    r.system,
                    r.since,
                    if r.dry_run { " (dry run)" } else { "" }
                );
            }
            Ok(())
        }
        ErasuresCmd::Verify { report, public_key } => {
            let text = std::fs::read_to_string(&report)
                .with_context(|| format!("reading {}", report.display()))?;
            let doc: lethe_ledger::report::SignedDoc = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{} is not a signed report: {e}", report.display()))?;
            if doc.verify(&public_key) {
                println!(
                    "{} ({}) is signed by {public_key}",
                    report.display(),
                    doc.report["type"].as_str().unwrap_or("report")
                );
                Ok(())
            } else {
                bail!("{} does NOT verify", report.display())
            }
        }
    }
}

async fn reapply(
    config: PathBuf,
    system: String,
    since: String,
    dry_run: bool,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    lethe_server::install_crypto_provider();
    let (cfg, store) = crate::shared::open_store(&config).await?;
    let tz = jiff::tz::TimeZone::get(&cfg.time_zone)?;
    let since_t = lethe_server::report::parse_when(&since, &tz)
        .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    if since_t > jiff::Timestamp::now() {
        bail!("--since {since} is in the future: give the time of the backup that was restored");
    }
    let map = lethe_connect::DataMap::load(&cfg.datamap)?;
    if !map.systems.iter().any(|s| s.name.as_str() == system) {
        bail!(
            "--system {system} is not in the data map {} (systems: {})",
            cfg.datamap.display(),
            map.systems
                .iter()
                .map(|s| s.name.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let systems = Arc::new(lethe_server::outbound::systems::Systems::connect(&map, http).await?);
    let secrets = lethe_server::secrets::Secrets::load_or_create(&cfg.data_dir)?;
    let signer = lethe_server::secrets::load_or_create_signer(&cfg.data_dir)?;
    let deps = lethe_server::worker::reapply::Deps {
        store: &store,
        datamap: &map,
        systems,
        secrets: &secrets,
        signer: &signer,
    };
    let id = lethe_server::worker::reapply::new_run_id();
    let req = lethe_server::worker::reapply::Request {
        system,
        since: since_t,
        dry_run,
        platform: None,
    };
    store
        .open_reapply(
            id.clone(),
            req.system.clone(),
            None,
            since_t,
            dry_run,
            jiff::Timestamp::now(),
        )
        .await?;
    let now = jiff::Timestamp::now;
    let signed =
        lethe_server::worker::reapply::run_recorded(&deps, &id, &req, "operator:cli", &now)
            .await
            .map_err(|e| anyhow::anyhow!("reapply {id} failed: {e}"))?;
    let r = &signed.report;
    println!(
        "{id}: {} subject id(s) read from {}; {} of the {} subject(s) erased since {} came back; {}",
        r["scanned"],
        req.system,
        r["matched"],
        r["tombstoned"],
        r["since"].as_str().unwrap_or_default(),
        if dry_run {
            "dry run: nothing erased".to_owned()
        } else {
            format!(
                "erased again: {} subject(s), {} row(s); verified: {}",
                r["erased"], r["rows"], r["verified"]
            )
        }
    );
    if let Some(path) = out {
        std::fs::write(&path, serde_json::to_string_pretty(&signed)?)?;
        eprintln!("signed report written to {}", path.display());
    }
    crate::shared::integrate_audit(&store).await
}
