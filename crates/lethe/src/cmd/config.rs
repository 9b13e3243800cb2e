//! `lethe config check`: a configuration file, its calendar and its data
//! map checked the way start-up reads them.

use anyhow::bail;
use std::path::PathBuf;

use crate::shared::load_config;

pub(crate) fn check(config: PathBuf) -> anyhow::Result<()> {
    let cfg = load_config(&config)?;
    // The calendar file through the same parser as start-up.
    lethe_server::CalendarState::load(cfg.calendar_file.as_deref())
        .map_err(|e| anyhow::anyhow!("configuration {}: {e}", config.display()))?;
    let map = lethe_connect::DataMap::load(&cfg.datamap)?;
    for s in &map.systems {
        lethe_connect::planner::plan(s)?;
        if std::env::var(&s.url_env).is_err() {
            bail!(
                "system {}: the environment variable {} is not set; export it with the connection URL",
                s.name,
                s.url_env
            );
        }
    }
    println!(
        "configuration {} is valid ({} system(s) in the data map)",
        config.display(),
        map.systems.len()
    );
    Ok(())
}
