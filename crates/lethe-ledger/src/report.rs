//! The compliance report: built from plain rows (no I/O), signed as JSON.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One case as the report sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseRow {
    pub case_id: String,
    pub channel: String,
    pub state: String,
    pub created_ms: i64,
    pub closed_ms: Option<i64>,
}

/// One deadline of a case in the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadlineRow {
    pub case_id: String,
    pub kind: String,
    pub due_ms: Option<i64>,
    pub met_ms: Option<i64>,
    /// Counted over days the working-day calendar does not cover yet
    /// (weekends and the fixed statutory holidays only): the earliest
    /// possible date, final once the calendar adds the year.
    #[serde(default)]
    pub provisional: bool,
}

/// One system's erasure result of a case in the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErasureRow {
    pub case_id: String,
    pub system: String,
    /// Tables whose verification found rows left (0 when all erased).
    pub tables_not_verified: u32,
    pub tables: u32,
    pub rows_erased: u64,
    /// Kept tables: (table, rows, legal basis, retain until ms).
    pub kept: Vec<(String, u64, String, i64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Durations {
    pub count: usize,
    pub p50_hours: f64,
    pub p90_hours: f64,
    pub p99_hours: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadlineShare {
    pub kind: String,
    pub with_due_date: usize,
    pub met_on_time: usize,
    pub met_late: usize,
    pub open_overdue: usize,
    /// met_on_time / with_due_date, 0..1.
    pub share_on_time: f64,
    /// Of `with_due_date`, the due dates that are provisional.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub provisional: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retention {
    pub case_id: String,
    pub system: String,
    pub table: String,
    pub rows: u64,
    pub legal_basis: String,
    pub retain_until_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The platform (API key name) whose cases this report covers; absent:
    /// every platform of the installation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    pub from: String,
    pub to: String,
    pub generated_at: String,
    pub cases: usize,
    pub by_channel: BTreeMap<String, usize>,
    pub by_outcome: BTreeMap<String, usize>,
    /// Submission to close, closed cases only.
    pub durations: Durations,
    pub deadlines: Vec<DeadlineShare>,
    pub overdue_cases: Vec<String>,
    /// Open cases with a provisional due date (the calendar does not cover
    /// it yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provisional_cases: Vec<String>,
    pub verification: Verification,
    /// Kept data whose retention ends within `expiring_within_days` after `to`.
    pub expiring_within_days: u32,
    pub expiring: Vec<Retention>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub systems_erased: usize,
    pub systems_verified: usize,
    pub rows_erased: u64,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn outcome(state: &str) -> &str {
    match state {
        "erased" | "withdrawn" | "rejected" | "failed" => state,
        _ => "open",
    }
}

#[allow(clippy::too_many_arguments)]
pub fn build(
    from: &str,
    to: &str,
    generated_at: &str,
    now_ms: i64,
    to_ms: i64,
    cases: &[CaseRow],
    deadlines: &[DeadlineRow],
    erasures: &[ErasureRow],
    expiring_within_days: u32,
) -> Report {
    let mut by_channel = BTreeMap::new();
    let mut by_outcome = BTreeMap::new();
    let mut hours = vec![];
    for c in cases {
        *by_channel.entry(c.channel.clone()).or_insert(0) += 1;
        *by_outcome.entry(outcome(&c.state).to_owned()).or_insert(0) += 1;
        if let Some(closed) = c.closed_ms {
            hours.push((closed - c.created_ms) as f64 / 3_600_000.0);
        }
    }
    hours.sort_by(|a, b| a.total_cmp(b));
    let durations = Durations {
        count: hours.len(),
        p50_hours: percentile(&hours, 50.0),
        p90_hours: percentile(&hours, 90.0),
        p99_hours: percentile(&hours, 99.0),
    };
    let mut kinds: BTreeMap<String, DeadlineShare> = BTreeMap::new();
    let mut overdue = std::collections::BTreeSet::new();
    let mut provisional = std::collections::BTreeSet::new();
    for d in deadlines {
        let Some(due) = d.due_ms else { continue };
        let e = kinds
            .entry(d.kind.clone())
            .or_insert_with(|| DeadlineShare {
                kind: d.kind.clone(),
                with_due_date: 0,
                met_on_time: 0,
                met_late: 0,
                open_overdue: 0,
                share_on_time: 0.0,
                provisional: 0,
            });
        e.with_due_date += 1;
        if d.provisional {
            e.provisional += 1;
            if d.met_ms.is_none() {
                provisional.insert(d.case_id.clone());
            }
        }
        match d.met_ms {
            Some(m) if m <= due => e.met_on_time += 1,
            Some(_) => e.met_late += 1,
            None if now_ms > due => {
                e.open_overdue += 1;
                overdue.insert(d.case_id.clone());
            }
            None => {}
        }
    }
    let deadlines: Vec<DeadlineShare> = kinds
        .into_values()
        .map(|mut d| {
            d.share_on_time = if d.with_due_date == 0 {
                0.0
            } else {
                d.met_on_time as f64 / d.with_due_date as f64
            };
            d
        })
        .collect();
    let horizon = to_ms + i64::from(expiring_within_days) * 86_400_000;
    let mut expiring = vec![];
    let mut verification = Verification {
        systems_erased: 0,
        systems_verified: 0,
        rows_erased: 0,
    };
    for e in erasures {
        verification.systems_erased += 1;
        if e.tables_not_verified == 0 {
            verification.systems_verified += 1;
        }
        verification.rows_erased += e.rows_erased;
        for (table, rows, basis, until) in &e.kept {
            if *until <= horizon {
                expiring.push(Retention {
                    case_id: e.case_id.clone(),
                    system: e.system.clone(),
                    table: table.clone(),
                    rows: *rows,
                    legal_basis: basis.clone(),
                    retain_until_ms: *until,
                });
            }
        }
    }
    expiring.sort_by_key(|r| r.retain_until_ms);
    Report {
        platform: None,
        from: from.to_owned(),
        to: to.to_owned(),
        generated_at: generated_at.to_owned(),
        cases: cases.len(),
        by_channel,
        by_outcome,
        durations,
        deadlines,
        overdue_cases: overdue.into_iter().collect(),
        provisional_cases: provisional.into_iter().collect(),
        verification,
        expiring_within_days,
        expiring,
    }
}

/// The report as signed JSON: `{"report": ..., "public_key": ..., "signature": ...}`
/// where the signature covers the canonical JSON of `report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedReport {
    pub report: Report,
    pub public_key: String,
    pub signature: String,
}

impl SignedReport {
    pub fn sign(report: Report, signer: &crate::Signer) -> Self {
        let bytes = serde_json::to_vec(&report).unwrap_or_default();
        Self {
            signature: signer.sign(&bytes),
            public_key: signer.public_key_hex(),
            report,
        }
    }
    pub fn verify(&self, public_key_hex: &str) -> bool {
        let bytes = serde_json::to_vec(&self.report).unwrap_or_default();
        self.public_key == public_key_hex
            && crate::verify_signature(public_key_hex, &bytes, &self.signature)
    }
}

/// Any other signed document (a reapply or a purge report):
/// `{"report": ..., "public_key": ..., "signature": ...}` where the
/// signature covers the JSON of `report` as a `serde_json::Value` writes
/// it, so a reader verifies the file without knowing its type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedDoc {
    pub report: serde_json::Value,
    pub public_key: String,
    pub signature: String,
}

impl SignedDoc {
    pub fn sign<T: Serialize>(report: &T, signer: &crate::Signer) -> Self {
        let report = serde_json::to_value(report).unwrap_or(serde_json::Value::Null);
        let bytes = serde_json::to_vec(&report).unwrap_or_default();
        Self {
            signature: signer.sign(&bytes),
            public_key: signer.public_key_hex(),
            report,
        }
    }
    pub fn verify(&self, public_key_hex: &str) -> bool {
        let bytes = serde_json::to_vec(&self.report).unwrap_or_default();
        self.public_key == public_key_hex
            && crate::verify_signature(public_key_hex, &bytes, &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_document_verifies_after_a_round_trip_and_not_when_changed() {
        let signer = crate::Signer::from_seed(&[7; 32]);
        #[derive(Serialize)]
        struct R {
            z: u64,
            a: &'static str,
        }
        let doc = SignedDoc::sign(&R { z: 3, a: "x" }, &signer);
        let text = serde_json::to_string_pretty(&doc).unwrap();
        let back: SignedDoc = serde_json::from_str(&text).unwrap();
        assert!(back.verify(&signer.public_key_hex()));
        let mut changed = back.clone();
        changed.report["z"] = serde_json::json!(4);
        assert!(!changed.verify(&signer.public_key_hex()));
        assert!(!back.verify(&crate::Signer::from_seed(&[8; 32]).public_key_hex()));
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 90.0), 90.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn a_report_counts_and_signs() {
        let h = 3_600_000;
        let cases = vec![
            CaseRow {
                case_id: "a".into(),
                channel: "app".into(),
                state: "erased".into(),
                created_ms: 0,
                closed_ms: Some(10 * h),
            },
            CaseRow {
                case_id: "b".into(),
                channel: "hotline".into(),
                state: "withdrawn".into(),
                created_ms: 0,
                closed_ms: Some(2 * h),
            },
            CaseRow {
                case_id: "c".into(),
                channel: "app".into(),
                state: "under_review".into(),
                created_ms: 0,
                closed_ms: None,
            },
        ];
        let deadlines = vec![
            DeadlineRow {
                case_id: "a".into(),
                kind: "completion".into(),
                due_ms: Some(20 * h),
                met_ms: Some(10 * h),
                provisional: false,
            },
            DeadlineRow {
                case_id: "c".into(),
                kind: "review".into(),
                due_ms: Some(5 * h),
                met_ms: None,
                provisional: false,
            },
            DeadlineRow {
                case_id: "c".into(),
                kind: "erasure_start".into(),
                due_ms: Some(300 * h),
                met_ms: None,
                provisional: true,
            },
        ];
        let erasures = vec![ErasureRow {
            case_id: "a".into(),
            system: "s".into(),
            tables_not_verified: 0,
            tables: 3,
            rows_erased: 12,
            kept: vec![("invoices".into(), 2, "tax".into(), 40 * h)],
        }];
        let r = build(
            "f",
            "t",
            "g",
            30 * h,
            30 * h,
            &cases,
            &deadlines,
            &erasures,
            1,
        );
        assert_eq!(r.by_channel["app"], 2);
        assert_eq!(r.by_outcome["open"], 1);
        assert_eq!(r.durations.count, 2);
        assert_eq!(r.durations.p99_hours, 10.0);
        assert_eq!(r.overdue_cases, vec!["c".to_owned()]);
        // A due date past the calendar is counted, and marked provisional.
        assert_eq!(r.provisional_cases, vec!["c".to_owned()]);
        let start = r
            .deadlines
            .iter()
            .find(|d| d.kind == "erasure_start")
            .unwrap();
        assert_eq!((start.with_due_date, start.provisional), (1, 1));
        assert_eq!(
            r.deadlines
                .iter()
                .find(|d| d.kind == "completion")
                .unwrap()
                .share_on_time,
            1.0
        );
        assert_eq!(r.expiring.len(), 1);
        let s = crate::Signer::from_seed(&[4u8; 32]);
        let signed = SignedReport::sign(r, &s);
        assert!(signed.verify(&s.public_key_hex()));
        let mut forged = signed.clone();
        forged.report.cases = 1;
        assert!(!forged.verify(&s.public_key_hex()));
    }

    proptest::proptest! {
        /// A signed report still verifies after a trip through JSON text,
        /// whatever its durations are (their floats must parse back to
        /// the same bits).
        #[test]
        fn signed_reports_verify_after_a_json_round_trip(closed in proptest::collection::vec(1i64..10_000_000_000, 1..20)) {
            let cases: Vec<CaseRow> = closed
                .iter()
                .enumerate()
                .map(|(i, ms)| CaseRow {
                    case_id: format!("c{i}"),
                    channel: "app".into(),
                    state: "erased".into(),
                    created_ms: 0,
                    closed_ms: Some(*ms),
                })
                .collect();
            let r = build("f", "t", "g", 0, 0, &cases, &[], &[], 1);
            let s = crate::Signer::from_seed(&[4u8; 32]);
            let text = serde_json::to_string(&SignedReport::sign(r, &s)).unwrap();
            let back: SignedReport = serde_json::from_str(&text).unwrap();
            proptest::prop_assert!(back.verify(&s.public_key_hex()));
        }
    }
}
