//! `lethe apikey create|revoke`: the API keys platforms use (only their
//! hash is stored).

use anyhow::bail;

use crate::shared::{load_config, new_api_key};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum ApikeyCmd {
    /// Create a key; it is printed once and stored only as a hash.
    Create {
        #[arg(long, default_value = "lethe.toml")]
        config: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// Revoke a key by name.
    Revoke {
        #[arg(long, default_value = "lethe.toml")]
        config: PathBuf,
        #[arg(long)]
        name: String,
    },
}

pub(crate) async fn run(cmd: ApikeyCmd) -> anyhow::Result<()> {
    let (config, name, create) = match cmd {
        ApikeyCmd::Create { config, name } => (config, name, true),
        ApikeyCmd::Revoke { config, name } => (config, name, false),
    };
    let cfg = load_config(&config)?;
    std::fs::create_dir_all(&cfg.data_dir)?;
    let store = lethe_store::Store::open_url(
        &cfg.store_url().map_err(anyhow::Error::msg)?,
        Default::default(),
    )
    .await?;
    if create {
        // A key's name is the principal that owns what it opens: it
        // may not pass for the console or an agent.
        let plain = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !plain || name == "console" || name.starts_with("agent") {
            bail!(
                "--name '{name}': use 1 to 64 letters, digits, '-', '_' or '.', not 'console' and not starting with 'agent' (names Lethe uses for the console and its agents)"
            );
        }
        let key = new_api_key();
        store
            .insert_api_key(
                name.clone(),
                lethe_server::http::middleware::hash_api_key(&key),
            )
            .await?;
        println!("{key}");
        eprintln!("API key '{name}' created. It is shown only now; Lethe keeps only its hash.");
    } else if store.revoke_api_key(name.clone()).await? {
        eprintln!("API key '{name}' revoked.");
    } else {
        bail!("no live API key named '{name}'");
    }
    Ok(())
}
