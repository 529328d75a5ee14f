//! [`Limiter`]: the counter store chosen at start, and what happens when Redis fails.
//!
//! Without Redis, the in-process store decides everything. With Redis, every decision goes to
//! Redis within `REDIS_TIMEOUT_MS`; when Redis errs or is late, this instance switches to the
//! failure mode (`local`: its own in-process counters, `open`: no limits, `closed`: 503) and a
//! background probe switches it back as soon as Redis answers. Each switch is logged once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::credits::{CreditOp, CreditState, Credits};
use super::memory::MemoryStore;
use super::redis::RedisStore;
use super::refusals::Refusals;
use super::{Ask, Bucket, Charged, Decision, Policy, Seeds};
use crate::clock::Now;
use crate::db::UserId;
use crate::limits::latency::Latency;
use crate::shared_redis::{RedisConn, RedisTarget};

/// What the limiter does while Redis fails (`RATE_LIMIT_FAILURE_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// Fall back to in-process counters until Redis answers again.
    Local,
    /// Let requests through unlimited.
    Open,
    /// Answer 503.
    Closed,
}

#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("the rate-limit store is unavailable")]
    Unavailable,
}

/// Where decisions are made right now (shown by `/healthz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterState {
    Memory,
    Redis,
    /// Redis is configured but failing; the failure mode applies.
    Degraded(FailureMode),
}

impl CounterState {
    /// `counters` in `/healthz`: the store that is counting now.
    pub fn counters(self) -> &'static str {
        match self {
            CounterState::Redis => "redis",
            CounterState::Memory | CounterState::Degraded(FailureMode::Local) => "memory",
            CounterState::Degraded(FailureMode::Open) => "none",
            CounterState::Degraded(FailureMode::Closed) => "unavailable",
        }
    }
}

struct RedisBackend {
    target: RedisTarget,
    prefix: String,
    store: OnceLock<RedisStore>,
    healthy: AtomicBool,
    mode: FailureMode,
    timeout: Duration,
}

pub struct Limiter {
    memory: Arc<MemoryStore>,
    redis: Option<RedisBackend>,
    stats: StoreStats,
    /// Callers Redis refused, refused again here until a request could fit (see `refusals`).
    refusals: Refusals,
}

/// How the counter store is doing, for `/metrics`.
#[derive(Default)]
pub struct StoreStats {
    pub latency: Latency,
    pub failures: AtomicU64,
    /// Requests refused from the local refusal cache, without a Redis call.
    pub local_refusals: AtomicU64,
}

impl Limiter {
    /// In-process counters only: a single instance.
    pub fn in_memory(memory: Arc<MemoryStore>) -> Limiter {
        Limiter {
            memory,
            redis: None,
            stats: StoreStats::default(),
            refusals: Refusals::default(),
        }
    }

    /// Redis counters, with `memory` as the `local` fallback. An unreachable Redis does not stop
    /// start-up: the instance starts degraded and the probe connects when Redis answers.
    pub async fn with_redis(
        target: RedisTarget,
        prefix: &str,
        mode: FailureMode,
        timeout: Duration,
        memory: Arc<MemoryStore>,
    ) -> Limiter {
        let backend = RedisBackend {
            target,
            prefix: prefix.to_owned(),
            store: OnceLock::new(),
            healthy: AtomicBool::new(false),
            mode,
            timeout,
        };
        match backend.connect().await {
            Ok(store) => {
                let _ = backend.store.set(store);
                backend.healthy.store(true, Ordering::Release);
            }
            Err(e) => log::warn!(
                "Redis is unreachable at start ({e}); rate limits use failure mode {mode:?} until it answers"
            ),
        }
        Limiter {
            memory,
            redis: Some(backend),
            stats: StoreStats::default(),
            refusals: Refusals::default(),
        }
    }

    /// The counts of `bucket` under `policy`, counting nothing.
    pub async fn peek(&self, bucket: Bucket, policy: &Policy, now: Now) -> Result<Decision, LimiterError> {
        self.hit(bucket, policy, 0, now).await
    }

    /// Counts `cost` requests (0: only reads) of `bucket` under `policy`, at `now` (the
    /// in-process store's windows; Redis uses its own clock, shared by every instance).
    pub async fn hit(
        &self,
        bucket: Bucket,
        policy: &Policy,
        cost: u32,
        now: Now,
    ) -> Result<Decision, LimiterError> {
        let started = Instant::now();
        let decision = self.decide(bucket, policy, cost, now.unix_ms()).await;
        self.stats.latency.observe(started.elapsed());
        decision
    }

    async fn decide(
        &self,
        bucket: Bucket,
        policy: &Policy,
        cost: u32,
        unix_ms: u64,
    ) -> Result<Decision, LimiterError> {
        let Some(redis) = &self.redis else {
            return Ok(self.memory.hit(bucket, policy, cost, unix_ms));
        };
        if redis.healthy.load(Ordering::Acquire)
            && let Some(store) = redis.store.get()
        {
            // A caller refused until later is refused without asking (a read still asks).
            if cost > 0
                && let Some(refused) = self.refusals.check(bucket, policy, Instant::now())
            {
                self.stats.local_refusals.fetch_add(1, Ordering::Relaxed);
                return Ok(refused);
            }
            match tokio::time::timeout(redis.timeout, store.hit(bucket, policy, cost, None)).await {
                Ok(Ok(decision)) => {
                    if cost > 0 {
                        self.refusals.learn(bucket, policy, &decision, Instant::now());
                    }
                    return Ok(decision);
                }
                Ok(Err(e)) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    redis.failed(&e.to_string());
                }
                Err(_) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    redis.failed(&format!("no answer within {} ms", redis.timeout.as_millis()));
                }
            }
        }
        match redis.mode {
            FailureMode::Local => Ok(self.memory.hit(bucket, policy, cost, unix_ms)),
            FailureMode::Open => Ok(Decision::unlimited(unix_ms)),
            FailureMode::Closed => Err(LimiterError::Unavailable),
        }
    }

    /// Decides an ask (credits, a plan): like [`Limiter::hit`], with no local refusal cache.
    pub async fn charge(
        &self,
        ask: &Arc<Ask>,
        seeds: Seeds,
        cost: u32,
        now: Now,
    ) -> Result<Charged, LimiterError> {
        let started = Instant::now();
        let unix_ms = now.unix_ms();
        let local = || self.memory.charge(ask, &seeds, cost, unix_ms);
        let charged = match self.healthy_redis() {
            None if self.redis.is_none() => Ok(local()),
            Some((redis, store)) => match self.within(redis, store.charge(ask, seeds, cost, None)).await {
                Some(charged) => Ok(charged),
                None => self.fallback(local, unix_ms),
            },
            None => self.fallback(local, unix_ms),
        };
        self.stats.latency.observe(started.elapsed());
        charged
    }

    /// A holder's balance in the store in charge: read, changed or forgotten (see
    /// [`CreditOp`]). With Redis failing, the in-process store's (failure mode `local`) or
    /// unavailable.
    pub async fn credits(
        &self,
        owner: UserId,
        bucket: Bucket,
        op: CreditOp,
        terms: Credits,
        now_ms: u64,
    ) -> Result<Option<CreditState>, LimiterError> {
        let local = || self.memory.credits(bucket, op, terms, now_ms);
        match self.healthy_redis() {
            None if self.redis.is_none() => Ok(local()),
            Some((redis, store)) => match self
                .within(redis, store.credits(owner, bucket, op, terms, now_ms))
                .await
            {
                Some(state) => Ok(state),
                None if redis.mode == FailureMode::Local => Ok(local()),
                None => Err(LimiterError::Unavailable),
            },
            None if self.redis.as_ref().is_some_and(|r| r.mode == FailureMode::Local) => Ok(local()),
            None => Err(LimiterError::Unavailable),
        }
    }

    fn healthy_redis(&self) -> Option<(&RedisBackend, &RedisStore)> {
        let redis = self.redis.as_ref()?;
        if !redis.healthy.load(Ordering::Acquire) {
            return None;
        }
        Some((redis, redis.store.get()?))
    }

    /// `call`'s answer within the timeout; on an error or a late answer, `None` and the switch
    /// to the failure mode.
    async fn within<T>(
        &self,
        redis: &RedisBackend,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        match tokio::time::timeout(redis.timeout, call).await {
            Ok(Ok(answer)) => Some(answer),
            Ok(Err(e)) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                redis.failed(&e.to_string());
                None
            }
            Err(_) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                redis.failed(&format!("no answer within {} ms", redis.timeout.as_millis()));
                None
            }
        }
    }

    /// What the failure mode answers an ask while Redis fails.
    fn fallback(&self, local: impl FnOnce() -> Charged, unix_ms: u64) -> Result<Charged, LimiterError> {
        match self.redis.as_ref().map_or(FailureMode::Local, |r| r.mode) {
            FailureMode::Local => Ok(local()),
            FailureMode::Open => Ok(Charged::Decided(Decision::unlimited(unix_ms))),
            FailureMode::Closed => Err(LimiterError::Unavailable),
        }
    }

    pub fn state(&self) -> CounterState {
        match &self.redis {
            None => CounterState::Memory,
            Some(r) if r.healthy.load(Ordering::Acquire) => CounterState::Redis,
            Some(r) => CounterState::Degraded(r.mode),
        }
    }

    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    pub fn redis_configured(&self) -> bool {
        self.redis.is_some()
    }

    /// A Redis connection for other uses (revocation events), once connected.
    pub fn redis(&self) -> Option<&RedisStore> {
        self.redis.as_ref().and_then(|r| r.store.get())
    }

    /// Background upkeep: sweeps the in-process store, and while Redis is failing probes it
    /// every 250 ms to switch back.
    pub fn spawn_upkeep(self: &Arc<Self>) {
        let limiter = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            let mut ticks = 0u64;
            loop {
                tick.tick().await;
                let Some(limiter) = limiter.upgrade() else { return };
                ticks += 1;
                if ticks.is_multiple_of(40) {
                    limiter.memory.sweep(Now::read().unix_ms());
                }
                if let Some(redis) = &limiter.redis
                    && !redis.healthy.load(Ordering::Acquire)
                    && redis.probe().await
                {
                    // The balances spent here meanwhile were this instance's own copies.
                    limiter.memory.forget_credits();
                }
            }
        });
    }
}

impl RedisBackend {
    async fn connect(&self) -> redis::RedisResult<RedisStore> {
        let conn = RedisConn::connect(&self.target, Duration::from_secs(1)).await?;
        Ok(RedisStore::new(
            conn,
            self.target.clone(),
            &self.prefix,
            self.timeout,
        ))
    }

    fn failed(&self, reason: &str) {
        if self.healthy.swap(false, Ordering::AcqRel) {
            log::warn!(
                "Redis rate-limit store failed ({reason}); switching to failure mode {:?}",
                self.mode
            );
        }
    }

    /// True when Redis answered and this switched back to it.
    async fn probe(&self) -> bool {
        let answered = match self.store.get() {
            Some(store) => {
                matches!(
                    tokio::time::timeout(Duration::from_secs(1), store.ping()).await,
                    Ok(Ok(()))
                )
            }
            None => match self.connect().await {
                Ok(store) => self.store.set(store).is_ok(),
                Err(_) => false,
            },
        };
        if answered && !self.healthy.swap(true, Ordering::AcqRel) {
            log::info!("Redis answers again; rate limits are counted in Redis");
            return true;
        }
        false
    }
}
