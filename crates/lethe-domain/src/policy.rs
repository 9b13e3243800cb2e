//! The policy that shapes a case. A snapshot is stored with each case, so a
//! later change of configuration never changes the rules a user agreed to.

use jiff::SignedDuration;
use serde::{Deserialize, Serialize};

use crate::AssuranceLevel;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// How long the user can change their mind (反悔期). Default 7 days.
    pub cooling_off: SignedDuration,
    /// Whether an agent must approve the case before cooling-off starts.
    pub review_required: bool,
    /// The assurance level identity verification must reach.
    pub min_assurance: AssuranceLevel,
    /// How long a one-time code stays valid.
    pub otp_ttl: SignedDuration,
    /// Wrong codes allowed before the code is locked.
    pub otp_max_attempts: u32,
    /// Which deadline rules apply (CN, GDPR, CCPA).
    #[serde(default)]
    pub deadlines: crate::deadline::Profile,
    /// The level needed to cancel an account that holds money.
    #[serde(default = "strong")]
    pub positive_balance_level: AssuranceLevel,
    /// Asset kinds the platform must settle before the cancellation is
    /// confirmed (a balance that must be withdrawn first, say). Every other
    /// kind is settled when the cooling-off period ends.
    #[serde(default)]
    pub settle_early: Vec<crate::asset::AssetKind>,
}

fn strong() -> AssuranceLevel {
    AssuranceLevel::STRONG
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            cooling_off: SignedDuration::from_hours(24 * 7),
            review_required: false,
            min_assurance: AssuranceLevel::PHONE,
            otp_ttl: SignedDuration::from_mins(10),
            otp_max_attempts: 5,
            deadlines: crate::deadline::Profile::Cn,
            positive_balance_level: AssuranceLevel::STRONG,
            settle_early: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy.cooling_off_days must be between 0 and 90 (got {0}); 7 is the usual value")]
    CoolingOff(i64),
    #[error("policy.otp_max_attempts must be between 1 and 10 (got {0}); 5 is the usual value")]
    Attempts(u32),
    #[error("policy.otp_ttl_minutes must be between 1 and 30 (got {0}); 10 is the usual value")]
    OtpTtl(i64),
}

impl Policy {
    pub fn validate(&self) -> Result<(), PolicyError> {
        let days = self.cooling_off.as_secs() / 86_400;
        if self.cooling_off.is_negative() || days > 90 {
            return Err(PolicyError::CoolingOff(days));
        }
        if !(1..=10).contains(&self.otp_max_attempts) {
            return Err(PolicyError::Attempts(self.otp_max_attempts));
        }
        let mins = self.otp_ttl.as_secs() / 60;
        if !(1..=30).contains(&mins) {
            return Err(PolicyError::OtpTtl(mins));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_valid_and_validation_names_the_key() {
        assert!(Policy::default().validate().is_ok());
        let p = Policy {
            cooling_off: SignedDuration::from_hours(24 * 100),
            ..Policy::default()
        };
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("policy.cooling_off_days"), "{e}");
    }
}
