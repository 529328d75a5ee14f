//! `POST /api/auth/token` and bearer tokens.

use serde_json::json;

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, Auth, PASSWORD, TestApp, on_both_backends};

on_both_backends!(
    the_right_password_gets_a_bearer_token,
    bad_credentials_get_401_whatever_is_wrong,
    a_deactivated_user_can_neither_log_in_nor_use_an_old_token,
);

async fn the_right_password_gets_a_bearer_token(app: TestApp) {
    let reply = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 3600);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let token = reply.body["access_token"].as_str().expect("a token");
    let listed = app.get("/api/api-keys/", &Auth::Bearer(token.to_owned())).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let upper = app.login(&ADMIN_EMAIL.to_uppercase(), ADMIN_PASSWORD).await;
    assert_eq!(upper.status, 200, "emails are case-insensitive");
}

async fn bad_credentials_get_401_whatever_is_wrong(app: TestApp) {
    app.user("ada@example.com").await;
    app.login("ada@example.com", "wrong-password")
        .await
        .assert_error(401, "invalid_credentials");
    app.login("nobody@example.com", PASSWORD)
        .await
        .assert_error(401, "invalid_credentials");
    app.login("ada@example.com", "")
        .await
        .assert_error(401, "invalid_credentials");
    let reply = app
        .post(
            "/api/auth/token",
            &Auth::None,
            json!({"email": "ada@example.com"}),
        )
        .await;
    reply.assert_error(400, "validation_error");
    assert_eq!(reply.body["fields"]["password"], "is required");
}

async fn a_deactivated_user_can_neither_log_in_nor_use_an_old_token(app: TestApp) {
    let ada = app.user("ada@example.com").await;
    keygate::users::set_active(
        &app.pool,
        &app.state.keys,
        keygate::policy::Actor::CLI,
        ada.id,
        false,
        keygate::clock::Now::read(),
    )
    .await
    .expect("deactivate");
    app.login("ada@example.com", PASSWORD)
        .await
        .assert_error(401, "invalid_credentials");
    app.get("/api/api-keys/", &ada.auth())
        .await
        .assert_error(401, "invalid_token");
}
