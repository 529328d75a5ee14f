//! Quotas over HTTP: credits set by admins and spent by the gate and verify, plans across a
//! user's keys, the RateLimit headers of both, the checkpoint that outlives a restart of
//! keygate or of Redis, and one Redis round trip per decision.

use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Auth, Backend, Process, TestApp, on_both_backends, unique_suffix};
use crate::outage::OwnRedis;

fn key_auth(created: &Value) -> Auth {
    Auth::Header("Api-Key", created["key"].as_str().expect("a key").to_owned())
}

/// `n` requests with `key`: the statuses, in order.
async fn spend(app: &TestApp, key: &Auth, n: usize) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        statuses.push(app.get("/api/whoami", key).await.status.as_u16());
    }
    statuses
}

on_both_backends!(
    an_owner_cannot_give_their_key_credits_through_the_dashboard_form,
    a_top_up_with_an_idempotency_key_is_made_once,
    admins_set_credits_the_gate_spends_them_and_owners_cannot_touch_them,
    a_plan_limits_the_sum_of_a_users_keys,
    verify_spends_credits_and_says_usage_exceeded,
    credit_fields_refuse_hostile_values,
);

async fn admins_set_credits_the_gate_spends_them_and_owners_cannot_touch_them(app: TestApp) {
    let admin = app.admin().await;
    let owner = app.user("payer@example.com").await;
    // An owner cannot give themselves credits, or change them: refused before anything happens.
    let mine = app
        .post(
            "/api/api-keys/",
            &owner.auth(),
            json!({"name": "free", "remaining": 1_000_000}),
        )
        .await;
    mine.assert_error(403, "forbidden");
    let listed = app.get("/api/api-keys/", &owner.auth()).await;
    assert_eq!(listed.body, json!([]), "no key was made");

    let created = app
        .create_key(
            &admin,
            json!({"name": "metered", "owner": "payer@example.com", "remaining": 3,
                   "refill": {"amount": 3, "interval": "month", "day_of_month": 15}}),
        )
        .await;
    assert_eq!(created["remaining"], 3);
    assert_eq!(
        created["refill"],
        json!({"amount": 3, "interval": "month", "day_of_month": 15})
    );
    let next = created["next_refill_at"].as_str().expect("a next refill");
    assert!(next.contains("-15T00:00:00"), "{next}");
    let (id, key) = (created["id"].as_i64().expect("id"), key_auth(&created));

    let first = app.get("/api/whoami", &key).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let policy = first.header("ratelimit-policy").expect("a policy");
    assert!(policy.contains("\"credits\";q=3;w=2592000"), "{policy}");
    assert_eq!(spend(&app, &key, 2).await, [200, 200]);
    let refused = app.get("/api/whoami", &key).await;
    refused.assert_error(429, "quota_exhausted");
    let wait: u64 = refused
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=31 * 86_400).contains(&wait), "until the 15th: {wait}");
    assert_eq!(refused.body["retry_after"], wait);
    assert_eq!(refused.body["remaining"], 0);
    assert!(
        refused
            .header("ratelimit")
            .expect("RateLimit")
            .starts_with("\"credits\";r=0")
    );
    // Reading the windows costs nothing, and is not refused.
    assert_eq!(app.get("/api/rate-limit", &key).await.status, 200);

    for attempt in [
        app.patch(
            &format!("/api/api-keys/{id}/"),
            &owner.auth(),
            json!({"remaining": 500}),
        )
        .await,
        app.patch(
            &format!("/api/api-keys/{id}/"),
            &owner.auth(),
            json!({"name": "x", "refill": null}),
        )
        .await,
        app.post(
            &format!("/api/api-keys/{id}/credits/"),
            &owner.auth(),
            json!({"add": 500}),
        )
        .await,
    ] {
        attempt.assert_error(403, "forbidden");
    }
    let unchanged = app.get(&format!("/api/api-keys/{id}/"), &owner.auth()).await;
    assert_eq!(
        (
            unchanged.body["remaining"].clone(),
            unchanged.body["name"].clone()
        ),
        (json!(0), json!("metered"))
    );

    // Without a refill, an empty balance is final: 403.
    let patched = app
        .patch(
            &format!("/api/api-keys/{id}/"),
            &admin.auth(),
            json!({"refill": null}),
        )
        .await;
    assert_eq!(
        (patched.status.as_u16(), patched.body["next_refill_at"].clone()),
        (200, Value::Null)
    );
    let final_refusal = app.get("/api/whoami", &key).await;
    final_refusal.assert_error(403, "quota_exhausted");
    assert!(final_refusal.header("retry-after").is_none());

    let topped = app
        .post(
            &format!("/api/api-keys/{id}/credits/"),
            &admin.auth(),
            json!({"add": 2}),
        )
        .await;
    assert_eq!(
        (topped.status.as_u16(), topped.body["remaining"].clone()),
        (200, json!(2)),
        "{}",
        topped.text
    );
    assert_eq!(spend(&app, &key, 3).await, [200, 200, 403]);
    let set = app
        .post(
            &format!("/api/api-keys/{id}/credits/"),
            &admin.auth(),
            json!({"set": 10}),
        )
        .await;
    assert_eq!(set.body["remaining"], 10);
    assert_eq!(spend(&app, &key, 1).await, [200]);
    let stats = app
        .get(&format!("/api/api-keys/{id}/stats/"), &owner.auth())
        .await;
    assert_eq!(stats.body["credits"]["key"]["remaining"], 9, "{}", stats.text);
    assert_eq!(
        stats.body["current"]["minute"]["used"], 6,
        "the key's windows count with its credits"
    );

    // Unlimited again, then an add has nothing to add to.
    let unlimited = app
        .patch(
            &format!("/api/api-keys/{id}/"),
            &admin.auth(),
            json!({"remaining": null}),
        )
        .await;
    assert_eq!(unlimited.body["remaining"], Value::Null);
    assert_eq!(spend(&app, &key, 2).await, [200, 200]);
    app.post(
        &format!("/api/api-keys/{id}/credits/"),
        &admin.auth(),
        json!({"add": 1}),
    )
    .await
    .assert_error(409, "conflict");
}

async fn a_top_up_with_an_idempotency_key_is_made_once(app: TestApp) {
    let admin = app.admin().await;
    let created = app
        .create_key(&admin, json!({"name": "topped", "remaining": 10}))
        .await;
    let path = format!("/api/api-keys/{}/credits/", created["id"]);
    let token = match admin.auth() {
        Auth::Bearer(token) => token,
        _ => unreachable!("an admin has a bearer token"),
    };
    let top_up = |idempotency: &'static str| {
        let url = format!("{}{path}", app.address);
        let token = token.clone();
        async move {
            let mut response = awc::Client::new()
                .post(url)
                .insert_header(("Authorization", format!("Bearer {token}")))
                .insert_header(("Idempotency-Key", idempotency))
                .send_json(&json!({"add": 5}))
                .await
                .expect("an answer");
            let replayed = response.headers().contains_key("idempotent-replayed");
            let body: Value = response.json().await.expect("json");
            (response.status().as_u16(), body, replayed)
        }
    };
    let (status, first, replayed) = top_up("order-1001").await;
    assert_eq!(
        (status, first["remaining"].clone(), replayed),
        (200, json!(15), false)
    );
    let (status, again, replayed) = top_up("order-1001").await;
    assert_eq!(
        (status, again["remaining"].clone(), replayed),
        (200, json!(15), true),
        "a retry adds nothing"
    );
    let (_, other, _) = top_up("order-1002").await;
    assert_eq!(other["remaining"], 20, "another key is another top-up");
    let (status, bad, _) = top_up("has space").await;
    assert_eq!(status, 400, "{bad}");
    // The same key for another change is refused, and changes nothing.
    let mut other = awc::Client::new()
        .post(format!("{}{path}", app.address))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .insert_header(("Idempotency-Key", "order-1001"))
        .send_json(&json!({"set": 0}))
        .await
        .expect("an answer");
    assert_eq!(other.status().as_u16(), 409, "{:?}", other.body().await);
    let shown = app
        .get(&format!("/api/api-keys/{}/", created["id"]), &admin.auth())
        .await;
    assert_eq!(shown.body["remaining"], 20);
}

async fn a_plan_limits_the_sum_of_a_users_keys(app: TestApp) {
    let admin = app.admin().await;
    let user = app.unlimited_user("team@example.com").await;
    let keys = [
        key_auth(&app.create_key(&user, json!({"name": "one"})).await),
        key_auth(&app.create_key(&user, json!({"name": "two"})).await),
    ];
    assert_eq!(
        app.get("/api/whoami", &keys[0]).await.status,
        200,
        "before the plan"
    );
    let plan = app
        .patch(
            &format!("/api/users/{}/", user.id),
            &admin.auth(),
            json!({"rate_limit_per_minute": 4}),
        )
        .await;
    assert_eq!(plan.body["rate_limit_per_minute"], 4, "{}", plan.text);
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(app.get("/api/whoami", &keys[i % 2]).await);
    }
    let codes: Vec<u16> = statuses.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(codes, [200, 200, 200, 200, 429, 429], "4 across both keys");
    let policy = statuses[0].header("ratelimit-policy").expect("policy");
    let pk = format!(
        "pk=:{}:",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("u:{}", user.id)
        )
    );
    assert!(
        policy.contains(&format!("\"plan-minute\";q=4;w=60;{pk}")),
        "{policy}"
    );
    statuses[4].assert_error(429, "rate_limit_exceeded");
    assert!(
        statuses[4].body["message"]
            .as_str()
            .expect("message")
            .contains("your plan")
    );
    assert!(
        statuses[4]
            .header("ratelimit")
            .expect("RateLimit")
            .starts_with("\"plan-minute\";r=0")
    );

    // Plan credits: the plan's minute removed, 2 credits shared by both keys.
    let credits = app
        .patch(
            &format!("/api/users/{}/", user.id),
            &admin.auth(),
            json!({"rate_limit_per_minute": null, "remaining": 2}),
        )
        .await;
    assert_eq!(credits.body["remaining"], 2, "{}", credits.text);
    assert_eq!(spend(&app, &keys[0], 1).await, [200]);
    assert_eq!(spend(&app, &keys[1], 2).await, [200, 403]);
    let shown = app.get(&format!("/api/users/{}/", user.id), &admin.auth()).await;
    assert_eq!(shown.body["remaining"], 0);
    // Only admins manage plans.
    app.patch(
        &format!("/api/users/{}/", user.id),
        &user.auth(),
        json!({"remaining": 99}),
    )
    .await
    .assert_error(403, "forbidden");
}

async fn verify_spends_credits_and_says_usage_exceeded(app: TestApp) {
    let admin = app.admin().await;
    let created = app
        .create_key(&admin, json!({"name": "verified", "remaining": 5}))
        .await;
    let key = created["key"].as_str().expect("key");
    let verify = |cost: u32| {
        let app = &app;
        let auth = admin.auth();
        async move {
            app.post("/api/keys/verify", &auth, json!({"key": key, "cost": cost}))
                .await
                .body
        }
    };
    let first = verify(3).await;
    assert_eq!(
        (first["code"].clone(), first["remaining"].clone()),
        (json!("VALID"), json!(2))
    );
    let over = verify(3).await;
    assert_eq!(
        (
            over["valid"].clone(),
            over["code"].clone(),
            over["remaining"].clone()
        ),
        (json!(false), json!("USAGE_EXCEEDED"), json!(2)),
        "nothing spent"
    );
    let last = verify(2).await;
    assert_eq!(
        (last["code"].clone(), last["remaining"].clone()),
        (json!("VALID"), json!(0))
    );
    let empty = verify(0).await;
    assert_eq!(empty["code"], "USAGE_EXCEEDED");
    let minute = empty["limits"]["minute"].as_i64().expect("a minute limit");
    assert_eq!(
        empty["ratelimit"]["remaining"].as_i64(),
        Some(minute - 5),
        "the windows counted what was spent (3 + 2), not the refused 3"
    );
}

async fn credit_fields_refuse_hostile_values(app: TestApp) {
    let admin = app.admin().await;
    let created = app
        .create_key(&admin, json!({"name": "target", "remaining": 1}))
        .await;
    let id = created["id"].as_i64().expect("id");
    for body in [
        json!({"name": "x", "remaining": -1}),
        json!({"name": "x", "remaining": 9_007_199_254_740_993u64}),
        json!({"name": "x", "remaining": "lots"}),
        json!({"name": "x", "refill": {"amount": 5, "interval": "month", "day_of_month": 29}}),
        json!({"name": "x", "refill": {"amount": 0, "interval": "day"}}),
        json!({"name": "x", "refill": {"amount": 5, "interval": "week"}}),
        json!({"name": "x", "refill": {"amount": 5, "interval": "day", "extra": 1}}),
        json!({"name": "x", "refill": [1]}),
    ] {
        let reply = app.post("/api/api-keys/", &admin.auth(), body.clone()).await;
        reply.assert_error(400, "validation_error");
        let patched = app
            .patch(&format!("/api/api-keys/{id}/"), &admin.auth(), body.clone())
            .await;
        patched.assert_error(400, "validation_error");
    }
    for body in [
        json!({}),
        json!({"add": 1, "set": 2}),
        json!({"add": -5}),
        json!({"set": 1.5}),
        json!({"add": "1"}),
        json!({"set": null}),
        json!({"add": 1, "extra": true}),
    ] {
        let reply = app
            .post(
                &format!("/api/api-keys/{id}/credits/"),
                &admin.auth(),
                body.clone(),
            )
            .await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
    }
    let unchanged = app.get(&format!("/api/api-keys/{id}/"), &admin.auth()).await;
    assert_eq!(
        (
            unchanged.body["name"].clone(),
            unchanged.body["remaining"].clone()
        ),
        (json!("target"), json!(1))
    );
    app.post("/api/api-keys/999999/credits/", &admin.auth(), json!({"add": 1}))
        .await
        .assert_error(404, "not_found");
}

/// `INFO commandstats` of a Redis: calls per command.
fn command_calls(url: &str) -> std::collections::HashMap<String, u64> {
    let info: String = redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
        .and_then(|mut c| redis::cmd("INFO").arg("commandstats").query(&mut c))
        .expect("INFO commandstats");
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.strip_prefix("calls=")?.split(',').next()?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// A key with credits under a plan with windows and credits: each decision is one EVALSHA,
/// and nothing else goes to Redis from the gate (on a Redis of the test's own, so no other
/// test's commands are counted).
#[actix_web::test]
async fn a_decision_with_credits_and_a_plan_is_one_redis_round_trip() {
    let Some(redis) = OwnRedis::start() else { return };
    let Some(app) = TestApp::on(Backend::Postgres)
        .redis(&redis.url(), &format!("kg-{}", unique_suffix()))
        .spawn()
        .await
    else {
        return;
    };
    let admin = app.admin().await;
    let user = app.unlimited_user("one-trip@example.com").await;
    app.patch(
        &format!("/api/users/{}/", user.id),
        &admin.auth(),
        json!({"rate_limit_per_minute": 1000, "remaining": 1000}),
    )
    .await;
    let created = app
        .create_key(
            &admin,
            json!({"name": "metered", "owner": "one-trip@example.com", "remaining": 500}),
        )
        .await;
    let key = key_auth(&created);
    // The first use seeds both balances from the checkpoint: two calls, once.
    assert_eq!(spend(&app, &key, 1).await, [200]);
    let before = command_calls(&redis.url());
    assert_eq!(spend(&app, &key, 20).await, vec![200; 20]);
    let after = command_calls(&redis.url());
    let moved = |name: &str| after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0);
    println!(
        "20 decisions: evalsha {}, get {}, set {}",
        moved("evalsha"),
        moved("get"),
        moved("set")
    );
    assert_eq!(moved("evalsha"), 20, "one script call per decision");
    for (name, calls) in &after {
        // What the script runs inside (GET, SET, TIME) and this test's INFO are not round trips.
        if ![
            "evalsha",
            "get",
            "set",
            "time",
            "info",
            "ping",
            "publish",
            "subscribe",
        ]
        .contains(&name.as_str())
        {
            assert_eq!(
                *calls,
                before.get(name).copied().unwrap_or(0),
                "{name} was called during the decisions"
            );
        }
    }
}

/// Redis restarted without persistence under load: balances come back from the last
/// checkpoint; what was spent since it (at most USAGE_FLUSH_MS of traffic) is given back, and
/// nothing more.
#[actix_web::test]
async fn a_redis_restart_restores_balances_from_the_checkpoint_within_one_flush() {
    let Some(mut redis) = OwnRedis::start() else {
        return;
    };
    let flush_ms = 200;
    let Some(app) = TestApp::on(Backend::Postgres)
        .redis(&redis.url(), &format!("kg-{}", unique_suffix()))
        .usage_flush_ms(flush_ms)
        .failure_mode(keygate::limits::FailureMode::Closed)
        .spawn()
        .await
    else {
        return;
    };
    let admin = app.admin().await;
    let initial = 1_000_000u64;
    let unlimited = json!({"name": "drill", "remaining": initial, "rate_limit_per_minute": null,
                           "rate_limit_per_hour": null, "rate_limit_per_day": null});
    let created = app.create_key(&admin, unlimited).await;
    let (id, key) = (created["id"].as_i64().expect("id"), key_auth(&created));
    let app = Rc::new(app);
    let started = Instant::now();
    let allowed_at: Rc<std::cell::RefCell<Vec<Duration>>> = Rc::default();
    let stop = Rc::new(std::cell::Cell::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (app, key, allowed_at, stop) = (app.clone(), key.clone(), allowed_at.clone(), stop.clone());
            actix_web::rt::spawn(async move {
                while !stop.get() {
                    let status = app.get("/api/whoami", &key).await.status.as_u16();
                    match status {
                        200 => allowed_at.borrow_mut().push(started.elapsed()),
                        503 => {}
                        other => panic!("unexpected {other}"),
                    }
                }
            })
        })
        .collect();
    actix_web::rt::time::sleep(Duration::from_millis(1_200)).await;
    let killed_at = started.elapsed();
    redis.kill();
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    redis.launch().expect("redis-server starts again");
    let back = Instant::now();
    while app.get("/healthz", &Auth::None).await.body["counters"] != "redis" {
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "back on Redis within 5 s"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    actix_web::rt::time::sleep(Duration::from_millis(800)).await;
    stop.set(true);
    for worker in workers {
        worker.await.expect("worker");
    }
    let restarted_at = killed_at + Duration::from_millis(300);
    let after_restart = allowed_at
        .borrow()
        .iter()
        .filter(|at| **at > restarted_at)
        .count();
    assert!(after_restart > 0, "requests pass again once Redis is back");
    let allowed = allowed_at.borrow().len() as u64;
    let shown = app.get(&format!("/api/api-keys/{id}/"), &admin.auth()).await;
    let remaining = shown.body["remaining"].as_u64().expect(&shown.text);
    let given_back = allowed - (initial - remaining);
    let window = Duration::from_millis(2 * flush_ms);
    let in_last_flush = allowed_at
        .borrow()
        .iter()
        .filter(|at| **at <= killed_at && **at + window > killed_at)
        .count() as u64;
    println!(
        "Redis restart drill: {allowed} allowed, balance {initial} → {remaining}; {given_back} credits given back \
         (bound: the {in_last_flush} allowed in the last 2 × USAGE_FLUSH_MS = {} ms before the kill)",
        window.as_millis()
    );
    assert!(allowed > 100, "there was load: {allowed}");
    assert!(
        remaining < initial,
        "the restored balance is the checkpoint's, not the first seed"
    );
    assert!(
        given_back <= in_last_flush,
        "{given_back} credits given back, more than the {in_last_flush} spent in the last flush interval"
    );
}

/// The in-process store: SIGTERM checkpoints the balances, a new process starts from them,
/// and no spend is lost (flushes are off, so only the shutdown writes).
#[actix_web::test]
async fn sigterm_checkpoints_every_spend() {
    let dir = std::env::temp_dir().join(format!("keygate-credits-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).expect("dir");
    let db_url = format!("sqlite://{}", dir.join("keygate.db").display());
    // Only the shutdown writes (flushes are off).
    let start = || crate::helpers::serve(&db_url, &[("USAGE_FLUSH_MS", "600000")]);
    let stop = |child: &mut std::process::Child| {
        crate::helpers::sigterm(child);
        let status = child.wait().expect("exit");
        assert!(status.success(), "clean exit: {status}");
    };
    let client = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
    let spend = |base: String, key: String, n: usize| {
        let client = client.clone();
        async move {
            let mut ok = 0;
            for _ in 0..n {
                let response = client
                    .get(format!("{base}/api/whoami"))
                    .insert_header(("Api-Key", key.as_str()))
                    .send()
                    .await
                    .expect("answer");
                ok += usize::from(response.status() == 200);
            }
            ok
        }
    };
    let (mut first, base) = start();
    let server = Process::logged_in(&base).await;
    let created = server
        .create_key(json!({"name": "paid", "remaining": 100, "rate_limit_per_minute": null}))
        .await;
    let key = created["key"].as_str().expect("key").to_owned();
    assert_eq!(spend(base.clone(), key.clone(), 37).await, 37);
    stop(&mut first);

    let (mut second, base) = start();
    Process::logged_in(&base).await;
    assert_eq!(
        spend(base.clone(), key.clone(), 80).await,
        63,
        "exactly what was left at SIGTERM"
    );
    stop(&mut second);
}

/// In gateway mode a route rule's cost is spent from the key's credits as from its windows: a
/// request the balance cannot pay never reaches the upstream, and a cost-0 route passes with
/// nothing left.
#[actix_web::test]
async fn a_route_rules_cost_is_spent_from_credits_before_the_upstream() {
    let upstream = crate::gateway::start_upstream().await;
    let Some(app) = crate::gateway::in_front_of(&upstream)
        .upstream_routes("POST /orders - cost=3; * /public/** - cost=0")
        .spawn()
        .await
    else {
        return;
    };
    let admin = app.admin().await;
    let created = app
        .create_key(
            &admin,
            json!({"name": "orders", "remaining": 10, "rate_limit_per_minute": null}),
        )
        .await;
    let key = key_auth(&created);
    let before = upstream.hits.load(std::sync::atomic::Ordering::SeqCst);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(app.post("/orders", &key, json!({})).await.status.as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 403],
        "3 × 3 of 10; the fourth would overdraw"
    );
    assert_eq!(
        upstream.hits.load(std::sync::atomic::Ordering::SeqCst) - before,
        3,
        "the upstream heard of the paid ones only"
    );
    assert_eq!(app.get("/public/x", &key).await.status, 200, "cost 0 with 1 left");
    let shown = app
        .get(&format!("/api/api-keys/{}/", created["id"]), &admin.auth())
        .await;
    assert_eq!(shown.body["remaining"], 1);
}

/// The dashboard's credits form is an admin's: an owner posting it for their own key, with a
/// valid session and CSRF token, is refused and nothing changes.
async fn an_owner_cannot_give_their_key_credits_through_the_dashboard_form(app: TestApp) {
    let owner = app.user("form@example.com").await;
    let created = app.create_key(&owner, json!({"name": "mine"})).await;
    let id = created["id"].as_i64().expect("id");
    let cookie =
        crate::helpers::dashboard_session_as(&app, "form@example.com", crate::helpers::PASSWORD).await;
    for fields in [
        vec![
            ("action", "set"),
            ("remaining", "1000000"),
            ("refill_interval", "none"),
        ],
        vec![("action", "add"), ("amount", "1000000")],
    ] {
        let (status, _, _) =
            crate::helpers::dashboard_form(&app, &cookie, &format!("/admin/keys/{id}/credits"), &fields)
                .await;
        assert_eq!(status, 403, "{fields:?}");
    }
    let shown = app.get(&format!("/api/api-keys/{id}/"), &owner.auth()).await;
    assert_eq!(
        shown.body["remaining"],
        Value::Null,
        "still unlimited, not a million"
    );
}
