//! keygate: API keys and rate limits for an HTTP API.
//!
//! Three layers, one folder each, dependencies pointing one way (`web` → `domain` →
//! `storage`; `tests/api/architecture.rs` enforces it). Every module is also re-exported here
//! under its own name (`crate::keys`, `keygate::startup`), so paths do not spell out the layer.

pub mod domain;
pub mod storage;
pub mod web;

pub use domain::{
    analytics, audit, clock, contract, events, keys, ledger, limits, policy, rules, usage, users, validation,
    webhooks,
};
pub use storage::{db, shared_redis, striped};
pub use web::{
    caller, config, credentials, deliveries, error, gate, logging, metrics, normalize, routes, sessions,
    startup, state,
};
