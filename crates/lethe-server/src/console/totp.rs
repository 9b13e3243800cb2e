//! TOTP (RFC 6238): HMAC-SHA-1, 30-second steps, 6 digits, one step of
//! clock drift either way.

use hmac::{Hmac, Mac};
use sha1::Sha1;

pub const STEP_SECS: i64 = 30;

/// The code for a time step.
pub fn code_at(secret: &[u8], step: u64) -> u32 {
    // HMAC accepts keys of any length: this cannot fail.
    let mut m = <Hmac<Sha1> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    m.update(&step.to_be_bytes());
    let h = m.finalize().into_bytes();
    let off = (h[19] & 0x0f) as usize;
    let bin = (u32::from(h[off]) & 0x7f) << 24
        | u32::from(h[off + 1]) << 16
        | u32::from(h[off + 2]) << 8
        | u32::from(h[off + 3]);
    bin % 1_000_000
}

/// The step whose code matches `code` at `unix_secs` (±1 step), if any.
pub fn verify(secret: &[u8], code: &str, unix_secs: i64) -> Option<u64> {
    let code: u32 = code
        .trim()
        .parse()
        .ok()
        .filter(|_| code.trim().len() == 6)?;
    let now = u64::try_from(unix_secs / STEP_SECS).ok()?;
    [now.saturating_sub(1), now, now + 1].into_iter().find(|s| {
        let c = code_at(secret, *s);
        subtle::ConstantTimeEq::ct_eq(&c.to_be_bytes()[..], &code.to_be_bytes()[..]).into()
    })
}

pub fn new_secret() -> [u8; 20] {
    rand::random()
}

pub fn base32(secret: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

/// The otpauth:// URL an authenticator app scans.
pub fn otpauth_url(username: &str, secret: &[u8]) -> String {
    format!(
        "otpauth://totp/Lethe:{username}?secret={}&issuer=Lethe&algorithm=SHA1&digits=6&period=30",
        base32(secret)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc_6238_sha1_vectors() {
        let secret = b"12345678901234567890";
        // RFC 6238 appendix B, last 6 of the 8 digits.
        for (t, code) in [
            (59i64, 287_082u32),
            (1_111_111_109, 81_804),
            (1_111_111_111, 50_471),
            (1_234_567_890, 5_924),
            (2_000_000_000, 279_037),
        ] {
            assert_eq!(super::code_at(secret, (t / 30) as u64), code, "t = {t}");
        }
        assert_eq!(super::verify(secret, "287082", 59), Some(1));
        assert_eq!(
            super::verify(secret, "287082", 59 + 30),
            Some(1),
            "one step of drift"
        );
        assert_eq!(super::verify(secret, "287082", 59 + 90), None);
        assert_eq!(super::verify(secret, "28708", 59), None);
    }
}
