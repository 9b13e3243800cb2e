//! Settlement arithmetic, in integer minor units.
//!
//! Rounding rule for pro-rata refunds: the refund is
//! `floor(paid × remaining_days / period_days)`, computed exactly in 128-bit
//! integers. Rounding down never refunds more than the unused share; the
//! platform keeps at most one minor unit less than one fen per refund.

use crate::MinorUnits;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettlementError {
    #[error("a subscription period must last at least one day")]
    EmptyPeriod,
    #[error("remaining days ({remaining}) exceed the period length ({period})")]
    RemainingTooLong { remaining: u32, period: u32 },
}

/// The refund for the unused days of a paid period.
pub fn pro_rata_refund(
    paid: MinorUnits,
    period_days: u32,
    remaining_days: u32,
) -> Result<MinorUnits, SettlementError> {
    if period_days == 0 {
        return Err(SettlementError::EmptyPeriod);
    }
    if remaining_days > period_days {
        return Err(SettlementError::RemainingTooLong {
            remaining: remaining_days,
            period: period_days,
        });
    }
    let v = i128::from(paid.get()) * i128::from(remaining_days) / i128::from(period_days);
    // v <= paid <= MinorUnits::MAX because remaining <= period, so it fits.
    let v = i64::try_from(v).unwrap_or(paid.get());
    Ok(MinorUnits::new(v).unwrap_or(paid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn monthly_membership_example() {
        // ¥15.00 for 30 days, 24 days unused: ¥12.00.
        let r = pro_rata_refund(MinorUnits::new(1500).unwrap(), 30, 24).unwrap();
        assert_eq!(r.get(), 1200);
        // ¥10.00 for 3 days, 1 left: 333.33 fen rounds down to 333.
        assert_eq!(
            pro_rata_refund(MinorUnits::new(1000).unwrap(), 3, 1)
                .unwrap()
                .get(),
            333
        );
        assert!(pro_rata_refund(MinorUnits::new(1).unwrap(), 0, 0).is_err());
        assert!(pro_rata_refund(MinorUnits::new(1).unwrap(), 3, 4).is_err());
    }

    proptest! {
        #[test]
        fn refund_is_bounded(paid in 0i64..=MinorUnits::MAX, period in 1u32..=3660, frac in 0.0f64..=1.0) {
            let remaining = ((period as f64) * frac) as u32;
            let r = pro_rata_refund(MinorUnits::new(paid).unwrap(), period, remaining).unwrap();
            prop_assert!(r.get() >= 0);
            prop_assert!(r.get() <= paid);
            if remaining == period { prop_assert_eq!(r.get(), paid); }
            if remaining == 0 { prop_assert_eq!(r.get(), 0); }
        }

        /// Splitting the unused days in two never refunds more than refunding
        /// them at once, and loses at most one minor unit.
        #[test]
        fn refund_is_consistent_when_split(paid in 0i64..=10_000_000_000, period in 1u32..=366, fa in 0.0f64..=1.0, fb in 0.0f64..=1.0) {
            let a = ((period as f64) * fa) as u32;
            let b = (((period - a) as f64) * fb) as u32;
            let p = MinorUnits::new(paid).unwrap();
            let whole = pro_rata_refund(p, period, a + b).unwrap().get();
            let parts = pro_rata_refund(p, period, a).unwrap().get() + pro_rata_refund(p, period, b).unwrap().get();
            prop_assert!(parts <= whole);
            prop_assert!(whole - parts <= 1);
        }
    }
}
