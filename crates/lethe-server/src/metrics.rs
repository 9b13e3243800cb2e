//! Prometheus metrics (text exposition format 0.0.4). Case, job, deadline
//! and notification figures are read from the store at scrape time (so they
//! survive restarts and agree across instances); connector latency and
//! errors, and webhook delivery failures, are counted in memory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64};

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
    /// This instance's own figures (erasure latency per system, failed
    /// erasure attempts, failed webhook deliveries) in Prometheus' text
    /// format, appended to `o`.
    pub fn render(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "# HELP lethe_connector_erase_seconds Erasure and verification time per system.\n# TYPE lethe_connector_erase_seconds histogram"
        );
        {
            let m = self.erase.lock().unwrap_or_else(|p| p.into_inner());
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
        for (sys, n) in self.errors.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                o,
                "lethe_connector_errors_total{{system=\"{}\"}} {n}",
                label(sys)
            );
        }
        let _ = writeln!(
            o,
            "# HELP lethe_webhook_failures_total Failed webhook deliveries.\n# TYPE lethe_webhook_failures_total counter\nlethe_webhook_failures_total {}",
            self.webhook_failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
        );
    }

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

/// A label value as Prometheus may show it (no quotes, no newlines).
pub fn label(v: &str) -> String {
    v.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':'))
        .take(64)
        .collect()
}

/// What the metrics show of this instance's sequencer.
#[derive(Debug, Default)]
pub struct SequencerStats {
    pub holder: AtomicBool,
    pub integrated: AtomicU64,
    pub batches: AtomicU64,
}
