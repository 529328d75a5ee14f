//! How the Redis store should talk to Redis, measured: the same rate-limit script, driven by 64
//! concurrent callers for a fixed time, over
//!   - one multiplexed connection (redis's ConnectionManager), one script call per request;
//!   - a deadpool-redis pool (16 connections), one script call per request;
//!   - keygate's RedisStore: the multiplexed connection with requests coalesced into batches.
//!
//! Each for one hot key and for 1,000 keys round-robin, interleaved over three rounds (median).
//!
//! `cargo run --release --example bench_redis_clients [redis-url]` (default redis://127.0.0.1:6379)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_redis::{Config, Runtime};
use keygate::limits::redis::{RedisStore, ScriptCall};
use keygate::limits::{Bucket, Policy, Rate};
use keygate::shared_redis::{RedisConn, RedisTarget};

const TASKS: usize = 64;
const SECONDS: u64 = 3;
const PREFIX: &str = "bench-clients";

#[derive(Clone)]
enum Client {
    Multiplexed(RedisConn),
    Pool(deadpool_redis::Pool),
    Coalesced(RedisStore),
}

impl Client {
    async fn hit(&self, bucket: Bucket, policy: &Policy) -> bool {
        let single = || {
            let mut call = ScriptCall::new(None);
            call.caller(&format!("{PREFIX}:rc:"), bucket, policy, [1].into_iter());
            call
        };
        match self {
            Client::Multiplexed(conn) => single().run(&mut conn.clone()).await.is_ok(),
            Client::Pool(pool) => match pool.get().await {
                Ok(mut conn) => single().run(&mut conn).await.is_ok(),
                Err(_) => false,
            },
            Client::Coalesced(store) => store.hit(bucket, policy, 1, None).await.is_ok(),
        }
    }
}

/// Requests per second and p99 latency (ms) of `TASKS` callers over `SECONDS`.
async fn drive(client: &Client, keys: i64, policy: &Policy) -> (f64, f64) {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (client, policy, done, failed) =
                (client.clone(), policy.clone(), done.clone(), failed.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = t as i64;
                while Instant::now() < deadline {
                    let started = Instant::now();
                    let ok = client
                        .hit(Bucket::Key(keygate::db::KeyId(i % keys)), &policy)
                        .await;
                    latencies.push(started.elapsed());
                    let counter = if ok { &done } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                    i += TASKS as i64;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("task"));
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "every call answered");
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100].as_secs_f64() * 1000.0;
    (done.load(Ordering::Relaxed) as f64 / SECONDS as f64, p99)
}

fn median(mut v: Vec<(f64, f64)>) -> (f64, f64) {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let policy = Policy::from_rates(
        &Rate::parse_list("2000000000/minute,2000000000/hour,2000000000/day").expect("rates"),
    );
    let conn = RedisConn::connect(&RedisTarget::Single(url.clone()), Duration::from_secs(2))
        .await
        .expect("connect");
    let mut pool_config = Config::from_url(url.as_str());
    pool_config.pool = Some(deadpool_redis::PoolConfig::new(16));
    let pool = pool_config.create_pool(Some(Runtime::Tokio1)).expect("pool");
    let clients = [
        (
            "multiplexed, one call per request",
            Client::Multiplexed(conn.clone()),
        ),
        ("deadpool (16), one call per request", Client::Pool(pool)),
        (
            "multiplexed + coalescing (keygate)",
            Client::Coalesced(RedisStore::new(
                conn,
                RedisTarget::Single(url.clone()),
                PREFIX,
                Duration::from_secs(2),
            )),
        ),
    ];
    let mut results = vec![vec![Vec::new(); 2]; clients.len()];
    for round in 1..=3 {
        eprintln!("round {round} of 3…");
        for (c, (_, client)) in clients.iter().enumerate() {
            for (k, keys) in [1, 1000].into_iter().enumerate() {
                results[c][k].push(drive(client, keys, &policy).await);
            }
        }
    }
    println!("Rate-limit script over Redis, {TASKS} concurrent callers, {SECONDS} s, median of 3 rounds");
    println!("| client | 1 key: calls/s | p99 ms | 1,000 keys: calls/s | p99 ms |");
    println!("|---|---|---|---|---|");
    for ((name, _), per_keys) in clients.iter().zip(results) {
        let [(hot, hot_p99), (spread, spread_p99)] =
            [median(per_keys[0].clone()), median(per_keys[1].clone())];
        println!("| {name} | {hot:.0} | {hot_p99:.2} | {spread:.0} | {spread_p99:.2} |");
    }
}
