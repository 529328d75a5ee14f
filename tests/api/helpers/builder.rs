//! The typed settings of a test server: `TestApp::on(backend).upstream(…).spawn()`.

use std::sync::Arc;

use super::{Backend, RedisEnv, TestApp, TestDb, spawn_instance, test_redis};

/// Where a test server's counters live.
enum Counters {
    /// The backend's default: in process with SQLite, the test Redis with PostgreSQL.
    Default,
    /// This Redis (a URL, maybe dead or TLS) under this key prefix.
    Redis(String, String),
}

/// The settings of one test server, as typed calls; [`AppBuilder::spawn`] turns them into
/// the environment keygate reads (`Settings::from_lookup`), so tests go through the same
/// parsing as production.
pub struct AppBuilder {
    backend: Backend,
    db: Option<TestDb>,
    counters: Counters,
    vars: Vec<(&'static str, String)>,
}

impl TestApp {
    pub fn on(backend: Backend) -> AppBuilder {
        AppBuilder {
            backend,
            db: None,
            counters: Counters::Default,
            vars: Vec::new(),
        }
    }

    /// A server on a database the test made (e.g. to reach it through a proxy it controls),
    /// with in-process counters.
    pub fn on_database(db: TestDb) -> AppBuilder {
        AppBuilder {
            backend: Backend::Sqlite,
            db: Some(db),
            counters: Counters::Default,
            vars: Vec::new(),
        }
    }
}

impl AppBuilder {
    fn set(mut self, name: &'static str, value: impl ToString) -> AppBuilder {
        self.vars.push((name, value.to_string()));
        self
    }

    /// Connect through this URL instead of the test database's own (a proxy in front of it).
    pub fn database_url(self, url: &str) -> AppBuilder {
        self.set("DATABASE_URL", url)
    }

    pub fn database_pool_size(self, size: u32) -> AppBuilder {
        self.set("DATABASE_POOL_SIZE", size)
    }

    /// Counters in this Redis under `prefix`, instead of the backend's default.
    pub fn redis(mut self, url: &str, prefix: &str) -> AppBuilder {
        self.counters = Counters::Redis(url.to_owned(), prefix.to_owned());
        self
    }

    pub fn failure_mode(self, mode: keygate::limits::FailureMode) -> AppBuilder {
        self.set("RATE_LIMIT_FAILURE_MODE", format!("{mode:?}").to_lowercase())
    }

    pub fn redis_timeout_ms(self, ms: u64) -> AppBuilder {
        self.set("REDIS_TIMEOUT_MS", ms)
    }

    pub fn secret_key(self, secret: &str) -> AppBuilder {
        self.set("SECRET_KEY", secret)
    }

    /// Gateway mode, in front of `url`.
    pub fn upstream(self, url: &str) -> AppBuilder {
        self.set("UPSTREAM_URL", url)
    }

    /// Route rules (`UPSTREAM_ROUTES`), inline.
    pub fn upstream_routes(self, rules: &str) -> AppBuilder {
        self.set("UPSTREAM_ROUTES", rules)
    }

    /// Keys' metadata to the upstream as `X-Keygate-Meta`.
    pub fn upstream_forward_meta(self) -> AppBuilder {
        self.set("UPSTREAM_FORWARD_META", "1")
    }

    pub fn upstream_timeout_ms(self, ms: u64) -> AppBuilder {
        self.set("UPSTREAM_TIMEOUT_MS", ms)
    }

    pub fn usage_flush_ms(self, ms: u64) -> AppBuilder {
        self.set("USAGE_FLUSH_MS", ms)
    }

    pub fn trusted_proxy_hops(self, hops: u32) -> AppBuilder {
        self.set("TRUSTED_PROXY_HOPS", hops)
    }

    /// How people get an account: `closed`, `invite` or `open`.
    pub fn signup(self, mode: &str) -> AppBuilder {
        self.set("SIGNUP", mode)
    }

    /// `WEBHOOK_ALLOW_PRIVATE=1`: webhooks may reach 127.0.0.1 (the tests' receivers).
    pub fn webhook_allow_private(self) -> AppBuilder {
        self.set("WEBHOOK_ALLOW_PRIVATE", "1")
    }

    pub fn client_timeout_ms(self, ms: u64) -> AppBuilder {
        self.set("CLIENT_TIMEOUT_MS", ms)
    }

    /// Rates in the configuration's own syntax (`2/minute`, `60/minute,1000/day`).
    pub fn anon_rate_limit(self, rates: &str) -> AppBuilder {
        self.set("ANON_RATE_LIMIT", rates)
    }

    pub fn anon_limit_message(self, message: &str) -> AppBuilder {
        self.set("ANON_LIMIT_MESSAGE", message)
    }

    pub fn user_rate_limit(self, rates: &str) -> AppBuilder {
        self.set("USER_RATE_LIMIT", rates)
    }

    /// Starts the server; `None` (the test is skipped) when a service it needs is not running.
    pub async fn spawn(self) -> Option<TestApp> {
        let db = match self.db {
            Some(db) => db,
            None => TestDb::new(self.backend)?,
        };
        let redis = match (self.counters, self.backend) {
            (Counters::Redis(url, prefix), _) => Some(RedisEnv { url, prefix }),
            (Counters::Default, Backend::Sqlite) => None,
            (Counters::Default, Backend::Postgres) => Some(test_redis()?),
        };
        let vars = self.vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        Some(spawn_instance(Arc::new(db), redis, vars).await)
    }
}
