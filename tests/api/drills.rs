//! Outage drills: PostgreSQL cut off behind a proxy the test controls, and SIGTERM under load.
//! Each prints its figures.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Auth, Backend, Process, TestApp, TestDb, test_database_url, unknown_key,
};

/// A TCP proxy that can be cut (every connection dropped, new ones refused) and restored.
struct Cuttable {
    port: u16,
    down: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Cuttable {
    /// Runs on a thread of its own: the server under test may block its thread on the database.
    fn start(upstream: SocketAddr) -> Cuttable {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let down = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (flag, list) = (down.clone(), connections.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("tokio listener");
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if flag.load(Ordering::SeqCst) {
                        continue;
                    }
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    list.lock().expect("lock").push(task);
                }
            });
        });
        Cuttable {
            port,
            down,
            connections,
        }
    }

    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for task in self.connections.lock().expect("lock").drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

#[actix_web::test]
async fn postgres_outage_keeps_cached_keys_working_and_loses_no_usage() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let proxy = Cuttable::start("127.0.0.1:5432".parse().expect("addr"));
    let direct = test_database_url();
    let host = direct
        .split('@')
        .nth(1)
        .and_then(|h| h.split('/').next())
        .unwrap_or("127.0.0.1:5432")
        .to_owned();
    let proxied = db.url.replace(&host, &format!("127.0.0.1:{}", proxy.port));
    let app = TestApp::on_database(db)
        .database_url(&proxied)
        .usage_flush_ms(300)
        .spawn()
        .await
        .expect("a server on the test's database");
    let admin = app.admin().await;
    let created = app
        .create_key(&admin, json!({"name": "through the outage"}))
        .await;
    let key = Auth::Header("Api-Key", created["key"].as_str().expect("key").to_owned());
    let id = created["id"].as_i64().expect("id");
    for _ in 0..3 {
        assert_eq!(app.get("/api/whoami", &key).await.status, 200);
    }

    proxy.cut();
    let mut during = (0, 0);
    for _ in 0..20 {
        let status = app.get("/api/whoami", &key).await.status.as_u16();
        if status == 200 {
            during.0 += 1
        } else if status >= 500 {
            during.1 += 1
        }
    }
    assert_eq!(during, (20, 0), "a cached key keeps working without the database");
    let fresh = unknown_key();
    app.get("/api/whoami", &fresh)
        .await
        .assert_error(503, "database_unavailable");
    let health = app.get("/healthz", &Auth::None).await;
    assert_eq!(
        (health.status.as_u16(), health.body["database"].as_str()),
        (503, Some("unavailable"))
    );
    actix_web::rt::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        app.state.usage.pending(),
        1,
        "usage waits in the buffer while the database is away"
    );

    proxy.restore();
    let back = Instant::now();
    while app.state.usage.pending() > 0 || app.get("/healthz", &Auth::None).await.status != 200 {
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "usage written after recovery"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = app
        .get(&format!("/api/api-keys/{id}/stats/"), &admin.auth())
        .await
        .body;
    let written = stats["totals"]["allowed"].as_i64().unwrap_or(-1);
    println!(
        "PostgreSQL outage: {} requests with a cached key, {} × 5xx; usage written after recovery: {written} of 23 requests, lost {}, dropped {}",
        during.0,
        during.1,
        23 - written,
        app.state.usage.dropped()
    );
    assert_eq!(written, 23, "no usage was lost");
}

#[actix_web::test]
async fn sigterm_under_load_finishes_requests_writes_usage_and_exits_cleanly() {
    let dir = std::env::temp_dir().join(format!("keygate-sigterm-{}", crate::helpers::unique_suffix()));
    std::fs::create_dir_all(&dir).expect("dir");
    let db_url = format!("sqlite://{}", dir.join("keygate.db").display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .arg("serve")
        .env_clear()
        .current_dir(&dir)
        .env("DATABASE_URL", &db_url)
        .env("PORT", port.to_string())
        .env("BIND_ADDR", "127.0.0.1")
        .env("ADMIN_EMAIL", ADMIN_EMAIL)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        // Only the shutdown flush writes usage in this test.
        .env("USAGE_FLUSH_MS", "600000")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start keygate");
    let base = format!("http://127.0.0.1:{port}");
    let client = awc::Client::builder().timeout(Duration::from_secs(15)).finish();
    let server = Process::logged_in(&base).await;
    let unlimited = json!({"name": "load", "rate_limit_per_minute": null, "rate_limit_per_hour": null, "rate_limit_per_day": null});
    let created = server.create_key(unlimited).await;
    let key = created["key"].as_str().expect("key").to_owned();

    let ok = Arc::new(AtomicUsize::new(0));
    let server_errors = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (client, base, key, ok, server_errors) = (
                client.clone(),
                base.clone(),
                key.clone(),
                ok.clone(),
                server_errors.clone(),
            );
            actix_web::rt::spawn(async move {
                for _ in 0..10_000 {
                    match client
                        .get(format!("{base}/api/whoami"))
                        .insert_header(("Api-Key", key.as_str()))
                        .send()
                        .await
                    {
                        Ok(mut response) => {
                            let _ = response.body().await;
                            match response.status().as_u16() {
                                200 => ok.fetch_add(1, Ordering::SeqCst),
                                _ => server_errors.fetch_add(1, Ordering::SeqCst),
                            };
                        }
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    actix_web::rt::time::sleep(Duration::from_millis(800)).await;
    let sent_at_signal = ok.load(Ordering::SeqCst);
    let term = Instant::now();
    crate::helpers::sigterm(&child);
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let refused = std::net::TcpStream::connect(("127.0.0.1", port)).is_err();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            term.elapsed() < Duration::from_secs(10),
            "keygate did not exit within 10 s of SIGTERM"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };
    let exited_after = term.elapsed();
    for worker in workers {
        let _ = worker.await;
    }
    let ok = ok.load(Ordering::SeqCst) as i64;

    let mut conn = keygate::db::establish(&db_url).expect("open the database");
    let totals = keygate::db::models::UsageRow::totals(
        &mut conn,
        keygate::db::KeyId(created["id"].as_i64().expect("id")),
    )
    .expect("totals");
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "SIGTERM under load: {ok} × 200 ({sent_at_signal} before the signal), {} × non-200, exit {:?} after {exited_after:.2?}, \
         new connections refused: {refused}, usage written {} (lost {})",
        server_errors.load(Ordering::SeqCst),
        status.code(),
        totals.allowed,
        ok - totals.allowed
    );
    assert!(status.success(), "exit code 0");
    assert!(refused, "no new connections after SIGTERM");
    assert_eq!(
        server_errors.load(Ordering::SeqCst),
        0,
        "every answered request succeeded"
    );
    assert!(sent_at_signal > 0 && ok >= sent_at_signal as i64);
    assert_eq!(
        totals.allowed, ok,
        "every allowed request's usage was flushed at shutdown"
    );
}
