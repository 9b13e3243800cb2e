//! Lethe's domain core: the cancellation case (注销申请) as an explicit state
//! machine, the policy that shapes it, the newtypes that guard its edges and
//! the settlement arithmetic.
//!
//! This crate does no I/O: no clock reads, no storage, no network. Time comes
//! in as a parameter ([`Clock`] is only a trait here), so every rule can be
//! tested with any instant.

pub mod asset;
pub mod calendar;
pub mod case;
pub mod clock;
pub mod deadline;
pub mod export;
pub mod ids;
pub mod labels;
pub mod notice;
pub mod policy;
pub mod settlement;
pub mod support;

pub use case::{
    Acknowledgement, Blocker, Case, CaseCommand, CaseState, Change, Consequence, Notice,
    TransitionError,
};
pub use clock::{Clock, ManualClock};
pub use ids::{
    AssuranceLevel, CaseId, Channel, IdError, Locale, MinorUnits, OtpCode, Reason, SubjectId,
    phone_key,
};
pub use policy::{Policy, PolicyError};
