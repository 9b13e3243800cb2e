//! Prometheus metrics (text exposition format 0.0.4). Case, job, deadline
//! and notification figures are read from the store at scrape time (so they
//! survive restarts and agree across instances); connector latency and
//! errors, and webhook delivery failures, are counted in memory.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::AppState;
use crate::problem::Problem;

/// Upper bounds (seconds) of the erasure latency histogram.
const BUCKETS: [f64; 9] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

#[derive(Default)]
struct Hist {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    erase: Mutex<BTreeMap<String, Hist>>,
    errors: Mutex<BTreeMap<String, u64>>,
    webhook_failures: Mutex<u64>,
}

impl Metrics {
    /// One erasure (or its verification) in a system took `secs`.
    pub fn erase_latency(&self, system: &str, secs: f64) {
        let mut m = self.erase.lock().unwrap_or_else(|p| p.into_inner());
        let h = m.entry(system.to_owned()).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    pub fn connector_error(&self, system: &str) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(system.to_owned())
            .or_default() += 1;
    }

    pub fn webhook_failure(&self) {
        *self
            .webhook_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner()) += 1;
    }
}

fn label(v: &str) -> String {
    v.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':'))
        .take(64)
        .collect()
}

/// The metrics endpoint.
pub async fn metrics(State(st): State<AppState>) -> Result<Response, Problem> {
    let now = st.clock.now();
    let snap = st.store.metrics_snapshot(now).await?;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# HELP lethe_cases Cases by state.\n# TYPE lethe_cases gauge"
    );
    for (s, n) in &snap.cases_by_state {
        let _ = writeln!(o, "lethe_cases{{state=\"{}\"}} {n}", label(s));
    }
    let _ = writeln!(
        o,
        "# HELP lethe_audit_events_total Audit events by kind (case transitions, deadline alerts...).\n# TYPE lethe_audit_events_total counter"
    );
    for (k, n) in &snap.events_by_kind {
        let _ = writeln!(o, "lethe_audit_events_total{{kind=\"{}\"}} {n}", label(k));
    }
    let (queued, oldest_ms) = st.store.audit_queue_state(lethe_store::now_wall()).await?;
    let seq = &st.sequencer;
    let _ = writeln!(
        o,
        "# HELP lethe_audit_queue_depth Audit events written but not yet in the Merkle tree.\n# TYPE lethe_audit_queue_depth gauge\nlethe_audit_queue_depth {queued}\n# HELP lethe_audit_merge_delay_seconds Age of the oldest audit event waiting for the sequencer (alert well below the maximum merge delay of {} s).\n# TYPE lethe_audit_merge_delay_seconds gauge\nlethe_audit_merge_delay_seconds {:.3}\n# HELP lethe_audit_sequencer_holder 1 if this instance holds the sequencer's lease.\n# TYPE lethe_audit_sequencer_holder gauge\nlethe_audit_sequencer_holder {}\n# HELP lethe_audit_sequenced_total Audit events this instance integrated into the tree.\n# TYPE lethe_audit_sequenced_total counter\nlethe_audit_sequenced_total {}\n# HELP lethe_audit_sequencer_batches_total Batches this instance integrated.\n# TYPE lethe_audit_sequencer_batches_total counter\nlethe_audit_sequencer_batches_total {}",
        lethe_store::MAX_MERGE_DELAY.as_secs(),
        oldest_ms as f64 / 1000.0,
        u8::from(seq.holder.load(std::sync::atomic::Ordering::Relaxed)),
        seq.integrated.load(std::sync::atomic::Ordering::Relaxed),
        seq.batches.load(std::sync::atomic::Ordering::Relaxed),
    );
    let _ = writeln!(
        o,
        "# HELP lethe_jobs Background jobs not done, by kind and state.\n# TYPE lethe_jobs gauge"
    );
    let _ = writeln!(
        o,
        "# HELP lethe_job_oldest_age_seconds Age of the oldest job not done.\n# TYPE lethe_job_oldest_age_seconds gauge"
    );
    let wall = jiff::Timestamp::now().as_millisecond();
    for (kind, state, n, oldest) in &snap.jobs {
        let (k, s) = (label(kind), label(state));
        let _ = writeln!(o, "lethe_jobs{{kind=\"{k}\",state=\"{s}\"}} {n}");
        let _ = writeln!(
            o,
            "lethe_job_oldest_age_seconds{{kind=\"{k}\",state=\"{s}\"}} {}",
            ((wall - oldest) / 1000).max(0)
        );
    }
    let _ = writeln!(
        o,
        "# HELP lethe_notifications Notifications by delivery state (dead = dead-letter list).\n# TYPE lethe_notifications gauge"
    );
    for (s, n) in &snap.notifications {
        let _ = writeln!(o, "lethe_notifications{{state=\"{}\"}} {n}", label(s));
    }
    let _ = writeln!(
        o,
        "# HELP lethe_deadline_headroom_seconds Seconds until the nearest open deadline (negative when overdue).\n# TYPE lethe_deadline_headroom_seconds gauge"
    );
    if let Some(h) = snap.min_headroom_secs {
        let _ = writeln!(o, "lethe_deadline_headroom_seconds {h}");
    }
    let _ = writeln!(
        o,
        "# HELP lethe_deadlines_overdue Open deadlines past due.\n# TYPE lethe_deadlines_overdue gauge\nlethe_deadlines_overdue {}",
        snap.overdue
    );
    let (waiting, late) = st.store.support_waiting(now).await?;
    let _ = writeln!(
        o,
        "# HELP lethe_support_open Support requests waiting for an answer.\n# TYPE lethe_support_open gauge\nlethe_support_open {waiting}\n# HELP lethe_support_overdue Support requests past their answer deadline.\n# TYPE lethe_support_overdue gauge\nlethe_support_overdue {late}"
    );
    let _ = writeln!(
        o,
        "# HELP lethe_deadlines_provisional Open deadlines counted over days the working-day calendar does not cover yet.\n# TYPE lethe_deadlines_provisional gauge\nlethe_deadlines_provisional {}",
        snap.provisional
    );
    if let Some(last) = st.calendar.get().years().map(|y| y.year).max() {
        let _ = writeln!(
            o,
            "# HELP lethe_calendar_covered_until_year The last year the working-day calendar covers (its State Council notice).\n# TYPE lethe_calendar_covered_until_year gauge\nlethe_calendar_covered_until_year {last}"
        );
    }
    let _ = writeln!(
        o,
        "# HELP lethe_datamap_drift_findings Open findings of the scheduled data-map check per system (breaking: erasure there waits).\n# TYPE lethe_datamap_drift_findings gauge"
    );
    for (sys, breaking, n) in st.store.drift_counts().await? {
        let _ = writeln!(
            o,
            "lethe_datamap_drift_findings{{system=\"{}\",breaking=\"{breaking}\"}} {n}",
            label(&sys)
        );
    }
    let _ = writeln!(
        o,
        "# HELP lethe_connector_erase_seconds Erasure and verification time per system.\n# TYPE lethe_connector_erase_seconds histogram"
    );
    {
        let m = st.metrics.erase.lock().unwrap_or_else(|p| p.into_inner());
        for (sys, h) in m.iter() {
            let sys = label(sys);
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "lethe_connector_erase_seconds_bucket{{system=\"{sys}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                o,
                "lethe_connector_erase_seconds_bucket{{system=\"{sys}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                o,
                "lethe_connector_erase_seconds_sum{{system=\"{sys}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                o,
                "lethe_connector_erase_seconds_count{{system=\"{sys}\"}} {}",
                h.count
            );
        }
    }
    let _ = writeln!(
        o,
        "# HELP lethe_connector_errors_total Failed erasure attempts per system.\n# TYPE lethe_connector_errors_total counter"
    );
    for (sys, n) in st
        .metrics
        .errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        let _ = writeln!(
            o,
            "lethe_connector_errors_total{{system=\"{}\"}} {n}",
            label(sys)
        );
    }
    let _ = writeln!(
        o,
        "# HELP lethe_webhook_failures_total Failed webhook deliveries.\n# TYPE lethe_webhook_failures_total counter\nlethe_webhook_failures_total {}",
        st.metrics
            .webhook_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], o).into_response())
}
