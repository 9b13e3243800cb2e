//! Schema drift before an erasure or a purge: a SQL system whose live
//! schema no longer matches the data map waits (erasing would fail
//! part-way), with the fix, and looks again later.

use crate::AppState;

/// How long an erasure held by schema drift waits before it looks again
/// (at most; `worker.max_backoff_secs` when shorter); a system's
/// structural check is reused for as long.
const DRIFT_RETRY_SECS: i64 = 300;

pub fn drift_wait(st: &AppState) -> i64 {
    st.worker.max_backoff_secs.clamp(1, DRIFT_RETRY_SECS)
}

/// Why a SQL system's erasure must wait, if it must: what in its live
/// schema would break it (a table or column the map names is gone, an
/// unmapped reference blocks deletion), with the fix.
pub async fn drift_hold(st: &AppState, system: &str) -> Result<Option<String>, String> {
    let (Some(sql), Some(entry)) = (
        st.systems.sql(system),
        st.datamap
            .systems
            .iter()
            .find(|s| s.name.as_str() == system),
    ) else {
        return Ok(None);
    };
    let found = lethe_connect::check::breaking_drift(
        sql,
        entry,
        std::time::Duration::from_secs(drift_wait(st).unsigned_abs()),
    )
    .await
    .map_err(|e| e.to_string())?;
    if found.is_empty() {
        return Ok(None);
    }
    let mut why = format!(
        "erasure in {system} waits: its schema no longer matches the data map, and erasing now would fail part-way: "
    );
    why.push_str(
        &found
            .iter()
            .map(|f| format!("{} at {}: {} (fix: {})", f.kind, f.at, f.message, f.fix))
            .collect::<Vec<_>>()
            .join("; "),
    );
    Ok(Some(why.chars().take(2000).collect()))
}
