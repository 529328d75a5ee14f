//! Hostile clients: huge or numerous headers, slow clients, oversized forms; and the secret of a
//! key never showing up in logs or in the database.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Auth, Backend, Process, TestApp, spawn_app, unique_suffix,
};

/// Sends raw bytes and returns the status line of the answer ("" if the connection was dropped).
fn raw(port: u16, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn port_of(address: &str) -> u16 {
    address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

#[actix_web::test]
async fn oversized_and_numerous_headers_get_4xx_and_the_server_carries_on() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let port = port_of(&app.address);
    let big_key = format!(
        "GET /api/whoami HTTP/1.1\r\nHost: x\r\nApi-Key: {}\r\n\r\n",
        "k".repeat(100_000)
    );
    let huge = format!(
        "GET /api/whoami HTTP/1.1\r\nHost: x\r\nX-Junk: {}\r\n\r\n",
        "j".repeat(1_000_000)
    );
    let many: String = (0..300).map(|i| format!("X-Junk-{i}: {i}\r\n")).collect();
    let many = format!("GET /api/whoami HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    for (what, request) in [
        ("a 100 KB key", big_key),
        ("a 1 MB header", huge),
        ("300 headers", many),
    ] {
        let status = tokio::task::spawn_blocking(move || raw(port, request.as_bytes()))
            .await
            .expect("join");
        let code: u16 = status
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        println!("{what}: {status}");
        assert!((400..500).contains(&code), "{what} answered {status:?}");
    }
    assert_eq!(app.get("/healthz", &Auth::None).await.status, 200);
}

#[actix_web::test]
async fn a_slow_client_times_out_with_408() {
    // Not shorter: the timeout applies to the test's own later request too. With 500 ms, the
    // /healthz check below once got no 200 under the full suite's load (a stalled head, 408,
    // is the likely cause; the status was not captured).
    let Some(app) = TestApp::on(Backend::Sqlite).client_timeout_ms(1000).spawn().await else {
        return;
    };
    let port = port_of(&app.address);
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"))
        .await
        .expect("join");
    let waited = started.elapsed();
    println!("a client that never finished its request head: {status:?} after {waited:.2?}");
    assert!(status.starts_with("HTTP/1.1 408"), "{status:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert_eq!(app.get("/healthz", &Auth::None).await.status, 200);
}

#[actix_web::test]
async fn an_oversized_form_gets_a_4xx_page() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let form = format!("email={}&password=x", "a".repeat(5 * 1024 * 1024));
    let reply = app
        .request(
            actix_web::http::Method::POST,
            "/admin/login",
            &Auth::Header("Content-Type", "application/x-www-form-urlencoded".into()),
            Some(form.into_bytes()),
        )
        .await;
    assert!(reply.status.is_client_error(), "{}", reply.status);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/html"))
    );
}

#[actix_web::test]
async fn the_full_key_never_reaches_the_logs_or_the_database() {
    let dir = std::env::temp_dir().join(format!("keygate-secrets-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).expect("dir");
    let db_path = dir.join("keygate.db");
    let log_path = dir.join("log.txt");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let log = std::fs::File::create(&log_path).expect("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .arg("serve")
        .env_clear()
        .current_dir(&dir)
        .env("DATABASE_URL", format!("sqlite://{}", db_path.display()))
        .env("PORT", port.to_string())
        .env("BIND_ADDR", "127.0.0.1")
        .env("ADMIN_EMAIL", ADMIN_EMAIL)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("USAGE_FLUSH_MS", "100")
        .env("SIGNUP", "invite")
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup"))
        .stderr(log)
        .spawn()
        .expect("start keygate");
    let base = format!("http://127.0.0.1:{port}");
    let client = awc::Client::default();
    let server = Process::logged_in(&base).await;
    let created = server
        .create_key(json!({"name": "secret-keeping", "rate_limit_per_minute": 2}))
        .await;
    let key = created["key"].as_str().expect("key").to_owned();
    let mut typo = key.clone().into_bytes();
    typo[12] = if typo[12] == b'Q' { b'R' } else { b'Q' };
    let typo = String::from_utf8(typo).expect("ascii");
    for (header, value) in [
        ("Api-Key", key.clone()),
        ("Authorization", format!("Api-Key {key}")),
        ("Api-Key", key.clone()),
        ("Api-Key", typo.clone()),
        ("Authorization", format!("Bearer {key}")),
    ] {
        let _ = client
            .get(format!("{base}/api/whoami"))
            .insert_header((header, value.as_str()))
            .send()
            .await
            .expect("answer");
    }
    let _ = client
        .get(format!("{base}/api/api-keys/"))
        .insert_header(("Api-Key", key.as_str()))
        .send()
        .await;
    // An invitation link's token rides in a query string: request lines are logged without it.
    let token = "a1".repeat(32);
    let _ = client
        .get(format!("{base}/admin/signup?token={token}"))
        .send()
        .await
        .expect("answer");
    actix_web::rt::time::sleep(Duration::from_millis(400)).await;
    crate::helpers::sigterm(&child);
    let _ = child.wait();

    let logs = std::fs::read_to_string(&log_path).expect("logs");
    let mut database = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        database.extend(std::fs::read(format!("{}{suffix}", db_path.display())).unwrap_or_default());
    }
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(key.as_bytes()));
    let contains =
        |haystack: &[u8], needle: &str| haystack.windows(needle.len()).any(|w| w == needle.as_bytes());
    println!(
        "secrets: {} log lines and {} database bytes searched; full key in logs: {}, in database: {}; its hash in the database: {}",
        logs.lines().count(),
        database.len(),
        logs.contains(&key),
        contains(&database, &key),
        contains(&database, &hash)
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(logs.lines().count() > 10, "debug logging was on");
    assert!(!logs.contains(&key), "the key is in the logs");
    assert!(!logs.contains(&typo), "a near-miss key is in the logs");
    assert!(logs.contains("/admin/signup"), "the request was logged");
    assert!(!logs.contains(&token), "an invitation token is in the logs");
    assert!(!contains(&database, &key), "the key is in the database");
    assert!(contains(&database, &hash), "the database holds the key's hash");
}
