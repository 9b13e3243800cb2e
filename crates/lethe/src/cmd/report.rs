//! `lethe report`: the public compliance report, written and verified.

use anyhow::{Context, bail};
use std::path::PathBuf;

use crate::shared::*;

pub(crate) async fn report(
    config: PathBuf,
    from: Option<String>,
    to: Option<String>,
    out: PathBuf,
    verify: Option<PathBuf>,
    public_key: Option<String>,
) -> anyhow::Result<()> {
    if let Some(file) = verify {
        let pk = public_key.context("--verify needs --public-key")?;
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        // A report made here, or one published on /transparency.
        let (ok, from, to) = match serde_json::from_str::<lethe_ledger::report::SignedReport>(&text)
        {
            Ok(r) => (r.verify(&pk), r.report.from, r.report.to),
            Err(_) => {
                let d: lethe_ledger::report::SignedDoc =
                    serde_json::from_str(&text).map_err(|e| {
                        anyhow::anyhow!("{} is not a signed report: {e}", file.display())
                    })?;
                let field = |k: &str| d.report[k].as_str().unwrap_or("?").to_owned();
                (d.verify(&pk), field("from"), field("to"))
            }
        };
        if ok {
            println!("report {from} — {to} is signed by {pk}");
            return Ok(());
        }
        bail!("report {} does NOT verify", file.display());
    }
    let (from, to) = (
        from.context("--from is required")?,
        to.context("--to is required")?,
    );
    let (cfg, store) = open_store(&config).await?;
    let tz = jiff::tz::TimeZone::get(&cfg.time_zone)?;
    let from_t =
        lethe_server::report::parse_when(&from, &tz).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let to_t =
        lethe_server::report::parse_when(&to, &tz).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    if to_t <= from_t {
        bail!("--to must be after --from");
    }
    let signer = lethe_server::secrets::load_or_create_signer(&cfg.data_dir)?;
    let signed = lethe_server::report::compliance(
        &store,
        &signer,
        from_t,
        to_t,
        jiff::Timestamp::now(),
        None,
    )
    .await?;
    std::fs::create_dir_all(&out)?;
    let html = lethe_server::report::report_page(&signed);
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&signed)?,
    )?;
    std::fs::write(out.join("report.html.sig"), signer.sign(html.as_bytes()))?;
    std::fs::write(out.join("report.html"), html)?;
    eprintln!(
        "wrote report.json, report.html and report.html.sig to {} ({} cases)",
        out.display(),
        signed.report.cases
    );
    Ok(())
}
