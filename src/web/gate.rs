//! The gate: the middleware in front of every route that is not keygate's own exempt one.
//! Which routes those are, and what a request costs, is decided where routes are registered
//! (the route table's `Gate::Exempt` / `Gate::Counts(n)`; the gateway's catch-all and an
//! embedding app's routes by the route rules, `UPSTREAM_ROUTES`), never here from a path: the
//! gate gates whatever it wraps, in keygate and in an embedding app alike.
//!
//! Per request: one reading of the clock; who is calling (`credentials`: API key, else keygate
//! bearer token, else the client address; a foreign `Authorization` is the upstream's and makes
//! the caller anonymous) → the key's own rules (allowlist, the scopes the request needs) → one
//! counter-store decision for all of the caller's windows → usage noted for keys → 429 or the
//! handler → RateLimit headers on whatever answers. The caller travels to handlers as a
//! [`Caller`] request extension.
//!
//! A cached key costs no database I/O; a malformed key is refused before any lookup. A token's
//! user standing (active, epoch) is cached the same way, so a deactivated user's tokens stop.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError};

pub use crate::caller::{Caller, Identity, LogTag, now_of, tier_of};
use crate::clock::Now;
use crate::contract::Scope;
use crate::credentials::{self, Credential};
use crate::error::ApiError;
use crate::keys::KeyStatus;
use crate::keys::cache::{KeyInfo, UserStanding};
use crate::keys::secret::PresentedKey;
use crate::limits::headers::RateLimitHeaders;
use crate::limits::{Bucket, LimiterError, Part, Policy, Refusal};
use crate::metrics::{Outcome, Tier};
use crate::rules::Need;
use crate::state::AppState;
use crate::users::token::Claims;

const EXPOSED: &str =
    "RateLimit, RateLimit-Policy, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After";

/// A request the gate let through: who called, and the headers that go on the answer.
struct Admitted {
    caller: Caller,
    headers: Option<RateLimitHeaders>,
}

/// A request the gate refused, with the answer's RateLimit headers (on a 429).
struct Refused {
    error: ApiError,
    headers: Option<RateLimitHeaders>,
}

/// What a request needs and costs: a route table's cost, or the route rules'
/// (`UPSTREAM_ROUTES`: scopes and cost by method and path; without rules, nothing and 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    Cost(u32),
    Rules,
}

/// The middleware by the route rules: the gateway's catch-all, and what an embedding app wraps
/// its routes with.
pub async fn gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    gate_charging(req, next, Charge::Rules).await
}

/// The middleware for a route whose requests cost `cost` each (the route table's; 0 only
/// reads the caller's windows).
pub async fn gate_at_cost(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    cost: u32,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    gate_charging(req, next, Charge::Cost(cost)).await
}

/// Classify (CORS preflight), identify, decide, respond.
async fn gate_charging(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    charge: Charge,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let cors = req.headers().contains_key(header::ORIGIN);
    if cors
        && req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return Ok(req.into_response(preflight()));
    }
    let state = AppState::of(req.request())?;
    match admit(state, &req, charge).await {
        Ok(Admitted { caller, headers }) => {
            state.requests.count(tier_of(&caller.identity), Outcome::Allowed);
            req.extensions_mut().insert(caller);
            let response = next.call(req).await?.map_into_boxed_body();
            Ok(response.map_body(|head, body| {
                decorate(&mut head.headers, headers.as_ref(), cors);
                body
            }))
        }
        Err((tier, Refused { error, headers })) => {
            state.requests.count(tier, outcome_of(&error));
            let mut response = error.error_response();
            decorate(response.headers_mut(), headers.as_ref(), cors);
            Ok(req.into_response(response))
        }
    }
}

fn outcome_of(error: &ApiError) -> Outcome {
    match error {
        ApiError::RateLimitExceeded { .. } => Outcome::RateLimited,
        ApiError::DatabaseUnavailable(_) | ApiError::RateLimiterUnavailable => Outcome::Unavailable,
        ApiError::InsufficientScope(_) | ApiError::IpNotAllowed => Outcome::Forbidden,
        _ => Outcome::Unauthorized,
    }
}

/// Who is calling, whether their key may make this request (address, scopes) and whether
/// their windows have room: one counter-store decision, made only for a request that may pass.
async fn admit(state: &AppState, req: &ServiceRequest, charge: Charge) -> Result<Admitted, (Tier, Refused)> {
    let refuse = |tier, error| (tier, Refused { error, headers: None });
    let now = Now::read();
    let client_ip = client_ip(state, req.request());
    let identity = match identify(state, req.headers(), now).await {
        Ok(identity) => identity,
        Err(error) => {
            tag(state, req, LogTag::Invalid);
            return Err(refuse(Tier::Invalid, error));
        }
    };
    let tier = tier_of(&identity);
    tag(state, req, log_tag(&identity));
    let cost = match cost_if_allowed(state, req, charge, &identity, client_ip) {
        Ok(cost) => cost,
        Err(error) => return Err(refuse(tier, error)),
    };
    let (bucket, policy): (Bucket, &Policy) = match &identity {
        Identity::Key(info) => (Bucket::Key(info.id), &info.policy),
        Identity::User(id) => (Bucket::User(*id), &state.user_policy),
        Identity::Anonymous => (
            Bucket::ip(client_ip.unwrap_or(IpAddr::from([0, 0, 0, 0]))),
            &state.anon_policy,
        ),
    };
    let decided = match &identity {
        Identity::Key(info) if let Some(ask) = &info.ask => {
            state.ledger.charge(ask, cost, now).await.map_err(ApiError::from)
        }
        _ => (state.limiter.hit(bucket, policy, cost, now).await)
            .map_err(|LimiterError::Unavailable| ApiError::RateLimiterUnavailable),
    };
    let decision = decided.map_err(|error| refuse(tier, error))?;
    if let Identity::Key(info) = &identity
        && cost > 0
    {
        state.usage.record(info.id, decision.allowed, now);
        state.signals.observe(info.id, &decision, u64::from(cost));
    }
    let headers = RateLimitHeaders::of(&decision, policy);
    if !decision.allowed {
        let error = match decision.refused_by() {
            Some(refusal) => refused(state, &identity, refusal, headers.as_ref()),
            // A store refused with no window at all: nothing to name, still refused.
            None => ApiError::RateLimiterUnavailable,
        };
        return Err((tier, Refused { error, headers }));
    }
    let caller = Caller {
        identity,
        client_ip,
        decision,
        now,
    };
    Ok(Admitted { caller, headers })
}

/// What the request costs, once the caller's key may make it (its address, the scopes the
/// request needs — for its method and any method it poses as).
fn cost_if_allowed(
    state: &AppState,
    req: &ServiceRequest,
    charge: Charge,
    identity: &Identity,
    client_ip: Option<IpAddr>,
) -> Result<u32, ApiError> {
    let (need, overridden) = match charge {
        Charge::Cost(cost) => (Need::cost(cost), Vec::new()),
        Charge::Rules => needs_by_rule(state, req),
    };
    let mut cost = need.cost;
    for needed in std::iter::once(&need).chain(&overridden) {
        may_pass(identity, client_ip, needed.scopes)?;
        cost = cost.max(needed.cost);
    }
    Ok(cost)
}

/// Headers by which some frameworks let a request pose as another method (a POST that the
/// upstream runs as a DELETE).
const METHOD_OVERRIDES: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];

/// What the route rules ask of this request, and — when it names other methods in
/// method-override headers the upstream may honour — of those methods too: it must meet them
/// all, and costs the most of them. (No allocation without such headers.)
fn needs_by_rule<'s>(state: &'s AppState, req: &ServiceRequest) -> (Need<'s>, Vec<Need<'s>>) {
    let rules = &state.route_rules;
    let need = rules.need(req.method().as_str(), req.path());
    if rules.is_empty() {
        return (need, Vec::new());
    }
    let overridden = METHOD_OVERRIDES
        .iter()
        .flat_map(|name| req.headers().get_all(*name))
        .filter_map(|value| value.to_str().ok())
        .map(|method| rules.need(method.trim(), req.path()))
        .collect();
    (need, overridden)
}

/// A key's own rules, before anything is counted: the address it may be used from, and the
/// scopes the request needs. Without a key, a route that needs scopes needs a key.
fn may_pass(identity: &Identity, client_ip: Option<IpAddr>, needed: &[Scope]) -> Result<(), ApiError> {
    match identity {
        Identity::Key(info) => {
            if !info.ip_allowlist.allows(client_ip) {
                return Err(ApiError::IpNotAllowed);
            }
            let missing = info.scopes.missing(needed);
            if missing.is_empty() {
                Ok(())
            } else {
                Err(ApiError::InsufficientScope(
                    missing.iter().map(|s| s.to_string()).collect(),
                ))
            }
        }
        _ if needed.is_empty() => Ok(()),
        Identity::User(_) => Err(ApiError::InsufficientScope(
            needed.iter().map(|s| s.to_string()).collect(),
        )),
        Identity::Anonymous => Err(ApiError::AuthenticationRequired(
            "This route needs an API key with the right scopes; send it in the Api-Key header.",
        )),
    }
}

/// The answer to a refused request: 429 for a full window (its wait is the one the RateLimit
/// headers carry), 429 or 403 for a balance that cannot pay.
fn refused(
    state: &AppState,
    identity: &Identity,
    refusal: Refusal,
    headers: Option<&RateLimitHeaders>,
) -> ApiError {
    let retry_after = headers.and_then(|h| h.retry_after).unwrap_or(1);
    let plural = if retry_after == 1 { "" } else { "s" };
    let (window, whose) = match refusal {
        Refusal::Window { count, part, .. } => (count, part),
        Refusal::Credits {
            balance,
            wait_ms,
            part,
        } => {
            return quota_exhausted(balance.remaining, part, wait_ms.map(|_| retry_after));
        }
    };
    let limit = window.limit.map_or(0, crate::limits::Limit::get);
    let across = if whose == Part::Plan {
        " across all of your keys (your plan)"
    } else {
        ""
    };
    let message = match identity {
        Identity::Anonymous => state.anon_message.clone(),
        _ => format!(
            "Rate limit exceeded: {limit} requests per {}{across}. Try again in {retry_after} second{plural}.",
            window.window.name(),
        ),
    };
    ApiError::RateLimitExceeded {
        message,
        limit,
        window: window.window.name(),
        retry_after,
    }
}

/// A balance that cannot pay: 429 while a refill will come (in `retry_after` seconds), 403 when
/// none will.
fn quota_exhausted(remaining: u64, part: Part, retry_after: Option<u64>) -> ApiError {
    let whose = if part == Part::Plan {
        "Your plan's"
    } else {
        "This API key's"
    };
    let message = match retry_after {
        Some(wait) => format!(
            "{whose} credits are used up ({remaining} left). They are refilled in {wait} second{}.",
            if wait == 1 { "" } else { "s" }
        ),
        None => format!("{whose} credits are used up ({remaining} left), and no refill is set."),
    };
    ApiError::QuotaExhausted {
        message,
        remaining,
        retry_after,
    }
}

fn log_tag(identity: &Identity) -> LogTag {
    match identity {
        Identity::Key(info) => LogTag::Key(info.id),
        Identity::User(id) => LogTag::User(*id),
        Identity::Anonymous => LogTag::Anonymous,
    }
}

/// Leaves the log tag for the request log line, when requests are logged (a request extension
/// is an allocation: not when nothing reads it).
fn tag(state: &AppState, req: &ServiceRequest, tag: LogTag) {
    if state.log_requests {
        req.extensions_mut().insert(tag);
    }
}

/// The client's address, by the trusted-proxy rules (`limits::client_ip`): the one resolution
/// the gate, the login throttle and the dashboard share.
pub fn client_ip(state: &AppState, req: &HttpRequest) -> Option<IpAddr> {
    let headers = req.headers();
    let forwarded = headers.get_all("x-forwarded-for").map(HeaderValue::as_bytes);
    let header = state
        .client_ip
        .header
        .as_deref()
        .and_then(|name| headers.get(name))
        .map(HeaderValue::as_bytes);
    state
        .client_ip
        .resolve(req.peer_addr().map(|a| a.ip()), forwarded, header)
}

async fn identify(state: &AppState, headers: &HeaderMap, now: Now) -> Result<Identity, ApiError> {
    match credentials::of(headers) {
        Credential::ApiKey(presented) => Ok(Identity::Key(active_key(state, &presented, now).await?)),
        Credential::Token(token) => {
            let claims = state.tokens.verify(token, now.unix_secs())?;
            let standing = state.keys.user(&state.pool, claims.user_id).await?;
            token_standing(&claims, standing)?;
            Ok(Identity::User(claims.user_id))
        }
        Credential::Invalid(message) => Err(ApiError::InvalidApiKey(message)),
        Credential::UnreadableToken => Err(ApiError::InvalidToken("it is not ASCII".into())),
        // Another `Authorization` is the upstream's business.
        Credential::Foreign | Credential::None => Ok(Identity::Anonymous),
    }
}

/// The key a caller presented, if keygate knows it and it is active now: 401 otherwise, saying
/// which (unknown, expired, deactivated). The one rule for the gate and key verification's
/// service keys.
pub async fn active_key(
    state: &AppState,
    presented: &PresentedKey,
    now: Now,
) -> Result<Arc<KeyInfo>, ApiError> {
    let info = state
        .keys
        .lookup(&state.pool, presented)
        .await?
        .ok_or_else(|| ApiError::InvalidApiKey("This API key is not valid.".into()))?;
    match info.status_at(now) {
        KeyStatus::Active => Ok(info),
        KeyStatus::Expired => Err(ApiError::ApiKeyExpired),
        KeyStatus::Inactive => Err(ApiError::ApiKeyInactive),
    }
}

/// Whether a verified token's user still holds it: active, and the token from their current
/// epoch. The one rule for the gate and the API's principal.
pub fn token_standing(claims: &Claims, standing: Option<UserStanding>) -> Result<(), ApiError> {
    match standing {
        Some(user) if user.is_active && user.epoch == claims.epoch => Ok(()),
        Some(user) if user.is_active => Err(ApiError::InvalidToken(
            "it was issued before the user's password or status changed".into(),
        )),
        _ => Err(ApiError::InvalidToken("its user is no longer active".into())),
    }
}

fn preflight() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_METHODS,
            "GET, POST, PUT, PATCH, DELETE, OPTIONS",
        ))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "Api-Key, Authorization, Content-Type",
        ))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
        .finish()
}

fn decorate(map: &mut HeaderMap, headers: Option<&RateLimitHeaders>, cors: bool) {
    if let Some(h) = headers {
        // Rendered from numbers and known-good text: every value is a valid header value.
        let text = |s: &str| HeaderValue::from_str(s).ok();
        let values = [
            ("ratelimit-policy", text(&h.policy)),
            ("ratelimit", text(&h.current)),
            ("x-ratelimit-limit", Some(h.limit.into())),
            ("x-ratelimit-remaining", Some(h.remaining.into())),
            ("x-ratelimit-reset", Some(h.reset_at.into())),
        ];
        for (name, value) in values {
            if let Some(value) = value {
                map.insert(HeaderName::from_static(name), value);
            }
        }
        // Retry-After is the 429's own (ApiError::RateLimitExceeded), with this same wait.
    }
    if cors {
        map.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        map.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED),
        );
    }
}
