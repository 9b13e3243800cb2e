#![no_main]
//! API request bodies: every body type is parsed or refused with a message
//! that the redaction keeps free of values, never a panic.
use libfuzzer_sys::fuzz_target;
use lethe_server::api;
use lethe_server::api::cases;

fn try_parse<T: serde::de::DeserializeOwned>(data: &[u8]) {
    let de = &mut serde_json::Deserializer::from_slice(data);
    if let Err(e) = serde_path_to_error::deserialize::<_, T>(de) {
        let _ = lethe_server::http::problem::redact_serde(&e.inner().to_string());
    }
}

fuzz_target!(|data: &[u8]| {
    try_parse::<cases::CreateCase>(data);
    try_parse::<cases::VerifyCode>(data);
    try_parse::<cases::Acknowledge>(data);
    try_parse::<cases::Review>(data);
    try_parse::<api::settlement::Settle>(data);
    try_parse::<cases::Restore>(data);
    try_parse::<api::vault::EncryptRequest>(data);
    try_parse::<api::claims::NewClaim>(data);
    try_parse::<api::exports::ExportRequest>(data);
    try_parse::<api::exports::CaseExportRequest>(data);
    try_parse::<api::exports::ConsoleExportRequest>(data);
});
