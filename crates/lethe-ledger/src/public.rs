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

const WITHHELD: &str = "withheld";

/// A published count: exact, only "below the threshold", or withheld.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Exact(u64),
    /// 1 ..= threshold - 1: written as "< threshold".
    Below(u64),
    /// Not published although not small (secondary suppression): shown
    /// exactly, it would let a reader work a small count out by
    /// subtraction. Written as "withheld".
    Withheld,
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
            Self::Below(_) | Self::Withheld => None,
        }
    }
    /// `n` hidden: "< threshold" when it is small, else withheld.
    fn hidden(n: u64, threshold: u64) -> Self {
        match Self::of(n, threshold) {
            Self::Exact(_) => Self::Withheld,
            c => c,
        }
    }
}

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(n) => write!(f, "{n}"),
            Self::Below(t) => write!(f, "< {t}"),
            Self::Withheld => f.write_str(WITHHELD),
        }
    }
}

impl Serialize for Count {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Exact(n) => s.serialize_u64(*n),
            Self::Below(_) | Self::Withheld => s.collect_str(self),
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
            Raw::S(s) if s == WITHHELD => Ok(Self::Withheld),
            Raw::S(s) => s
                .strip_prefix("< ")
                .and_then(|t| t.parse().ok())
                .map(Self::Below)
                .ok_or_else(|| {
                    serde::de::Error::custom("a count is a number, \"< N\" or \"withheld\"")
                }),
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

fn n(v: usize) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Every count of a report by a stable path, raw. `deadline/<kind>/pending`
/// (due dates neither met nor overdue) is never published: it is the part
/// of `with_due_date` a reader cannot see.
type Cells = BTreeMap<String, u64>;

fn raw_cells(r: &Report) -> Cells {
    let mut c = Cells::new();
    c.insert("cases".into(), n(r.cases));
    for (k, v) in &r.by_channel {
        c.insert(format!("by_channel/{k}"), n(*v));
    }
    for (k, v) in &r.by_outcome {
        c.insert(format!("by_outcome/{k}"), n(*v));
    }
    c.insert("closed".into(), n(r.durations.count));
    for d in &r.deadlines {
        let k = &d.kind;
        c.insert(format!("deadline/{k}/with_due_date"), n(d.with_due_date));
        c.insert(format!("deadline/{k}/met_on_time"), n(d.met_on_time));
        c.insert(format!("deadline/{k}/met_late"), n(d.met_late));
        c.insert(format!("deadline/{k}/open_overdue"), n(d.open_overdue));
        c.insert(
            format!("deadline/{k}/pending"),
            n(d.with_due_date
                .saturating_sub(d.met_on_time + d.met_late + d.open_overdue)),
        );
    }
    c.insert("overdue_cases".into(), n(r.overdue_cases.len()));
    c.insert("systems_erased".into(), n(r.verification.systems_erased));
    c.insert(
        "systems_verified".into(),
        n(r.verification.systems_verified),
    );
    c.insert("rows_erased".into(), r.verification.rows_erased);
    for k in &r.expiring {
        *c.entry(format!("expiring/{}", k.legal_basis)).or_insert(0) += 1;
    }
    c
}

/// The groups of cells that add up to a published total: a reader who
/// sees the total and all but one member works the last one out. `extra`:
/// a member that is never published (it counts as hidden).
fn partitions(raw: &Cells) -> Vec<(String, Vec<String>)> {
    let mut out = vec![];
    for prefix in ["by_channel/", "by_outcome/"] {
        let members: Vec<String> = raw
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        out.push(("cases".to_owned(), members));
    }
    let kinds: Vec<&str> = raw
        .keys()
        .filter_map(|k| k.strip_prefix("deadline/")?.strip_suffix("/with_due_date"))
        .collect();
    for k in kinds {
        out.push((
            format!("deadline/{k}/with_due_date"),
            ["met_on_time", "met_late", "open_overdue", "pending"]
                .iter()
                .map(|m| format!("deadline/{k}/{m}"))
                .collect(),
        ));
    }
    out
}

/// Which cells may be published exactly (statistical disclosure control):
/// - primary: a count from 1 to `t - 1` is "< t";
/// - sums of figures over few cases (rows erased, systems) are withheld
///   when the case count is not published exactly;
/// - secondary: in a group adding up to a published total, the hidden
///   members together must come to `t` or more (else the smallest exact
///   members are withheld too), so no hidden count can be worked out by
///   subtraction.
fn protect(raw: &Cells, t: u64) -> BTreeMap<String, Count> {
    let mut out: BTreeMap<String, Count> = raw
        .iter()
        .map(|(k, v)| {
            let c = if k.ends_with("/pending") {
                Count::hidden(*v, t)
            } else {
                Count::of(*v, t)
            };
            (k.clone(), c)
        })
        .collect();
    if out.get("cases").and_then(|c| c.exact()).is_none() {
        for k in ["systems_erased", "systems_verified", "rows_erased"] {
            if let Some(c) = out.get_mut(k) {
                *c = Count::hidden(raw.get(k).copied().unwrap_or(0), t);
            }
        }
    }
    for (total, members) in partitions(raw) {
        if out.get(&total).and_then(|c| c.exact()).is_none() {
            continue;
        }
        loop {
            let hidden: u64 = members
                .iter()
                .filter(|m| out.get(*m).is_some_and(|c| c.exact().is_none()))
                .map(|m| raw.get(m).copied().unwrap_or(0))
                .sum();
            if hidden == 0 || hidden >= t {
                break;
            }
            // The smallest member still published exactly (and not zero).
            let next = members
                .iter()
                .filter(|m| out.get(*m).and_then(|c| c.exact()).is_some_and(|v| v > 0))
                .min_by_key(|m| (raw.get(*m).copied().unwrap_or(0), (*m).clone()));
            match next {
                Some(m) => {
                    out.insert(m.clone(), Count::Withheld);
                }
                // Every non-zero member is hidden: they add up to the
                // total, which is then not small either.
                None => break,
            }
        }
    }
    out
}

impl PublicReport {
    /// The aggregate figures of `r` under `threshold`, published on their
    /// own (see [`publish_set`] for a month's installation and platform
    /// reports together).
    pub fn from_report(r: &Report, kind: &str, threshold: u64) -> Self {
        Self::assemble(r, kind, threshold, &protect(&raw_cells(r), threshold))
    }

    /// The report of `r` with its counts as `cells` publishes them; shares
    /// and percentiles are shown only where the counts they come from are
    /// exact (a share of a published total would give a hidden part away).
    fn assemble(r: &Report, kind: &str, t: u64, cells: &BTreeMap<String, Count>) -> Self {
        let get = |k: &str| cells.get(k).copied().unwrap_or(Count::Exact(0));
        let mut bases: Vec<&str> = r.expiring.iter().map(|k| k.legal_basis.as_str()).collect();
        bases.sort_unstable();
        bases.dedup();
        let closed = get("closed");
        let enough = closed.exact().is_some_and(|n| n > 0);
        Self {
            platform: r.platform.clone(),
            kind: kind.to_owned(),
            from: r.from.clone(),
            to: r.to.clone(),
            generated_at: r.generated_at.clone(),
            threshold: t,
            cases: get("cases"),
            by_channel: r
                .by_channel
                .keys()
                .map(|k| (k.clone(), get(&format!("by_channel/{k}"))))
                .collect(),
            by_outcome: r
                .by_outcome
                .keys()
                .map(|k| (k.clone(), get(&format!("by_outcome/{k}"))))
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
                    let k = &d.kind;
                    let with_due_date = get(&format!("deadline/{k}/with_due_date"));
                    let met_on_time = get(&format!("deadline/{k}/met_on_time"));
                    let shown = with_due_date.exact().is_some_and(|n| n > 0)
                        && met_on_time.exact().is_some();
                    PublicDeadline {
                        kind: k.clone(),
                        with_due_date,
                        met_on_time,
                        met_late: get(&format!("deadline/{k}/met_late")),
                        open_overdue: get(&format!("deadline/{k}/open_overdue")),
                        share_on_time: shown.then_some(d.share_on_time),
                    }
                })
                .collect(),
            overdue_cases: get("overdue_cases"),
            verification: PublicVerification {
                systems_erased: get("systems_erased"),
                systems_verified: get("systems_verified"),
                rows_erased: get("rows_erased"),
            },
            expiring_within_days: r.expiring_within_days,
            expiring: bases
                .into_iter()
                .map(|basis| PublicRetention {
                    legal_basis: basis.to_owned(),
                    tables: get(&format!("expiring/{basis}")),
                })
                .collect(),
        }
    }
}

/// A month's reports, published together.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicSet {
    pub installation: PublicReport,
    /// The platforms with a report of their own.
    pub platforms: Vec<PublicReport>,
}

/// The installation's report and the platforms' reports of one period,
/// protected together so that none can be subtracted from another:
/// - a platform with fewer than `t` cases has no report of its own; if the
///   platforms left out come to 1 .. `t - 1` cases together, the smallest
///   published platforms are left out too, until they come to `t` or more;
/// - the installation's figures are the sums of the published parts (each
///   platform's report and the group left out, protected as one more
///   report): a figure is exact only where every part is, so the
///   installation's report says nothing its parts do not.
pub fn publish_set(installation: &Report, platforms: &[Report], kind: &str, t: u64) -> PublicSet {
    let mut order: Vec<&Report> = platforms.iter().collect();
    order.sort_by(|a, b| (a.cases, &a.platform).cmp(&(b.cases, &b.platform)));
    let mut left_out: Vec<&Report> = vec![];
    let mut published: Vec<&Report> = vec![];
    for r in order {
        if n(r.cases) < t {
            left_out.push(r);
        } else {
            published.push(r);
        }
    }
    // `published` is sorted by size: the smallest go first.
    loop {
        let rest: u64 = left_out.iter().map(|r| n(r.cases)).sum();
        if rest == 0 || rest >= t || published.is_empty() {
            break;
        }
        left_out.push(published.remove(0));
    }
    let inst_raw = raw_cells(installation);
    let mut parts: Vec<BTreeMap<String, Count>> = vec![];
    let mut sum_published = Cells::new();
    let mut reports = vec![];
    for r in &published {
        let raw = raw_cells(r);
        for (k, v) in &raw {
            *sum_published.entry(k.clone()).or_insert(0) += v;
        }
        let cells = protect(&raw, t);
        reports.push(PublicReport::assemble(r, kind, t, &cells));
        parts.push(cells);
    }
    // The rest of the installation (platforms left out, and anything the
    // platforms' reports do not cover) as one more part.
    let rest: Cells = inst_raw
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.saturating_sub(sum_published.get(k).copied().unwrap_or(0)),
            )
        })
        .collect();
    parts.push(protect(&rest, t));
    let cells: BTreeMap<String, Count> = inst_raw
        .iter()
        .map(|(k, v)| {
            let exact = parts.iter().all(|p| {
                p.get(k)
                    .copied()
                    .unwrap_or(Count::Exact(0))
                    .exact()
                    .is_some()
            });
            let c = if exact {
                Count::Exact(*v)
            } else {
                Count::hidden(*v, t)
            };
            (k.clone(), c)
        })
        .collect();
    PublicSet {
        installation: PublicReport::assemble(installation, kind, t, &cells),
        platforms: reports,
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
        // 9 - 7 would give hotline + counter = 2, so each is 1: app is
        // withheld too.
        assert_eq!(p.by_channel["app"], Count::Withheld);
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

    /// A report of `cases` as (channel, state) pairs, with one review
    /// deadline per case (met on time when the case is closed).
    fn report_of(platform: Option<&str>, cases: &[(&str, &str)]) -> Report {
        let rows: Vec<CaseRow> = cases
            .iter()
            .enumerate()
            .map(|(i, (ch, st))| {
                let closed = (*st != "open").then_some(3_600_000 * (i as i64 + 1));
                case(&format!("c-{i}"), ch, st, closed)
            })
            .collect();
        let deadlines: Vec<DeadlineRow> = rows
            .iter()
            .map(|c| DeadlineRow {
                case_id: c.case_id.clone(),
                kind: "review".into(),
                due_ms: Some(i64::MAX / 2),
                met_ms: c.closed_ms,
                provisional: false,
            })
            .collect();
        let mut r = build("a", "b", "now", 0, 0, &rows, &deadlines, &[], 30);
        r.platform = platform.map(str::to_owned);
        r
    }

    /// Every group adding up to a published total hides 0 or at least
    /// `t` (so no hidden member can be worked out), on many shapes.
    #[test]
    fn no_hidden_count_can_be_worked_out_by_subtraction() {
        let channels = ["app", "hotline", "counter", "recovery"];
        let states = ["erased", "withdrawn", "rejected", "open"];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..500 {
            let n = (next() % 30) as usize;
            let cases: Vec<(&str, &str)> = (0..n)
                .map(|_| {
                    // Skewed: most cases in the app, few elsewhere.
                    let c = match next() % 10 {
                        0..=5 => 0,
                        6 | 7 => 1,
                        8 => 2,
                        _ => 3,
                    };
                    (channels[c], states[(next() % 4) as usize])
                })
                .collect();
            let r = report_of(None, &cases);
            let raw = raw_cells(&r);
            let cells = protect(&raw, 5);
            for (total, members) in partitions(&raw) {
                if cells[&total].exact().is_none() {
                    continue;
                }
                let hidden: u64 = members
                    .iter()
                    .filter(|m| cells[*m].exact().is_none())
                    .map(|m| raw[m])
                    .sum();
                assert!(hidden == 0 || hidden >= 5, "{total}: {cells:?}");
            }
            let p = PublicReport::from_report(&r, "monthly", 5);
            for d in &p.deadlines {
                if d.met_on_time.exact().is_none() {
                    assert_eq!(d.share_on_time, None, "a share gives a hidden count away");
                }
            }
        }
    }

    #[test]
    fn the_installation_report_says_nothing_its_platforms_reports_do_not() {
        let many: Vec<(&str, &str)> = (0..20)
            .map(|i| (if i < 18 { "app" } else { "hotline" }, "erased"))
            .collect();
        let a = report_of(Some("alpha"), &many);
        let b = report_of(Some("beta"), &[("app", "erased"); 7]);
        let c = report_of(Some("gamma"), &[("counter", "erased"), ("app", "open")]);
        let all: Vec<(&str, &str)> = many
            .iter()
            .copied()
            .chain([("app", "erased"); 7])
            .chain([("counter", "erased"), ("app", "open")])
            .collect();
        let inst = report_of(None, &all);
        let set = publish_set(&inst, &[a.clone(), b, c], "monthly", 5);
        // gamma (2 cases) has no report; with it alone left out, the
        // installation minus alpha minus beta would be gamma's 2: beta, the
        // smallest published, is left out too.
        let names: Vec<_> = set.platforms.iter().map(|p| p.platform.clone()).collect();
        assert_eq!(names, [Some("alpha".to_owned())]);
        assert_eq!(set.installation.cases, Count::Exact(29));
        // Every exact figure of the installation, minus alpha's, is 0 or
        // at least 5: beta and gamma together, never one of them.
        let inst_cells = protect(&raw_cells(&inst), 5);
        let alpha = raw_cells(&a);
        let pub_inst = serde_json::to_value(&set.installation).unwrap();
        for (k, _) in inst_cells {
            let shown = match k.split('/').collect::<Vec<_>>()[..] {
                ["cases"] => pub_inst["cases"].clone(),
                ["by_channel", ch] => pub_inst["by_channel"][ch].clone(),
                ["by_outcome", o] => pub_inst["by_outcome"][o].clone(),
                _ => continue,
            };
            if let Some(v) = shown.as_u64() {
                let rest = v - alpha.get(&k).copied().unwrap_or(0);
                assert!(rest == 0 || rest >= 5, "{k}: {rest} in {pub_inst}");
            }
        }
        // The counter's single case shows nowhere exactly.
        assert_ne!(pub_inst["by_channel"]["counter"], 1);
        // A platform with enough cases alone is published as it is alone.
        assert_eq!(
            set.platforms[0],
            PublicReport::from_report(&a, "monthly", 5)
        );
    }
}
