//! `lethe policy check`: the cancellation policy's bounds.

use std::path::PathBuf;

use crate::shared::load_config;

pub(crate) fn check(config: PathBuf) -> anyhow::Result<()> {
    let cfg = load_config(&config)?;
    let map = lethe_connect::DataMap::load(&cfg.datamap)?;
    println!(
        "policy of {} is acceptable: cooling-off {} days, review {}, deadlines {}, {} blocker rule(s), {} provider(s)",
        config.display(),
        cfg.policy.cooling_off_days,
        if cfg.policy.review_required {
            "required"
        } else {
            "not required"
        },
        cfg.policy.deadlines,
        map.blockers.len(),
        map.providers.len()
    );
    Ok(())
}
