//! One module per command of the `lethe` binary (`main.rs` holds the
//! command line, the dispatch and what several commands share).

pub(crate) mod audit;
pub(crate) mod backup;
pub(crate) mod calendar;
pub(crate) mod datamap;
pub(crate) mod demo;
pub(crate) mod erasures;
pub(crate) mod export;
pub(crate) mod monitor;
pub(crate) mod report;
pub(crate) mod retention;
