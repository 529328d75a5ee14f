//! The one login throttle, for the dashboard's login form and `POST /api/auth/token` alike.
//! Attempts are counted — before the password is checked, so parallel guesses count too — in
//! the gate's counter store (so the limits hold across instances), in three buckets:
//!
//! | bucket | limit | stops |
//! |---|---|---|
//! | this email from this address (IPv6: its /64) | 10 an hour | guessing one account from one place |
//! | this address (/64), any email | 30 an hour | one place trying many accounts |
//! | this email, from anywhere | 100 an hour | a distributed guesser |
//!
//! So an attacker cannot lock the real user out from another address (only the generous
//! per-email cap is shared), and a guesser gets few tries per address. Successful attempts count
//! too (the store counts before it knows the outcome), which the limits leave room for.

use std::net::IpAddr;

use sha2::{Digest, Sha256};

use crate::clock::Now;
use crate::limits::{Bucket, Limit, Limiter, Policy, Window};

const PER_PAIR: Limit = Limit::new(10).expect("positive");
const PER_ADDRESS: Limit = Limit::new(30).expect("positive");
const PER_EMAIL: Limit = Limit::new(100).expect("positive");

/// The buckets of one login attempt.
pub struct Attempt {
    buckets: [(Bucket, Policy); 3],
}

fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part);
    }
    let digest = digest.finalize();
    u64::from_be_bytes(digest[..8].try_into().unwrap_or_default())
}

impl Attempt {
    /// An attempt for `email` (normalised here) from `address` (unknown: all such attempts share
    /// one bucket).
    pub fn new(address: Option<IpAddr>, email: &str) -> Attempt {
        let email = super::normalized_email(email);
        let address = Bucket::subscriber(address.unwrap_or(IpAddr::from([0, 0, 0, 0])));
        let hour = |limit| Policy::new(vec![(Window::Hour, Some(limit))]);
        Attempt {
            buckets: [
                (
                    Bucket::LoginPair(stable_hash(&[email.as_bytes(), address.to_string().as_bytes()])),
                    hour(PER_PAIR),
                ),
                (Bucket::LoginIp(address), hour(PER_ADDRESS)),
                (
                    Bucket::LoginEmail(stable_hash(&[email.as_bytes()])),
                    hour(PER_EMAIL),
                ),
            ],
        }
    }

    /// Counts this attempt in every bucket before the password is checked, or refuses it with
    /// the seconds to wait. Counting first is what makes the limits hold for attempts sent in
    /// parallel (checked after hashing, N parallel guesses would all pass the check). So
    /// successful attempts count too; the limits leave room for them.
    pub async fn begin(&self, limiter: &Limiter, now: Now) -> Result<(), u64> {
        for (bucket, policy) in &self.buckets {
            // Without counters (Redis failing in mode closed) logins stay possible.
            let Ok(decision) = limiter.hit(*bucket, policy, 1, now).await else {
                continue;
            };
            if let Some((_, wait_ms)) = decision.refusal() {
                return Err(wait_ms.div_ceil(1000).max(1));
            }
        }
        Ok(())
    }
}
