//! The one-time handoff of a new key's secret from the dashboard's create form to the page that
//! shows it. The secret never enters session storage (a replayed cookie, or a Redis session
//! kept for hours, would show it again): it waits here at most a minute under a random nonce,
//! bound to the key and the admin who created it, and is deleted by its first read. With Redis
//! (any instance may serve the next page) it is one key read and deleted atomically (`GETDEL`);
//! without, an in-process cache.

use std::time::Duration;

use moka::sync::Cache;

use crate::db::{KeyId, UserId};
use crate::shared_redis::RedisConn;

pub const TTL: Duration = Duration::from_secs(60);

enum Store {
    Memory(Cache<String, String>),
    Redis { conn: RedisConn, prefix: String },
}

pub struct Handoff {
    store: Store,
}

fn random_nonce() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    hex::encode(bytes)
}

/// Where a secret waits: under its key, its admin and the nonce, so a read for another key or
/// admin finds nothing and does not use up the record.
fn slot(key_id: KeyId, user_id: UserId, nonce: &str) -> String {
    format!("{key_id}:{user_id}:{nonce}")
}

impl Handoff {
    /// In Redis when given (`<prefix>:issued:<nonce>`), else in this process.
    pub fn new(redis: Option<(RedisConn, &str)>) -> Handoff {
        let store = match redis {
            Some((conn, prefix)) => Store::Redis {
                conn,
                prefix: format!("{prefix}:issued:"),
            },
            None => Store::Memory(Cache::builder().max_capacity(10_000).time_to_live(TTL).build()),
        };
        Handoff { store }
    }

    /// Keeps `secret` for one read by `user_id`; returns the nonce that reaches it.
    pub async fn put(
        &self,
        key_id: KeyId,
        user_id: UserId,
        secret: &str,
    ) -> Result<String, redis::RedisError> {
        let nonce = random_nonce();
        let slot = slot(key_id, user_id, &nonce);
        match &self.store {
            Store::Memory(cache) => cache.insert(slot, secret.to_owned()),
            Store::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                redis::cmd("SET")
                    .arg(format!("{prefix}{slot}"))
                    .arg(secret)
                    .arg("EX")
                    .arg(TTL.as_secs())
                    .query_async::<()>(&mut conn)
                    .await?;
            }
        }
        Ok(nonce)
    }

    /// The secret behind `nonce`, once, if it is for this key and this admin.
    pub async fn take(&self, nonce: &str, key_id: KeyId, user_id: UserId) -> Option<String> {
        if nonce.len() != 64 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let slot = slot(key_id, user_id, nonce);
        match &self.store {
            Store::Memory(cache) => cache.remove(&slot),
            Store::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let taken = redis::cmd("GETDEL")
                    .arg(format!("{prefix}{slot}"))
                    .query_async::<Option<String>>(&mut conn)
                    .await;
                taken.unwrap_or_else(|e| {
                    log::warn!("could not read a new key's one-time record from Redis: {e}");
                    None
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_secret_is_handed_over_once_to_its_admin_for_its_key() {
        let handoff = Handoff::new(None);
        let nonce = handoff.put(KeyId(7), UserId(1), "kg_secret").await.expect("kept");
        assert_eq!(
            handoff.take(&nonce, KeyId(8), UserId(1)).await,
            None,
            "another key"
        );
        assert_eq!(
            handoff.take(&nonce, KeyId(7), UserId(2)).await,
            None,
            "another admin"
        );
        // …which used nothing up.
        assert_eq!(
            handoff.take(&nonce, KeyId(7), UserId(1)).await.as_deref(),
            Some("kg_secret")
        );
        assert_eq!(handoff.take(&nonce, KeyId(7), UserId(1)).await, None, "only once");
        assert_eq!(handoff.take("../x", KeyId(7), UserId(1)).await, None);
    }
}
