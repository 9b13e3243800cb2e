#![no_main]
//! Receipt and audit-log verification of arbitrary input.
use libfuzzer_sys::fuzz_target;

const PK: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<lethe_ledger::Receipt>(data) {
        let _ = r.verify(PK);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = lethe_ledger::verify_log_file(text, PK);
    }
});
