//! Gateway mode against a real upstream (a small actix server started here), and the verify API.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::Method;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use futures_util::stream;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{AppBuilder, Auth, Backend, PASSWORD, TestApp, spawn_app};

pub(crate) struct Upstream {
    pub(crate) port: u16,
    pub(crate) hits: Arc<AtomicUsize>,
}

/// Echoes what it received: method, path and query, headers, and the body's length and hash.
async fn echo(req: HttpRequest, body: web::Bytes, hits: web::Data<AtomicUsize>) -> HttpResponse {
    hits.fetch_add(1, Ordering::SeqCst);
    // Repeated headers are joined with ", ", so a test sees whether each one arrived.
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in req.headers().iter() {
        let value = value.to_str().unwrap_or("?");
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| *v = format!("{v}, {value}"))
            .or_insert_with(|| value.to_owned());
    }
    let status = req
        .headers()
        .get("x-want-status")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(200);
    let mut reply = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"));
    reply.insert_header(("X-Upstream", "yes"));
    // `X-Want-Set-Cookie: a=1|b=2` makes the upstream set those cookies.
    if let Some(cookies) = req
        .headers()
        .get("x-want-set-cookie")
        .and_then(|v| v.to_str().ok())
    {
        for cookie in cookies.split('|') {
            reply.append_header(("Set-Cookie", cookie));
        }
    }
    reply.json(json!({
        "method": req.method().as_str(),
        "path_and_query": req.uri().path_and_query().map(|p| p.as_str()),
        "headers": headers,
        "body_len": body.len(),
        "body_sha256": hex::encode(Sha256::digest(&body)),
    }))
}

async fn streamed() -> HttpResponse {
    let chunks = (0..5u8).map(|i| Ok::<_, actix_web::Error>(web::Bytes::from(vec![i; 64 * 1024])));
    HttpResponse::Ok().streaming(stream::iter(chunks))
}

async fn slow() -> HttpResponse {
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    HttpResponse::Ok().body("late")
}

pub(crate) async fn start_upstream() -> Upstream {
    let hits = Arc::new(AtomicUsize::new(0));
    let data = web::Data::from(hits.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
            .route("/stream", web::get().to(streamed))
            .route("/slow", web::get().to(slow))
            .default_service(web::to(echo))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind upstream");
    let port = server.addrs()[0].port();
    actix_web::rt::spawn(server.run());
    Upstream { port, hits }
}

/// keygate in gateway mode in front of `upstream`, to be configured further.
pub(crate) fn in_front_of(upstream: &Upstream) -> AppBuilder {
    TestApp::on(Backend::Sqlite).upstream(&format!("http://127.0.0.1:{}", upstream.port))
}

pub(crate) async fn gateway(upstream: &Upstream) -> Option<TestApp> {
    in_front_of(upstream).spawn().await
}

pub(crate) async fn key(app: &TestApp, limits: Value) -> (i64, String) {
    let admin = app.admin().await;
    let created = app
        .create_key(&admin, crate::helpers::merged(json!({"name": "gateway"}), limits))
        .await;
    (
        created["id"].as_i64().expect("id"),
        created["key"].as_str().expect("key").to_owned(),
    )
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[actix_web::test]
async fn requests_and_bodies_of_every_kind_arrive_intact_both_ways() {
    let upstream = start_upstream().await;
    let Some(app) = gateway(&upstream).await else {
        return;
    };
    let (_, key) = key(
        &app,
        json!({"rate_limit_per_minute": null, "rate_limit_per_hour": null, "rate_limit_per_day": null}),
    )
    .await;
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let megabyte: Vec<u8> = (0..1024 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let chunks: Vec<Vec<u8>> = (0..3).map(|i| vec![b'a' + i; 100_000]).collect();
    let chunked: Vec<u8> = chunks.concat();
    for method in [Method::GET, Method::POST, Method::PUT, Method::DELETE] {
        for (kind, expected) in [
            ("empty", Vec::new()),
            ("1 MB", megabyte.clone()),
            ("chunked", chunked.clone()),
        ] {
            let request = client
                .request(method.clone(), format!("{}/items/42/?q=a%20b&x=1", app.address))
                .insert_header(("Api-Key", key.as_str()))
                .insert_header(("X-Want-Status", "201"));
            let sent = match kind {
                "empty" => request.send().await,
                "1 MB" => request.send_body(megabyte.clone()).await,
                _ => {
                    let parts = chunks
                        .clone()
                        .into_iter()
                        .map(|c| Ok::<_, std::io::Error>(web::Bytes::from(c)));
                    request.send_stream(stream::iter(parts)).await
                }
            };
            let mut response = sent.expect("an answer");
            assert_eq!(
                response.status(),
                201,
                "{method} {kind}: the upstream's status comes back"
            );
            assert_eq!(
                response.headers().get("x-upstream").and_then(|v| v.to_str().ok()),
                Some("yes")
            );
            let echoed: Value = serde_json::from_slice(&response.body().await.expect("body")).expect("json");
            assert_eq!(echoed["method"], method.as_str());
            assert_eq!(
                echoed["path_and_query"], "/items/42/?q=a%20b&x=1",
                "path (trailing slash included) and query kept"
            );
            assert_eq!(echoed["body_len"], expected.len(), "{method} {kind}");
            assert_eq!(echoed["body_sha256"], digest(&expected), "{method} {kind}");
        }
    }
    let mut streamed = client
        .get(format!("{}/stream", app.address))
        .insert_header(("Api-Key", key.as_str()))
        .send()
        .await
        .expect("stream");
    let body = streamed.body().limit(10 * 1024 * 1024).await.expect("body");
    let expected: Vec<u8> = (0..5u8).flat_map(|i| vec![i; 64 * 1024]).collect();
    assert_eq!(
        (body.len(), digest(&body)),
        (expected.len(), digest(&expected)),
        "a streamed response arrives whole"
    );
}

#[actix_web::test]
async fn the_upstream_sees_the_caller_never_the_key() {
    let upstream = start_upstream().await;
    let Some(app) = gateway(&upstream).await else {
        return;
    };
    let (id, key) = key(&app, json!({})).await;
    let client = awc::Client::default();
    let mut response = client
        .get(format!("{}/whoami-upstream", app.address))
        .insert_header(("Api-Key", key.as_str()))
        .insert_header(("X-Keygate-Key-Id", "999"))
        .insert_header(("X-Forwarded-For", "198.51.100.7"))
        .send()
        .await
        .expect("answer");
    let echoed: Value = serde_json::from_slice(&response.body().await.expect("body")).expect("json");
    let headers = &echoed["headers"];
    let text = headers.to_string();
    assert!(!text.contains(&key), "the key never reaches the upstream: {text}");
    assert!(headers.get("api-key").is_none());
    assert_eq!(
        headers["x-keygate-key-id"],
        id.to_string(),
        "spoofed ids are replaced"
    );
    assert_eq!(headers["x-keygate-tier"], "api_key");
    assert!(headers["x-keygate-user-id"].is_string());
    assert_eq!(
        headers["x-forwarded-for"], "198.51.100.7, 127.0.0.1",
        "the peer is appended"
    );
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert!(
        headers["x-forwarded-host"]
            .as_str()
            .is_some_and(|h| h.starts_with("127.0.0.1:"))
    );

    // Headers named by `Connection` are hop-by-hop; sent raw, as an HTTP client would.
    let port: u16 = app
        .address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let raw = format!(
        "GET /hop HTTP/1.1\r\nHost: x\r\nApi-Key: {key}\r\nConnection: close, X-Secret-Hop\r\nX-Secret-Hop: drop me\r\nX-Kept: keep me\r\n\r\n"
    );
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.write_all(raw.as_bytes()).expect("send");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    })
    .await
    .expect("join");
    let echoed: Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or("{}")).unwrap_or(Value::Null);
    assert_eq!(echoed["headers"]["x-kept"], "keep me", "{answer}");
    assert!(
        echoed["headers"].get("x-secret-hop").is_none(),
        "headers named by Connection are hop-by-hop: {answer}"
    );

    let mut response = client
        .get(format!("{}/anything", app.address))
        .insert_header(("Authorization", format!("Api-Key {key}")))
        .send()
        .await
        .expect("answer");
    let echoed: Value = serde_json::from_slice(&response.body().await.expect("body")).expect("json");
    assert!(
        echoed["headers"].get("authorization").is_none(),
        "Authorization: Api-Key is keygate's, not the upstream's"
    );
    let mut response = client
        .get(format!("{}/anything", app.address))
        .insert_header(("Authorization", "Basic dXNlcjpwdw=="))
        .send()
        .await
        .expect("answer");
    let echoed: Value = serde_json::from_slice(&response.body().await.expect("body")).expect("json");
    assert_eq!(
        echoed["headers"]["authorization"], "Basic dXNlcjpwdw==",
        "the upstream's own credentials pass"
    );
    assert_eq!(echoed["headers"]["x-keygate-tier"], "anonymous");

    let own = app
        .get("/api/whoami", &Auth::Header("Api-Key", key.clone()))
        .await;
    assert_eq!(
        own.body["tier"], "api_key",
        "keygate's own routes are still keygate's"
    );
}

#[actix_web::test]
async fn the_upstream_sees_exactly_the_requests_the_gate_allowed() {
    let upstream = start_upstream().await;
    let Some(app) = gateway(&upstream).await else {
        return;
    };
    let (_, key) = key(&app, json!({"rate_limit_per_minute": 3})).await;
    crate::gate::clear_of_minute_boundary(3.0).await;
    let before = upstream.hits.load(Ordering::SeqCst);
    let mut statuses = Vec::new();
    for i in 0..10 {
        let reply = app.get("/orders", &Auth::Header("Api-Key", key.clone())).await;
        if i == 0 {
            assert_eq!(
                reply.header("x-ratelimit-limit"),
                Some("3"),
                "proxied answers carry the RateLimit headers"
            );
            assert_eq!(reply.header("x-upstream"), Some("yes"));
        }
        statuses.push(reply.status.as_u16());
    }
    let seen = upstream.hits.load(Ordering::SeqCst) - before;
    println!("gateway: 10 requests, limit 3: statuses {statuses:?}, upstream saw {seen}");
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 3);
    assert_eq!(seen, 3, "refused requests never reach the upstream");
    let refused = app
        .get("/orders", &Auth::Header("Api-Key", "kg_bad".into()))
        .await;
    refused.assert_error(401, "invalid_api_key");
    assert_eq!(upstream.hits.load(Ordering::SeqCst) - before, 3);
}

#[actix_web::test]
async fn an_unreachable_upstream_is_502_and_a_slow_one_504() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let dead_url = format!("http://127.0.0.1:{dead}");
    let Some(app) = TestApp::on(Backend::Sqlite).upstream(&dead_url).spawn().await else {
        return;
    };
    app.get("/anything", &Auth::None)
        .await
        .assert_error(502, "upstream_unavailable");

    let upstream = start_upstream().await;
    let Some(app) = in_front_of(&upstream).upstream_timeout_ms(300).spawn().await else {
        return;
    };
    let started = Instant::now();
    app.get("/slow", &Auth::None)
        .await
        .assert_error(504, "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[actix_web::test]
async fn the_verify_api_answers_every_code_and_counts_only_when_asked() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let admin = app.admin().await;
    let verify = |body: Value, auth: Auth| {
        let app = &app;
        async move { app.post("/api/keys/verify", &auth, body).await }
    };
    let created = app
        .create_key(
            &admin,
            json!({"name": "svc", "rate_limit_per_minute": 2, "rate_limit_per_day": null}),
        )
        .await;
    let key = created["key"].as_str().expect("key").to_owned();
    crate::gate::clear_of_minute_boundary(3.0).await;

    let peek = verify(json!({"key": key, "consume": false}), admin.auth()).await;
    assert_eq!(peek.status, 200, "{}", peek.text);
    assert_eq!(peek.body["code"], "VALID");
    assert_eq!(peek.body["valid"], true);
    assert_eq!(peek.body["key_id"], created["id"]);
    assert_eq!(peek.body["owner"], crate::helpers::ADMIN_EMAIL);
    assert_eq!(peek.body["name"], "svc");
    assert_eq!(
        peek.body["limits"],
        json!({"minute": 2, "hour": 1000, "day": null})
    );
    assert_eq!(peek.body["ratelimit"]["remaining"], 2, "not counted");
    assert_eq!(peek.body["remaining"], Value::Null, "no credits: unlimited");
    assert_eq!(
        verify(json!({"key": key, "consume": false}), admin.auth())
            .await
            .body["ratelimit"]["remaining"],
        2
    );

    let first = verify(json!({"key": key}), admin.auth()).await;
    assert_eq!(
        (
            first.body["code"].as_str(),
            first.body["ratelimit"]["remaining"].as_i64()
        ),
        (Some("VALID"), Some(1)),
        "consume defaults to true"
    );
    verify(json!({"key": key, "consume": true}), admin.auth()).await;
    let limited = verify(json!({"key": key}), admin.auth()).await;
    assert_eq!(
        (limited.body["code"].as_str(), limited.body["valid"].as_bool()),
        (Some("RATE_LIMITED"), Some(false))
    );
    assert!(
        limited.body["reset"]
            .as_u64()
            .is_some_and(|s| (1..=61).contains(&s))
    );
    assert_eq!(
        verify(json!({"key": key, "consume": false}), admin.auth())
            .await
            .body["code"],
        "RATE_LIMITED"
    );

    let unknown = keygate::keys::secret::IssuedKey::generate().expose().to_owned();
    for missing in [unknown, "kg_not_a_key".into(), String::new()] {
        let reply = verify(json!({"key": missing}), admin.auth()).await;
        assert_eq!(
            (reply.body["code"].as_str(), reply.body["valid"].as_bool()),
            (Some("NOT_FOUND"), Some(false))
        );
    }
    let other = app.create_key(&admin, json!({"name": "retired"})).await;
    app.delete(&format!("/api/api-keys/{}/", other["id"]), &admin.auth())
        .await;
    assert_eq!(
        verify(json!({"key": other["key"]}), admin.auth()).await.body["code"],
        "INACTIVE"
    );
    let expiring = app.create_key(&admin, json!({"name": "expiring"})).await;
    let id = keygate::db::KeyId(expiring["id"].as_i64().expect("id"));
    keygate::db::run(&app.pool, move |conn| {
        let past = keygate::clock::Now::read().naive() - chrono::Duration::seconds(5);
        let changes = keygate::db::models::ApiKeyChanges {
            expires_at: Some(Some(past)),
            ..Default::default()
        };
        keygate::db::models::ApiKey::update(conn, id, &changes).map_err(keygate::db::DbError::Query)
    })
    .await
    .expect("expire");
    assert_eq!(
        verify(json!({"key": expiring["key"]}), admin.auth()).await.body["code"],
        "EXPIRED"
    );

    let user = app.user("svc-user@example.com").await;
    verify(json!({"key": key}), user.auth())
        .await
        .assert_error(403, "forbidden");
    verify(json!({"key": key}), Auth::None)
        .await
        .assert_error(401, "authentication_required");
    // A key may ask only when it holds keygate:verify (see contract.rs).
    verify(json!({"key": key}), Auth::Header("Api-Key", key.clone()))
        .await
        .assert_error(403, "insufficient_scope");
    verify(json!({"consume": true}), admin.auth())
        .await
        .assert_error(400, "validation_error");
    let _ = PASSWORD;
}

/// What `examples/gate_library.rs` does: another app's routes behind keygate's gate.
#[actix_web::test]
async fn the_gate_protects_another_apps_routes_as_a_library() {
    let Some(keygate) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let (_, key) = key(&keygate, json!({"rate_limit_per_minute": 2})).await;
    let database_url = keygate.db.url.clone();
    let settings = keygate::config::Settings::from_lookup(|name| match name {
        "DATABASE_URL" => Some(database_url.clone()),
        _ => None,
    })
    .expect("settings");
    let (pool, _) = keygate::startup::prepare(&settings).await.expect("prepare");
    let state = keygate::startup::gate_state(&settings, pool).await;
    async fn hello(caller: web::ReqData<keygate::gate::Caller>) -> String {
        format!("hello, {}", caller.identity.tier())
    }
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(actix_web::middleware::from_fn(keygate::gate::gate))
            .route("/hello", web::get().to(hello))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind");
    let port = server.addrs()[0].port();
    actix_web::rt::spawn(server.run());
    let client = awc::Client::default();
    crate::gate::clear_of_minute_boundary(3.0).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let mut response = client
            .get(format!("http://127.0.0.1:{port}/hello"))
            .insert_header(("Api-Key", key.as_str()))
            .send()
            .await
            .expect("answer");
        let body = response.body().await.expect("body");
        statuses.push((
            response.status().as_u16(),
            String::from_utf8_lossy(&body).into_owned(),
        ));
    }
    assert_eq!(statuses[0], (200, "hello, api_key".to_owned()));
    assert_eq!(statuses[1].0, 200);
    assert_eq!(
        statuses[2].0, 429,
        "the key's limit holds in the other app: {statuses:?}"
    );
    let response = client
        .get(format!("http://127.0.0.1:{port}/hello"))
        .insert_header(("Api-Key", "kg_wrong"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 401);
}
