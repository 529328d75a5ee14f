//! The audit log over HTTP: every route that changes a key or a user writes exactly one entry,
//! in the change's transaction, with who, from where and the fields before and after; no
//! secret ever enters one; only admins read it; the database refuses to rewrite it.

use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Auth, Backend, PASSWORD, TestApp, dashboard_form, dashboard_session,
    on_both_backends,
};

on_both_backends!(
    every_api_route_that_changes_something_writes_one_entry,
    dashboard_changes_are_recorded_with_the_dashboard_as_their_origin,
    the_log_is_filtered_paged_and_admins_only,
    a_refused_change_writes_nothing_and_the_log_cannot_be_rewritten,
);

/// The entries newer than `after` (an id), oldest first.
async fn entries_since(app: &TestApp, admin: &Auth, after: i64) -> Vec<Value> {
    let reply = app.get("/api/audit-log?limit=200", admin).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let mut entries: Vec<Value> = reply.body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["id"].as_i64().expect("an id") > after)
        .cloned()
        .collect();
    entries.reverse();
    entries
}

async fn newest_id(app: &TestApp, admin: &Auth) -> i64 {
    let reply = app.get("/api/audit-log?limit=1", admin).await;
    reply.body["entries"][0]["id"].as_i64().unwrap_or(0)
}

/// Runs `change`, then asserts it wrote exactly one entry with this action and target; returns
/// the entry and what the change returned.
macro_rules! one_entry {
    ($app:expr, $admin:expr, $action:expr, $target:expr, $change:expr) => {{
        let before = newest_id($app, $admin).await;
        let result = $change;
        let written = entries_since($app, $admin, before).await;
        assert_eq!(written.len(), 1, "one entry for {}: {written:#?}", $action);
        let entry = written.into_iter().next().expect("one");
        assert_eq!(entry["action"], $action, "{entry:#}");
        assert_eq!(entry["target"], $target, "{entry:#}");
        (entry, result)
    }};
}

async fn every_api_route_that_changes_something_writes_one_entry(app: TestApp) {
    let admin = app.admin().await;
    let auth = admin.auth();
    let mut secrets: Vec<String> = vec![PASSWORD.to_owned(), admin.token.clone()];

    let (created_entry, created) = one_entry!(&app, &auth, "key.created", json!({"type": "key", "id": 1}), {
        app.create_key(&admin, json!({"name": "billing", "rate_limit_per_minute": 30}))
            .await
    });
    let id = created["id"].as_i64().expect("id");
    assert_eq!(id, 1);
    secrets.push(created["key"].as_str().expect("secret").to_owned());
    assert_eq!(created_entry["via"], "api");
    assert_eq!(created_entry["ip"], "127.0.0.1");
    assert_eq!(
        created_entry["actor"],
        json!({"id": admin.id.0, "email": ADMIN_EMAIL})
    );
    assert_eq!(created_entry["before"], Value::Null);
    assert_eq!(created_entry["after"]["name"], "billing");
    assert_eq!(created_entry["after"]["rate_limit_per_minute"], 30);
    assert_eq!(created_entry["after"]["prefix"], created["prefix"]);

    let (updated, _) = one_entry!(&app, &auth, "key.updated", json!({"type": "key", "id": id}), {
        let reply = app
            .patch(
                &format!("/api/api-keys/{id}/"),
                &auth,
                json!({"name": "billing-2", "rate_limit_per_minute": 40}),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    });
    assert_eq!(
        updated["before"],
        json!({"name": "billing", "rate_limit_per_minute": 30})
    );
    assert_eq!(
        updated["after"],
        json!({"name": "billing-2", "rate_limit_per_minute": 40})
    );

    let (rolled, _) = one_entry!(&app, &auth, "key.rolled", json!({"type": "key", "id": id}), {
        let reply = app
            .post(
                &format!("/api/api-keys/{id}/roll"),
                &auth,
                json!({"grace_seconds": 60}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        secrets.push(reply.body["key"].as_str().expect("new secret").to_owned());
        assert_eq!(reply.body["prefix"].as_str().map(str::len), Some(9));
    });
    assert_eq!(rolled["before"]["prefix"], created["prefix"]);
    assert_ne!(rolled["after"]["prefix"], created["prefix"]);
    assert_eq!(rolled["before"]["previous_key_expires_at"], Value::Null);
    assert!(
        rolled["after"]["previous_key_expires_at"].is_string(),
        "{rolled:#}"
    );

    let (credits, _) = one_entry!(
        &app,
        &auth,
        "key.credits_changed",
        json!({"type": "key", "id": id}),
        {
            let reply = app
                .post(&format!("/api/api-keys/{id}/credits"), &auth, json!({"set": 500}))
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text);
        }
    );
    assert_eq!(credits["before"], json!({"remaining": null}));
    assert_eq!(credits["after"], json!({"remaining": 500}));

    let (deactivated, _) = one_entry!(
        &app,
        &auth,
        "key.deactivated",
        json!({"type": "key", "id": id}),
        {
            let reply = app.delete(&format!("/api/api-keys/{id}/"), &auth).await;
            assert_eq!(reply.status, 204, "{}", reply.text);
        }
    );
    assert_eq!(deactivated["before"], json!({"is_active": true}));
    assert_eq!(deactivated["after"], json!({"is_active": false}));

    let (user_entry, _) = one_entry!(
        &app,
        &auth,
        "user.created",
        json!({"type": "user", "id": admin.id.0 + 1}),
        {
            let reply = app
                .post(
                    "/api/users/",
                    &auth,
                    json!({"email": "grace@example.com", "password": "grace-secret-1",
                  "rate_limit_per_day": 900}),
                )
                .await;
            assert_eq!(reply.status, 201, "{}", reply.text);
        }
    );
    secrets.push("grace-secret-1".to_owned());
    assert_eq!(user_entry["after"]["email"], "grace@example.com");
    assert_eq!(
        user_entry["after"]["rate_limit_per_day"], 900,
        "the plan is in the one entry"
    );
    let grace = admin.id.0 + 1;

    let (switched, _) = one_entry!(
        &app,
        &auth,
        "user.updated",
        json!({"type": "user", "id": grace}),
        {
            let reply = app
                .patch(&format!("/api/users/{grace}/"), &auth, json!({"is_admin": true}))
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text);
        }
    );
    assert_eq!(switched["before"], json!({"is_admin": false}));
    assert_eq!(switched["after"], json!({"is_admin": true}));

    let imported_secret = "legacy.imported-secret-value-0123456789";
    one_entry!(
        &app,
        &auth,
        "key.imported",
        json!({"type": "key", "id": id + 1}),
        {
            let reply = app
                .post(
                    "/api/api-keys/import",
                    &auth,
                    json!([{"name": "old", "owner": "grace@example.com", "key": imported_secret}]),
                )
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            assert_eq!(reply.body["imported"], 1, "{}", reply.text);
        }
    );
    secrets.push(imported_secret.to_owned());

    // The user changes their own password: the entry is theirs, and says only that.
    let grace_login = app.login("grace@example.com", "grace-secret-1").await;
    let grace_token = grace_login.body["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    secrets.push(grace_token.clone());
    let (changed, _) = one_entry!(
        &app,
        &auth,
        "user.password_changed",
        json!({"type": "user", "id": grace}),
        {
            let reply = app
                .post(
                    "/api/auth/password",
                    &Auth::Bearer(grace_token.clone()),
                    json!({"current_password": "grace-secret-1", "new_password": "grace-secret-2"}),
                )
                .await;
            assert_eq!(reply.status, 204, "{}", reply.text);
        }
    );
    secrets.push("grace-secret-2".to_owned());
    assert_eq!(changed["actor"]["email"], "grace@example.com");
    assert_eq!(
        (&changed["before"], &changed["after"]),
        (&Value::Null, &Value::Null)
    );

    // No secret, token, password or hash anywhere in the log.
    let all = app.get("/api/audit-log?limit=200", &auth).await.text;
    let hashes = stored_hashes(&app);
    assert!(
        hashes.len() >= 4,
        "key hashes, a replaced one, password hashes: {hashes:?}"
    );
    for secret in secrets.iter().chain(&hashes) {
        assert!(!all.contains(secret.as_str()), "{secret} is in the audit log");
    }
    for word in ["key_hash", "password_hash", "auth_epoch"] {
        assert!(!all.contains(word), "{word} is in the audit log");
    }
}

/// Every hash keygate stores: keys' (current and replaced) and users' passwords.
fn stored_hashes(app: &TestApp) -> Vec<String> {
    use diesel::prelude::*;
    use keygate::db::schema::{api_keys, users};
    let mut conn = app.pool.get().expect("connection");
    let mut hashes: Vec<String> = api_keys::table
        .select(api_keys::key_hash)
        .load(&mut conn)
        .expect("key hashes");
    let replaced: Vec<Option<String>> = api_keys::table
        .select(api_keys::previous_key_hash)
        .load(&mut conn)
        .expect("replaced hashes");
    hashes.extend(replaced.into_iter().flatten());
    let passwords: Vec<String> = users::table
        .select(users::password_hash)
        .load(&mut conn)
        .expect("password hashes");
    hashes.extend(passwords);
    hashes
}

async fn dashboard_changes_are_recorded_with_the_dashboard_as_their_origin(app: TestApp) {
    let admin = app.admin().await;
    let auth = admin.auth();
    let cookie = dashboard_session(&app).await;

    let (created, _) = one_entry!(&app, &auth, "key.created", json!({"type": "key", "id": 1}), {
        let (status, _, _) = dashboard_form(
            &app,
            &cookie,
            "/admin/keys",
            &[
                ("name", "from-the-form"),
                ("owner", ADMIN_EMAIL),
                ("rate_limit_per_minute", "12"),
            ],
        )
        .await;
        assert_eq!(status, 303);
    });
    assert_eq!(created["via"], "dashboard");
    assert_eq!(created["ip"], "127.0.0.1");
    assert_eq!(created["actor"]["email"], ADMIN_EMAIL);
    assert_eq!(created["after"]["rate_limit_per_minute"], 12);

    let (off, _) = one_entry!(&app, &auth, "key.deactivated", json!({"type": "key", "id": 1}), {
        let (status, _, _) =
            dashboard_form(&app, &cookie, "/admin/keys/1/deactivate", &[("confirm", "yes")]).await;
        assert_eq!(status, 303);
    });
    assert_eq!(off["via"], "dashboard");
    one_entry!(&app, &auth, "key.activated", json!({"type": "key", "id": 1}), {
        let (status, _, _) =
            dashboard_form(&app, &cookie, "/admin/keys/1/activate", &[("confirm", "yes")]).await;
        assert_eq!(status, 303);
    });
    one_entry!(
        &app,
        &auth,
        "key.credits_changed",
        json!({"type": "key", "id": 1}),
        {
            let (status, _, _) = dashboard_form(
                &app,
                &cookie,
                "/admin/keys/1/credits",
                &[
                    ("action", "set"),
                    ("remaining", "40"),
                    ("refill_interval", "none"),
                ],
            )
            .await;
            assert_eq!(status, 303);
        }
    );

    let (user, _) = one_entry!(
        &app,
        &auth,
        "user.created",
        json!({"type": "user", "id": admin.id.0 + 1}),
        {
            let (status, _, _) = dashboard_form(
                &app,
                &cookie,
                "/admin/users",
                &[("email", "lin@example.com"), ("password", "lin-password-1")],
            )
            .await;
            assert_eq!(status, 303);
        }
    );
    assert_eq!(user["via"], "dashboard");
    let lin = admin.id.0 + 1;
    let (ceiling, _) = one_entry!(&app, &auth, "user.updated", json!({"type": "user", "id": lin}), {
        let (status, _, _) = dashboard_form(
            &app,
            &cookie,
            &format!("/admin/users/{lin}/ceiling"),
            &[
                ("max_rate_limit_per_minute", "5"),
                ("max_rate_limit_per_hour", ""),
                ("max_rate_limit_per_day", ""),
            ],
        )
        .await;
        assert_eq!(status, 303);
    });
    assert_eq!(ceiling["after"]["max_rate_limit_per_minute"], 5, "{ceiling:#}");
    one_entry!(
        &app,
        &auth,
        "user.deactivated",
        json!({"type": "user", "id": lin}),
        {
            let (status, _, _) = dashboard_form(
                &app,
                &cookie,
                &format!("/admin/users/{lin}/deactivate"),
                &[("confirm", "yes")],
            )
            .await;
            assert_eq!(status, 303);
        }
    );
    // The key's edit form, a roll, and the admin's own password.
    let (form, _) = one_entry!(&app, &auth, "key.updated", json!({"type": "key", "id": 1}), {
        let (status, _, _) = dashboard_form(
            &app,
            &cookie,
            "/admin/keys/1",
            &[
                ("name", "renamed-in-form"),
                ("rate_limit_per_minute", "12"),
                ("rate_limit_per_hour", "1000"),
                ("rate_limit_per_day", "10000"),
                ("rate_limit_per_month", ""),
                ("expires_at", ""),
                ("scopes", ""),
                ("ip_allowlist", ""),
                ("meta", ""),
            ],
        )
        .await;
        assert_eq!(status, 303);
    });
    assert_eq!(form["after"]["name"], "renamed-in-form", "{form:#}");
    one_entry!(&app, &auth, "key.rolled", json!({"type": "key", "id": 1}), {
        let (status, _, _) =
            dashboard_form(&app, &cookie, "/admin/keys/1/roll", &[("grace_seconds", "0")]).await;
        assert_eq!(status, 303);
    });
    // The admin's own password, last: it ends their tokens, so the log is read with a new one.
    let before = newest_id(&app, &auth).await;
    let (status, _, _) = dashboard_form(
        &app,
        &cookie,
        "/admin/account/password",
        &[
            ("current_password", ADMIN_PASSWORD),
            ("new_password", "a-brand-new-one-9"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    let login = app.login(ADMIN_EMAIL, "a-brand-new-one-9").await;
    let fresh = Auth::Bearer(login.body["access_token"].as_str().expect("a token").to_owned());
    let written = entries_since(&app, &fresh, before).await;
    assert_eq!(written.len(), 1, "{written:#?}");
    assert_eq!(
        (
            &written[0]["action"],
            &written[0]["via"],
            &written[0]["actor"]["email"]
        ),
        (
            &json!("user.password_changed"),
            &json!("dashboard"),
            &json!(ADMIN_EMAIL)
        )
    );
    let all = app.get("/api/audit-log?limit=200", &fresh).await.text;
    assert!(!all.contains("lin-password-1") && !all.contains("a-brand-new-one-9"));
}

/// Invitations and sign-ups are changes of users too: the invitation is the admin's, the
/// account the new user's own, from their address.
#[actix_web::test]
async fn invitations_and_sign_ups_are_recorded() {
    for (backend, mode) in [(Backend::Sqlite, "invite"), (Backend::Postgres, "open")] {
        let Some(app) = TestApp::on(backend)
            .signup(mode)
            .trusted_proxy_hops(1)
            .spawn()
            .await
        else {
            continue;
        };
        let admin = app.admin().await;
        let auth = admin.auth();
        if mode == "invite" {
            let cookie = dashboard_session(&app).await;
            let (invited, _) = one_entry!(
                &app,
                &auth,
                "user.invited",
                json!({"type": "user", "id": null}),
                {
                    let (status, _, _) = dashboard_form(
                        &app,
                        &cookie,
                        "/admin/users/invite",
                        &[("email", "guest@example.com")],
                    )
                    .await;
                    assert_eq!(status, 200);
                }
            );
            assert_eq!(invited["after"]["email"], "guest@example.com");
            assert_eq!(invited["actor"]["email"], ADMIN_EMAIL);
            continue;
        }
        let (joined, _) = one_entry!(
            &app,
            &auth,
            "user.created",
            json!({"type": "user", "id": admin.id.0 + 1}),
            {
                let (status, _) =
                    crate::portal::sign_up(&app, None, "joiner@example.com", "long-enough-1", "198.51.100.7")
                        .await;
                assert_eq!(status, 303);
            }
        );
        assert_eq!(
            joined["actor"],
            json!({"id": admin.id.0 + 1, "email": "joiner@example.com"})
        );
        assert_eq!(
            (joined["via"].as_str(), joined["ip"].as_str()),
            (Some("dashboard"), Some("198.51.100.7"))
        );
    }
}

async fn the_log_is_filtered_paged_and_admins_only(app: TestApp) {
    let admin = app.admin().await;
    let auth = admin.auth();
    for n in 0..5 {
        app.create_key(&admin, json!({"name": format!("k{n}")})).await;
    }
    let reply = app
        .patch("/api/api-keys/2/", &auth, json!({"name": "renamed"}))
        .await;
    assert_eq!(reply.status, 200);

    // A page at a time, newest first, every entry once.
    let mut seen = Vec::new();
    let mut path = "/api/audit-log?limit=2&action=key.created".to_owned();
    loop {
        let page = app.get(&path, &auth).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let entries = page.body["entries"].as_array().expect("entries").clone();
        assert!(entries.len() <= 2);
        seen.extend(entries.iter().map(|e| e["target"]["id"].as_i64().expect("id")));
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/audit-log?limit=2&action=key.created&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, [5, 4, 3, 2, 1]);

    let of_two = app.get("/api/audit-log?target_type=key&target_id=2", &auth).await;
    let actions: Vec<&str> = of_two.body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    assert_eq!(actions, ["key.updated", "key.created"]);

    let by_admin = app
        .get(&format!("/api/audit-log?actor={}&limit=200", admin.id.0), &auth)
        .await;
    assert_eq!(by_admin.body["entries"].as_array().map(Vec::len), Some(6));
    let future = app.get("/api/audit-log?from=2999-01-01T00:00:00Z", &auth).await;
    assert_eq!(future.body["entries"], json!([]));
    let past = app.get("/api/audit-log?to=2000-01-01T00:00:00Z", &auth).await;
    assert_eq!(past.body["entries"], json!([]));

    for bad in [
        "to=",
        "limit=",
        "limit=0",
        "limit=201",
        "from=yesterday",
        "action=DROP%20TABLE",
        "target_type=pet",
        "cursor=-1",
        "actor=1e3",
        "action=key.created%00",
    ] {
        let reply = app.get(&format!("/api/audit-log?{bad}"), &auth).await;
        reply.assert_error(400, "validation_error");
    }

    let user = app.user("nosy@example.com").await;
    app.get("/api/audit-log", &user.auth())
        .await
        .assert_error(403, "forbidden");
    app.get("/api/audit-log", &Auth::None)
        .await
        .assert_error(401, "authentication_required");
}

async fn a_refused_change_writes_nothing_and_the_log_cannot_be_rewritten(app: TestApp) {
    let admin = app.admin().await;
    let auth = admin.auth();
    let owner = app.user("capped@example.com").await;
    let key = app
        .create_key(&owner, json!({"name": "mine", "rate_limit_per_minute": 10}))
        .await;
    let before = newest_id(&app, &auth).await;
    // Above the owner's ceiling: refused by the policy inside the transaction.
    let reply = app
        .patch(
            &format!("/api/api-keys/{}/", key["id"]),
            &owner.auth(),
            json!({"rate_limit_per_minute": 1_000_000}),
        )
        .await;
    reply.assert_error(403, "forbidden");
    let reply = app
        .post(
            &format!("/api/api-keys/{}/credits", key["id"]),
            &owner.auth(),
            json!({"add": 5}),
        )
        .await;
    reply.assert_error(403, "forbidden");
    assert_eq!(entries_since(&app, &auth, before).await, Vec::<Value>::new());

    // Append-only: the database itself refuses to rewrite an entry.
    use diesel::prelude::*;
    let mut conn = app.pool.get().expect("connection");
    let rewritten = diesel::sql_query("UPDATE audit_log SET action = 'key.nothing'").execute(&mut conn);
    assert!(rewritten.is_err(), "an UPDATE of the audit log was allowed");
    let still = app.get("/api/audit-log?action=key.nothing", &auth).await;
    assert_eq!(still.body["entries"], json!([]));
}
