//! keygate: API keys and rate limits for an HTTP API.

pub mod config;
pub mod credentials;
pub mod db;
pub mod error;
pub mod gate;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod normalize;
pub mod policy;
pub mod routes;
pub mod sessions;
pub mod shared_redis;
pub mod startup;
pub mod state;
pub mod striped;
pub mod usage;
pub mod users;
pub mod validation;
