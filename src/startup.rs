//! Wiring: the only place where routes, middleware and app data are registered.
//! `Application::build` prepares the database, binds the listener (port 0 in tests) and returns
//! the server ready to run.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::{Logger, NormalizePath};
use actix_web::{App, HttpServer, web};

use crate::config::Settings;
use crate::db::{self, DbError, DbPool};
use crate::routes::api::{self, auth, body, keys};
use crate::routes::health;
use crate::state::AppState;
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
    pool: DbPool,
}

/// Applies migrations and makes sure an admin exists.
pub async fn prepare(settings: &Settings) -> Result<DbPool, StartupError> {
    let pool = db::pool(&settings.database_url, settings.database_pool_size)?;
    let applied = db::run(&pool, db::migrate).await?;
    for version in applied {
        log::info!("applied migration {version}");
    }
    if let Some(admin) = users::bootstrap_admin(&pool, settings.admin.as_ref()).await? {
        log::warn!(
            "first start: created admin user {} with password {} (shown once; set ADMIN_EMAIL and ADMIN_PASSWORD to choose your own)",
            admin.email,
            admin.password
        );
    }
    Ok(pool)
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        let pool = prepare(&settings).await?;
        if settings.secret_key_generated {
            log::warn!("SECRET_KEY is not set: using a random key, so tokens and sessions end at restart");
        }
        let addr = format!("{}:{}", settings.bind_addr, settings.port);
        let listener = TcpListener::bind(&addr).map_err(|source| StartupError::Bind {
            addr: addr.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?
            .port();

        let state = web::Data::new(AppState {
            pool: pool.clone(),
            tokens: TokenSigner::new(&settings.secret_key),
            token_ttl: settings.token_ttl,
            key_defaults: settings.key_rate_limit,
            counters: "memory",
        });
        let mut server = HttpServer::new(move || {
            let json = web::JsonConfig::default()
                .limit(body::MAX_JSON_BYTES)
                .content_type_required(false)
                .error_handler(body::json_error);
            let path =
                web::PathConfig::default().error_handler(|_, _| crate::error::ApiError::NotFound.into());
            let query = web::QueryConfig::default()
                .error_handler(|e, _| crate::error::ApiError::InvalidQuery(e.to_string()).into());
            // Request order: Logger → NormalizePath (so `/x/` and `/x` are one route) → handler.
            App::new()
                .app_data(state.clone())
                .app_data(json)
                .app_data(path)
                .app_data(query)
                .wrap(NormalizePath::trim())
                .wrap(Logger::new("%a \"%r\" %s %b %Dms"))
                .service(resource("/healthz").route(web::get().to(health::healthz)))
                .service(resource("/api/auth/token").route(web::post().to(auth::token)))
                .service(
                    resource("/api/api-keys")
                        .route(web::get().to(keys::list))
                        .route(web::post().to(keys::create)),
                )
                .service(
                    resource("/api/api-keys/{id}")
                        .route(web::get().to(keys::get))
                        .route(web::patch().to(keys::update))
                        .route(web::delete().to(keys::deactivate)),
                )
                .service(resource("/api/api-keys/{id}/stats").route(web::get().to(keys::stats)))
                .default_service(web::to(api::not_found))
        })
        .listen(listener)
        .map_err(|source| StartupError::Bind {
            addr: format!("port {port}"),
            source,
        })?
        .shutdown_timeout(10);
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        Ok(Application {
            port,
            server: server.run(),
            pool,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Serves until SIGTERM/SIGINT, then finishes in-flight requests and returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// A resource whose unserved methods answer 405 in JSON.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(api::method_not_allowed))
}
