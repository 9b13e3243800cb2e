#![no_main]
//! Inbound webhook verification with arbitrary headers and bodies.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parts: Vec<&[u8]> = data.splitn(4, |b| *b == b'\n').collect();
    if parts.len() < 4 {
        return;
    }
    let mut h = axum::http::HeaderMap::new();
    for (name, v) in [("webhook-id", parts[0]), ("webhook-timestamp", parts[1]), ("webhook-signature", parts[2])] {
        if let Ok(v) = axum::http::HeaderValue::from_bytes(v) {
            h.insert(name, v);
        }
    }
    let _ = lethe_server::outbound::webhook::verify_inbound("whsec_c2VjcmV0 whsec_b2xk", &h, parts[3], 1_700_000_000);
});
