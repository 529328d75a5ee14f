//! What every handler can reach, registered once as `web::Data<AppState>` in `startup`.

use std::time::Duration;

use crate::db::DbPool;
use crate::keys::Limits;
use crate::users::token::TokenSigner;

pub struct AppState {
    pub pool: DbPool,
    pub tokens: TokenSigner,
    pub token_ttl: Duration,
    /// Limits of a new key when its creator gives none (`KEY_RATE_LIMIT`).
    pub key_defaults: Limits,
    /// Where rate-limit counters live: "memory" or "redis" (shown by `/healthz`).
    pub counters: &'static str,
}
