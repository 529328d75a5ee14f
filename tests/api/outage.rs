//! Redis stopped under a running gate, in each failure mode, on a redis-server of the test's
//! own (started on a free port, killed and restarted here).

use std::cell::Cell;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use keygate::limits::FailureMode;

use crate::helpers::{Auth, Backend, TestApp, unavailable};

pub(crate) struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    pub(crate) fn start() -> Option<OwnRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut redis = OwnRedis { port, child: None };
        if let Err(e) = redis.launch() {
            unavailable("redis-server", &e, "apt-get install -y redis-server");
            return None;
        }
        Some(redis)
    }

    pub(crate) fn launch(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            let ping = redis::Client::open(self.url().as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if ping.is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("redis-server did not answer within 5 s".into())
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn counters(app: &TestApp) -> String {
    let health = app.get("/healthz", &Auth::None).await;
    assert_eq!(health.status, 200, "health stays up: {}", health.text);
    health.body["counters"].as_str().unwrap_or_default().to_owned()
}

/// Sends `n` requests with `key`; returns (200s, 5xx, other).
async fn burst(app: &TestApp, key: &Auth, n: usize, expect_5xx: bool) -> (usize, usize) {
    let (mut ok, mut server_errors) = (0, 0);
    for _ in 0..n {
        let reply = app.get("/api/whoami", key).await;
        match reply.status.as_u16() {
            200 => ok += 1,
            500..=599 => {
                server_errors += 1;
                if expect_5xx {
                    reply.assert_error(503, "rate_limiter_unavailable");
                }
            }
            other => panic!("unexpected {other}: {}", reply.text),
        }
    }
    (ok, server_errors)
}

/// Clients connected to the test's Redis, as Redis counts them (this query's own included).
fn connected_clients(redis: &OwnRedis) -> u64 {
    let info: String = redis::Client::open(redis.url().as_str())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
        .and_then(|mut c| redis::cmd("INFO").arg("clients").query(&mut c))
        .expect("INFO clients");
    info.lines()
        .find_map(|line| line.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("connected_clients")
}

/// Requests sent by the steady load, by outcome.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    server_errors: AtomicUsize,
}

async fn drill(mode: FailureMode, counters_while_down: &str) {
    let Some(mut redis) = OwnRedis::start() else {
        return;
    };
    let url = redis.url();
    let app = TestApp::on(Backend::Sqlite)
        .redis(&url, "outage")
        .failure_mode(mode)
        .redis_timeout_ms(300);
    let Some(app) = app.spawn().await else {
        return;
    };
    let app = Rc::new(app);
    let owner = app.unlimited_user("owner@example.com").await;
    let created = app
        // No window may fill during the drill: the load is faster than any default limit.
        .create_key(
            &owner,
            json!({"name": "steady", "rate_limit_per_minute": 100000, "rate_limit_per_hour": 1000000, "rate_limit_per_day": null}),
        )
        .await;
    let key = Auth::Header("Api-Key", created["key"].as_str().expect("key").to_owned());
    assert_eq!(counters(&app).await, "redis");
    assert_eq!(burst(&app, &key, 20, false).await, (20, 0));

    // Steady load from two clients for the whole drill.
    let (stop, tally) = (Rc::new(Cell::new(false)), Rc::new(Tally::default()));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (app, key, stop, tally) = (app.clone(), key.clone(), stop.clone(), tally.clone());
            actix_web::rt::spawn(async move {
                while !stop.get() {
                    let status = app.get("/api/whoami", &key).await.status.as_u16();
                    let counter = if status >= 500 {
                        &tally.server_errors
                    } else {
                        &tally.ok
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                    actix_web::rt::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();

    let mut clients = Vec::new();
    for round in 1..=2 {
        redis.kill();
        actix_web::rt::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(counters(&app).await, counters_while_down, "round {round}");
        let health = app.get("/healthz", &Auth::None).await;
        assert_eq!(health.body["redis"], "unavailable");

        redis.launch().expect("restart redis-server on the same port");
        let back = Instant::now();
        while counters(&app).await != "redis" {
            assert!(
                back.elapsed() < Duration::from_secs(5),
                "back on Redis within 5 s of its return"
            );
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
        actix_web::rt::time::sleep(Duration::from_millis(500)).await;
        clients.push(connected_clients(&redis));
        println!(
            "mode {mode:?}, round {round}: back on Redis {:?} after it returned; {} Redis clients",
            back.elapsed(),
            clients[round - 1]
        );
    }
    stop.set(true);
    for worker in load {
        let _ = worker.await;
    }
    let (ok, server_errors) = (
        tally.ok.load(Ordering::SeqCst),
        tally.server_errors.load(Ordering::SeqCst),
    );
    println!(
        "mode {mode:?}: steady load through two Redis outages: {} requests, {ok} answered below 500, {server_errors} × 5xx",
        ok + server_errors
    );
    if mode == FailureMode::Closed {
        assert!(server_errors > 0, "closed answers 503 while Redis is down");
    } else {
        assert_eq!(server_errors, 0, "{mode:?} never answers 5xx");
    }
    assert!(
        clients[1] <= clients[0],
        "no connection leak across outages: {clients:?}"
    );
    assert!(clients[1] <= 8, "a handful of connections: {clients:?}");
    assert_eq!(
        burst(&app, &key, 20, false).await,
        (20, 0),
        "all well after recovery"
    );

    // And a burst while down, checked request by request.
    redis.kill();
    let closed = mode == FailureMode::Closed;
    let (ok, server_errors) = burst(&app, &key, 30, closed).await;
    if closed {
        assert_eq!((ok, server_errors), (0, 30), "closed refuses with 503 JSON");
    } else {
        assert_eq!((ok, server_errors), (30, 0));
    }
}

#[actix_web::test]
async fn redis_outage_in_local_mode_keeps_limiting_in_process_without_5xx() {
    drill(FailureMode::Local, "memory").await;
}

#[actix_web::test]
async fn redis_outage_in_open_mode_lets_requests_through_without_5xx() {
    drill(FailureMode::Open, "none").await;
}

#[actix_web::test]
async fn redis_outage_in_closed_mode_answers_503_json() {
    drill(FailureMode::Closed, "unavailable").await;
}
