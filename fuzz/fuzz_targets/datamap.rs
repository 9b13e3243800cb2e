#![no_main]
//! The data map parser: any text is parsed or refused, never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(map) = lethe_connect::DataMap::parse(text) {
            for s in &map.systems {
                let _ = lethe_connect::planner::plan(s);
            }
        }
    }
});
