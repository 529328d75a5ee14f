//! Who is calling, as the gate established it — the request extension it leaves for handlers
//! ([`Caller`]), the log line's tag — and the request's one reading of the clock.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};

use crate::clock::Now;
use crate::db::{KeyId, UserId};
use crate::keys::cache::KeyInfo;
use crate::limits::Decision;
use crate::metrics::Tier;

/// Who is calling, as the gate established it.
#[derive(Debug, Clone)]
pub enum Identity {
    Key(Arc<KeyInfo>),
    /// A bearer-token user (signature, expiry, and the user's standing from the cache: a
    /// database read only on a miss).
    User(UserId),
    Anonymous,
}

impl Identity {
    pub fn tier(&self) -> &'static str {
        tier_of(self).name()
    }
}

/// The request extension the gate leaves for handlers.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Identity,
    pub client_ip: Option<IpAddr>,
    /// The counter-store decision (with no windows when failure mode `open` bypassed it).
    pub decision: Decision,
    /// When the gate took the request: the one clock reading the request's handlers use.
    pub now: Now,
}

/// The request's instant, for handlers (time is an input): the gate's reading for a gated
/// request, else read once here.
impl FromRequest for Now {
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Now, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(now_of(req)))
    }
}

/// The request's instant: the gate's reading, else the clock's now.
pub fn now_of(req: &HttpRequest) -> Now {
    let gated = req.extensions().get::<Caller>().map(|c| c.now);
    gated.unwrap_or_else(Now::read)
}

/// Who called, for the request log line (never the key). `Copy`, so tagging a request costs no
/// allocation; it is formatted only when a log line is written.
#[derive(Debug, Clone, Copy)]
pub enum LogTag {
    Key(KeyId),
    User(UserId),
    Anonymous,
    Invalid,
}

impl std::fmt::Display for LogTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogTag::Key(id) => write!(f, "key={id}"),
            LogTag::User(id) => write!(f, "user={id}"),
            LogTag::Anonymous => f.write_str("anon"),
            LogTag::Invalid => f.write_str("invalid"),
        }
    }
}

/// The caller's tier, as `/metrics` counts it.
pub fn tier_of(identity: &Identity) -> Tier {
    match identity {
        Identity::Key(_) => Tier::ApiKey,
        Identity::User(_) => Tier::User,
        Identity::Anonymous => Tier::Anonymous,
    }
}
