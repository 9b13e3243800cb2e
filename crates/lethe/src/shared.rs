//! What several commands share: logging, reading the configuration,
//! opening the store, integrating queued audit events, API keys and files
//! only the owner reads.

use anyhow::Context;
use lethe_server::Config;
use std::path::Path;

pub(crate) fn init_logs() {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_env("LETHE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(true)
        .init();
}

pub(crate) fn load_config(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the configuration {}", path.display()))?;
    // Every key, its default and bounds: docs/configuration.md; a complete
    // example: examples/lethe.toml.
    let cfg: Config = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "configuration {}: {e}\n(every key, its default and bounds: docs/configuration.md; a complete example: examples/lethe.toml)",
            path.display()
        )
    })?;
    cfg.validate().map_err(|e| {
        anyhow::anyhow!(
            "configuration {}: {e}\n(see docs/configuration.md)",
            path.display()
        )
    })?;
    Ok(cfg)
}

pub(crate) async fn open_store(config: &Path) -> anyhow::Result<(Config, lethe_store::Store)> {
    let cfg = load_config(config)?;
    let store = lethe_store::Store::open_url(
        &cfg.store_url().map_err(anyhow::Error::msg)?,
        Default::default(),
    )
    .await?;
    Ok((cfg, store))
}

/// Puts the audit events this command (or a running instance) queued into
/// the tree: the running instance's sequencer does it, or, if none runs,
/// this process takes the sequencer's lease and does.
pub(crate) async fn integrate_audit(store: &lethe_store::Store) -> anyhow::Result<()> {
    let wait = std::time::Duration::from_millis(
        u64::try_from(lethe_store::LEASE_TTL_MS).unwrap_or(10_000) + 5_000,
    );
    store.integrate_queued(wait).await?;
    // A lease this command took is given back, so a running instance
    // need not wait for it to expire.
    store.release_sequencer().await?;
    Ok(())
}

pub(crate) fn new_api_key() -> String {
    let bytes: [u8; 24] = rand::random();
    format!("lk_{}", hex::encode(bytes))
}

#[cfg(unix)]
pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text)?;
    Ok(())
}
