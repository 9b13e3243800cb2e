#![no_main]
//! The app's session tokens (JWT): any text is verified or refused.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = lethe_server::jwt::verify(text, &lethe_server::jwt::Key::Hs256(b"secret".to_vec()), "42", 1_700_000_000);
        let _ = lethe_server::jwt::verify(text, &lethe_server::jwt::Key::EdDsa("00".repeat(32)), "42", 1_700_000_000);
    }
});
