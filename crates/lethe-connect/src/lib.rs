//! The platform side of erasure: the data map (which stores hold the
//! subject's data and what to do with it), the planner (in which order), and
//! the connectors (doing it, proving it).
//!
//! A data map is parsed once into [`DataMap`]; every name in it is checked to
//! be a plain SQL identifier, so SQL built from it cannot be injected.

pub mod datamap;
pub mod planner;
pub mod sqlite;

pub use datamap::{Action, DataMap, DataMapError, Ident};
pub use planner::{Plan, PlanError, PlannedTable};
pub use sqlite::{ConnectError, SqliteSystem, SystemOutcome, TableOutcome};
