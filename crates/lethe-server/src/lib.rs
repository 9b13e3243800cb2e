//! Lethe's server: the HTTP API (axum) and the background worker, wired to
//! the store, the platform's systems and a clock.
//!
//! This file declares the modules and re-exports; it defines nothing.
//! `state` (the shared state), `routes` (every endpoint with its guard),
//! `api_doc` (the OpenAPI document), `serve` (start-up and the server loop).

// `Problem` is the error response itself (RFC 9457 body), built once per
// failed request; boxing it would only add an allocation to every error path.
#![allow(clippy::result_large_err)]

pub mod api;
mod api_doc;
pub mod audit_api;
pub mod claims_api;
pub mod config;
pub mod console;
pub mod demo_platform;
pub mod drift_api;
pub mod erasure_api;
pub mod events;
pub mod export_api;
pub mod identity_api;
pub mod jwt;
pub mod metrics;
pub mod middleware;
pub mod openapi_doc;
pub mod ops_api;
pub mod pages;
pub mod problem;
pub mod providers;
pub mod purge;
pub mod reapply;
pub mod reapply_api;
pub mod report;
mod routes;
pub mod secrets;
pub mod sequencer;
mod serve;
mod state;
pub mod support;
pub mod systems;
pub mod totp;
pub mod transparency;
pub mod vault_api;
pub mod webhook;
pub mod worker;

pub use api_doc::{ApiDoc, openapi};
pub use config::Config;
pub use routes::router;
pub use secrets::Secrets;
pub use serve::{ServeError, Server, install_crypto_provider, open_vault};
pub use state::{
    AppState, CalendarState, ClockMode, HEADER_READ_TIMEOUT, Shared, SystemClock, VAULT_BODY_LIMIT,
};
pub use systems::Systems;
