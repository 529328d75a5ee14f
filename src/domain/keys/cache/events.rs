//! Announcing changes to every instance: this instance forgets at once, and with Redis a message
//! on `<prefix>:key-events` makes every other instance forget within milliseconds.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::KeyCache;
use crate::db::{KeyId, UserId};

/// A change announced on `<prefix>:key-events`: a key id as a number, a user id as `u<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Key(KeyId),
    User(UserId),
    /// The keys remembered as unknown (after an import, which makes some of them known).
    Unknown,
}

impl Event {
    fn parse(payload: &str) -> Option<Event> {
        if payload == "unknown" {
            return Some(Event::Unknown);
        }
        match payload.strip_prefix('u') {
            Some(user) => user.parse().ok().map(Event::User),
            None => payload.parse().ok().map(Event::Key),
        }
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Key(id) => write!(f, "{id}"),
            Event::User(id) => write!(f, "u{id}"),
            Event::Unknown => f.write_str("unknown"),
        }
    }
}
impl KeyCache {
    /// Announces that a key changed: forgotten here at once, and on every instance through Redis.
    pub async fn changed(&self, key_id: KeyId) {
        self.forget(key_id);
        self.announce(Event::Key(key_id)).await;
    }

    /// Announces that keys keygate did not know may exist now (an import): the unknown-key
    /// entries are forgotten, here and on every instance.
    pub async fn unknown_changed(&self) {
        self.forget_unknown();
        self.announce(Event::Unknown).await;
    }

    /// Announces that a user changed (deactivated, reactivated, new password): their standing
    /// is forgotten here at once, and on every instance through Redis.
    pub async fn user_changed(&self, user_id: UserId) {
        self.forget_user(user_id);
        self.announce(Event::User(user_id)).await;
    }

    async fn announce(&self, event: Event) {
        let Some((clients, channel)) = &self.events else {
            return;
        };
        let payload = event.to_string();
        // Any node will do: a cluster forwards PUBLISH to every node.
        let published = async {
            let mut last = None;
            for client in clients {
                let sent = async {
                    let mut conn = client.get_multiplexed_async_connection().await?;
                    redis::cmd("PUBLISH")
                        .arg(channel)
                        .arg(&payload)
                        .query_async::<i64>(&mut conn)
                        .await
                };
                match sent.await {
                    Ok(n) => return Ok(n),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| redis::RedisError::from((redis::ErrorKind::IoError, "no Redis node"))))
        };
        match tokio::time::timeout(Duration::from_secs(2), published).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => log::warn!(
                "could not announce the change of {event}: {e}; other instances see it within 60 s"
            ),
            Err(_) => log::warn!(
                "could not announce the change of {event} in time; other instances see it within 60 s"
            ),
        }
    }

    /// Listens for other instances' announcements until the cache is dropped.
    pub fn spawn_listener(self: &Arc<Self>) {
        let Some((clients, channel)) = self.events.clone() else {
            return;
        };
        let cache = Arc::downgrade(self);
        tokio::spawn(async move {
            // Round the nodes: when one is down, listen on the next.
            for client in clients.iter().cycle() {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                        Ok(()) => {
                            // Anything announced while we were not listening is lost: start afresh.
                            let Some(strong) = cache.upgrade() else { return };
                            strong.forget_all();
                            drop(strong);
                            let mut messages = pubsub.on_message();
                            while let Some(message) = messages.next().await {
                                let Some(cache) = cache.upgrade() else { return };
                                match message
                                    .get_payload::<String>()
                                    .ok()
                                    .and_then(|p| Event::parse(&p))
                                {
                                    Some(Event::Key(id)) => cache.forget(id),
                                    Some(Event::User(id)) => cache.forget_user(id),
                                    Some(Event::Unknown) => cache.forget_unknown(),
                                    // Not understood (a newer instance's event): forget everything.
                                    None => cache.forget_all(),
                                }
                            }
                            log::warn!("lost the Redis key-event subscription; reconnecting");
                        }
                        Err(e) => log::warn!("could not subscribe to key events: {e}"),
                    },
                    Err(e) => log::debug!("key events: Redis unreachable: {e}"),
                }
                if cache.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }
}

impl crate::users::Standing for KeyCache {
    async fn user_changed(&self, id: UserId) {
        KeyCache::user_changed(self, id).await;
    }
}

#[cfg(test)]
mod tests {
    use super::Event;
    use crate::db::{KeyId, UserId};

    #[test]
    fn events_name_keys_and_users() {
        for event in [Event::Key(KeyId(7)), Event::User(UserId(7)), Event::Unknown] {
            assert_eq!(Event::parse(&event.to_string()), Some(event));
        }
        assert_eq!(
            Event::parse("7"),
            Some(Event::Key(KeyId(7))),
            "what older instances send"
        );
        assert_eq!(Event::parse("x"), None);
    }
}
