//! Storage: one Diesel connection type over PostgreSQL and SQLite, chosen by the URL scheme,
//! an r2d2 pool, the embedded migrations of both backends, and [`run`], the one way async code
//! reaches the database. Knows nothing of HTTP.

pub mod ids;
pub mod models;
pub mod schema;

pub use ids::{KeyId, UserId};

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// A connection to either backend; queries are written once against it.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgresql(PgConnection),
    // Last: the derived `establish` tries variants in order and SQLite accepts nearly any
    // string. We never call it, but keep the order safe anyway.
    Sqlite(SqliteConnection),
}

pub type DbPool = r2d2::Pool<Manager>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else if url.starts_with("sqlite://") {
            Some(Backend::Sqlite)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgresql",
            Backend::Sqlite => "sqlite",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("the database is unreachable")]
    Unavailable(#[source] r2d2::Error),
    #[error("could not connect to the database")]
    Connect(#[from] ConnectionError),
    #[error("database query failed")]
    Query(#[from] diesel::result::Error),
    #[error("migrations failed: {0}")]
    Migration(String),
    #[error("unsupported database URL (expected postgres://… or sqlite://PATH)")]
    UnsupportedUrl,
    #[error("the database task was cancelled")]
    Cancelled,
}

impl DbError {
    /// True when the database could not be reached at all (as opposed to a failing query).
    pub fn is_unavailable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        matches!(
            self,
            DbError::Unavailable(_)
                | DbError::Connect(_)
                | DbError::Query(Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _))
        )
    }
}

/// Initialises OpenSSL, which libpq uses, before any PostgreSQL connection and without its
/// exit-time cleanup (OPENSSL_INIT_NO_ATEXIT): that cleanup crashes any thread still using TLS
/// when the process exits (seen: a test process that had passed every test died with SIGSEGV
/// at exit). Idempotent and cheap after the first call.
pub fn init_tls() {
    openssl_sys::init();
}

/// Opens one connection, choosing the backend by scheme. SQLite connections get the pragmas a
/// pooled, concurrently written file needs.
pub fn establish(url: &str) -> Result<DbConnection, DbError> {
    match Backend::of_url(url) {
        Some(Backend::Postgres) => {
            init_tls();
            Ok(DbConnection::Postgresql(PgConnection::establish(url)?))
        }
        Some(Backend::Sqlite) => {
            let path = url.trim_start_matches("sqlite://");
            let mut conn = SqliteConnection::establish(path)?;
            // busy_timeout must come before journal_mode: switching to WAL takes a lock.
            conn.batch_execute(
                "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
                 PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
            )
            .map_err(DbError::Query)?;
            Ok(DbConnection::Sqlite(conn))
        }
        None => Err(DbError::UnsupportedUrl),
    }
}

/// r2d2 manager that opens connections through [`establish`].
#[derive(Debug)]
pub struct Manager {
    url: String,
}

impl r2d2::ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = DbError;

    fn connect(&self) -> Result<DbConnection, DbError> {
        establish(&self.url)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), DbError> {
        conn.batch_execute("SELECT 1").map_err(DbError::Query)
    }

    fn has_broken(&self, _conn: &mut DbConnection) -> bool {
        false
    }
}

/// Builds the pool. Connections open on demand, never in the background: r2d2 refills idle
/// slots on its own threads, and a TLS handshake still running there when the process exits
/// races OpenSSL's exit-time cleanup (libpq) and crashes. On demand, every handshake has a
/// caller waiting for it. It also lets many test servers share one PostgreSQL.
pub fn pool(url: &str, size: u32) -> Result<DbPool, DbError> {
    Backend::of_url(url).ok_or(DbError::UnsupportedUrl)?;
    r2d2::Pool::builder()
        .max_size(size)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(5))
        .build(Manager { url: url.to_owned() })
        .map_err(DbError::Unavailable)
}

/// Applies pending migrations for the connection's backend; returns the versions applied.
pub fn migrate(conn: &mut DbConnection) -> Result<Vec<String>, DbError> {
    let applied = match conn {
        DbConnection::Postgresql(c) => c.run_pending_migrations(PG_MIGRATIONS),
        DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS),
    }
    .map_err(|e| DbError::Migration(e.to_string()))?;
    Ok(applied.iter().map(ToString::to_string).collect())
}

/// A transaction that will write: on SQLite it takes the write lock first (waiting up to
/// `busy_timeout` for it), so reading and then writing cannot fail with "database is locked"
/// when another connection wrote in between — SQLite's counterpart of PostgreSQL's row locks.
pub fn write<T, E, F>(conn: &mut DbConnection, work: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    conn.transaction(|conn| {
        if let DbConnection::Sqlite(sqlite) = conn {
            // A write that changes nothing still takes the lock.
            sqlite.batch_execute("DELETE FROM revoked_sessions WHERE 0")?;
        }
        work(conn)
    })
}

/// Runs blocking Diesel work on tokio's blocking pool with a pooled connection taken inside
/// the closure, so async workers never wait on the database.
pub async fn run<T, E, F>(pool: &DbPool, work: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
{
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = pool.get().map_err(DbError::Unavailable)?;
        work(&mut conn)
    })
    .await
    .map_err(|_| DbError::Cancelled)?
}
