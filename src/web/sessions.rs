//! Dashboard sessions: in Redis when `REDIS_URL` is set (so logging out ends a session on
//! every instance), otherwise in a private cookie (encrypted and signed with a key derived
//! from `SECRET_KEY`). The Redis store is our own, over the shared connection, so sessions work
//! on one node, on a cluster and over TLS alike. The middleware is generic over one store type,
//! so an enum picks one at start.

use std::collections::HashMap;

use actix_session::SessionMiddleware;
use actix_session::config::PersistentSession;
use actix_session::storage::{
    CookieSessionStore, LoadError, SaveError, SessionKey, SessionStore, UpdateError,
};
use actix_web::cookie::{Key, SameSite, time};

use crate::shared_redis::RedisConn;
use crate::users::token::SecretKey;

type State = HashMap<String, String>;

/// Sessions as JSON under `<prefix>:session:<64 random characters>`, with Redis expiring them.
#[derive(Clone)]
pub struct RedisSessionStore {
    conn: RedisConn,
    prefix: String,
}

impl RedisSessionStore {
    fn key(&self, session: &str) -> String {
        format!("{}:session:{session}", self.prefix)
    }

    fn new_session_key() -> String {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
        hex::encode(bytes)
    }

    /// Writes `state`; `only_if_exists` refuses to resurrect a session that expired meanwhile.
    async fn write(
        &self,
        session: &str,
        state: &State,
        ttl: &time::Duration,
        only_if_exists: bool,
    ) -> anyhow::Result<bool> {
        let body = serde_json::to_string(state)?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(session))
            .arg(body)
            .arg("EX")
            .arg(ttl.whole_seconds().max(1));
        cmd.arg(if only_if_exists { "XX" } else { "NX" });
        let mut conn = self.conn.clone();
        let reply: Option<String> = cmd.query_async(&mut conn).await?;
        Ok(reply.is_some())
    }
}

impl SessionStore for RedisSessionStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<State>, LoadError> {
        let mut conn = self.conn.clone();
        let body: Option<String> = redis::cmd("GET")
            .arg(self.key(key.as_ref()))
            .query_async(&mut conn)
            .await
            .map_err(|e| LoadError::Other(e.into()))?;
        body.map(|b| serde_json::from_str(&b))
            .transpose()
            .map_err(|e| LoadError::Deserialization(e.into()))
    }

    async fn save(&self, state: State, ttl: &time::Duration) -> Result<SessionKey, SaveError> {
        let session = Self::new_session_key();
        self.write(&session, &state, ttl, false)
            .await
            .map_err(SaveError::Other)?;
        SessionKey::try_from(session).map_err(|e| SaveError::Other(e.into()))
    }

    async fn update(
        &self,
        key: SessionKey,
        state: State,
        ttl: &time::Duration,
    ) -> Result<SessionKey, UpdateError> {
        if self
            .write(key.as_ref(), &state, ttl, true)
            .await
            .map_err(UpdateError::Other)?
        {
            return Ok(key);
        }
        // The session expired between load and update: store it anew.
        self.save(state, ttl)
            .await
            .map_err(|e| UpdateError::Other(e.into()))
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &time::Duration) -> Result<(), anyhow::Error> {
        let mut conn = self.conn.clone();
        redis::cmd("EXPIRE")
            .arg(self.key(key.as_ref()))
            .arg(ttl.whole_seconds().max(1))
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(self.key(key.as_ref()))
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }
}

pub enum AnySessionStore {
    Cookie(CookieSessionStore),
    Redis(RedisSessionStore),
}

impl SessionStore for AnySessionStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<State>, LoadError> {
        match self {
            AnySessionStore::Cookie(s) => s.load(key).await,
            AnySessionStore::Redis(s) => s.load(key).await,
        }
    }

    async fn save(&self, state: State, ttl: &time::Duration) -> Result<SessionKey, SaveError> {
        match self {
            AnySessionStore::Cookie(s) => s.save(state, ttl).await,
            AnySessionStore::Redis(s) => s.save(state, ttl).await,
        }
    }

    async fn update(
        &self,
        key: SessionKey,
        state: State,
        ttl: &time::Duration,
    ) -> Result<SessionKey, UpdateError> {
        match self {
            AnySessionStore::Cookie(s) => s.update(key, state, ttl).await,
            AnySessionStore::Redis(s) => s.update(key, state, ttl).await,
        }
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &time::Duration) -> Result<(), anyhow::Error> {
        match self {
            AnySessionStore::Cookie(s) => s.update_ttl(key, ttl).await,
            AnySessionStore::Redis(s) => s.update_ttl(key, ttl).await,
        }
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        match self {
            AnySessionStore::Cookie(s) => s.delete(key).await,
            AnySessionStore::Redis(s) => s.delete(key).await,
        }
    }
}

/// How sessions are kept; cloned into every worker.
#[derive(Clone)]
pub struct Sessions {
    key: Key,
    redis: Option<RedisSessionStore>,
}

pub const COOKIE_NAME: &str = "keygate_session";
/// The dashboard's path: the cookie is sent nowhere else (not to the API, not to an upstream).
pub const COOKIE_PATH: &str = "/admin";
/// How long a session lives; a logout's revocation is kept as long.
pub const SESSION_HOURS: i64 = 8;

impl Sessions {
    /// Sessions in Redis over `redis` (the counters' connection) when given; otherwise in cookies.
    pub fn new(secret: &SecretKey, redis: Option<(RedisConn, &str)>) -> Sessions {
        Sessions {
            key: Key::derive_from(secret.bytes()),
            redis: redis.map(|(conn, prefix)| RedisSessionStore {
                conn,
                prefix: prefix.to_owned(),
            }),
        }
    }

    pub fn middleware(&self) -> SessionMiddleware<AnySessionStore> {
        let store = match &self.redis {
            Some(store) => AnySessionStore::Redis(store.clone()),
            None => AnySessionStore::Cookie(CookieSessionStore::default()),
        };
        SessionMiddleware::builder(store, self.key.clone())
            .cookie_name(COOKIE_NAME.into())
            .cookie_http_only(true)
            .cookie_path(COOKIE_PATH.into())
            .cookie_same_site(SameSite::Lax)
            // Marked Secure per request when it came over HTTPS (see routes::admin::secure_cookies).
            .cookie_secure(false)
            .session_lifecycle(PersistentSession::default().session_ttl(time::Duration::hours(SESSION_HOURS)))
            .build()
    }
}
