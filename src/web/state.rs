//! What every handler and the gate can reach, registered once as `web::Data<AppState>` in
//! `startup`.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, web};

use crate::db::DbPool;
use crate::error::ApiError;
use crate::events::Signals;
use crate::keys::cache::KeyCache;
use crate::keys::handoff::Handoff;
use crate::ledger::Ledger;
use crate::limits::Limits;
use crate::limits::client_ip::ClientIpRule;
use crate::limits::{Limiter, Policy};
use crate::metrics::RequestCounters;
use crate::rules::RouteRules;
use crate::usage::UsageRecorder;
use crate::users::signup::SignupMode;
use crate::users::token::TokenSigner;

pub struct AppState {
    pub pool: DbPool,
    pub tokens: TokenSigner,
    pub token_ttl: Duration,
    /// Limits of a new key when its creator gives none (`KEY_RATE_LIMIT`).
    pub key_defaults: Limits,
    pub keys: Arc<KeyCache>,
    /// New keys' secrets on their way to the dashboard page that shows them once.
    pub handoff: Handoff,
    pub limiter: Arc<Limiter>,
    pub usage: Arc<UsageRecorder>,
    /// Credits: the live balances' checkpoints, seeds and admins' changes.
    pub ledger: Arc<Ledger>,
    pub client_ip: ClientIpRule,
    /// `ANON_RATE_LIMIT`, per client address.
    pub anon_policy: Policy,
    pub anon_message: String,
    /// `USER_RATE_LIMIT`, per bearer-token user.
    pub user_policy: Policy,
    /// What the gate decided, for `/metrics`.
    pub requests: RequestCounters,
    /// `METRICS_TOKEN`: when set, `/metrics` wants it as a bearer token.
    pub metrics_token: Option<crate::config::Redacted>,
    /// Whether requests are logged (info logging on): the gate then tags them for the line.
    pub log_requests: bool,
    /// `UPSTREAM_ROUTES`: what a request the gate charges by rule needs and costs.
    pub route_rules: RouteRules,
    /// `UPSTREAM_FORWARD_META`: keys' metadata goes to the upstream.
    pub forward_meta: bool,
    /// `SIGNUP`: how people get a dashboard account.
    pub signup: SignupMode,
    /// What the gate tells webhooks (refusals, thresholds).
    pub signals: Arc<Signals>,
    /// The delivery loop runs while this is held.
    pub deliverer: Arc<crate::deliveries::Deliverer>,
}

impl AppState {
    /// The state registered on the app, borrowed from the request: no reference count is
    /// taken (a shared one costs a cache-line transfer between workers per request).
    pub fn of(req: &HttpRequest) -> Result<&AppState, ApiError> {
        req.app_data::<web::Data<AppState>>()
            .map(|data| data.get_ref())
            .ok_or_else(|| ApiError::internal(std::io::Error::other("AppState is not registered")))
    }
}
