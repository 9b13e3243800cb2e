//! The platform API (`/v1/...`), one module per resource. Each handler
//! parses its input at the edge (`crate::http`), applies one rule of the
//! domain or the store, and answers.

pub mod audit;
pub mod cases;
pub mod claims;
pub mod drift;
pub mod erasure;
pub mod exports;
pub mod identity;
pub mod metrics;
pub mod operations;
pub mod reapply;
pub mod settlement;
pub mod support;
pub mod transparency;
pub mod vault;
