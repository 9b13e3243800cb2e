//! Support that still answers: a request a (former) account holder opens
//! with their deletion receipt, or from the cancellation centre while the
//! case is live. Parsed at the edge: a topic from a closed list, a bounded
//! message, a one-time contact (phone or email) that never prints.

use std::fmt;

/// Characters of a request's message (and of an agent's answer) at most.
pub const MAX_MESSAGE_CHARS: usize = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    RefundNotReceived,
    SettlementDispute,
    DataStillVisible,
    ExportProblem,
    Other,
}

impl Topic {
    pub const ALL: [Topic; 5] = [
        Self::RefundNotReceived,
        Self::SettlementDispute,
        Self::DataStillVisible,
        Self::ExportProblem,
        Self::Other,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RefundNotReceived => "refund_not_received",
            Self::SettlementDispute => "settlement_dispute",
            Self::DataStillVisible => "data_still_visible",
            Self::ExportProblem => "export_problem",
            Self::Other => "other",
        }
    }
    pub fn parse(s: &str) -> Result<Self, SupportError> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or(SupportError::Topic)
    }
}

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Opened with the receipt of an erased account.
    Receipt,
    /// Opened from the cancellation centre while the case is live.
    Live,
    /// Opened from the cancellation centre before any case was started (a
    /// question before cancelling); it names no case and no subject.
    Account,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receipt => "receipt",
            Self::Live => "live",
            Self::Account => "account",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupportState {
    /// Waiting for an agent.
    Open,
    /// An answer went to the contact; the holder may still write back.
    Answered,
    /// Done: the contact and the texts are destroyed.
    Closed,
}

impl SupportState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Answered => "answered",
            Self::Closed => "closed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "answered" => Some(Self::Answered),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupportError {
    #[error(
        "topic must be one of refund_not_received, settlement_dispute, data_still_visible, export_problem, other"
    )]
    Topic,
    #[error("the message must have 1 to {MAX_MESSAGE_CHARS} characters")]
    MessageLength,
    #[error(
        "the message may not contain control characters (other than line breaks) or direction overrides"
    )]
    MessageControl,
    #[error(
        "the contact must be a mobile number (11 digits starting with 1, or +country code and number) or an email address"
    )]
    Contact,
}

/// A request's message or an agent's answer: 1 to 2,000 characters, line
/// breaks allowed, no other control character.
#[derive(Clone, PartialEq, Eq)]
pub struct Text(String);

impl Text {
    pub fn parse(s: &str) -> Result<Self, SupportError> {
        let t = s.trim().replace("\r\n", "\n");
        let n = t.chars().count();
        if n == 0 || n > MAX_MESSAGE_CHARS {
            return Err(SupportError::MessageLength);
        }
        // Control characters, and the bidirectional overrides that make a
        // text read otherwise than it is (U+202A-202E, U+2066-2069).
        if t.chars().any(|c| {
            (c.is_control() && c != '\n' && c != '\t')
                || ('\u{202A}'..='\u{202E}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c)
        }) {
            return Err(SupportError::MessageControl);
        }
        Ok(Self(t))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Text(<{} chars>)", self.0.chars().count())
    }
}

/// A one-time contact for the answer. Never printed: `Debug` shows its
/// kind only.
#[derive(Clone, PartialEq, Eq)]
pub enum Contact {
    Phone(String),
    Email(String),
}

impl Contact {
    pub fn parse(s: &str) -> Result<Self, SupportError> {
        let s = s.trim();
        if s.contains('@') {
            let (local, domain) = s.rsplit_once('@').ok_or(SupportError::Contact)?;
            let ok = s.matches('@').count() == 1
                && s.len() <= 254
                && !local.is_empty()
                && local.len() <= 64
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
                && domain
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
            return if ok {
                Ok(Self::Email(s.to_lowercase()))
            } else {
                Err(SupportError::Contact)
            };
        }
        let digits: String = s.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        let mainland = digits.len() == 11
            && digits.starts_with('1')
            && digits.chars().all(|c| c.is_ascii_digit());
        let intl = digits.starts_with('+')
            && (9..=16).contains(&digits.len())
            && digits[1..].chars().all(|c| c.is_ascii_digit());
        if mainland || intl {
            Ok(Self::Phone(digits))
        } else {
            Err(SupportError::Contact)
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Phone(_) => "phone",
            Self::Email(_) => "email",
        }
    }
    pub fn expose(&self) -> &str {
        match self {
            Self::Phone(s) | Self::Email(s) => s,
        }
    }
    /// What an agent may see: the kind and a hint (last two digits, or the
    /// first letter and the domain).
    pub fn masked(&self) -> String {
        match self {
            Self::Phone(p) => format!("···{}", &p[p.len().saturating_sub(2)..]),
            Self::Email(e) => {
                let (l, d) = e.rsplit_once('@').unwrap_or(("", e));
                format!("{}···@{d}", l.chars().next().unwrap_or('·'))
            }
        }
    }
}

impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Contact({}, <redacted>)", self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_parse_and_never_print() {
        let p = Contact::parse(" 138-0013-8000 ").unwrap();
        assert_eq!(p.expose(), "13800138000");
        assert_eq!(p.masked(), "···00");
        assert!(!format!("{p:?}").contains("138"));
        assert_eq!(Contact::parse("+85291234567").unwrap().kind(), "phone");
        let e = Contact::parse("Li.Lei@Example.COM").unwrap();
        assert_eq!(e.expose(), "li.lei@example.com");
        assert_eq!(e.masked(), "l···@example.com");
        assert!(!format!("{e:?}").contains("lei"));
        for bad in [
            "",
            "1380013800",
            "23800138000",
            "a@b",
            "@x.cn",
            "a b@x.cn",
            "+12",
            "li@x.cn\u{7}",
            "li@x..cn.",
        ] {
            assert!(Contact::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn texts_and_topics_are_bounded() {
        assert!(Text::parse("  ").is_err());
        assert!(Text::parse(&"退".repeat(MAX_MESSAGE_CHARS)).is_ok());
        assert!(Text::parse(&"退".repeat(MAX_MESSAGE_CHARS + 1)).is_err());
        assert_eq!(Text::parse("a\r\nb").unwrap().expose(), "a\nb");
        assert_eq!(
            Text::parse("a\u{0}b").unwrap_err(),
            SupportError::MessageControl
        );
        assert!(!format!("{:?}", Text::parse("secret").unwrap()).contains("secret"));
        for t in Topic::ALL {
            assert_eq!(Topic::parse(t.as_str()).unwrap(), t);
        }
        assert!(Topic::parse("refund").is_err());
    }
}
