//! Wiring: middleware, app data, and which routes stand behind the gate. The routes themselves
//! come from their modules (`routes::api::openapi::OPERATIONS`, `routes::assets`,
//! `routes::admin::scope`, the gateway). `Application::build` prepares the database, binds the
//! listener (port 0 in tests) and returns the server ready to run.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::dev::ServiceResponse;
use actix_web::middleware::{Condition, Logger, from_fn};
use actix_web::{App, HttpMessage, HttpServer, web};

use crate::config::Settings;
use crate::db::{self, DbError, DbPool};
use crate::error::ApiError;
use crate::gate::{LogTag, gate};
use crate::keys::cache::KeyCache;
use crate::keys::handoff::Handoff;
use crate::ledger::Ledger;
use crate::limits::client_ip::ClientIpRule;
use crate::limits::memory::MemoryStore;
use crate::limits::{Limiter, Policy};
use crate::logging::LogFormat;
use crate::metrics::RequestCounters;
use crate::normalize::{Rewrite, normalize_path};
use crate::routes::api::{self, body, openapi};
use crate::routes::{admin, assets, gateway};
use crate::sessions::Sessions;
use crate::state::AppState;
use crate::usage::UsageRecorder;
use crate::users::token::TokenSigner;
use crate::users::{self, UserError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("could not create the admin user: {0:?}")]
    Admin(UserError),
    #[error("could not listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
}

impl From<UserError> for StartupError {
    fn from(e: UserError) -> StartupError {
        match e {
            UserError::Db(e) => StartupError::Db(e),
            other => StartupError::Admin(other),
        }
    }
}

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

/// Applies migrations and makes sure an admin exists: what `serve`, the CLI and the release
/// phase (`migrate`) all do first. Returns the pool and the number of migrations applied.
pub async fn prepare(settings: &Settings) -> Result<(DbPool, usize), StartupError> {
    if let (Some(dyno), Some(db::Backend::Sqlite)) =
        (&settings.dyno, db::Backend::of_url(&settings.database_url))
    {
        log::warn!(
            "!!! running on Heroku dyno {dyno} with SQLite: the file is lost at every restart and not shared \
             between dynos. Add heroku-postgresql so that DATABASE_URL points at PostgreSQL. !!!"
        );
    }
    let pool = db::pool(&settings.database_url, settings.database_pool_size)?;
    let applied = db::run(&pool, db::migrate).await?;
    for version in &applied {
        log::info!("applied migration {version}");
    }
    if let Some(admin) = users::bootstrap_admin(&pool, settings.admin.as_ref()).await? {
        log::warn!(
            "first start: created admin user {} with password {} (shown once; set ADMIN_EMAIL and ADMIN_PASSWORD to choose your own)",
            admin.email,
            admin.password
        );
    }
    Ok((pool, applied.len()))
}

/// The counter store and the key cache: in process, or on Redis (an unreachable one does not
/// stop start-up).
async fn stores(settings: &Settings) -> (Limiter, KeyCache) {
    let memory = Arc::new(MemoryStore::new(MemoryStore::DEFAULT_CAPACITY));
    match &settings.redis {
        None => (Limiter::in_memory(memory), KeyCache::new(None)),
        Some(target) => {
            let limiter = Limiter::with_redis(
                target.clone(),
                &settings.redis_prefix,
                settings.failure_mode,
                settings.redis_timeout,
                memory,
            )
            .await;
            (limiter, KeyCache::new(Some((target, &settings.redis_prefix))))
        }
    }
}

/// Everything the gate and the API handlers share: counter store (with its upkeep), key cache
/// (with its revocation listener), usage recorder (with its flusher), and the tier policies.
/// Another actix-web app registers it as app data and wraps its routes with
/// [`crate::gate::gate`] to put keygate in front of them (see `examples/gate_library.rs`).
pub async fn gate_state(settings: &Settings, pool: DbPool) -> web::Data<AppState> {
    let (limiter, keys) = stores(settings).await;
    let limiter = Arc::new(limiter);
    limiter.spawn_upkeep();
    let keys = Arc::new(keys);
    keys.spawn_listener();
    let handoff = Handoff::new(
        limiter
            .redis()
            .map(|store| (store.connection(), settings.redis_prefix.as_str())),
    );
    let usage = Arc::new(UsageRecorder::new(pool.clone()));
    usage.spawn_flusher(settings.usage_flush_interval);
    let ledger = Arc::new(Ledger::new(pool.clone(), limiter.clone()));
    ledger.spawn_checkpoints(settings.usage_flush_interval);
    let (signals, sightings) = crate::events::Signals::new();
    crate::events::spawn_writer(pool.clone(), sightings);
    let signals = Arc::new(signals);
    let deliverer = Arc::new(crate::deliveries::Deliverer {
        pool: pool.clone(),
        signals: signals.clone(),
        allow_private: settings.webhook_allow_private,
    });
    deliverer.spawn();

    web::Data::new(AppState {
        pool: pool.clone(),
        tokens: TokenSigner::new(&settings.secret_key),
        token_ttl: settings.token_ttl,
        key_defaults: settings.key_rate_limit,
        keys,
        handoff,
        limiter,
        usage,
        ledger,
        client_ip: ClientIpRule {
            trusted_hops: settings.trusted_proxy_hops,
            header: settings.client_ip_header.as_ref().map(|h| h.to_ascii_lowercase()),
        },
        anon_policy: Policy::from_rates(&settings.anon_rate_limit),
        anon_message: settings.anon_limit_message.clone(),
        user_policy: Policy::from_rates(&settings.user_rate_limit),
        requests: RequestCounters::default(),
        metrics_token: settings.metrics_token.clone(),
        log_requests: log::log_enabled!(log::Level::Info),
        route_rules: settings.upstream_routes.clone(),
        forward_meta: settings.upstream_forward_meta,
        signup: settings.signup,
        signals,
        deliverer,
    })
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        let (pool, _) = prepare(&settings).await?;
        if settings.secret_key_generated {
            log::warn!("SECRET_KEY is not set: using a random key, so tokens and sessions end at restart");
        }
        let (listener, port) = bind(&settings)?;

        // Hours kept 35 days, days 400, audit entries AUDIT_RETENTION_DAYS (or forever).
        crate::analytics::spawn_retention(pool.clone(), settings.audit_retention_days);
        let state = gate_state(&settings, pool).await;
        let app_state = state.clone();
        let upstream = settings
            .upstream_url
            .clone()
            .map(|base| (base, settings.upstream_timeout));
        let sessions = sessions(&settings, &state);
        let log_requests = state.log_requests;
        let mut server = HttpServer::new(move || {
            // Request order: Logger → path hygiene (normalize_path: refuses dot segments and encoded slashes;
            // `/x/` and `/x` are one route; keeps the path as sent, for the upstream) → the
            // router → (on gated routes) the gate → handler or upstream.
            App::new()
                .app_data(app_state.clone())
                .configure(extractors)
                .wrap(Rewrite(normalize_path))
                .wrap(request_log(log_requests))
                .configure(|cfg| routes(cfg, &sessions, upstream.as_ref()))
        })
        .listen(listener)
        .map_err(|source| StartupError::Bind {
            addr: format!("port {port}"),
            source,
        })?
        .shutdown_timeout(10)
        // Slow-loris protection: the request head must arrive within this, or 408.
        .client_request_timeout(settings.client_timeout)
        .client_disconnect_timeout(std::time::Duration::from_secs(1));
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        Ok(Application {
            port,
            server: server.run(),
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pool(&self) -> &DbPool {
        &self.state.pool
    }

    /// The shared state, for tests that look inside (usage, limiter).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until SIGTERM/SIGINT, then finishes in-flight requests, writes buffered usage and
    /// returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await?;
        match self.state.usage.flush().await {
            Ok(keys) => log::info!("stopped; wrote the usage of {keys} key(s)"),
            Err(e) => log::error!("stopped, but could not write buffered usage: {e}"),
        }
        match self.state.ledger.checkpoint().await {
            Ok(n) => log::info!("checkpointed {n} credit balance(s)"),
            Err(e) => log::error!("stopped, but could not checkpoint credits: {e}"),
        }
        Ok(())
    }
}

/// How request bodies, paths and queries that cannot be read are answered: JSON errors on the
/// API (the dashboard sets its own, see `routes::admin::scope`).
fn extractors(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(body::MAX_JSON_BYTES)
            .content_type_required(false)
            .error_handler(body::json_error),
    )
    .app_data(web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into()))
    .app_data(web::QueryConfig::default().error_handler(|e, _| ApiError::InvalidQuery(e.to_string()).into()))
    .app_data(
        web::FormConfig::default()
            .limit(16 * 1024)
            .error_handler(admin::form_error),
    );
}

/// One line per request: who (key id, never the key), method and path, status, latency.
/// Skipped altogether when info logging is off (its bookkeeping costs on every request). The
/// query string is left out: it can carry secrets (an invitation link's token, an upstream's
/// own tokens in gateway mode).
/// With `LOG_FORMAT=json` the line is a JSON object (`logging` merges it into the log line's).
fn request_log(enabled: bool) -> Condition<Logger> {
    let caller = |res: &ServiceResponse| {
        res.request()
            .extensions()
            .get::<LogTag>()
            .map_or_else(|| "-".to_owned(), LogTag::to_string)
    };
    let logger = match LogFormat::current() {
        LogFormat::Text => Logger::new("%a \"%{line}xi\" %s %b %Dms %{caller}xo").custom_request_replace("line", |req| {
            format!("{} {} {:?}", req.method(), req.path(), req.version())
        }),
        LogFormat::Json => Logger::new(
            r#"{"client":"%a","method":"%{method}xi","path":"%{path}xi","status":%s,"bytes":%b,"ms":%D,"caller":"%{caller}xo"}"#,
        )
        .custom_request_replace("method", |req| json_text(req.method().as_str()))
        .custom_request_replace("path", |req| json_text(req.path())),
    };
    Condition::new(enabled, logger.custom_response_replace("caller", caller))
}

/// `text` as the inside of a JSON string (escaped, without the quotes).
fn json_text(text: &str) -> String {
    let quoted = serde_json::Value::from(text).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// Every route, and which stand behind the gate. The router tries them in this order:
/// 1. the gated API routes, each behind the gate (first: they carry the traffic);
/// 2. keygate's exempt routes: health, metrics, key verification (`gated: false` in the route
///    table), the static files by exact name, the dashboard (its sessions, CSRF and login
///    throttle);
/// 3. everything else, behind the gate: the upstream in gateway mode, else 404.
///
/// The gate sits on each route rather than on one scope around them: one routing step less on
/// the hot path (not measured apart: unpinned runs are too noisy to tell ~3 %; see the
/// README's side-by-side figures for the whole change).
fn routes(cfg: &mut web::ServiceConfig, sessions: &Sessions, upstream: Option<&(String, Duration)>) {
    openapi::register(cfg, true);
    openapi::register(cfg, false);
    assets::register(cfg);
    cfg.service(admin::scope(sessions.clone()));
    let rest = web::scope("").wrap(from_fn(gate));
    match upstream {
        Some((base, timeout)) => {
            cfg.app_data(web::Data::new(gateway::Upstream {
                client: awc::Client::builder()
                    .timeout(*timeout)
                    .disable_redirects()
                    .finish(),
                base: base.clone(),
                timeout: *timeout,
            }));
            cfg.service(rest.default_service(web::to(gateway::forward)));
        }
        None => {
            cfg.service(rest.default_service(web::to(api::not_found)));
        }
    }
}

/// The listening socket (port 0 picks a free one, as the tests do) and its port.
fn bind(settings: &Settings) -> Result<(TcpListener, u16), StartupError> {
    let addr = format!("{}:{}", settings.bind_addr, settings.port);
    let listener = TcpListener::bind(&addr).map_err(|source| StartupError::Bind {
        addr: addr.clone(),
        source,
    })?;
    let port = listener
        .local_addr()
        .map_err(|source| StartupError::Bind { addr, source })?
        .port();
    Ok((listener, port))
}

/// Dashboard sessions, on the counters' Redis connection; if Redis was unreachable at start
/// they stay in cookies for this run.
fn sessions(settings: &Settings, state: &AppState) -> Sessions {
    let redis = state
        .limiter
        .redis()
        .map(|store| (store.connection(), settings.redis_prefix.as_str()));
    if settings.redis.is_some() && redis.is_none() {
        log::warn!("dashboard sessions are kept in cookies: Redis was unreachable at start");
    }
    Sessions::new(&settings.secret_key, redis)
}
