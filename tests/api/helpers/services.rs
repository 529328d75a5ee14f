//! The services a test needs, each its own: a database (a SQLite file, or a PostgreSQL
//! database created for the test and dropped after it) and a Redis key prefix. A service that is
//! not running skips the test, or fails it under `CI` / `KEYGATE_REQUIRE_SERVICES`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use keygate::db::{self, DbConnection};

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// With `CI` or `KEYGATE_REQUIRE_SERVICES` set, a missing service fails the test.
pub fn services_required() -> bool {
    ["CI", "KEYGATE_REQUIRE_SERVICES"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty() && s != "0" && s != "false"))
}

/// Skips (with a notice on the terminal, past the test harness's capture) or fails.
pub fn unavailable(service: &str, detail: &str, how: &str) {
    let message = format!("{service} is unreachable ({detail}); start it with: {how}");
    if services_required() {
        panic!("{message}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED (set KEYGATE_REQUIRE_SERVICES=1 to fail instead): {message}"
    );
}

/// Unique within this test run: for database names, Redis prefixes and emails.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A database of one test's own, removed when dropped.
pub struct TestDb {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    File(PathBuf),
    Postgres { admin_url: String, name: String },
}

pub fn test_redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The test Redis and a key prefix of this test's own, or `None` (skipped) when unreachable.
pub fn test_redis() -> Option<RedisEnv> {
    let url = test_redis_url();
    let reachable = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    match reachable {
        Ok(_) => Some(RedisEnv {
            url,
            prefix: format!("keygate-test-{}", unique_suffix()),
        }),
        Err(e) => {
            unavailable(
                "Redis",
                &format!("{url}: {e}"),
                "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no",
            );
            None
        }
    }
}

#[derive(Debug, Clone)]
pub struct RedisEnv {
    pub url: String,
    pub prefix: String,
}

/// A plain PostgreSQL connection for test bookkeeping (creating and dropping databases,
/// reading server statistics). Like keygate's own, it initialises OpenSSL first, without its
/// exit-time cleanup (see db::init_tls).
pub fn pg_connect(url: &str) -> diesel::ConnectionResult<PgConnection> {
    keygate::db::init_tls();
    PgConnection::establish(url)
}

pub fn test_database_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

impl TestDb {
    pub fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("keygate-test-{}.db", unique_suffix()));
                Some(TestDb {
                    url: format!("sqlite://{}", path.display()),
                    cleanup: Cleanup::File(path),
                })
            }
            Backend::Postgres => {
                let admin_url = test_database_url();
                let mut admin = match pg_connect(&admin_url) {
                    Ok(conn) => conn,
                    Err(e) => {
                        unavailable(
                            "PostgreSQL",
                            &format!("{admin_url}: {e}"),
                            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
                        );
                        return None;
                    }
                };
                let name = format!("keygate_test_{}", unique_suffix());
                admin
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .expect("CREATE DATABASE");
                let (base, query) = admin_url
                    .split_once('?')
                    .map_or((admin_url.as_str(), ""), |(b, q)| (b, q));
                let (server, _) = base.rsplit_once('/').expect("TEST_DATABASE_URL names a database");
                let url = if query.is_empty() {
                    format!("{server}/{name}")
                } else {
                    format!("{server}/{name}?{query}")
                };
                Some(TestDb {
                    url,
                    cleanup: Cleanup::Postgres { admin_url, name },
                })
            }
        }
    }

    /// A migrated connection to this database.
    pub fn connect(&self) -> DbConnection {
        let mut conn = db::establish(&self.url).expect("connect to the test database");
        db::migrate(&mut conn).expect("migrate the test database");
        conn
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::Postgres { admin_url, name } => {
                if let Ok(mut admin) = pg_connect(admin_url) {
                    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                }
            }
        }
    }
}

/// Generates one test per backend for each named `async fn(TestApp)`.
macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(#[actix_web::test]
            async fn $test() {
                if let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await {
                    super::$test(app).await
                }
            })+
        }
        mod postgres {
            $(#[actix_web::test]
            async fn $test() {
                if let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await {
                    super::$test(app).await
                }
            })+
        }
    };
}
pub(crate) use on_both_backends;

/// Generates one test per backend for each named `fn(&mut DbConnection)`.
macro_rules! on_both_databases {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $test() {
                if let Some(db) = crate::helpers::TestDb::new(crate::helpers::Backend::Sqlite) {
                    super::$test(&mut db.connect())
                }
            })+
        }
        mod postgres {
            $(#[test]
            fn $test() {
                if let Some(db) = crate::helpers::TestDb::new(crate::helpers::Backend::Postgres) {
                    super::$test(&mut db.connect())
                }
            })+
        }
    };
}
pub(crate) use on_both_databases;
