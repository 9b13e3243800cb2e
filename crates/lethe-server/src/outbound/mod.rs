//! What Lethe sends out: signed webhooks and the event stream, identity
//! providers, and the platform's own systems (the connectors a data map
//! names).

pub mod events;
pub mod providers;
pub mod settlement;
pub mod systems;
pub mod webhook;
pub mod witness;
