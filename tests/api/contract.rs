//! Keys that carry a contract: metadata, scopes, IP allowlists, rotation ("roll"), import and
//! verify v2 — over HTTP, on both databases and both counter stores, and in gateway mode
//! against a real upstream that counts what reaches it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::gateway::{in_front_of, start_upstream};
use crate::helpers::{Auth, Backend, Persona, TestApp, on_both_backends};

on_both_backends!(
    metadata_scopes_and_allowlists_round_trip,
    bad_contracts_are_refused_field_by_field,
    owners_may_drop_scopes_but_never_add_them,
    an_allowlist_refuses_other_addresses_before_counting,
    a_rolled_key_keeps_its_counters_and_its_old_secret_ends_after_the_grace,
    imports_are_idempotent_and_name_bad_lines,
    verify_checks_scopes_cost_and_address_for_admins_and_service_keys,
);

fn api_key(created: &Value) -> Auth {
    Auth::Header("Api-Key", created["key"].as_str().expect("a key").to_owned())
}

fn id(created: &Value) -> i64 {
    created["id"].as_i64().expect("an id")
}

/// The requests counted in the key's current minute (read without counting).
async fn used_this_minute(app: &TestApp, owner: &Persona, id: i64) -> i64 {
    let stats = app.get(&format!("/api/api-keys/{id}/stats"), &owner.auth()).await;
    assert_eq!(stats.status, 200, "{}", stats.text);
    stats.body["current"]["minute"]["used"].as_i64().expect("used")
}

async fn metadata_scopes_and_allowlists_round_trip(app: TestApp) {
    let admin = app.admin().await;
    let created = app
        .create_key(
            &admin,
            json!({
                "name": "contract",
                "meta": {"plan": "pro", "customer": {"id": 42}},
                "scopes": ["orders:read", "reports:*", "orders:read"],
                "ip_allowlist": ["127.0.0.1", "10.0.0.1/8", "2001:db8::/32"],
            }),
        )
        .await;
    assert_eq!(created["meta"], json!({"plan": "pro", "customer": {"id": 42}}));
    assert_eq!(
        created["scopes"],
        json!(["orders:read", "reports:*"]),
        "repeats dropped"
    );
    assert_eq!(
        created["ip_allowlist"],
        json!(["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"]),
        "a block is kept as its network"
    );
    assert_eq!(created["previous_secret_expires_at"], Value::Null);
    let path = format!("/api/api-keys/{}", id(&created));
    let got = app.get(&path, &admin.auth()).await.body;
    for field in ["meta", "scopes", "ip_allowlist"] {
        assert_eq!(got[field], created[field], "{field}");
    }
    let listed = app.get("/api/api-keys", &admin.auth()).await.body;
    assert_eq!(listed[0]["scopes"], created["scopes"]);
    // PATCH replaces each field given, and leaves the others.
    let patched = app
        .patch(
            &path,
            &admin.auth(),
            json!({"meta": {"plan": "team"}, "ip_allowlist": []}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.body["meta"], json!({"plan": "team"}));
    assert_eq!(patched.body["ip_allowlist"], json!([]));
    assert_eq!(patched.body["scopes"], created["scopes"]);
    let cleared = app.patch(&path, &admin.auth(), json!({"meta": null})).await;
    assert_eq!(cleared.body["meta"], Value::Null);
    // The key itself says what it holds.
    let whoami = app.get("/api/whoami", &api_key(&created)).await;
    assert_eq!(whoami.body["key"]["scopes"], json!(["orders:read", "reports:*"]));
}

async fn bad_contracts_are_refused_field_by_field(app: TestApp) {
    let admin = app.admin().await;
    let big = "x".repeat(4100);
    let bodies = [
        (json!({"name": "a", "meta": [1, 2]}), "meta"),
        (json!({"name": "a", "meta": "text"}), "meta"),
        (json!({"name": "a", "meta": {"big": big}}), "meta"),
        (json!({"name": "a", "scopes": ["orders read"]}), "scopes"),
        (json!({"name": "a", "scopes": ["*"]}), "scopes"),
        (json!({"name": "a", "scopes": "orders:read"}), "scopes"),
        (
            json!({"name": "a", "scopes": (0..51).map(|i| format!("s{i}")).collect::<Vec<_>>()}),
            "scopes",
        ),
        (
            json!({"name": "a", "ip_allowlist": ["10.0.0.300"]}),
            "ip_allowlist",
        ),
        (
            json!({"name": "a", "ip_allowlist": ["not-an-ip"]}),
            "ip_allowlist",
        ),
        (json!({"name": "a", "ip_allowlist": null}), "ip_allowlist"),
        (
            json!({"name": "a", "ip_allowlist": (0..101).map(|i| format!("10.0.0.{i}")).collect::<Vec<_>>()}),
            "ip_allowlist",
        ),
    ];
    for (body, field) in bodies {
        let reply = app.post("/api/api-keys", &admin.auth(), body.clone()).await;
        reply.assert_error(400, "validation_error");
        assert!(reply.body["fields"][field].is_string(), "{body}: {}", reply.text);
    }
    let keys = app.get("/api/api-keys", &admin.auth()).await.body;
    assert_eq!(keys, json!([]), "nothing was created");
}

async fn owners_may_drop_scopes_but_never_add_them(app: TestApp) {
    let admin = app.admin().await;
    let ada = app.user("ada@example.com").await;
    let refused = app
        .post(
            "/api/api-keys",
            &ada.auth(),
            json!({"name": "mine", "scopes": ["orders:read"]}),
        )
        .await;
    refused.assert_error(403, "forbidden");
    let created = app
        .create_key(
            &admin,
            json!({"name": "granted", "owner": "ada@example.com", "scopes": ["orders:read", "orders:write"],
                   "rate_limit_per_minute": 60, "rate_limit_per_hour": 1000, "rate_limit_per_day": 10000}),
        )
        .await;
    let path = format!("/api/api-keys/{}", id(&created));
    for added in [json!(["orders:read", "admin:all"]), json!(["orders:*"])] {
        let reply = app.patch(&path, &ada.auth(), json!({"scopes": added})).await;
        reply.assert_error(403, "forbidden");
    }
    let dropped = app
        .patch(&path, &ada.auth(), json!({"scopes": ["orders:read"]}))
        .await;
    assert_eq!(dropped.status, 200, "{}", dropped.text);
    assert_eq!(dropped.body["scopes"], json!(["orders:read"]));
    // The allowlist is the owner's to set; metadata is an admin's (the upstream may trust it).
    let own = app
        .patch(&path, &ada.auth(), json!({"ip_allowlist": ["127.0.0.1"]}))
        .await;
    assert_eq!(own.status, 200, "{}", own.text);
    app.patch(&path, &ada.auth(), json!({"meta": {"plan": "enterprise"}}))
        .await
        .assert_error(403, "forbidden");
    app.post(
        "/api/api-keys",
        &ada.auth(),
        json!({"name": "m", "meta": {"plan": "enterprise"}}),
    )
    .await
    .assert_error(403, "forbidden");
}

async fn an_allowlist_refuses_other_addresses_before_counting(app: TestApp) {
    let admin = app.admin().await;
    let elsewhere = app
        .create_key(
            &admin,
            json!({"name": "elsewhere", "ip_allowlist": ["203.0.113.7", "2001:db8::/32"]}),
        )
        .await;
    for _ in 0..3 {
        let reply = app.get("/api/whoami", &api_key(&elsewhere)).await;
        reply.assert_error(403, "ip_not_allowed");
        assert!(
            reply.header("x-ratelimit-remaining").is_none(),
            "nothing counted, nothing to report"
        );
    }
    assert_eq!(
        used_this_minute(&app, &admin, id(&elsewhere)).await,
        0,
        "refused before counting"
    );
    let here = app
        .create_key(&admin, json!({"name": "here", "ip_allowlist": ["127.0.0.0/8"]}))
        .await;
    assert_eq!(app.get("/api/whoami", &api_key(&here)).await.status, 200);
    assert_eq!(used_this_minute(&app, &admin, id(&here)).await, 1);
}

async fn a_rolled_key_keeps_its_counters_and_its_old_secret_ends_after_the_grace(app: TestApp) {
    let admin = app.admin().await;
    let created = app
        .create_key(
            &admin,
            json!({"name": "rolling", "rate_limit_per_minute": 1000, "meta": {"a": 1}, "scopes": ["x:y"]}),
        )
        .await;
    let old = api_key(&created);
    assert_eq!(app.get("/api/whoami", &old).await.status, 200);
    let path = format!("/api/api-keys/{}/roll", id(&created));
    let bad = app
        .post(&path, &admin.auth(), json!({"grace_seconds": 700_000}))
        .await;
    bad.assert_error(400, "validation_error");
    let rolled = app.post(&path, &admin.auth(), json!({"grace_seconds": 2})).await;
    assert_eq!(rolled.status, 201, "{}", rolled.text);
    assert_eq!(rolled.header("cache-control"), Some("no-store"));
    let new = api_key(&rolled.body);
    assert_ne!(rolled.body["key"], created["key"]);
    for field in ["id", "name", "meta", "scopes", "rate_limit_per_minute", "owner"] {
        assert_eq!(rolled.body[field], created[field], "{field} is inherited");
    }
    assert!(rolled.body["previous_secret_expires_at"].is_string());
    // Both secrets work during the grace period, and count against the same windows.
    assert_eq!(app.get("/api/whoami", &old).await.status, 200);
    assert_eq!(app.get("/api/whoami", &new).await.status, 200);
    assert_eq!(
        used_this_minute(&app, &admin, id(&created)).await,
        3,
        "one key, one count"
    );
    actix_web::rt::time::sleep(Duration::from_millis(2100)).await;
    app.get("/api/whoami", &old)
        .await
        .assert_error(401, "api_key_expired");
    assert_eq!(app.get("/api/whoami", &new).await.status, 200);
    // A roll without grace stops the old secret at once: keygate no longer knows it.
    let again = app.post(&path, &admin.auth(), json!({})).await;
    assert_eq!(again.status, 201);
    app.get("/api/whoami", &new)
        .await
        .assert_error(401, "invalid_api_key");
    assert_eq!(app.get("/api/whoami", &api_key(&again.body)).await.status, 200);
    // Another user's key cannot be rolled (nor found).
    let eve = app.user("eve@example.com").await;
    app.post(&path, &eve.auth(), json!({}))
        .await
        .assert_error(404, "not_found");
}

async fn imports_are_idempotent_and_name_bad_lines(app: TestApp) {
    let admin = app.admin().await;
    app.user("ada@example.com").await;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"legacy-hashed-key-1"));
    let file = json!([
        {"key": "Abc123.legacy-plaintext-key", "owner": "ada@example.com", "name": "plain",
         "rate_limit_per_minute": 5, "created_at": "2024-01-02T03:04:05Z", "last_used_at": "2025-06-01T00:00:00Z",
         "scopes": ["orders:read"], "meta": {"from": "django"}},
        {"key_sha256": sha.to_uppercase(), "owner": "ADA@example.com", "name": "hashed", "is_active": true},
        {"key": "x", "owner": "nobody@example.com", "name": "orphan"},
        {"owner": "ada@example.com", "name": "no key"},
        {"key": "old-system-inactive", "owner": "ada@example.com", "name": "inactive", "is_active": false},
        "not an object",
        {"key": "y1", "owner": "ada@example.com", "name": "bad limit", "rate_limit_per_minute": 0},
        {"key": "kg_cut_short", "owner": "ada@example.com", "name": "not keygate's"},
    ]);
    let first = app
        .post("/api/api-keys/import", &admin.auth(), file.clone())
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.body["imported"], 3);
    assert_eq!(first.body["unchanged"], 0);
    let lines: Vec<i64> = first.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["line"].as_i64().expect("line"))
        .collect();
    assert_eq!(lines, [3, 4, 6, 7, 8], "{}", first.text);
    // Plaintext and hash alike pass the gate; the inactive one is known, and inactive.
    let plain = Auth::Header("Api-Key", "Abc123.legacy-plaintext-key".into());
    let whoami = app.get("/api/whoami", &plain).await;
    assert_eq!(whoami.status, 200, "{}", whoami.text);
    assert_eq!(
        whoami.body["key"]["prefix"], "Abc123",
        "the plaintext's start, up to its dot"
    );
    assert_eq!(whoami.body["key"]["scopes"], json!(["orders:read"]));
    let hashed = Auth::Header("Api-Key", "legacy-hashed-key-1".into());
    assert_eq!(app.get("/api/whoami", &hashed).await.status, 200);
    let inactive = Auth::Header("Api-Key", "old-system-inactive".into());
    app.get("/api/whoami", &inactive)
        .await
        .assert_error(401, "api_key_inactive");
    // Again: nothing changes.
    let second = app.post("/api/api-keys/import", &admin.auth(), file).await;
    assert_eq!(
        (second.body["imported"].clone(), second.body["unchanged"].clone()),
        (json!(0), json!(3))
    );
    let keys = app.get("/api/api-keys", &admin.auth()).await.body;
    assert_eq!(keys.as_array().expect("keys").len(), 3);
    let imported = keys
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["name"] == "plain")
        .expect("plain");
    assert_eq!(imported["created_at"], "2024-01-02T03:04:05Z");
    assert_eq!(imported["meta"], json!({"from": "django"}));
    // JSON lines, and admins only.
    let ndjson = "{\"key\":\"line-key-1\",\"owner\":\"ada@example.com\",\"name\":\"l1\"}\n\n{oops\n";
    let reply = app
        .request(
            actix_web::http::Method::POST,
            "/api/api-keys/import",
            &admin.auth(),
            Some(ndjson.as_bytes().to_vec()),
        )
        .await;
    // Sent as application/json: a body that is not one JSON array is refused whole.
    reply.assert_error(400, "invalid_json");
    let ada = app.login("ada@example.com", crate::helpers::PASSWORD).await;
    let token = ada.body["access_token"].as_str().expect("token").to_owned();
    app.post("/api/api-keys/import", &Auth::Bearer(token), json!([]))
        .await
        .assert_error(403, "forbidden");
}

async fn verify_checks_scopes_cost_and_address_for_admins_and_service_keys(app: TestApp) {
    let admin = app.admin().await;
    let target = app
        .create_key(
            &admin,
            json!({"name": "target", "rate_limit_per_minute": 10, "scopes": ["orders:read", "reports:*"],
                   "ip_allowlist": ["198.51.100.0/24"], "meta": {"tier": "gold"}}),
        )
        .await;
    let key = target["key"].clone();
    let cases = [
        (
            json!({"key": key, "scopes": ["orders:read", "reports:daily"], "cost": 3, "ip": "198.51.100.9"}),
            "VALID",
        ),
        (
            json!({"key": key, "scopes": ["orders:write"]}),
            "INSUFFICIENT_SCOPES",
        ),
        (json!({"key": key, "ip": "203.0.113.1"}), "IP_NOT_ALLOWED"),
        (json!({"key": "kg_unknown", "cost": 0}), "NOT_FOUND"),
    ];
    for (body, code) in cases {
        let reply = app.post("/api/keys/verify", &admin.auth(), body.clone()).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["code"], code, "{body}: {}", reply.text);
    }
    let valid = app
        .post("/api/keys/verify", &admin.auth(), json!({"key": key, "cost": 0}))
        .await
        .body;
    assert_eq!(valid["meta"], json!({"tier": "gold"}));
    assert_eq!(valid["scopes"], json!(["orders:read", "reports:*"]));
    assert_eq!(
        valid["ratelimit"]["remaining"], 7,
        "the VALID answer above cost 3; cost 0 counts nothing"
    );
    let missing = app
        .post(
            "/api/keys/verify",
            &admin.auth(),
            json!({"key": key, "scopes": ["orders:write", "orders:read"]}),
        )
        .await
        .body;
    assert_eq!(missing["missing_scopes"], json!(["orders:write"]));
    // Cost 7 fits exactly; one more does not.
    let full = app
        .post("/api/keys/verify", &admin.auth(), json!({"key": key, "cost": 7}))
        .await
        .body;
    assert_eq!(full["code"], "VALID");
    let over = app
        .post("/api/keys/verify", &admin.auth(), json!({"key": key}))
        .await
        .body;
    assert_eq!(over["code"], "RATE_LIMITED");

    // A service with a keygate:verify key may ask; a key without it may not.
    let service = app
        .create_key(&admin, json!({"name": "service", "scopes": ["keygate:verify"]}))
        .await;
    let plain = app.create_key(&admin, json!({"name": "plain"})).await;
    let as_service = app
        .post(
            "/api/keys/verify",
            &api_key(&service),
            json!({"key": plain["key"], "cost": 0}),
        )
        .await;
    assert_eq!(as_service.status, 200, "{}", as_service.text);
    assert_eq!(as_service.body["code"], "VALID");
    let refused = app
        .post(
            "/api/keys/verify",
            &api_key(&plain),
            json!({"key": service["key"]}),
        )
        .await;
    refused.assert_error(403, "insufficient_scope");
    assert_eq!(refused.body["missing_scopes"], json!(["keygate:verify"]));
    let bad = app
        .post(
            "/api/keys/verify",
            &admin.auth(),
            json!({"key": key, "scopes": ["orders:*"], "ip": "nope", "cost": -1}),
        )
        .await;
    bad.assert_error(400, "validation_error");
    for field in ["scopes", "ip", "cost"] {
        assert!(bad.body["fields"][field].is_string(), "{field}: {}", bad.text);
    }
}

/// Route rules: a key without the scope a route needs is refused with 403 before anything is
/// counted and before the upstream hears of it; a route's cost is spent from every window.
#[actix_web::test]
async fn route_rules_refuse_missing_scopes_before_counting_and_the_upstream() {
    let upstream = start_upstream().await;
    let rules = "GET /orders/** orders:read; POST /orders orders:write cost=5; * /public/** - cost=0";
    let Some(app) = in_front_of(&upstream)
        .upstream_routes(rules)
        .upstream_forward_meta()
        .spawn()
        .await
    else {
        return;
    };
    let admin = app.admin().await;
    let reader = app
        .create_key(
            &admin,
            json!({"name": "reader", "scopes": ["orders:read"], "rate_limit_per_minute": 12, "meta": {"plan": "pro"}}),
        )
        .await;
    let read = app.get("/orders/7", &api_key(&reader)).await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.body["headers"]["x-keygate-scopes"], "orders:read");
    assert_eq!(read.body["headers"]["x-keygate-meta"], "{\"plan\":\"pro\"}");
    let before = upstream.hits.load(Ordering::SeqCst);
    for _ in 0..3 {
        let write = app.post("/orders", &api_key(&reader), json!({"item": 1})).await;
        write.assert_error(403, "insufficient_scope");
        assert_eq!(write.body["missing_scopes"], json!(["orders:write"]));
    }
    app.get("/orders", &Auth::None)
        .await
        .assert_error(401, "authentication_required");
    // No other spelling of a ruled path gets past its rule, nor a method-override header.
    for path in [
        "/%6Frders/7",
        "/ORDERS/7",
        "/orders;jsessionid=x/7",
        "//orders//7",
    ] {
        app.get(path, &Auth::None)
            .await
            .assert_error(401, "authentication_required");
    }
    app.post("/%6Frders", &api_key(&reader), json!({}))
        .await
        .assert_error(403, "insufficient_scope");
    let reader_key = reader["key"].as_str().expect("key");
    for override_header in ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"] {
        let (status, text) = crate::helpers::raw_request(
            &app,
            "GET",
            "/orders",
            &[("Api-Key", reader_key), (override_header, "POST")],
        )
        .await;
        assert_eq!(status, 403, "{override_header}: {text}");
        assert!(text.contains("orders:write"), "{text}");
    }
    assert_eq!(
        upstream.hits.load(Ordering::SeqCst),
        before,
        "the upstream heard of none"
    );
    assert_eq!(
        used_this_minute(&app, &admin, id(&reader)).await,
        1,
        "refusals counted nothing"
    );
    // cost=0 routes pass without counting; cost=5 spends five from a 12/minute window.
    assert_eq!(app.get("/public/x", &api_key(&reader)).await.status, 200);
    assert_eq!(used_this_minute(&app, &admin, id(&reader)).await, 1);
    let writer = app
        .create_key(
            &admin,
            json!({"name": "writer", "scopes": ["orders:*"], "rate_limit_per_minute": 12}),
        )
        .await;
    let statuses = [
        app.post("/orders", &api_key(&writer), json!({}))
            .await
            .status
            .as_u16(),
        app.post("/orders", &api_key(&writer), json!({}))
            .await
            .status
            .as_u16(),
        app.post("/orders", &api_key(&writer), json!({}))
            .await
            .status
            .as_u16(),
    ];
    assert_eq!(statuses, [200, 200, 429], "5 + 5 fit in 12, a third 5 does not");
    assert_eq!(used_this_minute(&app, &admin, id(&writer)).await, 10);
}

/// The allowlist applies to the client address as the trusted-proxy rules resolve it.
#[actix_web::test]
async fn an_allowlist_follows_the_trusted_client_address() {
    let Some(app) = TestApp::on(Backend::Sqlite).trusted_proxy_hops(1).spawn().await else {
        return;
    };
    let admin = app.admin().await;
    let created = app
        .create_key(
            &admin,
            json!({"name": "office", "ip_allowlist": ["203.0.113.0/24"]}),
        )
        .await;
    let key = created["key"].as_str().expect("key");
    let from = |ip: &str| {
        let ip = ip.to_owned();
        let key = key.to_owned();
        let app = &app;
        async move {
            let client = awc::Client::default();
            client
                .get(format!("{}/api/whoami", app.address))
                .insert_header(("Api-Key", key))
                .insert_header(("X-Forwarded-For", ip))
                .send()
                .await
                .expect("answer")
                .status()
                .as_u16()
        }
    };
    assert_eq!(from("203.0.113.50").await, 200);
    assert_eq!(from("198.51.100.1").await, 403);
    // A client's own addition on the left does not help: only the proxy's entry counts.
    assert_eq!(from("203.0.113.50, 198.51.100.1").await, 403);
}

/// Rotation across instances: with a 2 s grace the old secret works on both before and fails
/// on both after; and old and new secret racing on a 30/minute key allow exactly 30.
#[actix_web::test]
async fn a_roll_is_seen_by_every_instance_and_both_secrets_share_one_limit() {
    let Some(a) = TestApp::on(Backend::Postgres).spawn().await else {
        return;
    };
    let b = a.another_instance().await;
    let admin = a.admin().await;
    let created = a
        .create_key(&admin, json!({"name": "shared", "rate_limit_per_minute": 30, "rate_limit_per_hour": null, "rate_limit_per_day": null}))
        .await;
    let old = api_key(&created);
    for app in [&a, &b] {
        assert_eq!(
            app.get("/api/rate-limit", &old).await.status,
            200,
            "cached on both"
        );
    }
    let rolled = a
        .post(
            &format!("/api/api-keys/{}/roll", id(&created)),
            &admin.auth(),
            json!({"grace_seconds": 2}),
        )
        .await;
    assert_eq!(rolled.status, 201);
    let new = api_key(&rolled.body);
    let started = Instant::now();
    let requests = (0..100).map(|i| {
        let (app, auth) = match i % 4 {
            0 => (&a, &old),
            1 => (&b, &old),
            2 => (&a, &new),
            _ => (&b, &new),
        };
        app.get("/api/whoami", auth)
    });
    let replies = join_all(requests).await;
    let allowed = replies.iter().filter(|r| r.status == 200).count();
    let limited = replies.iter().filter(|r| r.status == 429).count();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "all within the grace period"
    );
    assert_eq!(
        (allowed, limited),
        (30, 70),
        "one limit for the key, whichever secret"
    );
    actix_web::rt::time::sleep(Duration::from_millis(2100).saturating_sub(started.elapsed())).await;
    for app in [&a, &b] {
        app.get("/api/rate-limit", &old)
            .await
            .assert_error(401, "api_key_expired");
        assert_eq!(app.get("/api/rate-limit", &new).await.status, 200);
    }
}

/// 10,000 keys in one import, quickly, on both databases; then every one of them passes the
/// gate, and importing the same file again changes nothing.
#[actix_web::test]
async fn ten_thousand_keys_import_quickly_and_all_pass_the_gate() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(app) = TestApp::on(backend).spawn().await else {
            continue;
        };
        let admin = app.admin().await;
        app.user("owner@example.com").await;
        let keys: Vec<String> = (0..10_000)
            .map(|i| format!("legacy.{i:05}.{}", i * 7919))
            .collect();
        let lines: String = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                json!({"key": key, "owner": "owner@example.com", "name": format!("k{i}"),
                       "rate_limit_per_minute": null, "rate_limit_per_hour": null, "rate_limit_per_day": null})
                .to_string()
                    + "\n"
            })
            .collect();
        let auth = admin.auth();
        let send = || {
            app.request_with_type(
                actix_web::http::Method::POST,
                "/api/api-keys/import",
                &auth,
                lines.clone().into_bytes(),
                "application/x-ndjson",
            )
        };
        let started = Instant::now();
        let first = send().await;
        let took = started.elapsed();
        assert_eq!(first.status, 200, "{}", first.text);
        assert_eq!(first.body["imported"], 10_000, "{backend:?}");
        assert!(
            took < Duration::from_secs(10),
            "{backend:?}: import took {took:?}"
        );
        println!("{backend:?}: 10,000 keys imported in {took:?}");
        // Every key passes the gate (64 at a time).
        for chunk in keys.chunks(64) {
            let auths: Vec<Auth> = chunk
                .iter()
                .map(|key| Auth::Header("Api-Key", key.clone()))
                .collect();
            let replies = join_all(auths.iter().map(|auth| app.get("/api/rate-limit", auth))).await;
            for (key, reply) in chunk.iter().zip(replies) {
                assert_eq!(reply.status, 200, "{backend:?} {key}: {}", reply.text);
            }
        }
        let second = send().await;
        assert_eq!(
            (second.body["imported"].clone(), second.body["unchanged"].clone()),
            (json!(0), json!(10_000)),
            "{backend:?}"
        );
    }
}

/// Keys not in keygate's format (imported ones) reach the database, but a flood of random
/// strings costs at most one lookup per distinct string: unknown ones are remembered.
#[actix_web::test]
async fn a_flood_of_foreign_strings_costs_one_lookup_per_distinct_string() {
    let Some(app) = crate::helpers::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let misses = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with("keygate_key_cache_lookups_total{result=\"miss\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .expect("the miss counter")
    };
    let before = misses(&app.get("/metrics", &Auth::None).await.text);
    for _ in 0..25 {
        for text in ["random.string.one", "another-random-string"] {
            let reply = app
                .get("/api/whoami", &Auth::Header("Api-Key", text.into()))
                .await;
            reply.assert_error(401, "invalid_api_key");
        }
    }
    let after = misses(&app.get("/metrics", &Auth::None).await.text);
    assert_eq!(after - before, 2, "50 requests, 2 distinct strings, 2 lookups");
}
