#![no_main]
//! The calendar file parser, and working-day arithmetic on what it accepts.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cal) = lethe_domain::calendar::Calendar::parse(text) {
            let t = jiff::Timestamp::from_second(1_767_225_600).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            let _ = cal.end_of_nth_working_day(t, (data.len() % 40) as u32, &jiff::tz::TimeZone::UTC);
        }
    }
});
