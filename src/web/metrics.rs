//! What the gate counts for `/metrics`: requests by caller tier and outcome. Rendered by
//! `routes::metrics`, which also renders what the other parts count themselves (the limiter its
//! store latency and failures, the key cache its hits, usage its flush lag).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::striped::Striped;

/// The caller's tier, as `/metrics` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    ApiKey,
    User,
    Anonymous,
    /// Credentials that could not be accepted.
    Invalid,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::ApiKey, Tier::User, Tier::Anonymous, Tier::Invalid];

    pub fn name(self) -> &'static str {
        match self {
            Tier::ApiKey => "api_key",
            Tier::User => "user",
            Tier::Anonymous => "anonymous",
            Tier::Invalid => "invalid",
        }
    }
}

/// What the gate decided, as `/metrics` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    RateLimited,
    Unauthorized,
    Unavailable,
    /// A key used from an address or for a route it may not use.
    Forbidden,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Allowed,
        Outcome::RateLimited,
        Outcome::Unauthorized,
        Outcome::Unavailable,
        Outcome::Forbidden,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::RateLimited => "rate_limited",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Unavailable => "unavailable",
            Outcome::Forbidden => "forbidden",
        }
    }
}

/// Requests the gate decided, by tier and outcome.
#[derive(Default)]
pub struct RequestCounters(Striped<[[AtomicU64; Outcome::ALL.len()]; Tier::ALL.len()]>);

impl RequestCounters {
    pub fn count(&self, tier: Tier, outcome: Outcome) {
        self.0.mine()[tier as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, tier: Tier, outcome: Outcome) -> u64 {
        self.0.sum(|c| &c[tier as usize][outcome as usize])
    }
}
