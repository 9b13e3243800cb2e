//! The clock is injected. Production uses a system clock (defined at the
//! edge, in the server crate) that cannot be moved; tests and the demo use a
//! [`ManualClock`] that can be advanced so a 7-day cooling-off passes in
//! seconds.

use jiff::{SignedDuration, Timestamp};
use std::sync::Mutex;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// A clock that runs with real time plus an offset that only moves forward.
pub struct ManualClock {
    base: Box<dyn Fn() -> Timestamp + Send + Sync>,
    offset: Mutex<SignedDuration>,
}

impl std::fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManualClock")
            .field("offset", &self.offset())
            .finish()
    }
}

impl ManualClock {
    /// `base` is the underlying time source (the system clock in the demo, a
    /// fixed instant in unit tests).
    pub fn new(
        base: impl Fn() -> Timestamp + Send + Sync + 'static,
        offset: SignedDuration,
    ) -> Self {
        Self {
            base: Box::new(base),
            offset: Mutex::new(offset),
        }
    }

    /// Moves the clock forward. Going backwards is refused: deadlines and
    /// leases assume time never runs back.
    pub fn advance(&self, by: SignedDuration) -> Result<SignedDuration, &'static str> {
        if by.is_negative() {
            return Err("the clock can only move forward");
        }
        let mut off = self.offset.lock().unwrap_or_else(|p| p.into_inner());
        *off = off.checked_add(by).ok_or("offset overflow")?;
        Ok(*off)
    }

    pub fn offset(&self) -> SignedDuration {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        let base = (self.base)();
        base.checked_add(self.offset()).unwrap_or(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_forward() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let c = ManualClock::new(move || t0, SignedDuration::ZERO);
        c.advance(SignedDuration::from_hours(24 * 7)).unwrap();
        assert_eq!(
            c.now(),
            "2026-01-08T00:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert!(c.advance(SignedDuration::from_secs(-1)).is_err());
    }
}
