//! One module per command of the `lethe` binary (`main.rs` holds the
//! command line, the dispatch and what several commands share).

pub(crate) mod agent;
pub(crate) mod apikey;
pub(crate) mod audit;
pub(crate) mod backup;
pub(crate) mod calendar;
pub(crate) mod config;
pub(crate) mod datamap;
pub(crate) mod demo;
pub(crate) mod erasures;
pub(crate) mod export;
pub(crate) mod monitor;
pub(crate) mod openapi;
pub(crate) mod policy;
pub(crate) mod receipt;
pub(crate) mod report;
pub(crate) mod retention;
pub(crate) mod serve;
