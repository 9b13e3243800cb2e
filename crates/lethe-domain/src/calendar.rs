//! The working-day calendar: statutory holidays and make-up working days
//! (调休) per State Council notice, and working-day arithmetic in the
//! platform's time zone.
//!
//! A date in a year no notice covers is an explicit error
//! ([`CalendarError::NotCovered`]), never silently a plain weekday.

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// The mainland China calendar shipped with Lethe (2020 to 2026).
pub const CN_CALENDAR: &str = include_str!("../data/cn-calendar.toml");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("calendar file, line {line}: {reason}")]
    Invalid { line: usize, reason: String },
    #[error(
        "the working-day calendar does not cover {year}; add that year's State Council notice to the calendar file"
    )]
    NotCovered { year: i16 },
}

/// Statutory holidays on lunar dates (and 清明, a solar term) whose
/// Gregorian dates are known for years the shipped calendar does not cover
/// yet: (year, month, first day, days). 春节 is 除夕 to 初三 (four days,
/// from 2025's revision of the law); 清明, 端午 and 中秋 one day each.
pub const LUNAR_HOLIDAYS: [(i16, i8, i8, u8); 8] = [
    (2027, 2, 5, 4),  // 春节: 除夕 5 February, 初一 6 February
    (2027, 4, 5, 1),  // 清明
    (2027, 6, 9, 1),  // 端午
    (2027, 9, 15, 1), // 中秋
    (2028, 1, 25, 4), // 春节: 除夕 25 January, 初一 26 January
    (2028, 4, 4, 1),  // 清明
    (2028, 5, 28, 1), // 端午
    (2028, 10, 3, 1), // 中秋
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YearSource {
    pub year: i16,
    pub source: String,
    pub urls: Vec<String>,
    /// The year redefines one the calendar it extends already has.
    pub replace: bool,
    /// Its line in the file it came from.
    pub line: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendar {
    years: BTreeMap<i16, YearSource>,
    holidays: BTreeSet<Date>,
    workdays: BTreeSet<Date>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    year: Vec<RawYear>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawYear {
    year: toml::Spanned<i64>,
    source: toml::Spanned<String>,
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    holidays: Vec<toml::Spanned<String>>,
    #[serde(default)]
    workdays: Vec<toml::Spanned<String>>,
    /// Set to redefine a year the shipped calendar already has.
    #[serde(default)]
    replace: bool,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |t| t.bytes().filter(|b| *b == b'\n').count() + 1)
}

/// Most years a calendar holds; most dates in one year.
const MAX_YEARS: usize = 200;
const MAX_DATES_PER_YEAR: usize = 366;

impl Calendar {
    /// The shipped mainland China calendar.
    pub fn china() -> Result<Self, CalendarError> {
        Self::parse(CN_CALENDAR)
    }

    /// Parses a calendar file; any error names the line and the reason.
    pub fn parse(text: &str) -> Result<Self, CalendarError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| CalendarError::Invalid {
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            reason: e.message().to_owned(),
        })?;
        if raw.year.len() > MAX_YEARS {
            return Err(CalendarError::Invalid {
                line: 1,
                reason: format!("more than {MAX_YEARS} years"),
            });
        }
        let mut cal = Calendar::default();
        for y in raw.year {
            let yline = line_of(text, y.year.span().start);
            let year = i16::try_from(*y.year.get_ref())
                .ok()
                .filter(|v| (1990..=2100).contains(v))
                .ok_or_else(|| CalendarError::Invalid {
                    line: yline,
                    reason: format!("year {} is outside 1990-2100", y.year.get_ref()),
                })?;
            if cal.years.contains_key(&year) {
                return Err(CalendarError::Invalid {
                    line: yline,
                    reason: format!("year {year} is listed twice"),
                });
            }
            if y.source.get_ref().trim().is_empty() {
                return Err(CalendarError::Invalid {
                    line: line_of(text, y.source.span().start),
                    reason: format!("year {year} must cite its State Council notice in `source`"),
                });
            }
            if y.holidays.len() + y.workdays.len() > MAX_DATES_PER_YEAR {
                return Err(CalendarError::Invalid {
                    line: yline,
                    reason: format!("year {year} lists more than {MAX_DATES_PER_YEAR} dates"),
                });
            }
            let parse = |d: &toml::Spanned<String>| -> Result<(Date, usize), CalendarError> {
                let line = line_of(text, d.span().start);
                let date: Date = d.get_ref().parse().map_err(|_| CalendarError::Invalid {
                    line,
                    reason: format!("'{}' is not a date (write YYYY-MM-DD)", d.get_ref()),
                })?;
                // A notice may start a holiday in the last days of the year before (2022-12-31 for 2023).
                let ok_year =
                    date.year() == year || (date.year() == year - 1 && date.month() == 12);
                if !ok_year {
                    return Err(CalendarError::Invalid {
                        line,
                        reason: format!("{date} is not in the {year} schedule"),
                    });
                }
                Ok((date, line))
            };
            for h in &y.holidays {
                let (d, line) = parse(h)?;
                if !cal.holidays.insert(d) {
                    return Err(CalendarError::Invalid {
                        line,
                        reason: format!("{d} is listed twice"),
                    });
                }
            }
            for w in &y.workdays {
                let (d, line) = parse(w)?;
                if !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) {
                    return Err(CalendarError::Invalid {
                        line,
                        reason: format!(
                            "make-up working day {d} is a {:?}; make-up working days fall on a Saturday or Sunday",
                            d.weekday()
                        ),
                    });
                }
                if cal.holidays.contains(&d) {
                    return Err(CalendarError::Invalid {
                        line,
                        reason: format!("{d} is both a holiday and a working day"),
                    });
                }
                if !cal.workdays.insert(d) {
                    return Err(CalendarError::Invalid {
                        line,
                        reason: format!("{d} is listed twice"),
                    });
                }
            }
            cal.years.insert(
                year,
                YearSource {
                    year,
                    source: y.source.into_inner(),
                    urls: y.urls,
                    replace: y.replace,
                    line: yline,
                },
            );
        }
        Ok(cal)
    }

    /// This calendar extended by `other`: its years are added, and a year in
    /// both is taken from `other` (an operator's correction).
    /// [`Calendar::extended`], refusing a year this calendar has unless the
    /// other says `replace = true` for it (an operator's file that repeats
    /// a shipped year by mistake would otherwise override it silently).
    pub fn extended_checked(&self, other: &Calendar) -> Result<Calendar, CalendarError> {
        for (y, src) in &other.years {
            if self.covers(*y) && !src.replace {
                return Err(CalendarError::Invalid {
                    line: src.line,
                    reason: format!(
                        "year {y} is in the shipped calendar already; to redefine it, add `replace = true` to that year"
                    ),
                });
            }
        }
        Ok(self.extended(other))
    }

    pub fn extended(&self, other: &Calendar) -> Calendar {
        let mut out = self.clone();
        for y in other.years.keys() {
            out.holidays.retain(|d| !Self::belongs(*d, *y));
            out.workdays.retain(|d| !Self::belongs(*d, *y));
        }
        out.years
            .extend(other.years.iter().map(|(k, v)| (*k, v.clone())));
        out.holidays.extend(other.holidays.iter().copied());
        out.workdays.extend(other.workdays.iter().copied());
        out
    }

    fn belongs(d: Date, year: i16) -> bool {
        d.year() == year || (d.year() == year - 1 && d.month() == 12 && d.day() >= 25)
    }

    pub fn years(&self) -> impl Iterator<Item = &YearSource> {
        self.years.values()
    }

    pub fn covers(&self, year: i16) -> bool {
        self.years.contains_key(&year)
    }

    pub fn is_working_day(&self, d: Date) -> Result<bool, CalendarError> {
        if !self.covers(d.year()) {
            return Err(CalendarError::NotCovered { year: d.year() });
        }
        if self.holidays.contains(&d) {
            return Ok(false);
        }
        if self.workdays.contains(&d) {
            return Ok(true);
        }
        Ok(!matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday))
    }

    /// A day's working status where the calendar has no State Council notice
    /// for its year: only what is certain counts as a day off — weekends and
    /// the statutory holidays of 《全国年节及纪念日放假办法》 on fixed dates
    /// (元旦 1 January, 劳动节 1–2 May, 国庆 1–3 October) and the lunar ones
    /// whose dates are known ([`LUNAR_HOLIDAYS`]). Make-up workdays and
    /// bridging days are not known yet: fewer days off, so the deadline
    /// computed is the earliest the notice could make it (conservative).
    pub fn provisional_is_working_day(d: Date) -> bool {
        if matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) {
            return false;
        }
        let (m, day) = (d.month(), d.day());
        let fixed = matches!(
            (m, day),
            (1, 1) | (5, 1) | (5, 2) | (10, 1) | (10, 2) | (10, 3)
        );
        let lunar = LUNAR_HOLIDAYS.iter().any(|(y, mm, dd, len)| {
            *y == d.year()
                && Date::new(*y, *mm, *dd).is_ok_and(|start| {
                    d >= start
                        && start
                            .checked_add(i64::from(*len).days())
                            .is_ok_and(|end| d < end)
                })
        });
        !(fixed || lunar)
    }

    /// Like [`Self::end_of_nth_working_day`], and beyond the years the
    /// calendar covers by [`Self::provisional_is_working_day`]; the flag says
    /// whether an uncovered day was counted (the deadline is provisional,
    /// recomputed when the calendar file adds the year).
    pub fn end_of_nth_working_day_provisional(
        &self,
        start: Timestamp,
        n: u32,
        tz: &TimeZone,
    ) -> Result<(Timestamp, bool), CalendarError> {
        let mut day = start.to_zoned_datetime(tz.clone()).date();
        let mut left = n;
        let mut provisional = false;
        for _ in 0..(n as usize * 7 + 400) {
            if left == 0 {
                break;
            }
            day = day
                .checked_add(1.day())
                .map_err(|_| CalendarError::NotCovered { year: day.year() })?;
            let working = if self.covers(day.year()) {
                self.is_working_day(day)?
            } else {
                provisional = true;
                Self::provisional_is_working_day(day)
            };
            if working {
                left -= 1;
            }
        }
        let next = day
            .checked_add(1.day())
            .map_err(|_| CalendarError::NotCovered { year: day.year() })?;
        next.to_zoned_datetime(tz.clone())
            .map(|z| (z.timestamp(), provisional))
            .map_err(|_| CalendarError::NotCovered { year: next.year() })
    }

    /// The end (midnight in `tz`) of the `n`th working day after the day of
    /// `start`. Submitting on Friday 10:00 with n = 3 and no holiday gives
    /// Thursday 00:00, i.e. the end of Wednesday.
    pub fn end_of_nth_working_day(
        &self,
        start: Timestamp,
        n: u32,
        tz: &TimeZone,
    ) -> Result<Timestamp, CalendarError> {
        let mut day = start.to_zoned_datetime(tz.clone()).date();
        let mut left = n;
        // 15 working days never span more than a few months; bound the walk.
        for _ in 0..(n as usize * 7 + 400) {
            if left == 0 {
                break;
            }
            day = day
                .checked_add(1.day())
                .map_err(|_| CalendarError::NotCovered { year: day.year() })?;
            if self.is_working_day(day)? {
                left -= 1;
            }
        }
        let next = day
            .checked_add(1.day())
            .map_err(|_| CalendarError::NotCovered { year: day.year() })?;
        next.to_zoned_datetime(tz.clone())
            .map(|z| z.timestamp())
            .map_err(|_| CalendarError::NotCovered { year: next.year() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_the_calendar_deadlines_are_provisional_and_conservative() {
        let cal = Calendar::china().unwrap();
        let tz = TimeZone::get("Asia/Shanghai").unwrap();
        // 10:00 in Shanghai is 02:00 UTC.
        let at = |s: &str| -> Timestamp { format!("{s}T02:00:00Z").parse().unwrap() };
        // Within 2026: final.
        let (_, p) = cal
            .end_of_nth_working_day_provisional(at("2026-12-01"), 3, &tz)
            .unwrap();
        assert!(!p);
        // 15 working days from 15 December 2026 run into 2027: provisional,
        // with 1 January a day off.
        let (due, p) = cal
            .end_of_nth_working_day_provisional(at("2026-12-15"), 15, &tz)
            .unwrap();
        assert!(p);
        let local = due.to_zoned_datetime(tz.clone()).date();
        assert_eq!(
            local,
            "2027-01-07".parse::<Date>().unwrap(),
            "the end of 6 January: {local}"
        );
        // Spring Festival 2027 (5 to 8 February) is off, weekends too.
        assert!(!Calendar::provisional_is_working_day(
            "2027-02-08".parse().unwrap()
        ));
        assert!(Calendar::provisional_is_working_day(
            "2027-02-09".parse().unwrap()
        ));
        assert!(!Calendar::provisional_is_working_day(
            "2027-10-01".parse().unwrap()
        ));
        // The strict computation still refuses the uncovered year.
        assert!(
            cal.end_of_nth_working_day(at("2026-12-30"), 3, &tz)
                .is_err()
        );
    }

    fn d(s: &str) -> Date {
        s.parse().unwrap()
    }

    fn days(from: &str, to: &str) -> Vec<Date> {
        let mut out = vec![];
        let mut x = d(from);
        while x <= d(to) {
            out.push(x);
            x = x.checked_add(1.day()).unwrap();
        }
        out
    }

    /// Checks a whole year day by day against a notice: the listed holiday
    /// ranges are off, the listed make-up days are worked, every other day is
    /// a working day exactly when it is Monday to Friday.
    fn check_year(cal: &Calendar, year: i16, holidays: &[(&str, &str)], makeup: &[&str]) {
        let off: BTreeSet<Date> = holidays.iter().flat_map(|(a, b)| days(a, b)).collect();
        let on: BTreeSet<Date> = makeup.iter().map(|s| d(s)).collect();
        for day in days(&format!("{year}-01-01"), &format!("{year}-12-31")) {
            let expected = if off.contains(&day) {
                false
            } else if on.contains(&day) {
                true
            } else {
                !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday)
            };
            assert_eq!(cal.is_working_day(day).unwrap(), expected, "{day}");
        }
    }

    #[test]
    fn the_2025_schedule_matches_the_notice() {
        // 国务院办公厅关于2025年部分节假日安排的通知
        let cal = Calendar::china().unwrap();
        check_year(
            &cal,
            2025,
            &[
                ("2025-01-01", "2025-01-01"), // 元旦
                ("2025-01-28", "2025-02-04"), // 春节 (除夕 to 初七)
                ("2025-04-04", "2025-04-06"), // 清明
                ("2025-05-01", "2025-05-05"), // 劳动节
                ("2025-05-31", "2025-06-02"), // 端午
                ("2025-10-01", "2025-10-08"), // 国庆、中秋
            ],
            &[
                "2025-01-26",
                "2025-02-08",
                "2025-04-27",
                "2025-09-28",
                "2025-10-11",
            ],
        );
    }

    #[test]
    fn the_2026_schedule_matches_the_notice() {
        // 国务院办公厅关于2026年部分节假日安排的通知
        let cal = Calendar::china().unwrap();
        check_year(
            &cal,
            2026,
            &[
                ("2026-01-01", "2026-01-03"), // 元旦
                ("2026-02-15", "2026-02-23"), // 春节
                ("2026-04-04", "2026-04-06"), // 清明
                ("2026-05-01", "2026-05-05"), // 劳动节
                ("2026-06-19", "2026-06-21"), // 端午
                ("2026-09-25", "2026-09-27"), // 中秋
                ("2026-10-01", "2026-10-07"), // 国庆
            ],
            &[
                "2026-01-04",
                "2026-02-14",
                "2026-02-28",
                "2026-05-09",
                "2026-09-20",
                "2026-10-10",
            ],
        );
    }

    #[test]
    fn every_year_from_2020_to_2026_cites_its_notice() {
        let cal = Calendar::china().unwrap();
        let years: Vec<i16> = cal.years().map(|y| y.year).collect();
        assert_eq!(years, (2020..=2026).collect::<Vec<_>>());
        for y in cal.years() {
            assert!(
                y.source
                    .contains(&format!("{}年部分节假日安排的通知", y.year)),
                "{}",
                y.source
            );
            assert!(
                y.urls.iter().all(|u| u.starts_with("https://www.gov.cn/")),
                "{:?}",
                y.urls
            );
        }
    }

    #[test]
    fn uncovered_years_are_an_error_not_a_weekday() {
        let cal = Calendar::china().unwrap();
        assert_eq!(
            cal.is_working_day(d("2027-03-03")),
            Err(CalendarError::NotCovered { year: 2027 })
        );
        let tz = TimeZone::get("Asia/Shanghai").unwrap();
        let late: Timestamp = "2026-12-28T02:00:00Z".parse().unwrap();
        assert!(matches!(
            cal.end_of_nth_working_day(late, 15, &tz),
            Err(CalendarError::NotCovered { year: 2027 })
        ));
    }

    #[test]
    fn operators_extend_and_correct_years() {
        let cal = Calendar::china().unwrap();
        let ext = Calendar::parse("[[year]]\nyear = 2027\nsource = \"国务院办公厅关于2027年部分节假日安排的通知\"\nholidays = [\"2027-01-01\"]\nworkdays = []\n").unwrap();
        let all = cal.extended_checked(&ext).unwrap();
        assert!(!all.is_working_day(d("2027-01-01")).unwrap());
        assert!(all.is_working_day(d("2027-03-03")).unwrap());
        assert!(!all.is_working_day(d("2026-10-02")).unwrap());
        // A shipped year repeated by mistake is refused; on purpose, it says so.
        let again =
            "# corrections\n[[year]]\nyear = 2026\nsource = \"x\"\nholidays = [\"2026-10-09\"]\n";
        assert_eq!(
            cal.extended_checked(&Calendar::parse(again).unwrap()),
            Err(CalendarError::Invalid {
                line: 3,
                reason: "year 2026 is in the shipped calendar already; to redefine it, add `replace = true` to that year".into()
            })
        );
        let fixed = again.replace("source", "replace = true\nsource");
        let all = cal
            .extended_checked(&Calendar::parse(&fixed).unwrap())
            .unwrap();
        assert!(!all.is_working_day(d("2026-10-09")).unwrap());
        // The corrected year is only what the file says: its other holidays went.
        assert!(all.is_working_day(d("2026-10-02")).unwrap());
    }

    #[test]
    fn malformed_files_name_the_line_and_the_reason() {
        let bad_date = "[[year]]\nyear = 2027\nsource = \"x\"\nholidays = [\n  \"2027-01-01\",\n  \"2027-13-01\",\n]\n";
        let e = Calendar::parse(bad_date).unwrap_err();
        assert_eq!(
            e,
            CalendarError::Invalid {
                line: 6,
                reason: "'2027-13-01' is not a date (write YYYY-MM-DD)".into()
            }
        );
        let weekday_makeup = "[[year]]\nyear = 2025\nsource = \"x\"\nworkdays = [\"2025-01-27\"]\n";
        let e = Calendar::parse(weekday_makeup).unwrap_err().to_string();
        assert!(
            e.contains("line 4") && e.contains("Saturday or Sunday"),
            "{e}"
        );
        let syntax = "[[year]]\nyear = 2025\nsource = \"x\"\nholidays = [\"2025-01-01\"\n";
        let e = Calendar::parse(syntax).unwrap_err().to_string();
        assert!(e.starts_with("calendar file, line"), "{e}");
        let no_source = "[[year]]\nyear = 2025\nsource = \" \"\n";
        assert!(
            Calendar::parse(no_source)
                .unwrap_err()
                .to_string()
                .contains("cite its State Council notice")
        );
        let wrong_year = "[[year]]\nyear = 2025\nsource = \"x\"\nholidays = [\"2024-06-01\"]\n";
        assert!(
            Calendar::parse(wrong_year)
                .unwrap_err()
                .to_string()
                .contains("not in the 2025 schedule")
        );
    }

    #[test]
    fn working_days_skip_weekends_and_holidays_in_shanghai_time() {
        let cal = Calendar::china().unwrap();
        let tz = TimeZone::get("Asia/Shanghai").unwrap();
        // Friday 2025-03-07 10:00 +08 -> Mon, Tue, Wed -> end of Wed 2025-03-12.
        let t: Timestamp = "2025-03-07T02:00:00Z".parse().unwrap();
        assert_eq!(
            cal.end_of_nth_working_day(t, 3, &tz).unwrap().to_string(),
            "2025-03-12T16:00:00Z"
        );
        // 23:30 on Friday in Shanghai is still Friday there (15:30 UTC).
        let t: Timestamp = "2025-03-07T15:30:00Z".parse().unwrap();
        assert_eq!(
            cal.end_of_nth_working_day(t, 3, &tz).unwrap().to_string(),
            "2025-03-12T16:00:00Z"
        );
    }
}
