//! The data export's lifecycle (PIPL Art. 45, GDPR Art. 15 and 20): a copy
//! of the subject's data, built by a worker, offered through a link that is
//! single-use or expiring, and deleted at expiry or before the subject's
//! erasure completes — whichever comes first.
//!
//! ```text
//! queued ─▶ building ─▶ ready ─▶ downloading ─▶ downloaded
//!   │          │  ▲        │          │
//!   │          │  └ crash: lease expires, rebuilt from the start
//!   └──────────┴───────────┴──────────┴──▶ expired | deleted | failed
//! ```

use jiff::{SignedDuration, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportState {
    /// Requested; waits for a worker.
    Queued,
    /// A worker is writing the archive (its lease is held by heartbeats).
    Building,
    /// Sealed on disk; the link works.
    Ready,
    /// A single-use link is being downloaded right now.
    Downloading,
    /// A single-use link was used; the archive is gone.
    Downloaded,
    /// The link's time ran out; the archive is gone.
    Expired,
    /// Deleted before the subject's erasure, or at the user's request.
    Deleted,
    /// Gave up after its attempts; nothing is kept.
    Failed,
}

impl ExportState {
    pub const ALL: [Self; 8] = [
        Self::Queued,
        Self::Building,
        Self::Ready,
        Self::Downloading,
        Self::Downloaded,
        Self::Expired,
        Self::Deleted,
        Self::Failed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Building => "building",
            Self::Ready => "ready",
            Self::Downloading => "downloading",
            Self::Downloaded => "downloaded",
            Self::Expired => "expired",
            Self::Deleted => "deleted",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// No archive exists or will exist: the export is over.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Downloaded | Self::Expired | Self::Deleted | Self::Failed
        )
    }

    /// What the person who asked sees next.
    pub fn next_step(&self) -> &'static str {
        match self {
            Self::Queued | Self::Building => "wait while the copy is prepared",
            Self::Ready => "download the copy with the link before it expires",
            Self::Downloading => "the copy is being downloaded",
            Self::Downloaded => "nothing: the copy was downloaded and deleted here",
            Self::Expired => "ask for a new copy if you still need one",
            Self::Deleted => "nothing: the copy was deleted",
            Self::Failed => "ask for a new copy; an operator can see why this one failed",
        }
    }
}

impl std::fmt::Display for ExportState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long a link lives: 1 to 30 days, 7 by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkTtl(SignedDuration);

impl LinkTtl {
    pub const DEFAULT_DAYS: i64 = 7;

    pub fn days(days: i64) -> Result<Self, String> {
        if !(1..=30).contains(&days) {
            return Err(format!(
                "export.link_ttl_days must be between 1 and 30 (got {days}); 7 is the usual value"
            ));
        }
        Ok(Self(SignedDuration::from_hours(24 * days)))
    }

    /// When a link made at `now` expires.
    pub fn expires_at(&self, now: Timestamp) -> Timestamp {
        // Saturates at the end of time rather than failing: 30 days past any
        // representable instant a clock could give is still representable
        // for every real date.
        now.checked_add(self.0).unwrap_or(Timestamp::MAX)
    }
}

impl Default for LinkTtl {
    fn default() -> Self {
        Self(SignedDuration::from_hours(24 * Self::DEFAULT_DAYS))
    }
}

/// Progress of one system's part of an export.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SystemProgress {
    pub system: String,
    /// Rows (keys, records) written so far.
    pub done: u64,
    /// Rows expected (counted before writing; 0 until known).
    pub total: u64,
    /// Whether every dataset of the system is written.
    pub finished: bool,
}

impl SystemProgress {
    /// Whole percent, never above 100; 100 only when finished.
    pub fn percent(&self) -> u8 {
        if self.finished {
            return 100;
        }
        if self.total == 0 {
            return 0;
        }
        let p = (u128::from(self.done.min(self.total)) * 100 / u128::from(self.total)) as u8;
        p.min(99)
    }
}

/// The percent of a whole export: the mean of its systems' percents.
pub fn overall_percent(systems: &[SystemProgress]) -> u8 {
    if systems.is_empty() {
        return 0;
    }
    let sum: u32 = systems.iter().map(|s| u32::from(s.percent())).sum();
    (sum / systems.len() as u32) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn states_round_trip_and_terminal_ones_are_over() {
        for s in ExportState::ALL {
            assert_eq!(ExportState::parse(s.as_str()), Some(s));
        }
        assert!(ExportState::Downloaded.is_terminal());
        assert!(!ExportState::Ready.is_terminal());
        assert_eq!(ExportState::parse("bogus"), None);
    }

    #[test]
    fn link_ttl_is_bounded() {
        assert!(LinkTtl::days(0).is_err());
        assert!(LinkTtl::days(31).unwrap_err().contains("link_ttl_days"));
        let t: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            LinkTtl::default().expires_at(t).to_string(),
            "2026-01-08T00:00:00Z"
        );
    }

    proptest! {
        #[test]
        fn percent_is_monotone_and_100_only_when_finished(done in 0u64..1_000_000, extra in 0u64..1_000_000, total in 0u64..2_000_000) {
            let a = SystemProgress { system: "s".into(), done, total, finished: false };
            let b = SystemProgress { done: done + extra, ..a.clone() };
            prop_assert!(a.percent() <= b.percent());
            prop_assert!(b.percent() <= 99);
            prop_assert_eq!(SystemProgress { finished: true, ..a }.percent(), 100);
        }
    }
}
