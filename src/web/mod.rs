//! The web edge: HTTP wiring (`startup`), what handlers share (`state`), the gate and what it
//! reads (`credentials`, `normalize`), sessions, `/metrics`, errors as HTTP answers, the
//! configuration read from the environment, and the routes. It may use the domain and storage.

pub mod caller;
pub mod config;
pub mod credentials;
pub mod deliveries;
pub mod error;
pub mod gate;
pub mod logging;
pub mod metrics;
pub mod normalize;
pub mod routes;
pub mod sessions;
pub mod startup;
pub mod state;
