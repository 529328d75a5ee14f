//! The gate over HTTP: who is calling, exact limits, headers, revocation, usage. Each test runs
//! on SQLite with in-process counters and on PostgreSQL with Redis.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::Method;
use chrono::Datelike;
use futures_util::future::join_all;
use serde_json::{Value, json};

use keygate::limits::FailureMode;

use crate::helpers::{Auth, Backend, TestApp, merged, on_both_backends, spawn_app, unique_suffix};

on_both_backends!(
    a_key_is_limited_exactly_with_literal_headers,
    unknown_expired_and_inactive_keys_get_distinct_401s,
    malformed_keys_are_refused,
    rate_limit_reports_the_windows_without_counting,
    usage_is_recorded_with_a_few_writes_not_one_per_request,
    cors_requests_can_read_the_rate_limit_headers,
    a_key_s_monthly_limit_is_kept_through_the_api_and_the_gate,
);

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Waits until at least `margin` seconds remain in the current minute, so a test's burst
/// cannot straddle a window boundary.
pub async fn clear_of_minute_boundary(margin: f64) {
    let left = 60.0 - unix_now() % 60.0;
    if left < margin {
        actix_web::rt::time::sleep(Duration::from_secs_f64(left + 0.05)).await;
    }
}

async fn key_with(app: &TestApp, limits: Value) -> (i64, Auth) {
    let owner = app
        .unlimited_user(&format!("owner{}@example.com", unique_suffix()))
        .await;
    let created = app
        .create_key(&owner, merged(json!({"name": "gated"}), limits))
        .await;
    let key = created["key"].as_str().expect("key").to_owned();
    (created["id"].as_i64().expect("id"), Auth::Header("Api-Key", key))
}

async fn a_key_is_limited_exactly_with_literal_headers(app: TestApp) {
    let (_, key) = key_with(&app, json!({"rate_limit_per_minute": 3})).await;
    clear_of_minute_boundary(5.0).await;
    for remaining in [2, 1, 0] {
        let reply = app.get("/api/whoami", &key).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(
            reply.header("ratelimit-policy"),
            Some("\"minute\";q=3;w=60, \"hour\";q=1000;w=3600, \"day\";q=10000;w=86400")
        );
        let reset = (60.0 - unix_now() % 60.0).ceil() as i64;
        let current = reply.header("ratelimit").expect("RateLimit header");
        let expected = [reset - 1, reset, reset + 1].map(|t| format!("\"minute\";r={remaining};t={t}"));
        assert!(
            expected.contains(&current.to_owned()),
            "{current} vs {expected:?}"
        );
        assert_eq!(reply.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(
            reply.header("x-ratelimit-remaining"),
            Some(remaining.to_string().as_str())
        );
        let reset_at: f64 = reply
            .header("x-ratelimit-reset")
            .and_then(|v| v.parse().ok())
            .expect("epoch");
        assert!(
            (reset_at - (unix_now() + reset as f64)).abs() <= 1.5,
            "X-RateLimit-Reset {reset_at}"
        );
        assert_eq!(reply.body["tier"], "api_key");
    }
    let reply = app.get("/api/whoami", &key).await;
    reply.assert_error(429, "rate_limit_exceeded");
    let true_wait = 60.0 - unix_now() % 60.0;
    let retry_after = reply.body["retry_after"].as_f64().expect("retry_after");
    assert!(
        (retry_after - true_wait).abs() <= 1.0,
        "retry_after {retry_after}, true wait {true_wait:.2}"
    );
    assert_eq!(
        reply.header("retry-after"),
        Some(retry_after.to_string().as_str())
    );
    assert_eq!(reply.body["limit"], 3);
    assert_eq!(reply.body["window"], "minute");
    let message = reply.body["message"].as_str().expect("message");
    assert!(message.contains("3 requests per minute"), "{message}");
    assert_eq!(reply.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(
        reply.header("ratelimit"),
        Some(format!("\"minute\";r=0;t={retry_after}").as_str())
    );
}

async fn unknown_expired_and_inactive_keys_get_distinct_401s(app: TestApp) {
    let owner = app.user("owner@example.com").await;
    // Expires at the start of the second after next: long enough to be used while valid.
    let expiry = unix_now().floor() as i64 + 2;
    let at = chrono::DateTime::from_timestamp(expiry, 0)
        .expect("time")
        .to_rfc3339();
    let created = app
        .create_key(&owner, json!({"name": "short-lived", "expires_at": at}))
        .await;
    let key = Auth::Header("Api-Key", created["key"].as_str().expect("key").to_owned());
    assert_eq!(
        app.get("/api/whoami", &key).await.status,
        200,
        "valid and now cached"
    );
    let wait = expiry as f64 - unix_now();
    actix_web::rt::time::sleep(Duration::from_secs_f64(wait.max(0.0) + 0.02)).await;
    app.get("/api/whoami", &key)
        .await
        .assert_error(401, "api_key_expired");

    let (id, key) = key_with(&app, json!({})).await;
    assert_eq!(app.get("/api/whoami", &key).await.status, 200);
    app.delete(&format!("/api/api-keys/{id}/"), &owner_admin(&app).await)
        .await;
    app.get("/api/whoami", &key)
        .await
        .assert_error(401, "api_key_inactive");

    let unknown = keygate::keys::secret::IssuedKey::generate().expose().to_owned();
    app.get("/api/whoami", &Auth::Header("Api-Key", unknown))
        .await
        .assert_error(401, "invalid_api_key");
}

async fn owner_admin(app: &TestApp) -> Auth {
    app.admin().await.auth()
}

async fn malformed_keys_are_refused(app: TestApp) {
    let (_, Auth::Header(_, good)) = key_with(&app, json!({})).await else {
        unreachable!()
    };
    let mut wrong_checksum = good.clone().into_bytes();
    wrong_checksum[10] = if wrong_checksum[10] == b'A' { b'B' } else { b'A' };
    let cases: Vec<(&str, Auth)> = vec![
        (
            "bad checksum",
            Auth::Header("Api-Key", String::from_utf8(wrong_checksum).expect("ascii")),
        ),
        (
            "300 bytes",
            Auth::Header("Api-Key", format!("kg_{}", "a".repeat(297))),
        ),
        ("empty", Auth::Header("Api-Key", String::new())),
        ("not a key", Auth::Header("Api-Key", "hunter2".into())),
        (
            "Authorization scheme",
            Auth::Header("Authorization", "Api-Key kg_nope".into()),
        ),
    ];
    for (what, auth) in cases {
        let reply = app.get("/api/whoami", &auth).await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.text);
        assert_eq!(reply.body["error"], "invalid_api_key", "{what}");
    }
    // Non-ASCII bytes and two keys at once, sent raw.
    let client = awc::Client::default();
    let mut reply = client
        .get(format!("{}/api/whoami", app.address))
        .insert_header((
            "Api-Key",
            actix_web::http::header::HeaderValue::from_bytes(b"kg_\xc3\xa9\xff").expect("obs-text"),
        ))
        .send()
        .await
        .expect("answer");
    assert_eq!(reply.status(), 401);
    let body: Value = serde_json::from_slice(&reply.body().await.expect("body")).expect("json");
    assert_eq!(body["error"], "invalid_api_key");
    let mut reply = client
        .get(format!("{}/api/whoami", app.address))
        .append_header(("Api-Key", good.as_str()))
        .append_header(("Api-Key", good.as_str()))
        .send()
        .await
        .expect("answer");
    assert_eq!(reply.status(), 401, "two keys are refused, not guessed between");
    let body: Value = serde_json::from_slice(&reply.body().await.expect("body")).expect("json");
    assert_eq!(body["error"], "invalid_api_key");
}

async fn rate_limit_reports_the_windows_without_counting(app: TestApp) {
    let (_, key) = key_with(
        &app,
        json!({"rate_limit_per_minute": 2, "rate_limit_per_day": null}),
    )
    .await;
    clear_of_minute_boundary(3.0).await;
    for _ in 0..5 {
        let reply = app.get("/api/rate-limit", &key).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["tier"], "api_key");
        assert_eq!(reply.body["windows"]["minute"]["limit"], 2);
        assert_eq!(reply.body["windows"]["minute"]["remaining"], 2, "not counted");
        assert_eq!(reply.body["windows"]["day"]["limit"], Value::Null);
    }
    app.get("/api/whoami", &key).await;
    let reply = app.get("/api/rate-limit", &key).await;
    assert_eq!(reply.body["windows"]["minute"]["remaining"], 1);
    assert_eq!(reply.body["windows"]["hour"]["remaining"], 999);
}

async fn usage_is_recorded_with_a_few_writes_not_one_per_request(app: TestApp) {
    let (id, key) = key_with(
        &app,
        json!({"rate_limit_per_minute": null, "rate_limit_per_hour": null, "rate_limit_per_day": null}),
    )
    .await;
    let statements_before = app.state.usage.statements();
    let started = Instant::now();
    let requests = 5_000;
    let workers = (0..10).map(|_| {
        let key = key.clone();
        let app = &app;
        async move {
            let mut ok = 0;
            for _ in 0..requests / 10 {
                ok += usize::from(app.get("/api/whoami", &key).await.status == 200);
            }
            ok
        }
    });
    let ok: usize = join_all(workers).await.into_iter().sum();
    let elapsed = started.elapsed();
    assert_eq!(ok, requests);
    // Wait for the next batch (USAGE_FLUSH_MS defaults to 2 s).
    actix_web::rt::time::sleep(Duration::from_millis(2_300)).await;
    let statements = app.state.usage.statements() - statements_before;
    let flushes_possible = elapsed.as_secs_f64() / 2.0 + 2.0;
    println!("{requests} requests in {elapsed:.2?} were written with {statements} statements");
    assert!(statements >= 2, "usage was written");
    assert!(
        (statements as f64) <= 3.0 * flushes_possible,
        "{statements} statements for {requests} requests"
    );

    let owner = app.admin().await;
    let stats = app
        .get(&format!("/api/api-keys/{id}/stats/"), &owner.auth())
        .await
        .body;
    assert_eq!(stats["totals"]["allowed"], requests as i64, "{stats}");
    assert_eq!(stats["totals"]["rejected"], 0);
    assert!(stats["last_used_at"].is_string(), "{stats}");
    assert_eq!(stats["history"][23]["allowed"], requests as i64);
    assert_eq!(
        stats["current"]["minute"]["used"].as_u64().map(|u| u >= 1),
        Some(true),
        "{stats}"
    );
}

async fn cors_requests_can_read_the_rate_limit_headers(app: TestApp) {
    let (_, Auth::Header(_, key)) = key_with(&app, json!({})).await else {
        unreachable!()
    };
    let client = awc::Client::default();
    let response = client
        .get(format!("{}/api/whoami", app.address))
        .insert_header(("Origin", "https://app.example.com"))
        .insert_header(("Api-Key", key.as_str()))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let exposed = response
        .headers()
        .get("access-control-expose-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for name in [
        "RateLimit",
        "RateLimit-Policy",
        "X-RateLimit-Remaining",
        "Retry-After",
    ] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
    let preflight = client
        .request(Method::OPTIONS, format!("{}/api/whoami", app.address))
        .insert_header(("Origin", "https://app.example.com"))
        .insert_header(("Access-Control-Request-Method", "GET"))
        .insert_header(("Access-Control-Request-Headers", "Api-Key"))
        .send()
        .await
        .expect("answer");
    assert_eq!(preflight.status(), 204);
    let allowed = preflight
        .headers()
        .get("access-control-allow-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(allowed.contains("Api-Key"), "{allowed}");
}

#[actix_web::test]
async fn anonymous_callers_are_limited_per_ip_with_the_configured_message() {
    let app = TestApp::on(Backend::Sqlite)
        .anon_rate_limit("2/minute")
        .anon_limit_message("Sign up to get more requests");
    let Some(app) = app.spawn().await else {
        return;
    };
    clear_of_minute_boundary(3.0).await;
    for _ in 0..2 {
        let reply = app.get("/api/whoami", &Auth::None).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["tier"], "anonymous");
        assert_eq!(reply.body["client_ip"], "127.0.0.1");
    }
    let reply = app.get("/api/whoami", &Auth::None).await;
    reply.assert_error(429, "rate_limit_exceeded");
    assert_eq!(reply.body["message"], "Sign up to get more requests");
    assert_eq!(
        app.get("/healthz", &Auth::None).await.status,
        200,
        "health is never limited"
    );
}

#[actix_web::test]
async fn bearer_users_have_their_own_tier() {
    let Some(app) = TestApp::on(Backend::Sqlite)
        .user_rate_limit("2/minute")
        .spawn()
        .await
    else {
        return;
    };
    let ada = app.user("ada@example.com").await;
    clear_of_minute_boundary(3.0).await;
    for _ in 0..2 {
        let reply = app.get("/api/whoami", &ada.auth()).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["tier"], "user");
        assert_eq!(reply.body["user"]["email"], "ada@example.com");
    }
    app.get("/api/whoami", &ada.auth())
        .await
        .assert_error(429, "rate_limit_exceeded");
    let bob = app.user("bob@example.com").await;
    assert_eq!(
        app.get("/api/whoami", &bob.auth()).await.status,
        200,
        "users are limited separately"
    );
    assert_eq!(
        app.get("/api/whoami", &Auth::None).await.body["tier"],
        "anonymous"
    );
}

/// Ten anonymous requests, each with another `X-Forwarded-For` from `chain`; returns how many
/// passed a 3/minute limit, checking the client address each one was counted under.
async fn rotating_forwarded_for(
    hops: u32,
    chain: impl Fn(usize) -> String,
    client_ip: &str,
) -> Option<(TestApp, usize)> {
    let app = TestApp::on(Backend::Sqlite)
        .anon_rate_limit("3/minute")
        .trusted_proxy_hops(hops)
        .spawn()
        .await?;
    clear_of_minute_boundary(3.0).await;
    let mut passed = 0;
    for i in 0..10 {
        let reply = app
            .get("/api/whoami", &Auth::Header("X-Forwarded-For", chain(i)))
            .await;
        if reply.status == 200 {
            assert_eq!(reply.body["client_ip"], client_ip);
            passed += 1;
        }
    }
    Some((app, passed))
}

#[actix_web::test]
async fn without_trusted_proxies_forwarded_for_is_ignored() {
    let Some((_, passed)) = rotating_forwarded_for(0, |i| format!("198.51.100.{i}"), "127.0.0.1").await
    else {
        return;
    };
    assert_eq!(passed, 3, "rotating X-Forwarded-For never yields a fresh bucket");
}

#[actix_web::test]
async fn behind_one_proxy_only_the_rightmost_entry_counts() {
    let chain = |i| format!("10.9.8.{i}, 192.0.2.{i}, 203.0.113.7");
    let Some((app, passed)) = rotating_forwarded_for(1, chain, "203.0.113.7").await else {
        return;
    };
    assert_eq!(
        passed, 3,
        "rotating everything left of the rightmost entry never yields a fresh bucket"
    );
    let other = Auth::Header("X-Forwarded-For", "203.0.113.8".into());
    assert_eq!(
        app.get("/api/whoami", &other).await.status,
        200,
        "another client has its own bucket"
    );
}

#[actix_web::test]
async fn two_instances_sharing_redis_allow_exactly_n() {
    let Some(a) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let b = a.another_instance().await;
    let (_, key) = key_with(&a, json!({"rate_limit_per_minute": 20})).await;
    clear_of_minute_boundary(10.0).await;
    let requests = (0..100).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        let key = key.clone();
        async move { app.get("/api/whoami", &key).await.status.as_u16() }
    });
    let statuses = join_all(requests).await;
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    println!("two instances, limit 20, 100 racing requests: {ok} × 200, {limited} × 429");
    assert_eq!((ok, limited), (20, 80));
}

#[actix_web::test]
async fn a_key_deactivated_on_one_instance_is_refused_by_another_within_a_second() {
    let Some(a) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let b = a.another_instance().await;
    let (id, key) = key_with(&a, json!({})).await;
    assert_eq!(
        b.get("/api/whoami", &key).await.status,
        200,
        "b has the key cached"
    );
    let admin = a.admin().await;
    let deactivated_at = Instant::now();
    assert_eq!(
        a.delete(&format!("/api/api-keys/{id}/"), &admin.auth())
            .await
            .status,
        204
    );
    loop {
        let reply = b.get("/api/whoami", &key).await;
        if reply.status == 401 {
            assert_eq!(reply.body["error"], "api_key_inactive");
            break;
        }
        assert!(
            deactivated_at.elapsed() < Duration::from_secs(1),
            "instance b still accepts the key"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "instance b refused the key {:?} after deactivation on a",
        deactivated_at.elapsed()
    );
}

#[actix_web::test]
async fn malformed_keys_are_refused_without_touching_the_database_or_redis() {
    // Redis on a port where nothing listens, in closed mode: any Redis call would answer 503.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let dead_redis = format!("redis://127.0.0.1:{dead}");
    let app = TestApp::on(Backend::Postgres)
        .redis(&dead_redis, &format!("dead-{}", crate::helpers::unique_suffix()))
        .failure_mode(FailureMode::Closed);
    let Some(app) = app.spawn().await else {
        return;
    };
    // And no database: any lookup would answer 503 too.
    app.drop_database();

    let good = keygate::keys::secret::IssuedKey::generate().expose().to_owned();
    let mut bad_checksum = good.clone().into_bytes();
    bad_checksum[5] = if bad_checksum[5] == b'x' { b'y' } else { b'x' };
    for raw in [
        String::from_utf8(bad_checksum).expect("ascii"),
        "k".repeat(300),
        String::new(),
        "kg_short".into(),
    ] {
        let reply = app.get("/api/whoami", &Auth::Header("Api-Key", raw)).await;
        reply.assert_error(401, "invalid_api_key");
    }
    // The control: a well-formed key does need the database, which is gone.
    app.get("/api/whoami", &Auth::Header("Api-Key", good))
        .await
        .assert_error(503, "database_unavailable");
}

#[actix_web::test]
async fn cached_keys_and_cached_unknown_keys_need_no_database() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let (_, known) = key_with(&app, json!({})).await;
    assert_eq!(app.get("/api/whoami", &known).await.status, 200);
    let unknown = crate::helpers::unknown_key();
    app.get("/api/whoami", &unknown)
        .await
        .assert_error(401, "invalid_api_key");

    app.drop_database();

    assert_eq!(
        app.get("/api/whoami", &known).await.status,
        200,
        "a cached key works without the database"
    );
    app.get("/api/whoami", &unknown)
        .await
        .assert_error(401, "invalid_api_key");
    let fresh = crate::helpers::unknown_key();
    app.get("/api/whoami", &fresh)
        .await
        .assert_error(503, "database_unavailable");
}

#[actix_web::test]
async fn session_cookies_are_secure_only_when_the_trusted_proxy_says_https() {
    let Some(app) = TestApp::on(Backend::Sqlite).trusted_proxy_hops(1).spawn().await else {
        return;
    };
    let client = awc::Client::default();
    for (proto, secure) in [("https", true), ("http", false)] {
        let response = client
            .get(format!("{}/admin/login", app.address))
            .insert_header(("X-Forwarded-Proto", proto))
            .send()
            .await
            .expect("answer");
        let cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .expect("a session cookie")
            .to_owned();
        assert!(cookie.starts_with("keygate_session="), "{cookie}");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
        assert_eq!(cookie.contains("; Secure"), secure, "{proto}: {cookie}");
    }
}

/// `rate_limit_per_month` on create, get and PATCH; the gate refuses the fourth request of a
/// 3/month key with the month as the window, and `Retry-After` counts to the 1st (UTC).
async fn a_key_s_monthly_limit_is_kept_through_the_api_and_the_gate(app: TestApp) {
    let (id, key) = key_with(&app, json!({"rate_limit_per_month": 3})).await;
    let admin = app.admin().await;
    let shown = app.get(&format!("/api/api-keys/{id}/"), &admin.auth()).await;
    assert_eq!(shown.body["rate_limit_per_month"], 3, "{}", shown.text);
    for _ in 0..3 {
        assert_eq!(app.get("/api/whoami", &key).await.status, 200);
    }
    let refused = app.get("/api/whoami", &key).await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert!(
        refused
            .header("ratelimit-policy")
            .is_some_and(|p| p.contains("\"month\";q=3;w=2592000")),
        "{:?}",
        refused.header("ratelimit-policy")
    );
    let now = chrono::Utc::now();
    let next_month =
        chrono::NaiveDate::from_ymd_opt(now.year() + i32::from(now.month() == 12), now.month() % 12 + 1, 1)
            .expect("the 1st")
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc();
    let until = (next_month - now).num_seconds();
    let retry: i64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(
        (until - 2..=until + 2).contains(&retry),
        "Retry-After {retry}, the month ends in {until} s"
    );
    let cleared = app
        .patch(
            &format!("/api/api-keys/{id}/"),
            &admin.auth(),
            json!({"rate_limit_per_month": null}),
        )
        .await;
    assert_eq!(cleared.status, 200, "{}", cleared.text);
    assert!(cleared.body["rate_limit_per_month"].is_null());
    assert_eq!(
        app.get("/api/whoami", &key).await.status,
        200,
        "no monthly limit any more"
    );
}
