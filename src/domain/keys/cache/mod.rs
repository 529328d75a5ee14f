//! The gate's view of keys: a bounded in-process cache in front of the database, and
//! revocation across instances.
//!
//! Known keys are kept up to a minute, unknown hashes five seconds (so a flood of random but
//! well-formed keys costs one query per distinct key, not per request). Every change to a key
//! is announced: this instance forgets it at once, and with Redis a message on
//! `<prefix>:key-events` makes every other instance forget it within milliseconds. When the
//! subscription is re-established after a Redis outage, the whole cache is dropped, since
//! events may have been missed. Expiry is checked on every request against the clock, so a
//! cached key stops working at its expiry second.
//!
//! Users' standing (active, token epoch) is cached the same way for bearer tokens: a change of a
//! user is announced as `u<id>` on the same channel, so a deactivated user's tokens end on every
//! instance within milliseconds (at worst, with Redis unreachable, within the 60 s lifetime).
//!
//! A lookup that raced a change (read the database before the change, came back after the
//! `forget`) does not cache what it read: the generation it started with has moved.

mod events;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use moka::sync::Cache;

use crate::clock::Now;
use crate::contract::{IpAllowlist, Meta, Scopes};
use crate::db::models::{ApiKey, User};
use crate::db::{self, DbError, DbPool, KeyId, UserId};
use crate::keys::KeyStatus;
use crate::keys::secret::{KeyHash, PresentedKey};
use crate::limits::{Ask, Limits, Policy};
use crate::shared_redis::RedisTarget;
use crate::striped::Striped;

/// What the gate needs of a key, without its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub id: KeyId,
    pub user_id: UserId,
    pub name: String,
    pub prefix: String,
    pub owner_email: String,
    pub policy: Policy,
    /// With credits, or an owner with a plan: what the ledger decides instead of `policy` alone.
    pub ask: Option<Arc<Ask>>,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    pub is_active: bool,
    pub scopes: Scopes,
    pub ip_allowlist: IpAllowlist,
    pub meta: Option<Meta>,
    /// For a secret a roll replaced: when its grace period ends (Unix seconds).
    pub secret_expires_at: Option<i64>,
}

static IDS: AtomicU64 = AtomicU64::new(0);

/// Caches what a read found unless a key was forgotten since the read began (`generation`,
/// read before it): checked before inserting and again after, since a `forget` can fall
/// between the check and the insert.
fn insert_unless_forgotten(
    known: &Cache<[u8; 32], Cached>,
    current: &AtomicU64,
    generation: u64,
    hash: [u8; 32],
    info: Arc<KeyInfo>,
) {
    if current.load(Ordering::Acquire) != generation {
        return;
    }
    known.insert(hash, Cached::now(info));
    if current.load(Ordering::Acquire) != generation {
        known.invalidate(&hash);
    }
}

/// The key behind `hash`, read from the database.
async fn read(pool: &DbPool, hash: [u8; 32]) -> Result<Option<Arc<KeyInfo>>, DbError> {
    let lookup = KeyHash::from_digest(&hash).as_str().to_owned();
    let by_hash = lookup.clone();
    let found = db::run(pool, move |conn| {
        ApiKey::find_by_hash(conn, &by_hash).map_err(DbError::Query)
    })
    .await?;
    Ok(found.map(|(key, owner)| Arc::new(KeyInfo::of(&key, &owner, &lookup))))
}

/// One running background re-read: frees its place when dropped (also when its task is).
struct RefreshSlot(Arc<AtomicUsize>);

impl RefreshSlot {
    /// One of `limit` places, if one is free.
    fn take(running: &Arc<AtomicUsize>, limit: usize) -> Option<RefreshSlot> {
        let slot = RefreshSlot(running.clone());
        (running.fetch_add(1, Ordering::AcqRel) < limit).then_some(slot)
    }
}

impl Drop for RefreshSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Cached {
    fn now(info: Arc<KeyInfo>) -> Cached {
        Cached {
            info,
            read_at: Instant::now(),
        }
    }
}

const HIT: usize = 0;
const MISS: usize = 1;

impl KeyInfo {
    /// A copy that shares no allocation (and so no reference count) with `self`.
    fn deep_copy(&self) -> KeyInfo {
        KeyInfo {
            policy: self.policy.deep_copy(),
            ask: self.ask.as_deref().map(|a| Arc::new(a.deep_copy())),
            scopes: self.scopes.deep_copy(),
            ip_allowlist: self.ip_allowlist.deep_copy(),
            ..self.clone()
        }
    }

    /// The gate's view of `key`, as found by the secret whose hash is `hash`: the current one,
    /// or the one a roll replaced (which works until its grace period ends).
    pub fn of(key: &ApiKey, owner: &User, hash: &str) -> KeyInfo {
        let replaced = key.key_hash != hash && key.previous_key_hash.as_deref() == Some(hash);
        let policy = KeyInfo::policy_of(key);
        KeyInfo {
            id: key.id,
            user_id: key.user_id,
            name: key.name.clone(),
            prefix: key.prefix.clone(),
            owner_email: owner.email.clone(),
            ask: crate::ledger::ask_of(key, owner, &policy).map(Arc::new),
            policy,
            expires_at: key.expires_at.map(|at| at.and_utc().timestamp()),
            is_active: key.is_active,
            scopes: Scopes::of_column(&key.scopes),
            ip_allowlist: IpAllowlist::of_column(&key.ip_allowlist),
            meta: Meta::of_column(key.meta.as_deref()),
            secret_expires_at: if replaced {
                // No end recorded would be a bug; treat the replaced secret as ended.
                Some(key.previous_expires_at.map_or(0, |at| at.and_utc().timestamp()))
            } else {
                None
            },
        }
    }

    /// The windows a key is counted in, with its limits (all three, limited or not).
    pub fn policy_of(key: &ApiKey) -> Policy {
        Limits::of(key).policy()
    }

    /// The key's status; a replaced secret past its grace period is expired.
    pub fn status_at(&self, now: Now) -> KeyStatus {
        let expires_at = match (self.expires_at, self.secret_expires_at) {
            (Some(key), Some(secret)) => Some(key.min(secret)),
            (key, secret) => key.or(secret),
        };
        KeyStatus::at(self.is_active, expires_at, now.unix_secs())
    }
}

/// What the gate needs of a bearer token's user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserStanding {
    pub is_active: bool,
    /// Tokens carry the epoch they were issued in; only the current one is accepted.
    pub epoch: i64,
}

/// A known key and when it was read from the database.
#[derive(Clone)]
struct Cached {
    info: Arc<KeyInfo>,
    read_at: Instant,
}

pub struct KeyCache {
    /// Keyed by the raw SHA-256 of the key. An entry lives 60 s; a lookup after
    /// `refresh_after` re-reads it in the background (see `refresh_ahead`).
    known: Cache<[u8; 32], Cached>,
    /// Background re-reads under way.
    refreshes: Arc<AtomicUsize>,
    refresh_after: Duration,
    /// Users by id (`None`: no such user).
    users: Cache<UserId, Option<UserStanding>>,
    unknown: Cache<[u8; 32], ()>,
    /// Clients of every Redis node that can carry events (any cluster node can), and the channel.
    events: Option<(Vec<redis::Client>, String)>,
    /// Lookups answered here, and those that went to the database.
    lookups: Striped<[AtomicU64; 2]>,
    /// Tells this cache's entries apart in [`LOCAL`].
    id: u64,
    /// Moves whenever a key is forgotten: every thread's copies are then dropped. Shared with
    /// background re-reads, which must not cache what a change made stale meanwhile.
    generation: Arc<AtomicU64>,
    /// Moves whenever a user is forgotten (guards `user` as `generation` guards `lookup`; a
    /// counter of its own, so a user change does not drop every thread's key copies).
    user_generation: AtomicU64,
}

/// How long a thread reuses its own copy of a key before asking the shared cache again.
const LOCAL_TTL: Duration = Duration::from_secs(1);
const LOCAL_CAPACITY: usize = 4096;

/// One thread's copies of the keys it used lately, per cache. They are deep copies, so the
/// reference counts a request touches live on this core instead of bouncing between cores
/// (measured: the shared moka entry and its `Arc`s cost more than the rest of a key lookup).
struct Local {
    cache: u64,
    generation: u64,
    entries: HashMap<[u8; 32], (Arc<KeyInfo>, Instant)>,
}

thread_local! {
    static LOCAL: RefCell<Vec<Local>> = const { RefCell::new(Vec::new()) };
}

impl KeyCache {
    pub const CAPACITY: u64 = 100_000;
    /// When a cached key is re-read ahead of its 60 s expiry: under steady traffic an active
    /// key is never missed, so no request waits on the database for it.
    pub const REFRESH_AFTER: Duration = Duration::from_secs(45);
    /// Re-reads at most this many keys at once: when many keys fall due together (traffic
    /// after a pause), they are read a few at a time on the side instead of taking a blocking
    /// thread and a pooled connection each. A key not re-read yet keeps its copy until it
    /// expires.
    const MAX_REFRESHES: usize = 2;

    /// The same cache, re-reading keys `after` they were read (tests use zero).
    pub fn with_refresh_after(mut self, after: Duration) -> KeyCache {
        self.refresh_after = after;
        self
    }

    /// A cache for one instance; `redis` (where Redis is, and the key prefix) announces changes
    /// to other instances.
    pub fn new(redis: Option<(&RedisTarget, &str)>) -> KeyCache {
        KeyCache {
            known: Cache::builder()
                .max_capacity(Self::CAPACITY)
                .time_to_live(Duration::from_secs(60))
                .support_invalidation_closures()
                .build(),
            refresh_after: Self::REFRESH_AFTER,
            refreshes: Arc::new(AtomicUsize::new(0)),
            unknown: Cache::builder()
                .max_capacity(Self::CAPACITY)
                .time_to_live(Duration::from_secs(5))
                .build(),
            users: Cache::builder()
                .max_capacity(Self::CAPACITY)
                .time_to_live(Duration::from_secs(60))
                .build(),
            events: redis.map(|(target, prefix)| {
                let clients = target
                    .nodes()
                    .iter()
                    .filter_map(|url| redis::Client::open(url.as_str()).ok())
                    .collect();
                (clients, format!("{prefix}:key-events"))
            }),
            lookups: Striped::default(),
            id: IDS.fetch_add(1, Ordering::Relaxed),
            generation: Arc::new(AtomicU64::new(0)),
            user_generation: AtomicU64::new(0),
        }
    }

    /// This thread's copy of the key behind `hash`, if fresh.
    fn local(&self, hash: &[u8; 32], generation: u64) -> Option<Arc<KeyInfo>> {
        LOCAL.with_borrow(|locals| {
            let local = locals
                .iter()
                .find(|l| l.cache == self.id && l.generation == generation)?;
            let (info, at) = local.entries.get(hash)?;
            (at.elapsed() < LOCAL_TTL).then(|| info.clone())
        })
    }

    fn keep_local(&self, hash: [u8; 32], info: &KeyInfo, generation: u64) {
        LOCAL.with_borrow_mut(|locals| {
            let local = match locals.iter().position(|l| l.cache == self.id) {
                Some(i) => &mut locals[i],
                None => {
                    locals.push(Local {
                        cache: self.id,
                        generation,
                        entries: HashMap::new(),
                    });
                    locals.last_mut().expect("just pushed")
                }
            };
            if local.generation != generation || local.entries.len() >= LOCAL_CAPACITY {
                local.generation = generation;
                local.entries.clear();
            }
            local
                .entries
                .insert(hash, (Arc::new(info.deep_copy()), Instant::now()));
        });
    }

    /// The key behind `presented`, from the cache or else the database.
    pub async fn lookup(
        &self,
        pool: &DbPool,
        presented: &PresentedKey,
    ) -> Result<Option<Arc<KeyInfo>>, DbError> {
        let hash = presented.digest();
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(info) = self.local(&hash, generation) {
            self.lookups.mine()[HIT].fetch_add(1, Ordering::Relaxed);
            return Ok(Some(info));
        }
        if let Some(cached) = self.known.get(&hash) {
            self.lookups.mine()[HIT].fetch_add(1, Ordering::Relaxed);
            if cached.read_at.elapsed() >= self.refresh_after {
                self.refresh_ahead(pool, hash, generation);
            }
            self.keep_local(hash, &cached.info, generation);
            return Ok(Some(cached.info));
        }
        if self.unknown.contains_key(&hash) {
            self.lookups.mine()[HIT].fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        self.lookups.mine()[MISS].fetch_add(1, Ordering::Relaxed);
        let found = read(pool, hash).await?;
        // Cached only if no key was forgotten meanwhile: what was read may predate the change.
        match &found {
            Some(info) => {
                insert_unless_forgotten(&self.known, &self.generation, generation, hash, info.clone())
            }
            None if self.generation.load(Ordering::Acquire) == generation => self.unknown.insert(hash, ()),
            None => {}
        }
        Ok(found)
    }

    /// Re-reads the key behind `hash` in the background while requests go on using the cached
    /// copy, at most `MAX_REFRESHES` at once (a key read twice meanwhile costs one read more,
    /// no harm); a key gone from the database leaves the cache; a failed read keeps the copy
    /// until its expiry.
    fn refresh_ahead(&self, pool: &DbPool, hash: [u8; 32], generation: u64) {
        let Some(slot) = RefreshSlot::take(&self.refreshes, Self::MAX_REFRESHES) else {
            return;
        };
        let (pool, known, current) = (pool.clone(), self.known.clone(), self.generation.clone());
        tokio::spawn(async move {
            let _slot = slot;
            match read(&pool, hash).await {
                Ok(Some(info)) => insert_unless_forgotten(&known, &current, generation, hash, info),
                Ok(None) => known.invalidate(&hash),
                Err(e) => log::warn!("could not re-read a cached key (kept until it expires): {e}"),
            }
        });
    }

    /// The standing of user `id`, from the cache or else the database.
    pub async fn user(&self, pool: &DbPool, id: UserId) -> Result<Option<UserStanding>, DbError> {
        if let Some(standing) = self.users.get(&id) {
            return Ok(standing);
        }
        let generation = self.user_generation.load(Ordering::Acquire);
        let found = db::run(pool, move |conn| User::find(conn, id).map_err(DbError::Query)).await?;
        let standing = found.map(|u| UserStanding {
            is_active: u.is_active,
            epoch: u.auth_epoch,
        });
        if self.user_generation.load(Ordering::Acquire) == generation {
            self.users.insert(id, standing);
        }
        Ok(standing)
    }

    /// Forgets a user's standing and their keys (which carry the user's plan).
    pub fn forget_user(&self, user_id: UserId) {
        self.users.invalidate(&user_id);
        self.user_generation.fetch_add(1, Ordering::AcqRel);
        self.generation.fetch_add(1, Ordering::AcqRel);
        let _ = self
            .known
            .invalidate_entries_if(move |_, cached| cached.info.user_id == user_id);
    }

    /// Lookups answered by the cache, and those that went to the database.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (self.lookups.sum(|c| &c[HIT]), self.lookups.sum(|c| &c[MISS]))
    }

    pub fn forget(&self, key_id: KeyId) {
        // The generation moves first: a read under way either sees it moved and does not
        // cache, or cached before the invalidation below (which removes it), or cached after it
        // and removes its own entry (`insert_unless_forgotten`).
        self.generation.fetch_add(1, Ordering::AcqRel);
        // Only fails when invalidation closures are not enabled, which `new` does.
        let _ = self
            .known
            .invalidate_entries_if(move |_, cached| cached.info.id == key_id);
    }

    pub fn forget_unknown(&self) {
        self.unknown.invalidate_all();
    }

    pub fn forget_all(&self) {
        self.known.invalidate_all();
        self.unknown.invalidate_all();
        self.users.invalidate_all();
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.user_generation.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Places are given back however a re-read ends, also when refused for being full.
    #[test]
    fn refresh_slots_are_bounded_and_always_given_back() {
        let running = Arc::new(AtomicUsize::new(0));
        let first = RefreshSlot::take(&running, 2).expect("a free place");
        let second = RefreshSlot::take(&running, 2).expect("a free place");
        assert!(RefreshSlot::take(&running, 2).is_none(), "full");
        assert_eq!(running.load(Ordering::Acquire), 2, "a refusal holds nothing");
        drop(first);
        let third = RefreshSlot::take(&running, 2).expect("given back");
        drop((second, third));
        assert_eq!(running.load(Ordering::Acquire), 0);
    }
}
