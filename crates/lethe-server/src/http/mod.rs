//! The HTTP edge every handler shares: request extractors with problem
//! answers for bad input, the two principals (a platform's API key, a
//! signed-in agent) with the console's authorization matrix, ownership of
//! cases, idempotency and rate limits, and the problem (RFC 9457) responses
//! themselves. Nothing here names a handler, a page or the worker.

pub mod agent;
pub mod extract;
pub mod limits;
pub mod middleware;
pub mod ownership;
pub mod problem;
