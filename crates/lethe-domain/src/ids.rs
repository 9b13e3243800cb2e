//! Newtypes parsed at the edges ("parse, don't validate"): once a value has one
//! of these types it is known to be well formed.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a raw value could not become a domain value. Messages never echo the
/// raw input: it may be personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("may contain only letters, digits, '-', '_', '.', ':', '@', '+' and '='")]
    BadCharacters,
    #[error("must be exactly {len} digits")]
    NotDigits { len: usize },
    #[error("is not a valid case id (expected a UUID)")]
    BadCaseId,
    #[error("unknown value; expected one of: {expected}")]
    Unknown { expected: &'static str },
    #[error("must be a whole number of minor units (fen/cents) between 0 and {max}")]
    BadAmount { max: i64 },
}

/// A case identifier (UUID v7, so ids sort by creation time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CaseId(uuid::Uuid);

impl CaseId {
    /// Builds an id from a UUID the caller generated (the domain does not
    /// generate randomness or read the clock itself).
    pub fn from_uuid(id: uuid::Uuid) -> Self {
        Self(id)
    }
    pub fn parse(s: &str) -> Result<Self, IdError> {
        uuid::Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| IdError::BadCaseId)
    }
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The platform's own identifier of the account holder (for Demo Mart, the
/// `users.id`). It links to personal data, so its `Debug` is redacted and it
/// is never logged; audit events carry a keyed pseudonym instead.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SubjectId(String);

impl SubjectId {
    pub const MAX_LEN: usize = 128;
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(IdError::TooLong { max: Self::MAX_LEN });
        }
        if !s
            .chars()
            // Account ids as platforms have them: numbers, UUIDs,
            // `@alice:example.org`, `alice+shop@example.org`, base64.
            .all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@' | '+' | '=')
            })
        {
            return Err(IdError::BadCharacters);
        }
        Ok(Self(s.to_owned()))
    }
    /// The raw value, for the connectors that must find the subject's rows.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectId(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for SubjectId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SubjectId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A six-digit one-time code as typed by the user.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpCode(String);

impl OtpCode {
    pub const LEN: usize = 6;
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let s = s.trim();
        if s.len() != Self::LEN || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError::NotDigits { len: Self::LEN });
        }
        Ok(Self(s.to_owned()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpCode(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for OtpCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OtpCode::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// How the user reached Lethe (see the glossary: app, recovery, hotline, counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The platform's app, logged in.
    App,
    /// The app, logged out: account recovery (找回密码).
    Recovery,
    /// A customer-service agent on the hotline (客服热线).
    Hotline,
    /// An agent at a counter who checks a physical ID (人工窗口).
    Counter,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Self::App, Self::Recovery, Self::Hotline, Self::Counter];
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::App => "app",
            Self::Recovery => "recovery",
            Self::Hotline => "hotline",
            Self::Counter => "counter",
        }
    }
    pub fn parse(s: &str) -> Result<Self, IdError> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or(IdError::Unknown {
                expected: "app, recovery, hotline, counter",
            })
    }
}

/// Assurance level of an identity verification: 1 = possession of the
/// registered phone (SMS code), 2 = a strong factor (face match, physical ID
/// seen by an agent), 3 = two independent strong factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AssuranceLevel(u8);

impl AssuranceLevel {
    pub const NONE: Self = Self(0);
    pub const PHONE: Self = Self(1);
    pub const STRONG: Self = Self(2);
    pub const HIGHEST: Self = Self(3);
    pub fn new(level: u8) -> Result<Self, IdError> {
        if level <= 3 {
            Ok(Self(level))
        } else {
            Err(IdError::Unknown {
                expected: "0, 1, 2 or 3",
            })
        }
    }
    pub fn get(&self) -> u8 {
        self.0
    }
}

/// A free-text reason shown to the user (a rejection, a failure). Bounded and
/// stripped of control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Reason(String);

impl Reason {
    pub const MAX_LEN: usize = 500;
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(IdError::TooLong { max: Self::MAX_LEN });
        }
        Ok(Self(
            s.chars()
                .filter(|c| !c.is_control() && !is_bidi_control(*c))
                .collect(),
        ))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Unicode's bidirectional formatting characters (embeddings, overrides,
/// isolates, marks): invisible, they can make a text read differently from
/// what it holds ("Trojan Source"), so free text drops them.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Free text without control or bidirectional formatting characters
/// (newlines and tabs kept).
pub fn clean_text(s: &str) -> String {
    s.chars()
        .filter(|c| matches!(c, '\n' | '\t') || !(c.is_control() || is_bidi_control(*c)))
        .collect()
}

/// The comparison form of a phone number as people type it: spaces,
/// dashes, dots and brackets go; a mainland China number in any of
/// `+86 139…`, `0086139…`, `86139…` or `139…` becomes its 11 national
/// digits (the form platforms store); any other number with a country code
/// (`+…` or `00…`) becomes E.164 (`+` and digits). None if what is left is
/// not a phone number.
pub fn phone_key(s: &str) -> Option<String> {
    let mut t: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '.' | '(' | ')'))
        .collect();
    if let Some(rest) = t.strip_prefix("00") {
        t = format!("+{rest}");
    }
    let (plus, digits) = match t.strip_prefix('+') {
        Some(d) => (true, d.to_owned()),
        None => (false, t),
    };
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let cn_mobile = |d: &str| d.len() == 11 && d.starts_with('1');
    match digits.strip_prefix("86") {
        Some(national) if cn_mobile(national) => Some(national.to_owned()),
        _ if !plus && cn_mobile(&digits) => Some(digits),
        _ if plus => Some(format!("+{digits}")),
        // A national number of another form (a landline): as typed.
        _ => Some(digits),
    }
}

impl TryFrom<String> for Reason {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<Reason> for String {
    fn from(r: Reason) -> String {
        r.0
    }
}

/// Money in integer minor units (fen, cents). Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct MinorUnits(i64);

impl MinorUnits {
    /// 10^15 minor units: far above any real balance, far below overflow in
    /// the products the settlement arithmetic forms.
    pub const MAX: i64 = 1_000_000_000_000_000;
    pub const ZERO: Self = Self(0);
    pub fn new(v: i64) -> Result<Self, IdError> {
        if (0..=Self::MAX).contains(&v) {
            Ok(Self(v))
        } else {
            Err(IdError::BadAmount { max: Self::MAX })
        }
    }
    pub fn get(&self) -> i64 {
        self.0
    }
    /// Formats as yuan with two decimals, e.g. `¥12.40`.
    pub fn format_cny(&self) -> String {
        format!("¥{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl TryFrom<i64> for MinorUnits {
    type Error = IdError;
    fn try_from(v: i64) -> Result<Self, IdError> {
        Self::new(v)
    }
}

impl From<MinorUnits> for i64 {
    fn from(m: MinorUnits) -> i64 {
        m.0
    }
}

/// The language a page, notice or consequence is shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Locale {
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en")]
    En,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_ids_are_parsed() {
        assert!(SubjectId::parse("10042").is_ok());
        assert_eq!(SubjectId::parse("  "), Err(IdError::Empty));
        assert_eq!(SubjectId::parse("a b"), Err(IdError::BadCharacters));
        assert!(SubjectId::parse("@alice:example.org").is_ok());
        // Bidirectional overrides never reach a stored reason.
        assert_eq!(
            Reason::parse("refund \u{202E}dias\u{202C} ok")
                .unwrap()
                .as_str(),
            "refund dias ok"
        );
        assert_eq!(clean_text("a\u{2066}b\nc\u{0007}"), "ab\nc");
        assert!(SubjectId::parse("alice+shop@example.org").is_ok());
        assert_eq!(SubjectId::parse("a'b"), Err(IdError::BadCharacters));
        assert_eq!(
            SubjectId::parse(&"x".repeat(129)),
            Err(IdError::TooLong { max: 128 })
        );
        assert_eq!(
            format!("{:?}", SubjectId::parse("13800138000").unwrap()),
            "SubjectId(<redacted>)"
        );
    }

    #[test]
    fn codes_are_six_digits() {
        assert!(OtpCode::parse("012345").is_ok());
        assert!(OtpCode::parse("12345").is_err());
        assert!(OtpCode::parse("12345a").is_err());
        assert_eq!(
            format!("{:?}", OtpCode::parse("123456").unwrap()),
            "OtpCode(<redacted>)"
        );
    }

    #[test]
    fn money_is_bounded_and_formatted() {
        assert!(MinorUnits::new(-1).is_err());
        assert_eq!(MinorUnits::new(1240).unwrap().format_cny(), "¥12.40");
        assert_eq!(MinorUnits::new(5).unwrap().format_cny(), "¥0.05");
    }

    #[test]
    fn phone_numbers_compare_in_one_form() {
        for typed in [
            "13912345678",
            "139 1234 5678",
            "139-1234-5678",
            "+86 139 1234 5678",
            "+8613912345678",
            "008613912345678",
            "0086 139-1234-5678",
            "8613912345678",
            "(+86) 139.1234.5678",
        ] {
            assert_eq!(phone_key(typed).as_deref(), Some("13912345678"), "{typed}");
        }
        assert_eq!(
            phone_key("+44 20 7946 0958").as_deref(),
            Some("+442079460958")
        );
        assert_eq!(
            phone_key("0044 20 7946 0958").as_deref(),
            Some("+442079460958")
        );
        assert_eq!(phone_key("010-12345678").as_deref(), Some("01012345678"));
        assert_eq!(phone_key("not a phone"), None);
        assert_eq!(phone_key(""), None);
        assert_eq!(phone_key("+"), None);
    }
}
