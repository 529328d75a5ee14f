//! Webhooks against a real receiving server: signed deliveries that survive the receiver's
//! failures (retries), two instances delivering each event once, a keygate killed mid-delivery
//! delivering after restart, the gate's once-per-period events, and the SSRF and redirect rules.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{Auth, Backend, Process, TestApp, TestDb};

/// What the receiver got: path, headers of interest, body.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    event_id: String,
    signature: String,
    body: String,
}

/// How the receiver answers its n-th request (0-based) on a path: a status, after a delay.
type Plan = Arc<dyn Fn(usize, &str) -> (u16, Duration) + Send + Sync>;

struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(plan: Plan) -> Receiver {
        let seen = Arc::new(Mutex::new(Vec::<Received>::new()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = listener.local_addr().expect("addr").port();
        let state = (seen.clone(), plan);
        let server = HttpServer::new(move || {
            let (seen, plan) = state.clone();
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (seen, plan) = (seen.clone(), plan.clone());
                async move {
                    let header = |name: &str| {
                        req.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let n = {
                        let mut seen = seen.lock().expect("lock");
                        seen.push(Received {
                            path: req.path().to_owned(),
                            event_id: header("keygate-event-id"),
                            signature: header("keygate-signature"),
                            body: String::from_utf8_lossy(&body).into_owned(),
                        });
                        seen.iter().filter(|r| r.path == req.path()).count() - 1
                    };
                    let (status, delay) = plan(n, req.path());
                    actix_web::rt::time::sleep(delay).await;
                    let mut reply =
                        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"));
                    if (300..400).contains(&status) {
                        reply.insert_header(("Location", "/elsewhere"));
                    }
                    reply.finish()
                }
            }))
        })
        .workers(1)
        .listen(listener)
        .expect("listen")
        .run();
        actix_web::rt::spawn(server);
        Receiver {
            url: format!("http://127.0.0.1:{port}"),
            seen,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.seen.lock().expect("lock").clone()
    }

    /// Waits (up to `limit`) until `done` holds of what arrived.
    async fn wait_for(&self, limit: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let received = self.received();
            if done(&received) || started.elapsed() > limit {
                return received;
            }
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn ok() -> Plan {
    Arc::new(|_, _| (200, Duration::ZERO))
}

/// Checks `Keygate-Signature` as a receiver would (the README's recipe).
fn verify(secret: &str, signature: &str, body: &str) -> bool {
    let Some((t, v1)) = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.{body}").as_bytes());
    hex::encode(mac.finalize().into_bytes()) == v1
}

async fn register(app: &TestApp, admin: &Auth, url: &str, events: &[&str]) -> Value {
    let reply = app
        .post("/api/webhooks", admin, json!({"url": url, "events": events}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.body
}

/// One test per backend, each on an app that may reach 127.0.0.1.
macro_rules! on_both_backends_allowing_private {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(#[actix_web::test]
            async fn $test() {
                if let Some(app) = crate::helpers::TestApp::on(crate::helpers::Backend::Sqlite).webhook_allow_private().spawn().await {
                    super::$test(app).await
                }
            })+
        }
        mod postgres {
            $(#[actix_web::test]
            async fn $test() {
                if let Some(app) = crate::helpers::TestApp::on(crate::helpers::Backend::Postgres).webhook_allow_private().spawn().await {
                    super::$test(app).await
                }
            })+
        }
    };
}

on_both_backends_allowing_private!(
    an_event_arrives_signed_once_after_three_failed_deliveries,
    two_instances_deliver_each_event_once_per_endpoint,
    the_gate_announces_thresholds_and_refusals_once_per_period,
    redirects_are_not_followed_and_endpoints_are_admins_only,
    racing_claims_of_a_delivery_give_it_to_one,
    expiry_is_announced_once_and_a_delivery_can_be_sent_again,
    retention_drops_finished_deliveries_and_old_conditions,
);

/// The hourly retention job: delivered and failed deliveries go after 30 days (pending ones
/// stay until their retries end), once-per-period conditions after 40.
async fn retention_drops_finished_deliveries_and_old_conditions(app: TestApp) {
    use diesel::prelude::*;
    use keygate::db::models::{Delivery, NewDelivery, Signal};
    use keygate::db::schema::{webhook_deliveries, webhook_signals};
    let admin = app.admin().await;
    let hook = register(&app, &admin.auth(), "http://retention.invalid/", &["key.created"]).await;
    app.create_key(&admin, json!({"name": "recent"})).await;
    let now = keygate::clock::Now::read();
    let old = now.naive() - chrono::Duration::days(31);
    {
        let mut conn = app.pool.get().expect("connection");
        for (n, status) in ["delivered", "failed", "pending"].iter().enumerate() {
            Delivery::insert(
                &mut conn,
                &NewDelivery {
                    webhook_id: hook["id"].as_i64().expect("id"),
                    event_id: &format!("evt_old{n}"),
                    event_type: "key.created",
                    payload: "{}",
                    created_at: old,
                    status,
                    attempts: 1,
                    next_attempt_at: old,
                },
            )
            .expect("an old delivery");
        }
        assert!(
            Signal::first(
                &mut conn,
                "old-condition",
                now.naive() - chrono::Duration::days(41)
            )
            .expect("signal")
        );
        assert!(Signal::first(&mut conn, "new-condition", now.naive()).expect("signal"));
    }
    keygate::analytics::prune(&app.pool, None, now)
        .await
        .expect("prune");
    let mut conn = app.pool.get().expect("connection");
    let mut left: Vec<String> = webhook_deliveries::table
        .select(webhook_deliveries::event_id)
        .load(&mut conn)
        .expect("deliveries");
    left.sort();
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(left[1], "evt_old2", "the old pending one stays: {left:?}");
    let conditions: Vec<String> = webhook_signals::table
        .select(webhook_signals::dedup_key)
        .load(&mut conn)
        .expect("signals");
    assert_eq!(conditions, ["new-condition"]);
}

async fn expiry_is_announced_once_and_a_delivery_can_be_sent_again(app: TestApp) {
    let receiver = Receiver::start(ok());
    let admin = app.admin().await;
    let hook = register(
        &app,
        &admin.auth(),
        &format!("{}/expiry", receiver.url),
        &["key.expired"],
    )
    .await;
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let key = app
        .create_key(&admin, json!({"name": "short-lived", "expires_at": soon}))
        .await;
    let received = receiver
        .wait_for(Duration::from_secs(12), |r| !r.is_empty())
        .await;
    // Several sweeps later, still once.
    actix_web::rt::time::sleep(Duration::from_millis(4_500)).await;
    let received = if received.is_empty() {
        received
    } else {
        receiver.received()
    };
    assert_eq!(received.len(), 1, "{received:#?}");
    let event: Value = serde_json::from_str(&received[0].body).expect("JSON");
    assert_eq!(
        (event["type"].as_str(), &event["data"]["key_id"]),
        (Some("key.expired"), &key["id"])
    );

    // Resend from the dashboard: the same event (the same id) arrives again.
    let detail = app
        .get(&format!("/api/webhooks/{}", hook["id"]), &admin.auth())
        .await;
    let delivery = detail.body["deliveries"][0]["id"].as_i64().expect("a delivery");
    let cookie = crate::helpers::dashboard_session(&app).await;
    let path = format!("/admin/webhooks/{}/deliveries/{delivery}/resend", hook["id"]);
    let (status, _, _) = crate::helpers::dashboard_form(&app, &cookie, &path, &[]).await;
    assert_eq!(status, 303);
    let again = receiver.wait_for(Duration::from_secs(5), |r| r.len() >= 2).await;
    assert_eq!(again.len(), 2);
    assert_eq!(again[0].event_id, again[1].event_id);
    // A delivery of another endpoint is not found under this one.
    let other = register(
        &app,
        &admin.auth(),
        &format!("{}/other", receiver.url),
        &["key.created"],
    )
    .await;
    let wrong = format!("/admin/webhooks/{}/deliveries/{delivery}/resend", other["id"]);
    let (status, _, _) = crate::helpers::dashboard_form(&app, &cookie, &wrong, &[]).await;
    assert_eq!(status, 404);
}

/// An https:// endpoint goes through TLS: a receiver that speaks plain HTTP fails the
/// handshake, and the delivery says so and stays pending.
#[actix_web::test]
async fn an_https_endpoint_is_reached_over_tls() {
    let Some(app) = TestApp::on(Backend::Sqlite).webhook_allow_private().spawn().await else {
        return;
    };
    let receiver = Receiver::start(ok());
    let admin = app.admin().await;
    let url = receiver.url.replace("http://", "https://");
    let hook = register(&app, &admin.auth(), &format!("{url}/tls"), &["key.created"]).await;
    app.create_key(&admin, json!({"name": "x"})).await;
    actix_web::rt::time::sleep(Duration::from_millis(2_000)).await;
    let detail = app
        .get(&format!("/api/webhooks/{}", hook["id"]), &admin.auth())
        .await;
    let delivery = &detail.body["deliveries"][0];
    assert_eq!(delivery["status"], "pending", "{delivery}");
    // rustls's complaint about a plain-HTTP answer to its ClientHello: a handshake was tried
    // (without TLS configured the client says "SSL is not supported" instead).
    assert!(
        delivery["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("InvalidContentType")),
        "{delivery}"
    );
    assert!(
        receiver.received().iter().all(|r| r.body.is_empty()),
        "no plaintext event reached it"
    );
}

/// Eight connections claim the same due delivery at once: exactly one gets it (the claim is
/// one conditional UPDATE), and after its claim expires it can be claimed again.
async fn racing_claims_of_a_delivery_give_it_to_one(app: TestApp) {
    use keygate::db::models::Delivery;
    let admin = app.admin().await;
    register(&app, &admin.auth(), "http://claims.invalid/", &["key.created"]).await;
    app.create_key(&admin, json!({"name": "claimed"})).await;
    let now = keygate::clock::Now::read().naive() + chrono::Duration::hours(1);
    let id = {
        let mut conn = app.pool.get().expect("connection");
        Delivery::due(&mut conn, now, 10).expect("due")[0]
    };
    // Connections of their own, opened before the race (the app's pool is busy with its own).
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let claims: Vec<_> = (0..8)
        .map(|_| {
            let (url, barrier) = (app.db.url.clone(), barrier.clone());
            let conn = keygate::db::establish(&url);
            std::thread::spawn(move || {
                let mut conn = conn.expect("connection");
                barrier.wait();
                Delivery::claim(&mut conn, id, now, now + chrono::Duration::seconds(10))
                    .expect("claim")
                    .is_some()
            })
        })
        .collect();
    let won = claims
        .into_iter()
        .map(|c| c.join().expect("thread"))
        .filter(|won| *won)
        .count();
    assert_eq!(won, 1, "one claim of eight");
    let mut conn = app.pool.get().expect("connection");
    let later = now + chrono::Duration::seconds(11);
    assert!(
        Delivery::claim(&mut conn, id, later, later)
            .expect("claim")
            .is_some(),
        "an expired claim is taken over"
    );
}

async fn an_event_arrives_signed_once_after_three_failed_deliveries(app: TestApp) {
    let receiver = Receiver::start(Arc::new(|n, _| (if n < 3 { 500 } else { 204 }, Duration::ZERO)));
    let admin = app.admin().await;
    let hook = register(
        &app,
        &admin.auth(),
        &format!("{}/hook", receiver.url),
        &["key.created"],
    )
    .await;
    let secret = hook["secret"].as_str().expect("a secret").to_owned();
    assert!(secret.starts_with("whsec_"));
    let listed = app.get("/api/webhooks", &admin.auth()).await;
    assert!(!listed.text.contains(&secret), "the secret is shown once");

    let key = app.create_key(&admin, json!({"name": "announced"})).await;
    let received = receiver.wait_for(Duration::from_secs(20), |r| r.len() >= 4).await;
    assert_eq!(received.len(), 4, "three failures, then delivered: {received:#?}");
    let ids: std::collections::BTreeSet<&str> = received.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(ids.len(), 1, "every attempt carries the same event id");
    for attempt in &received {
        assert!(verify(&secret, &attempt.signature, &attempt.body), "{attempt:?}");
        assert!(!verify("whsec_other", &attempt.signature, &attempt.body));
    }
    let event: Value = serde_json::from_str(&received[3].body).expect("JSON");
    assert_eq!(event["type"], "key.created");
    assert_eq!(event["id"], received[3].event_id.as_str());
    assert_eq!(event["data"]["key_id"], key["id"]);
    assert_eq!(event["data"]["after"]["name"], "announced");
    assert!(
        !received[3].body.contains(key["key"].as_str().expect("secret")),
        "never the key"
    );
    // Delivered: nothing more arrives, and the endpoint's page says so.
    actix_web::rt::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(receiver.received().len(), 4);
    let detail = app
        .get(&format!("/api/webhooks/{}", hook["id"]), &admin.auth())
        .await;
    let delivery = &detail.body["deliveries"][0];
    assert_eq!(
        (delivery["status"].as_str(), delivery["attempts"].as_i64()),
        (Some("delivered"), Some(4))
    );
    assert_eq!(delivery["last_status"], 204);
    // The change of the webhook is audited, without its secret.
    let audit = app.get("/api/audit-log?target_type=webhook", &admin.auth()).await;
    assert_eq!(audit.body["entries"][0]["action"], "webhook.created");
    assert!(!audit.text.contains(&secret));
}

async fn two_instances_deliver_each_event_once_per_endpoint(a: TestApp) {
    let b = a.another_instance().await;
    let one = Receiver::start(ok());
    let two = Receiver::start(ok());
    let admin = a.admin().await;
    register(
        &a,
        &admin.auth(),
        &format!("{}/one", one.url),
        &["key.created", "key.deactivated"],
    )
    .await;
    register(&a, &admin.auth(), &format!("{}/two", two.url), &["key.created"]).await;
    // Each instance signs its own tokens (no SECRET_KEY in tests): an admin logged in on each.
    let admin_b = b.admin().await;
    let mut made = Vec::new();
    for n in 0..12 {
        let (app, who) = if n % 2 == 0 { (&a, &admin) } else { (&b, &admin_b) };
        let key = app.create_key(who, json!({"name": format!("k{n}")})).await;
        made.push(key["id"].as_i64().expect("id"));
    }
    for id in &made[..4] {
        let gone = b.delete(&format!("/api/api-keys/{id}/"), &admin_b.auth()).await;
        assert_eq!(gone.status, 204);
    }
    one.wait_for(Duration::from_secs(15), |r| r.len() >= 16).await;
    two.wait_for(Duration::from_secs(15), |r| r.len() >= 12).await;
    // Both instances poll the one outbox; wait a few more rounds for any duplicate.
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;
    let (first, second) = (one.received(), two.received());
    let distinct = |r: &[Received]| {
        r.iter()
            .map(|x| x.event_id.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    assert_eq!(
        (first.len(), distinct(&first)),
        (16, 16),
        "12 created + 4 deactivated, each once"
    );
    assert_eq!(
        (second.len(), distinct(&second)),
        (12, 12),
        "12 created, each once"
    );
    // One event, one id at every endpoint.
    let created_one: std::collections::BTreeSet<String> = first
        .iter()
        .filter(|r| r.body.contains("\"key.created\""))
        .map(|r| r.event_id.clone())
        .collect();
    let created_two: std::collections::BTreeSet<String> = second.iter().map(|r| r.event_id.clone()).collect();
    assert_eq!(created_one, created_two);
}

async fn the_gate_announces_thresholds_and_refusals_once_per_period(app: TestApp) {
    let receiver = Receiver::start(ok());
    let admin = app.admin().await;
    register(
        &app,
        &admin.auth(),
        &format!("{}/gate", receiver.url),
        &["quota.threshold", "rate_limit.exceeded"],
    )
    .await;
    // The gate learns that an endpoint listens within one sweep (2 s).
    actix_web::rt::time::sleep(Duration::from_millis(2_600)).await;
    let key = app
        .create_key(
            &admin,
            json!({"name": "metered", "rate_limit_per_minute": null, "rate_limit_per_hour": null,
                                   "rate_limit_per_day": 10, "remaining": 50,
                                   "refill": {"amount": 50, "interval": "month"}}),
        )
        .await;
    let auth = Auth::Header("Api-Key", key["key"].as_str().expect("key").to_owned());
    let mut statuses = Vec::new();
    for _ in 0..14 {
        statuses.push(app.get("/api/whoami", &auth).await.status.as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 10, "{statuses:?}");
    let received = receiver.wait_for(Duration::from_secs(10), |r| r.len() >= 3).await;
    actix_web::rt::time::sleep(Duration::from_millis(1_500)).await;
    let received = if received.len() >= 3 {
        receiver.received()
    } else {
        received
    };
    let mut events: Vec<(String, Value)> = received
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_str(&r.body).expect("JSON");
            (
                body["type"].as_str().expect("type").to_owned(),
                body["data"].clone(),
            )
        })
        .collect();
    events.sort_by_key(|(kind, data)| (kind.clone(), data["threshold"].as_i64()));
    let summary: Vec<(String, Option<i64>, Option<String>)> = events
        .iter()
        .map(|(kind, data)| {
            (
                kind.clone(),
                data["threshold"].as_i64(),
                data["kind"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "quota.threshold".to_owned(),
                Some(80),
                Some("day_limit".to_owned())
            ),
            (
                "quota.threshold".to_owned(),
                Some(100),
                Some("day_limit".to_owned())
            ),
            ("rate_limit.exceeded".to_owned(), None, None),
        ],
        "80 % and 100 % of the day's 10, and one refusal of the 4: {received:#?}"
    );
    assert_eq!(events[2].1["window"], "day");
    assert_eq!(events[2].1["key_id"], key["id"]);
}

async fn redirects_are_not_followed_and_endpoints_are_admins_only(app: TestApp) {
    let receiver = Receiver::start(Arc::new(|_, path| {
        (if path == "/moved" { 307 } else { 200 }, Duration::ZERO)
    }));
    let admin = app.admin().await;
    let hook = register(
        &app,
        &admin.auth(),
        &format!("{}/moved", receiver.url),
        &["key.created"],
    )
    .await;
    app.create_key(&admin, json!({"name": "x"})).await;
    receiver.wait_for(Duration::from_secs(5), |r| !r.is_empty()).await;
    actix_web::rt::time::sleep(Duration::from_millis(1_500)).await;
    let paths: Vec<String> = receiver.received().iter().map(|r| r.path.clone()).collect();
    assert!(
        !paths.is_empty() && paths.iter().all(|p| p == "/moved"),
        "never /elsewhere: {paths:?}"
    );
    let detail = app
        .get(&format!("/api/webhooks/{}", hook["id"]), &admin.auth())
        .await;
    assert_eq!(
        detail.body["deliveries"][0]["status"], "pending",
        "a redirect is not a delivery"
    );
    assert_eq!(detail.body["deliveries"][0]["last_status"], 307);

    let user = app.user("nosy@example.com").await;
    app.get("/api/webhooks", &user.auth())
        .await
        .assert_error(403, "forbidden");
    app.post(
        "/api/webhooks",
        &user.auth(),
        json!({"url": "http://example.com/", "events": ["key.created"]}),
    )
    .await
    .assert_error(403, "forbidden");
    for bad in [
        json!({"url": "ftp://example.com/", "events": ["key.created"]}),
        json!({"url": "http://example.com/", "events": ["key.eaten"]}),
        json!({"url": "http://example.com/", "events": []}),
        json!({"url": "http://example.com/"}),
        json!({"url": "http://user:pw@example.com/", "events": ["key.created"]}),
    ] {
        app.post("/api/webhooks", &admin.auth(), bad)
            .await
            .assert_error(400, "validation_error");
    }
    let patched = app
        .patch(
            &format!("/api/webhooks/{}", hook["id"]),
            &admin.auth(),
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(patched.body["enabled"], false);
    assert_eq!(
        app.delete(&format!("/api/webhooks/{}", hook["id"]), &admin.auth())
            .await
            .status,
        204
    );
    app.get(&format!("/api/webhooks/{}", hook["id"]), &admin.auth())
        .await
        .assert_error(404, "not_found");
    // Each change of the endpoint is one audit entry, never with its secret.
    let log = app
        .get(
            &format!("/api/audit-log?target_type=webhook&target_id={}", hook["id"]),
            &admin.auth(),
        )
        .await;
    let entries = log.body["entries"].as_array().expect("entries");
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    assert_eq!(actions, ["webhook.deleted", "webhook.updated", "webhook.created"]);
    assert_eq!(
        (&entries[1]["before"], &entries[1]["after"]),
        (&json!({"enabled": true}), &json!({"enabled": false}))
    );
    assert_eq!(entries[0]["after"], Value::Null);
    assert!(!log.text.contains(hook["secret"].as_str().expect("secret")));
}

/// Without WEBHOOK_ALLOW_PRIVATE, an internal destination is refused: outright when the URL
/// names an address, at send time when a name resolves to one (nothing reaches the receiver).
#[actix_web::test]
async fn internal_destinations_are_refused_unless_allowed() {
    let Some(app) = TestApp::on(Backend::Sqlite).spawn().await else {
        return;
    };
    let receiver = Receiver::start(ok());
    let admin = app.admin().await;
    for literal in [
        "http://127.0.0.1:9/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "http://10.0.0.1/",
    ] {
        let reply = app
            .post(
                "/api/webhooks",
                &admin.auth(),
                json!({"url": literal, "events": ["key.created"]}),
            )
            .await;
        reply.assert_error(400, "validation_error");
    }
    let port = receiver.url.rsplit(':').next().expect("port");
    let hook = register(
        &app,
        &admin.auth(),
        &format!("http://localhost:{port}/named"),
        &["key.created"],
    )
    .await;
    app.create_key(&admin, json!({"name": "x"})).await;
    actix_web::rt::time::sleep(Duration::from_millis(2_000)).await;
    assert!(
        receiver.received().is_empty(),
        "nothing reached a loopback receiver"
    );
    let detail = app
        .get(&format!("/api/webhooks/{}", hook["id"]), &admin.auth())
        .await;
    let delivery = &detail.body["deliveries"][0];
    assert_eq!(delivery["status"], "pending");
    assert!(
        delivery["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("loopback")),
        "{delivery}"
    );
}

/// A keygate killed with SIGKILL while a receiver holds its delivery open: the claim expires
/// and the restarted keygate delivers the event (the same id).
#[actix_web::test]
async fn a_keygate_killed_mid_delivery_delivers_after_restart() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    // The first attempt hangs (the receiver answers after 4 s, by which time keygate is dead).
    let receiver = Receiver::start(Arc::new(|n, _| {
        (
            200,
            if n == 0 {
                Duration::from_secs(4)
            } else {
                Duration::ZERO
            },
        )
    }));
    let start = || crate::helpers::serve(&db.url, &[("WEBHOOK_ALLOW_PRIVATE", "1")]);
    let (mut first, base) = start();
    let keygate = Process::logged_in(&base).await;
    let client = awc::Client::default();
    let mut made = client
        .post(format!("{base}/api/webhooks"))
        .insert_header(("Authorization", format!("Bearer {}", keygate.token)))
        .send_json(&json!({"url": format!("{}/slow", receiver.url), "events": ["key.created"]}))
        .await
        .expect("register");
    assert_eq!(made.status(), 201);
    let hook: Value = made.json().await.expect("json");
    let secret = hook["secret"].as_str().expect("secret").to_owned();
    keygate.create_key(json!({"name": "in flight"})).await;
    receiver.wait_for(Duration::from_secs(5), |r| !r.is_empty()).await;
    // Mid-delivery: the receiver has the request and has not answered.
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let (mut second, base) = start();
    Process::logged_in(&base).await;
    let received = receiver.wait_for(Duration::from_secs(25), |r| r.len() >= 2).await;
    second.kill().expect("stop");
    second.wait().expect("reaped");
    assert_eq!(
        received.len(),
        2,
        "sent again after the claim expired: {received:#?}"
    );
    assert_eq!(received[0].event_id, received[1].event_id, "the same event");
    assert!(verify(&secret, &received[1].signature, &received[1].body));
}
