#![no_main]
//! API request bodies: every body type is parsed or refused with a message
//! that the redaction keeps free of values, never a panic.
use libfuzzer_sys::fuzz_target;
use lethe_server::api;

fn try_parse<T: serde::de::DeserializeOwned>(data: &[u8]) {
    let de = &mut serde_json::Deserializer::from_slice(data);
    if let Err(e) = serde_path_to_error::deserialize::<_, T>(de) {
        let _ = lethe_server::problem::redact_serde(&e.inner().to_string());
    }
}

fuzz_target!(|data: &[u8]| {
    try_parse::<api::CreateCase>(data);
    try_parse::<api::VerifyCode>(data);
    try_parse::<api::Acknowledge>(data);
    try_parse::<api::Review>(data);
    try_parse::<api::Settle>(data);
    try_parse::<api::Restore>(data);
    try_parse::<lethe_server::vault_api::EncryptRequest>(data);
    try_parse::<lethe_server::claims_api::NewClaim>(data);
    try_parse::<lethe_server::export_api::ExportRequest>(data);
    try_parse::<lethe_server::export_api::CaseExportRequest>(data);
    try_parse::<lethe_server::export_api::ConsoleExportRequest>(data);
});
