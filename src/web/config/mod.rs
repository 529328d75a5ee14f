//! Settings, read once from the environment (and `.env` when present, loaded by `main`).
//!
//! | variable | default |
//! |---|---|
//! | `PORT` | `8080` |
//! | `BIND_ADDR` | `0.0.0.0` |
//! | `DATABASE_URL` | `sqlite://keygate.db` |
//! | `DATABASE_POOL_SIZE` | `10` |
//! | `REDIS_URL` | unset: counters in process (`redis://`, `rediss://`, `redis+cluster://h1:p1,h2:p2`) |
//! | `REDIS_PREFIX` | `keygate` |
//! | `REDIS_TLS_INSECURE` | unset; `1` accepts a self-signed Redis certificate (Heroku Redis) |
//! | `REDIS_TIMEOUT_MS` | `50` |
//! | `RATE_LIMIT_FAILURE_MODE` | `local` (`local`, `open`, `closed`) |
//! | `SECRET_KEY` | random at each start (at least 64 bytes when set) |
//! | `ADMIN_EMAIL`, `ADMIN_PASSWORD` | unset |
//! | `TRUSTED_PROXY_HOPS` | `0` |
//! | `CLIENT_IP_HEADER` | unset |
//! | `ANON_RATE_LIMIT` | `100/hour` |
//! | `ANON_LIMIT_MESSAGE` | a neutral sentence |
//! | `USER_RATE_LIMIT` | `1000/hour` |
//! | `KEY_RATE_LIMIT` | `60/minute,1000/hour,10000/day` |
//! | `TOKEN_TTL_SECONDS` | `3600` (bearer-token lifetime) |
//! | `WEB_CONCURRENCY` | unset: one worker per core |
//! | `USAGE_FLUSH_MS` | `2000` (how often buffered usage is written) |
//! | `CLIENT_TIMEOUT_MS` | `5000` (a client must send its request head within this) |
//! | `UPSTREAM_URL` | unset: no gateway mode (an `http://` base URL) |
//! | `UPSTREAM_TIMEOUT_MS` | `30000` |
//! | `UPSTREAM_ROUTES` | unset: no rules (route rules inline, or the path of a file of them; see `rules`) |
//! | `UPSTREAM_FORWARD_META` | `0` (`1`: keys' metadata goes upstream as `X-Keygate-Meta`) |
//! | `METRICS_TOKEN` | unset: `/metrics` is open |
//! | `SIGNUP` | `closed` (`invite`: admins invite by link; `open`: anyone may sign up) |
//! | `DYNO` | set by Heroku; with SQLite it earns a warning |
//!
//! Every value is checked here, so a bad one stops start-up with a message naming the variable.
//! An empty value counts as unset (platforms sometimes export empty variables).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::limits::Limits;
use crate::limits::Rate;
use crate::rules::RouteRules;
use crate::shared_redis::RedisTarget;
use crate::users::signup::SignupMode;

// The settings' types that their domains own, for whoever reads `Settings`.
pub use crate::limits::FailureMode;
pub use crate::users::AdminBootstrap;
pub use crate::users::token::SecretKey;

#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

fn invalid(var: &'static str, reason: impl fmt::Display) -> ConfigError {
    ConfigError {
        var,
        reason: reason.to_string(),
    }
}

/// A setting that may carry a secret (a password in a URL, a token): reads as a `str`, prints
/// as its scheme at most.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(pub String);

impl std::ops::Deref for Redacted {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.split_once("://") {
            Some((scheme, _)) => write!(f, "\"{scheme}://…\""),
            None => f.write_str("\"…\""),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub port: u16,
    pub bind_addr: IpAddr,
    /// It may hold a password: `Debug` shows only its scheme.
    pub database_url: Redacted,
    pub database_pool_size: u32,
    pub redis: Option<RedisTarget>,
    pub redis_prefix: String,
    pub redis_timeout: Duration,
    pub failure_mode: FailureMode,
    pub secret_key: SecretKey,
    /// True when `SECRET_KEY` was unset and a random one was made for this run.
    pub secret_key_generated: bool,
    pub admin: Option<AdminBootstrap>,
    pub trusted_proxy_hops: usize,
    pub client_ip_header: Option<String>,
    pub anon_rate_limit: Vec<Rate>,
    pub anon_limit_message: String,
    pub user_rate_limit: Vec<Rate>,
    pub key_rate_limit: Limits,
    pub token_ttl: Duration,
    pub workers: Option<usize>,
    pub usage_flush_interval: Duration,
    pub client_timeout: Duration,
    pub metrics_token: Option<Redacted>,
    /// Heroku's dyno name, when running on one.
    pub dyno: Option<String>,
    pub upstream_url: Option<String>,
    pub upstream_timeout: Duration,
    /// Scopes and cost by method and path, for requests the gate charges by rule.
    pub upstream_routes: RouteRules,
    pub upstream_forward_meta: bool,
    /// How people get a dashboard account.
    pub signup: SignupMode,
    /// Audit entries older than this many days are deleted (`None`: kept forever).
    pub audit_retention_days: Option<u32>,
    /// `WEBHOOK_ALLOW_PRIVATE=1`: webhooks may reach private, loopback and link-local
    /// addresses (refused by default: SSRF).
    pub webhook_allow_private: bool,
}

pub const DEFAULT_ANON_LIMIT_MESSAGE: &str =
    "Too many requests from this address; wait a moment, or use an API key for a higher limit.";

impl Settings {
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests can pass a map instead of mutating the
    /// process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let get: &Lookup = &get;
        let (secret_key, secret_key_generated) = secret_key(get)?;
        let key_rates = rates(get, "KEY_RATE_LIMIT", "60/minute,1000/hour,10000/day")?;
        let key_rate_limit =
            Limits::from_rates(&key_rates).map_err(|reason| invalid("KEY_RATE_LIMIT", reason))?;
        let database_url = database_url(get)?;
        let redis = redis_target(get)?;
        let failure_mode = failure_mode(get)?;
        let admin = admin(get)?;
        let client_ip_header = client_ip_header(get)?;
        let settings = Settings {
            port: number(get, "PORT", 8080)?,
            bind_addr: parsed(get, "BIND_ADDR", IpAddr::from([0, 0, 0, 0]), "an IP address")?,
            database_url: Redacted(database_url),
            database_pool_size: positive(get, "DATABASE_POOL_SIZE", 10)?,
            redis,
            redis_prefix: get("REDIS_PREFIX").unwrap_or_else(|| "keygate".into()),
            redis_timeout: Duration::from_millis(positive(get, "REDIS_TIMEOUT_MS", 50)?),
            failure_mode,
            secret_key,
            secret_key_generated,
            admin,
            trusted_proxy_hops: number(get, "TRUSTED_PROXY_HOPS", 0)?,
            client_ip_header,
            anon_rate_limit: rates(get, "ANON_RATE_LIMIT", "100/hour")?,
            anon_limit_message: get("ANON_LIMIT_MESSAGE")
                .unwrap_or_else(|| DEFAULT_ANON_LIMIT_MESSAGE.into()),
            user_rate_limit: rates(get, "USER_RATE_LIMIT", "1000/hour")?,
            key_rate_limit,
            token_ttl: Duration::from_secs(positive(get, "TOKEN_TTL_SECONDS", 3600)?),
            workers: get("WEB_CONCURRENCY")
                .map(|_| positive(get, "WEB_CONCURRENCY", 1))
                .transpose()?,
            usage_flush_interval: Duration::from_millis(positive(get, "USAGE_FLUSH_MS", 2000)?),
            client_timeout: Duration::from_millis(positive(get, "CLIENT_TIMEOUT_MS", 5000)?),
            metrics_token: get("METRICS_TOKEN").map(Redacted),
            dyno: get("DYNO"),
            upstream_url: upstream_url(get)?,
            upstream_timeout: Duration::from_millis(positive(get, "UPSTREAM_TIMEOUT_MS", 30_000)?),
            upstream_routes: upstream_routes(get)?,
            upstream_forward_meta: flag(get, "UPSTREAM_FORWARD_META")?,
            signup: signup(get)?,
            webhook_allow_private: flag(get, "WEBHOOK_ALLOW_PRIVATE")?,
            audit_retention_days: get("AUDIT_RETENTION_DAYS")
                .map(|_| positive(get, "AUDIT_RETENTION_DAYS", 1))
                .transpose()?
                .map(|days: u32| days.min(36_500)),
        };
        Ok(settings)
    }
}

fn parsed<T: std::str::FromStr>(
    get: &Lookup,
    var: &'static str,
    default: T,
    expected: &str,
) -> Result<T, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(value) => value
            .trim()
            .parse()
            .map_err(|_| invalid(var, format!("{value:?} is not {expected}"))),
    }
}

fn number<T: std::str::FromStr>(get: &Lookup, var: &'static str, default: T) -> Result<T, ConfigError> {
    parsed(get, var, default, "a whole number in range")
}

fn positive<T: std::str::FromStr + PartialOrd + From<u8>>(
    get: &Lookup,
    var: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    let value = parsed(get, var, default, "a positive whole number")?;
    if value < T::from(1) {
        return Err(invalid(var, "must be at least 1"));
    }
    Ok(value)
}

/// How settings are read: a variable's value, `None` when unset or empty.
type Lookup<'a> = dyn Fn(&str) -> Option<String> + 'a;

fn database_url(get: &Lookup) -> Result<String, ConfigError> {
    let url = get("DATABASE_URL").unwrap_or_else(|| "sqlite://keygate.db".into());
    if crate::db::Backend::of_url(&url).is_none() {
        return Err(invalid(
            "DATABASE_URL",
            "expected postgres://…, postgresql://… or sqlite://PATH",
        ));
    }
    Ok(url)
}

/// `REDIS_URL`. Heroku Redis sets it itself (rediss://, self-signed): `REDIS_TLS_INSECURE=1`
/// adds the `#insecure` that the URL cannot be made to carry.
fn redis_target(get: &Lookup) -> Result<Option<RedisTarget>, ConfigError> {
    let insecure = matches!(
        get("REDIS_TLS_INSECURE").as_deref().map(str::trim),
        Some("1" | "true" | "yes")
    );
    get("REDIS_URL")
        .map(|url| {
            let url = url.trim();
            let url = if insecure && url.starts_with("rediss") && !url.contains('#') {
                format!("{url}#insecure")
            } else {
                url.to_owned()
            };
            RedisTarget::parse(&url).map_err(|e| invalid("REDIS_URL", e))
        })
        .transpose()
}

/// `SECRET_KEY`, or a random one (and `true`: generated).
fn secret_key(get: &Lookup) -> Result<(SecretKey, bool), ConfigError> {
    match get("SECRET_KEY") {
        Some(key) if key.len() < SecretKey::MIN_LEN => Err(invalid(
            "SECRET_KEY",
            format!(
                "must be at least {} bytes long (it is {}); generate one with `openssl rand -hex 64`",
                SecretKey::MIN_LEN,
                key.len()
            ),
        )),
        Some(key) => Ok((SecretKey::from_bytes(key.into_bytes()), false)),
        None => Ok((SecretKey::random(), true)),
    }
}

fn admin(get: &Lookup) -> Result<Option<AdminBootstrap>, ConfigError> {
    match (get("ADMIN_EMAIL"), get("ADMIN_PASSWORD")) {
        (Some(email), Some(password)) => Ok(Some(AdminBootstrap { email, password })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(invalid("ADMIN_PASSWORD", "must be set with ADMIN_EMAIL")),
        (None, Some(_)) => Err(invalid("ADMIN_EMAIL", "must be set with ADMIN_PASSWORD")),
    }
}

fn client_ip_header(get: &Lookup) -> Result<Option<String>, ConfigError> {
    let header = get("CLIENT_IP_HEADER");
    if let Some(name) = &header
        && actix_web::http::header::HeaderName::from_bytes(name.as_bytes()).is_err()
    {
        return Err(invalid(
            "CLIENT_IP_HEADER",
            format!("{name:?} is not a header name"),
        ));
    }
    Ok(header)
}

fn failure_mode(get: &Lookup) -> Result<FailureMode, ConfigError> {
    match get("RATE_LIMIT_FAILURE_MODE").as_deref().map(str::trim) {
        None | Some("local") => Ok(FailureMode::Local),
        Some("open") => Ok(FailureMode::Open),
        Some("closed") => Ok(FailureMode::Closed),
        Some(other) => Err(invalid(
            "RATE_LIMIT_FAILURE_MODE",
            format!("{other:?} is not one of local, open, closed"),
        )),
    }
}

/// `UPSTREAM_URL` without a trailing slash; plain `http://` only.
fn upstream_url(get: &Lookup) -> Result<Option<String>, ConfigError> {
    let url = get("UPSTREAM_URL").map(|u| u.trim().trim_end_matches('/').to_owned());
    if let Some(url) = &url
        && !url.starts_with("http://")
    {
        return Err(invalid(
            "UPSTREAM_URL",
            "expected http://… (plain HTTP to a service on your network)",
        ));
    }
    Ok(url)
}

/// `UPSTREAM_ROUTES`: rules inline (a rule has spaces), or the path of a file of them (one word).
fn upstream_routes(get: &Lookup) -> Result<RouteRules, ConfigError> {
    let Some(value) = get("UPSTREAM_ROUTES") else {
        return Ok(RouteRules::default());
    };
    let value = value.trim();
    let text = if value.contains(char::is_whitespace) || value.contains(';') {
        value.to_owned()
    } else {
        std::fs::read_to_string(value).map_err(|e| {
            invalid(
                "UPSTREAM_ROUTES",
                format!("cannot read the rules file {value}: {e}"),
            )
        })?
    };
    RouteRules::parse(&text).map_err(|e| invalid("UPSTREAM_ROUTES", e))
}

/// `SIGNUP`: `closed`, `invite` or `open`.
fn signup(get: &Lookup) -> Result<SignupMode, ConfigError> {
    match get("SIGNUP").map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("closed") => Ok(SignupMode::Closed),
        Some("invite") => Ok(SignupMode::Invite),
        Some("open") => Ok(SignupMode::Open),
        Some(other) => Err(invalid(
            "SIGNUP",
            format!("{other:?} is not one of closed, invite, open"),
        )),
    }
}

/// A switch: `1`/`true`/`yes` or `0`/`false`/`no` (unset: off).
fn flag(get: &Lookup, var: &'static str) -> Result<bool, ConfigError> {
    match get(var).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("0" | "false" | "no" | "off") => Ok(false),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some(other) => Err(invalid(var, format!("{other:?} is not 1 or 0"))),
    }
}

fn rates(get: &Lookup, var: &'static str, default: &str) -> Result<Vec<Rate>, ConfigError> {
    let text = get(var).unwrap_or_else(|| default.to_owned());
    Rate::parse_list(&text).map_err(|e| invalid(var, e))
}

#[cfg(test)]
mod tests;
