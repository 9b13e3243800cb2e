//! The published compliance report: the aggregate figures of a
//! [`Report`] that anyone may read, with no case id, no per-case row and
//! every small count suppressed (statistical disclosure control: a count
//! from 1 to `threshold - 1` is shown as "< threshold", so a reader cannot
//! single out one person's case). Pure: built from a [`Report`], signed as
//! a [`SignedDoc`](crate::report::SignedDoc).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::report::Report;

/// The default threshold below which a count is not shown exactly.
pub const DEFAULT_THRESHOLD: u64 = 5;

/// A published count: exact, or only "below the threshold".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Exact(u64),
    /// 1 ..= threshold - 1: written as "< threshold".
    Below(u64),
}

impl Count {
    /// `n` as published under `threshold` (0 stays 0: it singles out no
    /// one; a threshold of 0 or 1 publishes every count exactly).
    pub fn of(n: u64, threshold: u64) -> Self {
        if n > 0 && n < threshold {
            Self::Below(threshold)
        } else {
            Self::Exact(n)
        }
    }
    /// The exact figure, when it is published.
    pub fn exact(self) -> Option<u64> {
        match self {
            Self::Exact(n) => Some(n),
            Self::Below(_) => None,
        }
    }
}

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(n) => write!(f, "{n}"),
            Self::Below(t) => write!(f, "< {t}"),
        }
    }
}

impl Serialize for Count {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Exact(n) => s.serialize_u64(*n),
            Self::Below(_) => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Self::Exact(n)),
            Raw::S(s) => s
                .strip_prefix("< ")
                .and_then(|t| t.parse().ok())
                .map(Self::Below)
                .ok_or_else(|| serde::de::Error::custom("a count is a number or \"< N\"")),
        }
    }
}

/// How long closed cases took, published only when at least `threshold`
/// cases closed (a percentile of two cases is those cases' durations).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicDurations {
    pub closed: Count,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_hours: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p90_hours: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicDeadline {
    pub kind: String,
    pub with_due_date: Count,
    pub met_on_time: Count,
    pub met_late: Count,
    pub open_overdue: Count,
    /// met on time / with a due date, when `with_due_date` is published
    /// exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_on_time: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicVerification {
    pub systems_erased: Count,
    pub systems_verified: Count,
    pub rows_erased: Count,
}

/// Data kept for a legal reason whose retention ends soon after the
/// period: how many tables, by legal basis (no case, no table name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicRetention {
    pub legal_basis: String,
    pub tables: Count,
}

/// The published report of one period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicReport {
    /// The platform whose cases it covers; absent: the whole installation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// "monthly" or "on-demand".
    pub kind: String,
    pub from: String,
    pub to: String,
    pub generated_at: String,
    /// Counts from 1 to `threshold - 1` are published as "< threshold".
    pub threshold: u64,
    pub cases: Count,
    pub by_channel: BTreeMap<String, Count>,
    pub by_outcome: BTreeMap<String, Count>,
    pub durations: PublicDurations,
    pub deadlines: Vec<PublicDeadline>,
    pub overdue_cases: Count,
    pub verification: PublicVerification,
    pub expiring_within_days: u32,
    pub expiring: Vec<PublicRetention>,
}

fn count(n: usize, t: u64) -> Count {
    Count::of(u64::try_from(n).unwrap_or(u64::MAX), t)
}

impl PublicReport {
    /// The aggregate figures of `r` under `threshold`.
    pub fn from_report(r: &Report, kind: &str, threshold: u64) -> Self {
        let t = threshold;
        let closed = count(r.durations.count, t);
        let enough = closed.exact().is_some_and(|n| n > 0);
        let mut expiring: BTreeMap<&str, usize> = BTreeMap::new();
        for k in &r.expiring {
            *expiring.entry(k.legal_basis.as_str()).or_insert(0) += 1;
        }
        Self {
            platform: r.platform.clone(),
            kind: kind.to_owned(),
            from: r.from.clone(),
            to: r.to.clone(),
            generated_at: r.generated_at.clone(),
            threshold: t,
            cases: count(r.cases, t),
            by_channel: r
                .by_channel
                .iter()
                .map(|(k, v)| (k.clone(), count(*v, t)))
                .collect(),
            by_outcome: r
                .by_outcome
                .iter()
                .map(|(k, v)| (k.clone(), count(*v, t)))
                .collect(),
            durations: PublicDurations {
                closed,
                p50_hours: enough.then_some(r.durations.p50_hours),
                p90_hours: enough.then_some(r.durations.p90_hours),
            },
            deadlines: r
                .deadlines
                .iter()
                .map(|d| {
                    let with = count(d.with_due_date, t);
                    PublicDeadline {
                        kind: d.kind.clone(),
                        with_due_date: with,
                        met_on_time: count(d.met_on_time, t),
                        met_late: count(d.met_late, t),
                        open_overdue: count(d.open_overdue, t),
                        share_on_time: with
                            .exact()
                            .is_some_and(|n| n > 0)
                            .then_some(d.share_on_time),
                    }
                })
                .collect(),
            overdue_cases: count(r.overdue_cases.len(), t),
            // Sums over few cases are those cases' own figures: shown only
            // when the cases they come from are published exactly.
            verification: {
                let few = count(r.cases, t).exact().is_none();
                let hide = |c: Count| match c {
                    Count::Exact(n) if few && n > 0 => Count::Below(t),
                    c => c,
                };
                PublicVerification {
                    systems_erased: hide(count(r.verification.systems_erased, t)),
                    systems_verified: hide(count(r.verification.systems_verified, t)),
                    rows_erased: hide(Count::of(r.verification.rows_erased, t)),
                }
            },
            expiring_within_days: r.expiring_within_days,
            expiring: expiring
                .into_iter()
                .map(|(basis, n)| PublicRetention {
                    legal_basis: basis.to_owned(),
                    tables: count(n, t),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{CaseRow, DeadlineRow, ErasureRow, build};

    fn case(id: &str, channel: &str, state: &str, closed: Option<i64>) -> CaseRow {
        CaseRow {
            case_id: id.into(),
            channel: channel.into(),
            state: state.into(),
            created_ms: 0,
            closed_ms: closed,
        }
    }

    #[test]
    fn small_counts_are_suppressed_and_zero_and_large_ones_are_not() {
        assert_eq!(Count::of(0, 5), Count::Exact(0));
        assert_eq!(Count::of(1, 5), Count::Below(5));
        assert_eq!(Count::of(4, 5), Count::Below(5));
        assert_eq!(Count::of(5, 5), Count::Exact(5));
        assert_eq!(Count::of(1, 1), Count::Exact(1));
        assert_eq!(Count::of(3, 10).to_string(), "< 10");
        assert_eq!(serde_json::to_string(&Count::Below(5)).unwrap(), "\"< 5\"");
        assert_eq!(serde_json::to_string(&Count::Exact(7)).unwrap(), "7");
        for c in [Count::Below(5), Count::Exact(0), Count::Exact(12)] {
            let back: Count = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
            assert_eq!(back, c);
        }
        assert!(serde_json::from_str::<Count>("\"few\"").is_err());
    }

    #[test]
    fn the_public_report_names_no_case_and_hides_small_groups() {
        let mut cases = vec![];
        for i in 0..7 {
            cases.push(case(&format!("app-{i}"), "app", "erased", Some(3_600_000)));
        }
        cases.push(case("hot-1", "hotline", "erased", Some(7_200_000)));
        cases.push(case("ctr-1", "counter", "open", None));
        let deadlines = vec![DeadlineRow {
            case_id: "ctr-1".into(),
            kind: "review".into(),
            due_ms: Some(10),
            met_ms: None,
            provisional: false,
        }];
        let erasures = vec![ErasureRow {
            case_id: "hot-1".into(),
            system: "orders".into(),
            tables_not_verified: 0,
            tables: 2,
            rows_erased: 3,
            kept: vec![("invoices".into(), 1, "tax law".into(), 20)],
        }];
        let r = build(
            "2026-11-01",
            "2026-12-01",
            "now",
            100,
            0,
            &cases,
            &deadlines,
            &erasures,
            30,
        );
        let p = PublicReport::from_report(&r, "monthly", DEFAULT_THRESHOLD);
        assert_eq!(p.cases, Count::Exact(9));
        assert_eq!(p.by_channel["app"], Count::Exact(7));
        assert_eq!(p.by_channel["hotline"], Count::Below(5));
        assert_eq!(p.by_channel["counter"], Count::Below(5));
        assert_eq!(p.durations.closed, Count::Exact(8));
        assert_eq!(p.durations.p50_hours, Some(1.0));
        assert_eq!(p.overdue_cases, Count::Below(5));
        assert_eq!(p.deadlines[0].with_due_date, Count::Below(5));
        assert_eq!(p.deadlines[0].share_on_time, None);
        assert_eq!(p.verification.rows_erased, Count::Below(5));
        assert_eq!(p.expiring[0].legal_basis, "tax law");
        let json = serde_json::to_string(&p).unwrap();
        for id in ["app-", "hot-1", "ctr-1", "invoices"] {
            assert!(!json.contains(id), "{id} in {json}");
        }
        // Few closed cases: no percentile that would be a case's duration.
        let few = build("a", "b", "now", 0, 0, &cases[7..], &[], &[], 30);
        let p = PublicReport::from_report(&few, "monthly", DEFAULT_THRESHOLD);
        assert_eq!(p.durations.closed, Count::Below(5));
        assert_eq!(p.durations.p50_hours, None);
        assert!(!serde_json::to_string(&p).unwrap().contains("p50"));
    }
}
