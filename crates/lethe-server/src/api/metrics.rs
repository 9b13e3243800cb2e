//! The Prometheus endpoint: cases by state, audit events by kind, the
//! audit queue and the sequencer, jobs, deadlines and this instance's
//! request figures.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;

use crate::AppState;
use crate::http::problem::Problem;
use crate::metrics::label;

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
    st.metrics.render(&mut o);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], o).into_response())
}
