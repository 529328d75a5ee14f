//! Whose counters (`Bucket`) and which windows with which limits (`Policy`).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use super::{Limit, Rate, Window, headers};
use crate::db::{KeyId, UserId};

/// Whose counters: one bucket per key, per user, or per client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    Key(KeyId),
    User(UserId),
    /// IPv6 addresses are grouped by /64, the block one subscriber usually holds, so an
    /// attacker cannot rotate through 2⁶⁴ addresses for fresh buckets.
    Ip(IpAddr),
    /// Failed logins from one address (an IPv6 /64, as for `Ip`).
    LoginIp(IpAddr),
    /// Failed logins for one email (a stable hash of it, the same on every instance).
    LoginEmail(u64),
    /// Failed logins for one email from one address (a stable hash of both).
    LoginPair(u64),
    /// Sign-ups from one address (an IPv6 /64, as for `Ip`).
    SignupIp(IpAddr),
    /// A user's plan: the sum of all their keys' requests.
    Plan(UserId),
}

impl Bucket {
    pub fn ip(addr: IpAddr) -> Bucket {
        Bucket::Ip(Bucket::subscriber(addr))
    }

    /// The address a bucket counts: IPv4 as it is (also when IPv4-mapped), IPv6 by its /64.
    pub fn subscriber(addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V4(_) => addr,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let mut segments = v6.segments();
                    segments[4..].fill(0);
                    IpAddr::V6(segments.into())
                }
            },
        }
    }

    /// Whether this bucket counts an anonymous party (an address): the first to go when the
    /// in-process store is full, before key and user counters.
    pub fn is_anonymous(&self) -> bool {
        matches!(
            self,
            Bucket::Ip(_) | Bucket::LoginIp(_) | Bucket::LoginPair(_) | Bucket::SignupIp(_)
        )
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bucket::Key(id) => write!(f, "k:{id}"),
            Bucket::User(id) => write!(f, "u:{id}"),
            Bucket::Ip(ip) => write!(f, "ip:{ip}"),
            Bucket::LoginIp(ip) => write!(f, "login-ip:{ip}"),
            Bucket::LoginEmail(hash) => write!(f, "login-email:{hash:016x}"),
            Bucket::LoginPair(hash) => write!(f, "login-pair:{hash:016x}"),
            Bucket::SignupIp(ip) => write!(f, "signup-ip:{ip}"),
            Bucket::Plan(id) => write!(f, "plan:{id}"),
        }
    }
}

/// The limits one caller is held to: windows in order from the shortest, each at most once.
/// A window with no limit is still counted (for `stats`), but never refuses. Shared, so the
/// copy a request takes to the Redis store costs no allocation, and its `RateLimit-Policy`
/// header value is rendered once, not per request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    windows: Arc<[(Window, Option<Limit>)]>,
    header: Arc<str>,
}

impl Policy {
    pub fn new(mut windows: Vec<(Window, Option<Limit>)>) -> Policy {
        windows.sort_by_key(|(w, _)| *w);
        windows.dedup_by_key(|(w, _)| *w);
        let header = headers::policy_header(&windows).into();
        Policy {
            windows: windows.into(),
            header,
        }
    }

    pub fn from_rates(rates: &[Rate]) -> Policy {
        Policy::new(rates.iter().map(|r| (r.window, Some(r.limit))).collect())
    }

    pub fn windows(&self) -> &[(Window, Option<Limit>)] {
        &self.windows
    }

    /// A copy with allocations of its own, for a thread to keep (see `keys::cache`).
    pub fn deep_copy(&self) -> Policy {
        Policy {
            windows: self.windows.iter().copied().collect(),
            header: self.header.as_ref().into(),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.windows.iter().all(|(_, limit)| limit.is_none())
    }

    /// `RateLimit-Policy`: `"minute";q=60;w=60, "hour";q=1000;w=3600` (limited windows only).
    pub fn header(&self) -> &Arc<str> {
        &self.header
    }
}
