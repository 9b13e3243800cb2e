//! `lethe calendar show|deadline`: the working-day calendar and the deadlines it gives.

use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum CalendarCmd {
    /// The days off and the make-up working days of a year, with the notice
    /// they come from (or, for a year not covered yet, the provisional
    /// rule).
    Show {
        year: i16,
        /// An operator calendar file extending the shipped one.
        #[arg(long)]
        calendar_file: Option<PathBuf>,
    },
    /// The end of the n-th working day after a date, as Lethe computes a
    /// deadline (in the platform's time zone).
    Deadline {
        /// The start date (YYYY-MM-DD, in the time zone).
        #[arg(long)]
        from: String,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=366))]
        working_days: u32,
        #[arg(long, default_value = "Asia/Shanghai")]
        time_zone: String,
        #[arg(long)]
        calendar_file: Option<PathBuf>,
    },
}

pub(crate) fn calendar_cmd(cmd: CalendarCmd) -> anyhow::Result<()> {
    use lethe_domain::calendar::Calendar;
    let load = |f: Option<PathBuf>| {
        lethe_server::CalendarState::load(f.as_deref()).map_err(anyhow::Error::msg)
    };
    match cmd {
        CalendarCmd::Show {
            year,
            calendar_file,
        } => {
            let cal = load(calendar_file)?;
            let start = jiff::civil::Date::new(year, 1, 1)
                .map_err(|e| anyhow::anyhow!("year {year}: {e}"))?;
            match cal.years().find(|y| y.year == year) {
                Some(src) => println!("{year}: {} ({})", src.source, src.urls.join(", ")),
                None => println!(
                    "{year}: not covered by the calendar yet; deadlines are provisional: weekends and the certain statutory holidays only (the earliest possible dates); add the State Council notice to the calendar file"
                ),
            }
            let mut day = start;
            while day.year() == year {
                let weekend = matches!(
                    day.weekday(),
                    jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
                );
                let working = if cal.covers(year) {
                    cal.is_working_day(day)?
                } else {
                    Calendar::provisional_is_working_day(day)
                };
                if working == weekend {
                    println!(
                        "  {day} {:<9} {}",
                        format!("{:?}", day.weekday()),
                        if working {
                            "working day (调休上班)"
                        } else {
                            "day off"
                        }
                    );
                }
                day = day.tomorrow()?;
            }
            Ok(())
        }
        CalendarCmd::Deadline {
            from,
            working_days,
            time_zone,
            calendar_file,
        } => {
            let cal = load(calendar_file)?;
            let tz = jiff::tz::TimeZone::get(&time_zone)
                .map_err(|e| anyhow::anyhow!("--time-zone {time_zone}: {e}"))?;
            let date: jiff::civil::Date = from
                .parse()
                .map_err(|e| anyhow::anyhow!("--from: {e}; write YYYY-MM-DD"))?;
            let start = date
                .to_zoned_datetime(tz.clone())
                .map_err(|e| anyhow::anyhow!("--from: {e}"))?
                .timestamp();
            let (due, provisional) =
                cal.end_of_nth_working_day_provisional(start, working_days, &tz)?;
            let local = due.to_zoned_datetime(tz.clone());
            println!(
                "{working_days} working days from {date}: due {} ({local}){}",
                due,
                if provisional {
                    " — provisional: the calendar does not cover every day counted; the notice can only make it later"
                } else {
                    ""
                }
            );
            Ok(())
        }
    }
}
