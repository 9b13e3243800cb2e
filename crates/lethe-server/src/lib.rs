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
pub mod config;
pub mod console;
pub mod demo_platform;
pub mod http;
pub mod jwt;
pub mod metrics;
pub mod openapi_doc;
pub mod outbound;
pub mod pages;
pub mod receipt;
pub mod report;
mod routes;
pub mod secrets;
mod serve;
mod state;
pub mod worker;

pub use api_doc::{ApiDoc, openapi};
pub use config::Config;
pub use outbound::systems::Systems;
pub use routes::router;
pub use secrets::Secrets;
pub use serve::{ServeError, Server, install_crypto_provider, open_vault};
pub use state::{
    AppState, CalendarState, ClockMode, HEADER_READ_TIMEOUT, Shared, SystemClock, VAULT_BODY_LIMIT,
};
