//! Dashboard sessions: in Redis when `REDIS_URL` is set (so logging out ends a session on
//! every instance), otherwise in a private cookie (encrypted and signed with a key derived
//! from `SECRET_KEY`). The middleware is generic over one store type, so this enum picks one
//! at start.

use std::collections::HashMap;
use std::time::Duration;

use actix_session::storage::{
    CookieSessionStore, LoadError, RedisSessionStore, SaveError, SessionKey, SessionStore, UpdateError,
};
use actix_session::{SessionMiddleware, config::PersistentSession};
use actix_web::cookie::{Key, SameSite, time};

use crate::config::SecretKey;

pub enum AnySessionStore {
    Cookie(CookieSessionStore),
    Redis(RedisSessionStore),
}

type State = HashMap<String, String>;

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

impl Sessions {
    /// Connects the Redis store when `redis` (URL, key prefix) is given. A Redis that does not
    /// answer within 3 s leaves sessions in cookies, with a warning, rather than stopping start-up.
    pub async fn new(secret: &SecretKey, redis: Option<(&str, &str)>) -> Sessions {
        let key = Key::derive_from(secret.bytes());
        let redis = match redis {
            None => None,
            Some((url, prefix)) => {
                let prefix = format!("{prefix}:session:");
                let store = RedisSessionStore::builder(url)
                    .cache_keygen(move |k| format!("{prefix}{k}"))
                    .build();
                match tokio::time::timeout(Duration::from_secs(3), store).await {
                    Ok(Ok(store)) => Some(store),
                    Ok(Err(e)) => {
                        log::warn!("dashboard sessions fall back to cookies: Redis failed ({e})");
                        None
                    }
                    Err(_) => {
                        log::warn!(
                            "dashboard sessions fall back to cookies: Redis did not answer within 3 s"
                        );
                        None
                    }
                }
            }
        };
        Sessions { key, redis }
    }

    pub fn middleware(&self) -> SessionMiddleware<AnySessionStore> {
        let store = match &self.redis {
            Some(store) => AnySessionStore::Redis(store.clone()),
            None => AnySessionStore::Cookie(CookieSessionStore::default()),
        };
        SessionMiddleware::builder(store, self.key.clone())
            .cookie_name(COOKIE_NAME.into())
            .cookie_http_only(true)
            .cookie_same_site(SameSite::Lax)
            // Marked Secure per request when it came over HTTPS (see routes::admin::secure_cookies).
            .cookie_secure(false)
            .session_lifecycle(PersistentSession::default().session_ttl(time::Duration::hours(8)))
            .build()
    }
}
