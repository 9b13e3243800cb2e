//! Deadline policies: computed per case from its history, the calendar and
//! the platform's time zone. Pure: the same case and calendar always give
//! the same deadlines, so they can be recomputed whenever the calendar file
//! changes.
//!
//! - **CN**: review within 3 working days of entering review; erasure starts
//!   within 24 hours after cooling-off ends; the whole case within 15
//!   working days from submission, not counting time spent waiting for the
//!   user (the deadline is paused while the case waits for the user, and
//!   moved later by the time waited).
//! - **GDPR**: a response within one month of receipt, extendable once by
//!   two months with a notice and a reason.
//! - **CCPA**: receipt confirmed within 10 business days (Lethe confirms on
//!   submission), a response within 45 days, extendable once by 45.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    #[default]
    Cn,
    Gdpr,
    Ccpa,
}

impl Profile {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cn" => Some(Self::Cn),
            "gdpr" => Some(Self::Gdpr),
            "ccpa" => Some(Self::Ccpa),
            _ => None,
        }
    }
    pub fn allows_extension(&self) -> bool {
        matches!(self, Self::Gdpr | Self::Ccpa)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineKind {
    /// CN: an agent decides within 3 working days of the case entering review.
    Review,
    /// CN: erasure starts within 24 hours after cooling-off ends.
    ErasureStart,
    /// CN: the whole case within 15 working days.
    Completion,
    /// CCPA: receipt confirmed within 10 business days.
    Acknowledge,
    /// GDPR / CCPA: the request answered (erased, rejected or withdrawn).
    Response,
}

impl DeadlineKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Review => "review",
            Self::ErasureStart => "erasure_start",
            Self::Completion => "completion",
            Self::Acknowledge => "acknowledge",
            Self::Response => "response",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    pub kind: DeadlineKind,
    pub starts_at: Timestamp,
    /// `None` while paused (waiting for the user) or not computable.
    pub due_at: Option<Timestamp>,
    pub paused: bool,
    pub met_at: Option<Timestamp>,
    /// Why the deadline cannot be computed, or why it is provisional.
    pub problem: Option<String>,
    /// Computed over days the calendar does not cover yet (weekends and the
    /// statutory holidays that are certain; the earliest the State
    /// Council's notice could make it); recomputed when the calendar file
    /// adds the year.
    #[serde(default)]
    pub provisional: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Met,
    Late,
    Paused,
    OnTrack,
    Warning,
    Overdue,
    Unknown,
}

impl Deadline {
    /// The moment 80 % of the time allowed has passed.
    pub fn warn_at(&self) -> Option<Timestamp> {
        let due = self.due_at?;
        let span = due.duration_since(self.starts_at);
        let eighty = SignedDuration::from_millis(
            span.as_millis()
                .saturating_mul(4)
                .checked_div(5)
                .and_then(|v| i64::try_from(v).ok())
                .unwrap_or(0),
        );
        self.starts_at.checked_add(eighty).ok()
    }

    pub fn status(&self, now: Timestamp) -> Status {
        match (self.met_at, self.due_at) {
            (Some(m), Some(d)) if m > d => Status::Late,
            (Some(_), _) => Status::Met,
            (None, None) if self.paused => Status::Paused,
            (None, None) => Status::Unknown,
            (None, Some(d)) if now > d => Status::Overdue,
            (None, Some(_)) if self.warn_at().is_some_and(|w| now >= w) => Status::Warning,
            (None, Some(_)) => Status::OnTrack,
        }
    }
}

/// What one case's deadlines are computed from: its policy's profile and the
/// moments its history recorded. The case builds it
/// ([`crate::Case::deadlines`]); this module knows nothing of the state
/// machine, only of time and the calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub profile: Profile,
    pub created_at: Timestamp,
    pub review_started_at: Option<Timestamp>,
    pub review_ended_at: Option<Timestamp>,
    pub cooling_off_ends_at: Option<Timestamp>,
    pub erasure_started_at: Option<Timestamp>,
    /// When the case closed (erased, withdrawn, rejected); `None` while open.
    pub closed_at: Option<Timestamp>,
    /// The case waits for the user now, not for the platform.
    pub waiting_for_user: bool,
    /// The time the case has waited for the user so far.
    pub user_wait: SignedDuration,
    /// The response deadline was extended (GDPR, CCPA).
    pub extended: bool,
}

fn working(
    kind: DeadlineKind,
    start: Timestamp,
    n: u32,
    cal: &Calendar,
    tz: &TimeZone,
    met: Option<Timestamp>,
) -> Deadline {
    match cal.end_of_nth_working_day_provisional(start, n, tz) {
        Ok((due, provisional)) => Deadline {
            kind,
            starts_at: start,
            due_at: Some(due),
            paused: false,
            met_at: met,
            problem: provisional.then(|| {
                "provisional: the working-day calendar does not cover this period yet; counted with weekends and the certain statutory holidays only (the earliest date), recomputed when the calendar file adds the year".to_owned()
            }),
            provisional,
        },
        Err(e) => Deadline {
            kind,
            starts_at: start,
            due_at: None,
            paused: false,
            met_at: met,
            problem: Some(e.to_string()),
            provisional: false,
        },
    }
}

fn plus_months(start: Timestamp, months: i64, tz: &TimeZone) -> Option<Timestamp> {
    start
        .to_zoned_datetime(tz.clone())
        .checked_add(months.months())
        .ok()
        .map(|z| z.timestamp())
}

/// Monday to Friday, no holidays (CCPA business days).
fn plus_business_days(start: Timestamp, n: u32, tz: &TimeZone) -> Option<Timestamp> {
    let mut day = start.to_zoned_datetime(tz.clone()).date();
    let mut left = n;
    while left > 0 {
        day = day.checked_add(1.day()).ok()?;
        if !matches!(
            day.weekday(),
            jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
        ) {
            left -= 1;
        }
    }
    day.checked_add(1.day())
        .ok()?
        .to_zoned_datetime(tz.clone())
        .ok()
        .map(|z| z.timestamp())
}

/// The deadlines of one case, from its facts, under its profile. A closed case
/// (erased, withdrawn, rejected) has none open: each is met when the case
/// closed, if not before, so a withdrawn case never goes overdue.
pub fn deadlines(case: &Facts, cal: &Calendar, tz: &TimeZone) -> Vec<Deadline> {
    let mut out = open_deadlines(case, cal, tz);
    if let Some(done) = case.closed_at {
        for d in &mut out {
            if d.met_at.is_none() {
                d.met_at = Some(done);
                d.paused = false;
            }
        }
    }
    out
}

fn open_deadlines(case: &Facts, cal: &Calendar, tz: &TimeZone) -> Vec<Deadline> {
    let created = case.created_at;
    let done = case.closed_at;
    let extended = case.extended;
    match case.profile {
        Profile::Cn => {
            let mut out = vec![];
            if let Some(start) = case.review_started_at {
                out.push(working(
                    DeadlineKind::Review,
                    start,
                    3,
                    cal,
                    tz,
                    case.review_ended_at,
                ));
            }
            if let Some(end) = case.cooling_off_ends_at {
                let due = end.checked_add(SignedDuration::from_hours(24)).ok();
                out.push(Deadline {
                    kind: DeadlineKind::ErasureStart,
                    starts_at: end,
                    due_at: due,
                    paused: false,
                    met_at: case.erasure_started_at,
                    problem: None,
                    provisional: false,
                });
            }
            let waiting_now = done.is_none() && case.waiting_for_user;
            if waiting_now {
                out.push(Deadline {
                    kind: DeadlineKind::Completion,
                    starts_at: created,
                    due_at: None,
                    paused: true,
                    met_at: None,
                    problem: None,
                    provisional: false,
                });
            } else {
                let effective = created.checked_add(case.user_wait).unwrap_or(created);
                let mut d = working(DeadlineKind::Completion, effective, 15, cal, tz, done);
                d.starts_at = created;
                out.push(d);
            }
            out
        }
        Profile::Gdpr => {
            let due = plus_months(created, if extended { 3 } else { 1 }, tz);
            vec![Deadline {
                kind: DeadlineKind::Response,
                starts_at: created,
                due_at: due,
                paused: false,
                met_at: done,
                problem: None,
                provisional: false,
            }]
        }
        Profile::Ccpa => {
            let days = if extended { 90 } else { 45 };
            vec![
                Deadline {
                    kind: DeadlineKind::Acknowledge,
                    starts_at: created,
                    due_at: plus_business_days(created, 10, tz),
                    paused: false,
                    met_at: Some(created),
                    problem: None,
                    provisional: false,
                },
                Deadline {
                    kind: DeadlineKind::Response,
                    starts_at: created,
                    due_at: created
                        .checked_add(SignedDuration::from_hours(24 * days))
                        .ok(),
                    paused: false,
                    met_at: done,
                    problem: None,
                    provisional: false,
                },
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AssuranceLevel, CaseCommand, CaseId, Channel, Locale, Policy, Reason, SubjectId};
    use crate::{Case, CaseState};

    fn deadlines(case: &Case, cal: &Calendar, tz: &TimeZone) -> Vec<Deadline> {
        case.deadlines(cal, tz)
    }

    fn tz() -> TimeZone {
        TimeZone::get("Asia/Shanghai").unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn case(profile: Profile, review: bool, t: Timestamp) -> Case {
        let policy = Policy {
            review_required: review,
            deadlines: profile,
            ..Policy::default()
        };
        Case::open(
            CaseId::from_uuid(uuid::Uuid::nil()),
            SubjectId::parse("1").unwrap(),
            Channel::App,
            policy,
            t,
        )
        .0
    }

    fn step(c: Case, cmd: CaseCommand, t: Timestamp) -> Case {
        c.apply(&cmd, t).unwrap().0
    }

    fn to_review(c: Case, t: Timestamp) -> Case {
        let c = step(
            c,
            CaseCommand::VerifyIdentity {
                method: "sms".into(),
                level: AssuranceLevel::PHONE,
            },
            t,
        );
        let c = step(
            c,
            CaseCommand::RecordChecks {
                assets: vec![],
                blockers: vec![],
                consequences: vec![],
            },
            t,
        );
        let c = step(
            c,
            CaseCommand::Acknowledge {
                consequence_id: "account_erased".into(),
                version: 1,
                locale: Locale::En,
            },
            t,
        );
        step(c, CaseCommand::Confirm, t)
    }

    fn get(ds: &[Deadline], k: DeadlineKind) -> Deadline {
        ds.iter().find(|d| d.kind == k).unwrap().clone()
    }

    /// Every terminal state closes every deadline: none is left to warn,
    /// escalate or count as overdue.
    #[test]
    fn a_closed_case_has_no_open_deadline() {
        let cal = Calendar::china().unwrap();
        let t = at("2026-03-02T02:00:00Z");
        let later = at("2026-03-04T02:00:00Z");
        // Withdrawn (restored) during cooling-off.
        let c = to_review(case(Profile::Cn, false, t), t);
        assert_eq!(c.state, CaseState::CoolingOff);
        let w = step(c, CaseCommand::Withdraw, later);
        // Rejected at review.
        let r = step(
            to_review(case(Profile::Cn, true, t), t),
            CaseCommand::Reject {
                reason: crate::Reason::parse("documents do not match").unwrap(),
            },
            later,
        );
        // Withdrawn before confirming.
        let early = step(case(Profile::Cn, false, t), CaseCommand::Withdraw, later);
        for (name, c) in [
            ("withdrawn in cooling-off", w),
            ("rejected", r),
            ("withdrawn early", early),
        ] {
            assert!(c.state.is_terminal(), "{name}");
            let ds = deadlines(&c, &cal, &tz());
            assert!(!ds.is_empty(), "{name}");
            for d in &ds {
                assert!(d.met_at.is_some(), "{name}: {d:?}");
                assert!(
                    matches!(
                        d.status(at("2027-01-01T00:00:00Z")),
                        Status::Met | Status::Late
                    ),
                    "{name}: {d:?}"
                );
            }
        }
    }

    #[test]
    fn review_across_the_2026_spring_festival() {
        let cal = Calendar::china().unwrap();
        // Friday 2026-02-13 10:00 in Shanghai. Sat 14 is a make-up working
        // day (1), 15-23 are the holiday, then Tue 24 (2), Wed 25 (3).
        let t = at("2026-02-13T02:00:00Z");
        let c = to_review(case(Profile::Cn, true, t), t);
        assert_eq!(c.state, CaseState::UnderReview);
        let r = get(&deadlines(&c, &cal, &tz()), DeadlineKind::Review);
        assert_eq!(r.due_at.unwrap().to_string(), "2026-02-25T16:00:00Z"); // end of Wed 25th, +08
        // 80 % of the time allowed (calendar time) has passed on the 23rd.
        assert_eq!(r.status(at("2026-02-20T00:00:00Z")), Status::OnTrack);
        assert_eq!(r.status(at("2026-02-24T00:00:00Z")), Status::Warning);
        assert_eq!(r.status(at("2026-02-26T00:00:00Z")), Status::Overdue);
        let c = step(c, CaseCommand::Approve, at("2026-02-24T03:00:00Z"));
        let r = get(&deadlines(&c, &cal, &tz()), DeadlineKind::Review);
        assert_eq!(r.status(at("2026-03-30T00:00:00Z")), Status::Met);
    }

    #[test]
    fn completion_across_national_day_2025_not_counting_user_time() {
        let cal = Calendar::china().unwrap();
        // Submitted Thu 2025-09-25 09:00 +08; the user takes 2 days to verify.
        let t0 = at("2025-09-25T01:00:00Z");
        let c = case(Profile::Cn, true, t0);
        let d = get(&deadlines(&c, &cal, &tz()), DeadlineKind::Completion);
        assert!(
            d.paused && d.due_at.is_none(),
            "waiting for the user pauses the deadline"
        );
        let t1 = at("2025-09-27T01:00:00Z"); // Saturday 09:00
        let c = step(
            c,
            CaseCommand::VerifyIdentity {
                method: "sms".into(),
                level: AssuranceLevel::PHONE,
            },
            t1,
        );
        assert_eq!(c.user_wait, SignedDuration::from_hours(48));
        let d = get(&deadlines(&c, &cal, &tz()), DeadlineKind::Completion);
        // Effective start Sat 27th. Working days: Sun 28 (make-up, 1), Mon 29
        // (2), Tue 30 (3), Oct 1-8 holiday, Thu 9 (4), Fri 10 (5), Sat 11
        // (make-up, 6), 13-17 (7-11), 20-23 (12-15) -> end of Thu Oct 23.
        assert_eq!(d.due_at.unwrap().to_string(), "2025-10-23T16:00:00Z");
        assert!(!d.paused);
    }

    #[test]
    fn erasure_starts_within_24_hours_of_cooling_off() {
        let cal = Calendar::china().unwrap();
        let t = at("2026-03-02T02:00:00Z");
        let c = to_review(case(Profile::Cn, false, t), t);
        let d = get(&deadlines(&c, &cal, &tz()), DeadlineKind::ErasureStart);
        assert_eq!(d.starts_at, c.cooling_off_ends_at.unwrap());
        assert_eq!(
            d.due_at.unwrap().duration_since(d.starts_at),
            SignedDuration::from_hours(24)
        );
        let late = d
            .due_at
            .unwrap()
            .checked_add(SignedDuration::from_secs(1))
            .unwrap();
        let c = step(
            c,
            CaseCommand::StartErasure {
                today: jiff::civil::date(2026, 3, 9),
            },
            late,
        );
        assert_eq!(
            get(&deadlines(&c, &cal, &tz()), DeadlineKind::ErasureStart).status(late),
            Status::Late
        );
    }

    #[test]
    fn gdpr_month_and_extension() {
        let cal = Calendar::china().unwrap();
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let c = case(Profile::Gdpr, false, at("2026-01-31T10:00:00Z"));
        let d = get(&deadlines(&c, &cal, &berlin), DeadlineKind::Response);
        assert_eq!(d.due_at.unwrap().to_string(), "2026-02-28T10:00:00Z"); // one month, clamped
        let c = step(
            c,
            CaseCommand::Extend {
                reason: Reason::parse("complex request across 9 systems").unwrap(),
            },
            at("2026-02-10T10:00:00Z"),
        );
        let d = get(&deadlines(&c, &cal, &berlin), DeadlineKind::Response);
        assert_eq!(d.due_at.unwrap().to_string(), "2026-04-30T09:00:00Z"); // three months, summer time
        // Only once, and never under CN.
        assert!(
            c.apply(
                &CaseCommand::Extend {
                    reason: Reason::parse("again").unwrap()
                },
                at("2026-02-11T00:00:00Z")
            )
            .is_err()
        );
        let cn = case(Profile::Cn, false, at("2026-01-31T10:00:00Z"));
        assert!(
            cn.apply(
                &CaseCommand::Extend {
                    reason: Reason::parse("x").unwrap()
                },
                at("2026-02-11T00:00:00Z")
            )
            .is_err()
        );
    }

    #[test]
    fn ccpa_acknowledge_and_respond() {
        let cal = Calendar::china().unwrap();
        let la = TimeZone::get("America/Los_Angeles").unwrap();
        let c = case(Profile::Ccpa, false, at("2026-03-02T18:00:00Z")); // Monday
        let ds = deadlines(&c, &cal, &la);
        let ack = get(&ds, DeadlineKind::Acknowledge);
        assert_eq!(ack.status(at("2026-03-03T00:00:00Z")), Status::Met);
        assert_eq!(ack.due_at.unwrap().to_string(), "2026-03-17T07:00:00Z"); // end of Mon 16th, PDT
        let resp = get(&ds, DeadlineKind::Response);
        assert_eq!(
            resp.due_at.unwrap().duration_since(resp.starts_at),
            SignedDuration::from_hours(24 * 45)
        );
    }

    #[test]
    fn beyond_the_calendar_a_deadline_is_provisional_not_unknown() {
        let cal = Calendar::china().unwrap();
        // Wed 2026-12-30: Thu 31st is one working day, then 2027 begins:
        // 1 January is a statutory holiday, 2–3 January a weekend, so the
        // third working day is Tue 5 January (the official notice can only
        // add days off, making the true deadline later, never earlier).
        let t = at("2026-12-30T02:00:00Z");
        let c = to_review(case(Profile::Cn, true, t), t);
        let r = get(&deadlines(&c, &cal, &tz()), DeadlineKind::Review);
        assert!(r.provisional);
        assert_eq!(r.due_at.unwrap().to_string(), "2027-01-05T16:00:00Z");
        assert!(r.problem.as_deref().unwrap().starts_with("provisional"));
        assert_eq!(r.status(t), Status::OnTrack);
        // Within the calendar: final.
        let t = at("2026-12-01T02:00:00Z");
        let c = to_review(case(Profile::Cn, true, t), t);
        let r = get(&deadlines(&c, &cal, &tz()), DeadlineKind::Review);
        assert!(!r.provisional && r.problem.is_none());
    }
}
