//! The HTTP edge every handler shares: request extractors with problem
//! answers for bad input, authentication and idempotency middleware, and the
//! problem (RFC 9457) responses themselves. Nothing here knows a resource.

pub mod agent;
pub mod extract;
pub mod limits;
pub mod middleware;
pub mod ownership;
pub mod problem;
