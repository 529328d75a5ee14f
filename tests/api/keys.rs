//! The key life cycle over HTTP, and who may see what.

use chrono::{Duration, Utc};
use keygate::analytics::hour_of;
use keygate::db::models::UsageRow;
use serde_json::{Value, json};

use crate::helpers::{Auth, TestApp, assert_key_format, on_both_backends};

on_both_backends!(
    a_key_goes_through_its_whole_life_cycle,
    users_see_only_their_own_keys_and_admins_see_all,
    another_users_key_is_not_found_for_any_method,
    an_api_key_cannot_manage_keys,
    only_admins_create_keys_for_other_users,
    stats_show_current_windows_and_the_last_24_hours,
    owners_may_lower_a_monthly_limit_but_not_raise_or_remove_it,
);

/// The key string never appears in a response after the one that created it.
#[track_caller]
fn assert_no_secret(body: &str, key: &str) {
    assert!(!body.contains(key), "the full key leaked: {body}");
    assert!(!body.contains("key_hash"), "the hash leaked: {body}");
}

async fn a_key_goes_through_its_whole_life_cycle(app: TestApp) {
    let ada = app.unlimited_user("ada@example.com").await;

    let reply = app
        .post(
            "/api/api-keys/",
            &ada.auth(),
            json!({"name": "ci deploy", "rate_limit_per_minute": 5, "rate_limit_per_hour": null,
                   "expires_at": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let created = reply.body;
    let key = created["key"].as_str().expect("the full key, once").to_owned();
    assert_key_format(&key);
    let id = created["id"].as_i64().expect("an id");
    assert_eq!(
        reply.headers.get("location").and_then(|v| v.to_str().ok()),
        Some(format!("/api/api-keys/{id}/").as_str())
    );
    assert_eq!(created["prefix"], key[..9]);
    assert_eq!(created["name"], "ci deploy");
    assert_eq!(created["owner"], "ada@example.com");
    assert_eq!(created["rate_limit_per_minute"], 5);
    assert_eq!(created["rate_limit_per_hour"], Value::Null, "null means no limit");
    assert_eq!(
        created["rate_limit_per_day"], 10000,
        "absent takes KEY_RATE_LIMIT's default"
    );
    assert_eq!(created["expires_at"], "2099-01-01T00:00:00Z");
    assert_eq!(created["is_active"], true);
    assert_eq!(created["status"], "active");
    assert_eq!(created["last_used_at"], Value::Null);
    assert!(created.get("key_hash").is_none());

    for path in [format!("/api/api-keys/{id}/"), format!("/api/api-keys/{id}")] {
        let reply = app.get(&path, &ada.auth()).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        assert_eq!(reply.body["id"], id);
        assert!(reply.body.get("key").is_none());
        assert_no_secret(&reply.text, &key);
    }
    for path in ["/api/api-keys/", "/api/api-keys"] {
        let reply = app.get(path, &ada.auth()).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        assert_eq!(reply.body.as_array().map(Vec::len), Some(1));
        assert_no_secret(&reply.text, &key);
    }

    let reply = app
        .patch(
            &format!("/api/api-keys/{id}/"),
            &ada.auth(),
            json!({"name": "renamed", "rate_limit_per_minute": null, "rate_limit_per_hour": 100,
                   "expires_at": "2098-06-30T12:00:00+02:00"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["name"], "renamed");
    assert_eq!(reply.body["rate_limit_per_minute"], Value::Null);
    assert_eq!(reply.body["rate_limit_per_hour"], 100);
    assert_eq!(reply.body["rate_limit_per_day"], 10000, "untouched fields stay");
    assert_eq!(reply.body["expires_at"], "2098-06-30T10:00:00Z", "stored in UTC");
    assert_no_secret(&reply.text, &key);
    let reply = app
        .patch(
            &format!("/api/api-keys/{id}/"),
            &ada.auth(),
            json!({"expires_at": null}),
        )
        .await;
    assert_eq!(reply.body["expires_at"], Value::Null, "null clears the expiry");

    assert_eq!(
        app.get("/api/api-keys/?active=false", &ada.auth()).await.body,
        json!([])
    );
    let reply = app.delete(&format!("/api/api-keys/{id}/"), &ada.auth()).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let reply = app.get(&format!("/api/api-keys/{id}/"), &ada.auth()).await;
    assert_eq!(reply.status, 200, "deactivation is a soft delete");
    assert_eq!(reply.body["is_active"], false);
    assert_eq!(reply.body["status"], "inactive");
    assert_eq!(
        app.get("/api/api-keys/?active=true", &ada.auth()).await.body,
        json!([])
    );
    let inactive = app.get("/api/api-keys/?active=false", &ada.auth()).await.body;
    assert_eq!(inactive[0]["id"], id);

    let reply = app
        .patch(
            &format!("/api/api-keys/{id}/"),
            &ada.auth(),
            json!({"is_active": true}),
        )
        .await;
    assert_eq!(reply.body["status"], "active", "a key can be reactivated");
}

async fn users_see_only_their_own_keys_and_admins_see_all(app: TestApp) {
    let ada = app.user("ada@example.com").await;
    let bob = app.user("bob@example.com").await;
    let first = app.create_key(&ada, json!({"name": "first"})).await;
    let second = app.create_key(&ada, json!({"name": "second"})).await;
    let bobs = app.create_key(&bob, json!({"name": "bob's"})).await;

    let names = |body: &Value| -> Vec<String> {
        body.as_array()
            .expect("an array")
            .iter()
            .map(|k| k["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(
        names(&app.get("/api/api-keys/", &ada.auth()).await.body),
        ["second", "first"],
        "newest first"
    );
    assert_eq!(
        names(&app.get("/api/api-keys/", &bob.auth()).await.body),
        ["bob's"]
    );
    let admin = app.admin().await;
    assert_eq!(
        names(&app.get("/api/api-keys/", &admin.auth()).await.body),
        ["bob's", "second", "first"]
    );
    let reply = app
        .get(&format!("/api/api-keys/{}/", bobs["id"]), &admin.auth())
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["owner"], "bob@example.com");
    assert_ne!(first["key"], second["key"]);
}

async fn another_users_key_is_not_found_for_any_method(app: TestApp) {
    let ada = app.user("ada@example.com").await;
    let mallory = app.user("mallory@example.com").await;
    let key = app.create_key(&ada, json!({"name": "private"})).await;
    let path = format!("/api/api-keys/{}/", key["id"]);
    app.get(&path, &mallory.auth())
        .await
        .assert_error(404, "not_found");
    app.get(&format!("{path}stats/"), &mallory.auth())
        .await
        .assert_error(404, "not_found");
    app.patch(&path, &mallory.auth(), json!({"name": "mine now"}))
        .await
        .assert_error(404, "not_found");
    app.delete(&path, &mallory.auth())
        .await
        .assert_error(404, "not_found");
    let unchanged = app.get(&path, &ada.auth()).await;
    assert_eq!(unchanged.body["name"], "private");
    assert_eq!(unchanged.body["is_active"], true);
}

async fn an_api_key_cannot_manage_keys(app: TestApp) {
    let ada = app.user("ada@example.com").await;
    let key = app.create_key(&ada, json!({"name": "consumer"})).await["key"]
        .as_str()
        .expect("key")
        .to_owned();
    for auth in [
        Auth::Header("Api-Key", key.clone()),
        Auth::Header("Authorization", format!("Api-Key {key}")),
    ] {
        let reply = app.get("/api/api-keys/", &auth).await;
        reply.assert_error(401, "authentication_required");
        assert!(
            reply
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer"))
        );
        app.post("/api/api-keys/", &auth, json!({"name": "escalate"}))
            .await
            .assert_error(401, "authentication_required");
    }
    app.get("/api/api-keys/", &Auth::None)
        .await
        .assert_error(401, "authentication_required");
    app.get("/api/api-keys/", &Auth::Bearer("kgt.1.99999999999.00".into()))
        .await
        .assert_error(401, "invalid_token");
    app.get(
        "/api/api-keys/",
        &Auth::Header("Authorization", "Basic YTpi".into()),
    )
    .await
    .assert_error(401, "invalid_token");
}

async fn only_admins_create_keys_for_other_users(app: TestApp) {
    let ada = app.user("ada@example.com").await;
    let bob = app.user("bob@example.com").await;
    let reply = app
        .post(
            "/api/api-keys/",
            &bob.auth(),
            json!({"name": "sneaky", "owner": "ada@example.com"}),
        )
        .await;
    reply.assert_error(403, "forbidden");
    let admin = app.admin().await;
    let reply = app
        .post(
            "/api/api-keys/",
            &admin.auth(),
            json!({"name": "for ada", "owner": "ADA@example.com"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.body["owner"], "ada@example.com");
    let listed = app.get("/api/api-keys/", &ada.auth()).await.body;
    assert_eq!(listed[0]["name"], "for ada");
    app.post(
        "/api/api-keys/",
        &admin.auth(),
        json!({"name": "x", "owner": "nobody@example.com"}),
    )
    .await
    .assert_error(404, "not_found");
}

async fn stats_show_current_windows_and_the_last_24_hours(app: TestApp) {
    let ada = app.unlimited_user("ada@example.com").await;
    let key = app
        .create_key(
            &ada,
            json!({"name": "metered", "rate_limit_per_minute": 7, "rate_limit_per_day": null}),
        )
        .await;
    let id = keygate::db::KeyId(key["id"].as_i64().expect("id"));
    let this_hour = hour_of(Utc::now().naive_utc());
    let rows = [
        UsageRow {
            api_key_id: id,
            hour: this_hour,
            allowed: 5,
            rejected: 2,
        },
        UsageRow {
            api_key_id: id,
            hour: this_hour - Duration::hours(3),
            allowed: 11,
            rejected: 0,
        },
        UsageRow {
            api_key_id: id,
            hour: this_hour - Duration::hours(30),
            allowed: 100,
            rejected: 1,
        },
    ];
    keygate::db::run(&app.pool, move |conn| {
        rows.iter()
            .try_for_each(|row| row.add(conn).map(drop))
            .map_err(keygate::db::DbError::Query)
    })
    .await
    .expect("record usage");

    let reply = app.get(&format!("/api/api-keys/{id}/stats/"), &ada.auth()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let stats = reply.body;
    assert_eq!(stats["id"], id.0);
    assert_eq!(stats["last_used_at"], Value::Null);
    let minute = &stats["current"]["minute"];
    assert_eq!(minute["limit"], 7);
    assert_eq!(minute["used"], 0);
    assert_eq!(minute["remaining"], 7);
    assert!(
        (1..=60).contains(&minute["reset"].as_i64().expect("reset")),
        "{minute}"
    );
    assert_eq!(stats["current"]["hour"]["limit"], 1000);
    assert_eq!(stats["current"]["day"]["limit"], Value::Null);
    assert_eq!(stats["current"]["day"]["remaining"], Value::Null);
    assert_eq!(stats["totals"], json!({"allowed": 116, "rejected": 3}));
    let history = stats["history"].as_array().expect("history");
    assert_eq!(history.len(), 24, "the last 24 hours, zero-filled");
    assert_eq!(
        history[23]["hour"],
        this_hour
            .and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert_eq!(
        (history[23]["allowed"].as_i64(), history[23]["rejected"].as_i64()),
        (Some(5), Some(2))
    );
    assert_eq!(history[20]["allowed"], 11);
    let summed: i64 = history.iter().map(|h| h["allowed"].as_i64().unwrap_or(0)).sum();
    assert_eq!(summed, 16, "the 30-hour-old row is outside the history");
}

/// A monthly limit an admin set is a quota: the key's owner may lower it, never raise or remove
/// it — also when an admin lifted the owner's ceiling, which has no month of its own.
async fn owners_may_lower_a_monthly_limit_but_not_raise_or_remove_it(app: TestApp) {
    let admin = app.admin().await;
    for (email, owner) in [
        ("capped@example.com", app.user("capped@example.com").await),
        ("free@example.com", app.unlimited_user("free@example.com").await),
    ] {
        let created = app
            .create_key(
                &admin,
                json!({"name": "metered", "owner": email, "rate_limit_per_month": 100}),
            )
            .await;
        let path = format!("/api/api-keys/{}/", created["id"]);
        for hostile in [
            json!({"rate_limit_per_month": null}),
            json!({"rate_limit_per_month": 101}),
        ] {
            app.patch(&path, &owner.auth(), hostile.clone())
                .await
                .assert_error(403, "forbidden");
        }
        let lowered = app
            .patch(&path, &owner.auth(), json!({"rate_limit_per_month": 40}))
            .await;
        assert_eq!(lowered.status, 200, "{}: {}", email, lowered.text);
        assert_eq!(lowered.body["rate_limit_per_month"], 40);
        app.patch(&path, &owner.auth(), json!({"rate_limit_per_month": 100}))
            .await
            .assert_error(403, "forbidden");
        let raised = app
            .patch(&path, &admin.auth(), json!({"rate_limit_per_month": 1000}))
            .await;
        assert_eq!(raised.status, 200, "an admin may: {}", raised.text);
    }
    // On a key of their own without one, an owner may add a monthly limit: it only restricts.
    let owner = app.user("own@example.com").await;
    let mine = app
        .create_key(&owner, json!({"name": "mine", "rate_limit_per_month": 5000}))
        .await;
    assert_eq!(mine["rate_limit_per_month"], 5000);
}
