//! The counter-store contract, run against the in-process store and Redis alike. Time is an
//! input (the Redis script accepts a clock override), so nothing here sleeps.

use futures_util::future::join_all;
use keygate::db::{KeyId, UserId};
use keygate::limits::credits::{CreditOp, CreditState, Credits};
use keygate::limits::memory::MemoryStore;
use keygate::limits::redis::RedisStore;
use keygate::limits::{Ask, Bucket, Charged, Decision, Limit, Policy, Seeds, Window};
use keygate::shared_redis::{RedisConn, RedisTarget};
use std::sync::Arc;
use std::time::Duration;

use crate::helpers::test_redis;

pub(crate) enum Store {
    Memory(MemoryStore),
    Redis(RedisStore),
}

/// The start of a day, so minute, hour and day windows all begin together.
const T0: u64 = 1_900_000_000_000 - 1_900_000_000_000 % 86_400_000;
const MINUTE: u64 = 60_000;

impl Store {
    pub(crate) async fn redis() -> Option<Store> {
        let env = test_redis()?;
        Some(Store::redis_at(&env.url, &env.prefix).await)
    }

    /// A Redis store under `prefix`: two made with one prefix are two instances sharing counts.
    pub(crate) async fn redis_at(url: &str, prefix: &str) -> Store {
        let target = RedisTarget::Single(url.to_owned());
        let conn = RedisConn::connect(&target, Duration::from_secs(2))
            .await
            .expect("connect to Redis");
        Store::Redis(RedisStore::new(conn, target, prefix, Duration::from_secs(2)))
    }

    /// A balance read or changed as an admin would (`CreditOp`), at `now_ms`.
    pub(crate) async fn credits(
        &self,
        owner: UserId,
        bucket: Bucket,
        op: CreditOp,
        terms: Credits,
        now_ms: u64,
    ) -> Option<CreditState> {
        match self {
            Store::Memory(store) => store.credits(bucket, op, terms, now_ms),
            Store::Redis(store) => store
                .credits(owner, bucket, op, terms, now_ms)
                .await
                .expect("Redis answers"),
        }
    }

    /// Decides an ask at `now_ms`.
    pub(crate) async fn charge(&self, ask: &Arc<Ask>, seeds: Seeds, cost: u32, now_ms: u64) -> Charged {
        match self {
            Store::Memory(store) => store.charge(ask, &seeds, cost, now_ms),
            Store::Redis(store) => store
                .charge(ask, seeds, cost, Some(now_ms))
                .await
                .expect("Redis answers"),
        }
    }

    pub(crate) async fn hit(&self, bucket: Bucket, policy: &Policy, cost: u32, now_ms: u64) -> Decision {
        match self {
            Store::Memory(store) => store.hit(bucket, policy, cost, now_ms),
            Store::Redis(store) => store
                .hit(bucket, policy, cost, Some(now_ms))
                .await
                .expect("Redis answers"),
        }
    }

    /// Fires `n` requests at once and returns how many passed.
    async fn race(&self, bucket: Bucket, policy: &Policy, n: usize, now_ms: u64) -> usize {
        match self {
            Store::Memory(store) => std::thread::scope(|scope| {
                let threads: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            (0..n / 8)
                                .filter(|_| store.hit(bucket, policy, 1, now_ms).allowed)
                                .count()
                        })
                    })
                    .collect();
                threads.into_iter().map(|t| t.join().expect("no panic")).sum()
            }),
            Store::Redis(_) => {
                let hits = (0..n).map(|_| self.hit(bucket, policy, 1, now_ms));
                join_all(hits).await.into_iter().filter(|d| d.allowed).count()
            }
        }
    }
}

/// Generates one test per store (in process, Redis) for each named `async fn(Store)`.
macro_rules! on_both_stores {
    ($($test:ident),+ $(,)?) => {
        mod memory {
            $(#[actix_web::test]
            async fn $test() {
                super::$test(super::Store::Memory(keygate::limits::memory::MemoryStore::new(10_000))).await
            })+
        }
        mod redis {
            $(#[actix_web::test]
            async fn $test() {
                if let Some(store) = super::Store::redis().await {
                    super::$test(store).await
                }
            })+
        }
    };
}

pub(crate) use on_both_stores;

on_both_stores!(
    a_limit_of_n_lets_exactly_n_of_many_racing_requests_through,
    minute_hour_and_day_windows_are_all_enforced,
    the_previous_window_weighs_in_as_it_slides_away,
    refused_requests_consume_nothing,
    callers_are_isolated,
    reading_does_not_count,
    unlimited_windows_are_counted_but_never_refuse,
    a_changed_policy_keeps_the_counts_of_the_windows_it_kept,
    a_month_is_the_calendar_month_and_does_not_slide,
);

fn policy(windows: &[(Window, Option<Limit>)]) -> Policy {
    Policy::new(windows.to_vec())
}

async fn a_limit_of_n_lets_exactly_n_of_many_racing_requests_through(store: Store) {
    let p = policy(&[(Window::Minute, Limit::new(50)), (Window::Day, Limit::new(1000))]);
    let passed = store.race(Bucket::Key(KeyId(1)), &p, 800, T0 + 5_000).await;
    assert_eq!(passed, 50, "800 racing requests, limit 50");
    let again = store.hit(Bucket::Key(KeyId(1)), &p, 1, T0 + 6_000).await;
    assert!(!again.allowed);
    assert_eq!(again.counts[0].curr, 50, "refused requests left no trace");
}

/// An admin adds an hour limit to a key that had minute and day limits: the minute and day
/// counts carry over (Redis finds them by window, not by position), the hour starts empty.
async fn a_changed_policy_keeps_the_counts_of_the_windows_it_kept(store: Store) {
    let before = policy(&[(Window::Minute, Limit::new(10)), (Window::Day, Limit::new(100))]);
    let after = policy(&[
        (Window::Minute, Limit::new(10)),
        (Window::Hour, Limit::new(50)),
        (Window::Day, Limit::new(100)),
    ]);
    let k = Bucket::Key(KeyId(9));
    for _ in 0..4 {
        assert!(store.hit(k, &before, 1, T0 + 1_000).await.allowed);
    }
    let d = store.hit(k, &after, 1, T0 + 2_000).await;
    assert!(d.allowed);
    let curr: Vec<(Window, u64)> = d.counts.iter().map(|c| (c.window, c.curr)).collect();
    assert_eq!(curr, [(Window::Minute, 5), (Window::Hour, 1), (Window::Day, 5)]);
    let back = store.hit(k, &before, 1, T0 + 3_000).await;
    let curr: Vec<(Window, u64)> = back.counts.iter().map(|c| (c.window, c.curr)).collect();
    assert_eq!(curr, [(Window::Minute, 6), (Window::Day, 6)]);
}

async fn minute_hour_and_day_windows_are_all_enforced(store: Store) {
    let p = policy(&[
        (Window::Minute, Limit::new(3)),
        (Window::Hour, Limit::new(5)),
        (Window::Day, Limit::new(6)),
    ]);
    let k = Bucket::Key(KeyId(2));
    let mut passed = 0;
    for _ in 0..10 {
        passed += usize::from(store.hit(k, &p, 1, T0 + 1_000).await.allowed);
    }
    assert_eq!(passed, 3, "the minute window binds first");
    let refused = store.hit(k, &p, 1, T0 + 2_000).await;
    assert_eq!(refused.refusal().map(|(c, _)| c.window), Some(Window::Minute));

    // Two minutes later the minute window is empty; the hour allows 2 more.
    let mut passed = 0;
    for _ in 0..10 {
        passed += usize::from(store.hit(k, &p, 1, T0 + 2 * MINUTE + 1_000).await.allowed);
    }
    assert_eq!(passed, 2);
    let refused = store.hit(k, &p, 1, T0 + 2 * MINUTE + 2_000).await;
    assert_eq!(refused.refusal().map(|(c, _)| c.window), Some(Window::Hour));

    // Two hours later only the day window is left with room: one more.
    let later = T0 + 2 * 3_600_000 + 1_000;
    assert!(store.hit(k, &p, 1, later).await.allowed);
    let refused = store.hit(k, &p, 1, later + 1).await;
    assert_eq!(refused.refusal().map(|(c, _)| c.window), Some(Window::Day));
}

async fn the_previous_window_weighs_in_as_it_slides_away(store: Store) {
    let p = policy(&[(Window::Minute, Limit::new(10))]);
    let k = Bucket::Key(KeyId(3));
    assert_eq!(store.race(Bucket::Key(KeyId(3)), &p, 16, T0 + 50_000).await, 10);
    // 15 s into the next minute, the previous 10 still weigh floor(10 × 45/60) = 7.
    let d = store.hit(k, &p, 0, T0 + MINUTE + 15_000).await;
    assert_eq!(d.counts[0].used(), 7);
    let mut passed = 0;
    for _ in 0..10 {
        passed += usize::from(store.hit(k, &p, 1, T0 + MINUTE + 15_000).await.allowed);
    }
    assert_eq!(passed, 3);
    // Two minutes on, nothing of it remains.
    let d = store.hit(k, &p, 0, T0 + 3 * MINUTE).await;
    assert_eq!(d.counts[0].used(), 0);
}

async fn refused_requests_consume_nothing(store: Store) {
    let p = policy(&[(Window::Minute, Limit::new(2))]);
    let k = Bucket::User(UserId(4));
    assert!(store.hit(k, &p, 1, T0).await.allowed);
    assert!(store.hit(k, &p, 1, T0).await.allowed);
    for _ in 0..50 {
        assert!(!store.hit(k, &p, 1, T0 + 1_000).await.allowed);
    }
    // Half-way through the next minute the 2 allowed requests weigh 1; had the 50 refused ones
    // counted, they would weigh 26 and refuse.
    assert!(store.hit(k, &p, 1, T0 + MINUTE + 30_000).await.allowed);
}

async fn callers_are_isolated(store: Store) {
    let p = policy(&[(Window::Hour, Limit::new(1))]);
    assert!(store.hit(Bucket::Key(KeyId(5)), &p, 1, T0).await.allowed);
    assert!(!store.hit(Bucket::Key(KeyId(5)), &p, 1, T0).await.allowed);
    for other in [
        Bucket::Key(KeyId(6)),
        Bucket::User(UserId(5)),
        Bucket::Ip("192.0.2.5".parse().expect("ip")),
    ] {
        assert!(store.hit(other, &p, 1, T0).await.allowed, "{other}");
    }
}

async fn reading_does_not_count(store: Store) {
    let p = policy(&[(Window::Minute, Limit::new(3))]);
    let k = Bucket::Key(KeyId(7));
    for _ in 0..5 {
        let d = store.hit(k, &p, 0, T0).await;
        assert!(d.allowed);
        assert_eq!(d.counts[0].remaining(), Some(3));
    }
    assert_eq!(store.hit(k, &p, 1, T0).await.counts[0].remaining(), Some(2));
}

async fn unlimited_windows_are_counted_but_never_refuse(store: Store) {
    let p = policy(&[(Window::Minute, None), (Window::Day, Limit::new(100))]);
    let k = Bucket::Key(KeyId(8));
    for _ in 0..20 {
        assert!(store.hit(k, &p, 1, T0).await.allowed);
    }
    let d = store.hit(k, &p, 0, T0).await;
    assert_eq!((d.counts[0].used(), d.counts[0].remaining()), (20, None));
    assert_eq!(d.counts[1].remaining(), Some(80));
}

/// Unix ms of a UTC date and time.
pub(crate) fn utc(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> u64 {
    chrono::NaiveDate::from_ymd_opt(y, m, d)
        .and_then(|date| date.and_hms_opt(h, min, s))
        .expect("a valid date")
        .and_utc()
        .timestamp_millis() as u64
}

/// A monthly quota of 10: spent on January 31st, refused until February 1st 00:00 UTC (one
/// second later), then whole again: January's use does not weigh on February. February 2027
/// ends on the 28th, February 2028 on the 29th.
async fn a_month_is_the_calendar_month_and_does_not_slide(store: Store) {
    let p = policy(&[(Window::Day, Limit::new(1_000)), (Window::Month, Limit::new(10))]);
    let k = Bucket::Key(KeyId(31));
    let jan31 = utc(2027, 1, 31, 23, 59, 59);
    assert_eq!(store.race(k, &p, 40, jan31).await, 10);
    let refused = store.hit(k, &p, 1, jan31 + 500).await;
    let (window, wait) = refused.refusal().expect("refused");
    assert_eq!(
        (window.window, wait),
        (Window::Month, 500),
        "until February starts"
    );
    assert_eq!(window.reset_ms(), 500);
    let feb1 = utc(2027, 2, 1, 0, 0, 0);
    let fresh = store.hit(k, &p, 1, feb1).await;
    assert!(fresh.allowed, "a new month, whole again");
    assert_eq!(fresh.counts[1].remaining(), Some(9));
    assert_eq!(
        fresh.counts[1].reset_ms(),
        28 * 86_400_000,
        "February 2027 has 28 days"
    );
    for _ in 0..9 {
        assert!(store.hit(k, &p, 1, feb1 + 1_000).await.allowed);
    }
    assert!(!store.hit(k, &p, 1, utc(2027, 2, 28, 12, 0, 0)).await.allowed);
    assert!(store.hit(k, &p, 1, utc(2027, 3, 1, 0, 0, 0)).await.allowed);
    let leap = Bucket::Key(KeyId(32));
    assert_eq!(store.race(leap, &p, 16, utc(2028, 2, 1, 0, 0, 0)).await, 10);
    assert!(
        !store.hit(leap, &p, 1, utc(2028, 2, 29, 23, 0, 0)).await.allowed,
        "still February"
    );
    assert!(store.hit(leap, &p, 1, utc(2028, 3, 1, 0, 0, 0)).await.allowed);
}

/// Both stores over month ends and a leap day, with every window at once: the same decision
/// at every step, counts, resets and refusals included.
#[actix_web::test]
async fn both_stores_decide_identically_across_months() {
    let Some(redis) = Store::redis().await else { return };
    let memory = Store::Memory(MemoryStore::new(1000));
    let p = policy(&[
        (Window::Minute, Limit::new(7)),
        (Window::Hour, Limit::new(12)),
        (Window::Day, Limit::new(30)),
        (Window::Month, Limit::new(45)),
    ]);
    for (i, start) in [
        utc(2027, 1, 31, 20, 0, 0),
        utc(2027, 2, 28, 20, 0, 0),
        utc(2028, 2, 28, 20, 0, 0),
    ]
    .into_iter()
    .enumerate()
    {
        let k = Bucket::Key(KeyId(40 + i as i64));
        // Steps from a millisecond to about 50 minutes, crossing midnight and the month.
        let now = replay(&memory, &redis, k, &p, start, 300, |step| {
            (step * 7_919 * 13) % 3_000_000 + 1
        })
        .await;
        assert!(
            now > start + 2 * 86_400_000,
            "the run crossed into the next month"
        );
    }
}

#[actix_web::test]
async fn both_stores_decide_identically_step_by_step() {
    let Some(redis) = Store::redis().await else { return };
    let memory = Store::Memory(MemoryStore::new(1000));
    let p = policy(&[
        (Window::Second, Limit::new(4)),
        (Window::Minute, Limit::new(7)),
        (Window::Hour, Limit::new(20)),
    ]);
    replay(
        &memory,
        &redis,
        Bucket::Key(KeyId(9)),
        &p,
        T0 + 123,
        200,
        |step| (step * 7_919) % 9_000,
    )
    .await;
}

/// Sends the same `steps` requests to both stores, `step(n)` ms apart, and requires the same
/// decision each time; returns the time of the last.
async fn replay(
    memory: &Store,
    redis: &Store,
    k: Bucket,
    p: &Policy,
    start: u64,
    steps: u64,
    step: impl Fn(u64) -> u64,
) -> u64 {
    let mut now = start;
    for n in 0..steps {
        now += step(n);
        let (a, b) = (memory.hit(k, p, 1, now).await, redis.hit(k, p, 1, now).await);
        assert_eq!(a, b, "{k:?}, step {n} at {now}");
    }
    now
}

#[actix_web::test]
async fn a_caller_is_one_packed_redis_value_that_expires() {
    let Some(env) = test_redis() else { return };
    let client = ::redis::Client::open(env.url.as_str()).expect("url");
    let target = RedisTarget::Single(env.url.clone());
    let conn = RedisConn::connect(&target, Duration::from_secs(2))
        .await
        .expect("connect");
    let store = RedisStore::new(conn, target, &env.prefix, Duration::from_secs(2));
    let p = policy(&[
        (Window::Minute, Limit::new(5)),
        (Window::Hour, None),
        (Window::Day, Limit::new(9)),
    ]);
    let at = T0 + 1_000;
    store
        .hit(Bucket::Key(KeyId(42)), &p, 1, Some(at))
        .await
        .expect("hit");
    store
        .hit(Bucket::Key(KeyId(42)), &p, 2, Some(at + 61_000))
        .await
        .expect("hit");
    let mut conn = client.get_multiplexed_async_connection().await.expect("connect");
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{}:*", env.prefix))
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert_eq!(keys, [format!("{}:rc:{{k:42}}", env.prefix)]);
    let value: Vec<u8> = ::redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .expect("get");
    // Little-endian doubles (struct.pack's 'd' on x86 and ARM): the last update, then per
    // window (W, count, previous count); the minute has rolled once, hour and day not.
    let numbers: Vec<f64> = value
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    assert_eq!(
        numbers,
        [
            (at + 61_000) as f64,
            60.0,
            2.0,
            1.0,
            3_600.0,
            3.0,
            0.0,
            86_400.0,
            3.0,
            0.0
        ]
    );
    let ttl: i64 = ::redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .expect("ttl");
    assert!(ttl > 86_400_000 && ttl <= 2 * 86_400_000, "TTL {ttl}");
    let _: () = ::redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .expect("clean up");
}

/// Many callers, reads and two policies for one caller, all racing: coalesced into shared
/// script calls, every request is still decided as if it had run alone, in order.
#[actix_web::test]
async fn coalesced_requests_are_decided_exactly_per_caller() {
    let Some(redis) = Store::redis().await else { return };
    let strict = policy(&[(Window::Minute, Limit::new(3))]);
    let loose = policy(&[(Window::Minute, Limit::new(7))]);
    let hits = (0..600u32).map(|i| {
        let bucket = Bucket::Key(KeyId(i64::from(i % 30)));
        // Every seventh request only reads; caller 0 is also re-limited midway.
        let p = if i % 30 == 0 && i >= 300 { &loose } else { &strict };
        let cost = u32::from(i % 7 != 3);
        let redis = &redis;
        async move { (bucket, cost, redis.hit(bucket, p, cost, T0 + 1_000).await) }
    });
    let results = join_all(hits).await;
    for caller in 0..30 {
        let counted = results
            .iter()
            .filter(|(b, cost, d)| *b == Bucket::Key(KeyId(caller)) && *cost == 1 && d.allowed)
            .count();
        let expected = if caller == 0 { 7 } else { 3 };
        assert_eq!(counted, expected, "caller {caller}");
    }
    assert!(
        results.iter().all(|(_, cost, d)| *cost == 1 || d.allowed),
        "reads always pass"
    );
}

/// A flood on an exhausted key costs no Redis calls: Redis's refusal is remembered until a
/// request could fit (exact: other instances only add). A raised limit asks Redis at once.
#[actix_web::test]
async fn a_flood_on_an_exhausted_key_is_refused_without_asking_redis() {
    let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await else {
        return;
    };
    let admin = app.admin().await;
    let created = app
        .create_key(
            &admin,
            serde_json::json!({"name": "flooded", "rate_limit_per_minute": 3}),
        )
        .await;
    let key = crate::helpers::Auth::Header("Api-Key", created["key"].as_str().expect("key").to_owned());
    for _ in 0..3 {
        assert_eq!(app.get("/api/whoami", &key).await.status, 200);
    }
    for _ in 0..40 {
        assert_eq!(app.get("/api/whoami", &key).await.status, 429);
    }
    // This instance's own count of refusals it answered without a Redis call (Redis's global
    // command statistics are shared with the tests running beside this one).
    let metrics = app.get("/metrics", &crate::helpers::Auth::None).await.text;
    let local: u64 = metrics
        .lines()
        .find(|l| l.starts_with("keygate_store_local_refusals_total "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("the counter");
    assert!(
        local >= 38,
        "only {local} of 40 refused locally: one Redis call per worker at most"
    );
    // Exact: the limit raised, the next request passes at once.
    let path = format!("/api/api-keys/{}", created["id"]);
    let raised = app
        .patch(
            &path,
            &admin.auth(),
            serde_json::json!({"rate_limit_per_minute": 100}),
        )
        .await;
    assert_eq!(raised.status, 200);
    assert_eq!(app.get("/api/whoami", &key).await.status, 200);
}
