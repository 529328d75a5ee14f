//! The domain: keys, users, rate limits, usage, and the authorization policy. It may use storage,
//! never the web edge or the HTTP framework (`tests/api/architecture.rs` checks).

pub mod analytics;
pub mod audit;
pub mod clock;
pub mod contract;
pub mod events;
pub mod keys;
pub mod ledger;
pub mod limits;
pub mod policy;
pub mod rules;
pub mod usage;
pub mod users;
pub mod validation;
pub mod webhooks;
