//! `lethe serve`: Lethe with a configuration file and the system clock.

use lethe_server::{ClockMode, Server};
use std::path::PathBuf;

use crate::shared::{init_logs, load_config};

pub(crate) async fn run(config: PathBuf) -> anyhow::Result<()> {
    init_logs();
    let cfg = load_config(&config)?;
    let server = Server::prepare(&cfg, ClockMode::System).await?;
    tracing::info!(addr = %server.local_addr()?, "lethe listening");
    server.run().await?;
    Ok(())
}
