//! Hostile and malformed requests get a 4xx JSON answer, never a 500 or a dropped connection.

use actix_web::http::Method;
use serde_json::json;

use crate::helpers::{Auth, TestApp, on_both_backends};

on_both_backends!(
    malformed_json_is_refused_with_a_message,
    wrong_types_are_reported_field_by_field,
    zero_negative_and_oversized_limits_are_refused,
    a_300_character_name_is_refused,
    a_5_mb_body_gets_413_not_a_dropped_connection,
    unknown_and_non_numeric_ids_are_not_found,
    unknown_routes_and_methods_answer_json,
);

async fn malformed_json_is_refused_with_a_message(app: TestApp) {
    let ada = app.user("ada@example.com").await;
    for body in [
        &b"{\"name\": "[..],
        b"not json",
        b"",
        b"[1,2,3]",
        b"\"a string\"",
        &[0xff, 0xfe][..],
    ] {
        let reply = app
            .request(Method::POST, "/api/api-keys/", &ada.auth(), Some(body.to_vec()))
            .await;
        reply.assert_error(400, "invalid_json");
    }
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let reply = app
        .request(
            Method::POST,
            "/api/api-keys/",
            &ada.auth(),
            Some(deep.into_bytes()),
        )
        .await;
    reply.assert_error(400, "invalid_json");
    let reply = app
        .request(
            Method::POST,
            "/api/auth/token",
            &Auth::None,
            Some(b"{oops".to_vec()),
        )
        .await;
    reply.assert_error(400, "invalid_json");
}

async fn wrong_types_are_reported_field_by_field(app: TestApp) {
    let ada = app.user("ada@example.com").await;
    let reply = app
        .post(
            "/api/api-keys/",
            &ada.auth(),
            json!({"name": 42, "rate_limit_per_minute": "sixty", "rate_limit_per_hour": 1.5,
                   "expires_at": "next tuesday", "colour": "blue"}),
        )
        .await;
    reply.assert_error(400, "validation_error");
    let fields = &reply.body["fields"];
    for field in [
        "name",
        "rate_limit_per_minute",
        "rate_limit_per_hour",
        "expires_at",
        "colour",
    ] {
        assert!(
            fields[field].is_string(),
            "{field} should be reported: {}",
            reply.text
        );
    }
    let key = app.create_key(&ada, json!({"name": "ok"})).await;
    let path = format!("/api/api-keys/{}/", key["id"]);
    let reply = app
        .patch(&path, &ada.auth(), json!({"is_active": "yes", "name": null}))
        .await;
    reply.assert_error(400, "validation_error");
    assert!(reply.body["fields"]["is_active"].is_string());
    assert!(reply.body["fields"]["name"].is_string());
    let reply = app
        .patch(
            &path,
            &ada.auth(),
            json!({"expires_at": "2001-01-01", "name": "not kept"}),
        )
        .await;
    reply.assert_error(400, "validation_error");
    assert!(
        reply.body["fields"]["expires_at"]
            .as_str()
            .is_some_and(|m| m.contains("RFC 3339"))
    );
    assert_eq!(
        app.get(&path, &ada.auth()).await.body["name"],
        "ok",
        "a refused change changes nothing"
    );
    app.get("/api/api-keys/?active=maybe", &ada.auth())
        .await
        .assert_error(400, "invalid_query");
}

async fn zero_negative_and_oversized_limits_are_refused(app: TestApp) {
    let ada = app.user("ada@example.com").await;
    for limit in [json!(0), json!(-5), json!(2_147_483_648_i64), json!(1e30)] {
        let reply = app
            .post(
                "/api/api-keys/",
                &ada.auth(),
                json!({"name": "x", "rate_limit_per_day": limit}),
            )
            .await;
        reply.assert_error(400, "validation_error");
        assert!(
            reply.body["fields"]["rate_limit_per_day"].is_string(),
            "{limit}: {}",
            reply.text
        );
    }
    assert_eq!(
        app.get("/api/api-keys/", &ada.auth()).await.body,
        json!([]),
        "nothing was created"
    );
}

async fn a_300_character_name_is_refused(app: TestApp) {
    let ada = app.user("ada@example.com").await;
    let reply = app
        .post("/api/api-keys/", &ada.auth(), json!({"name": "n".repeat(300)}))
        .await;
    reply.assert_error(400, "validation_error");
    assert_eq!(reply.body["fields"]["name"], "must be at most 100 characters");
    app.post("/api/api-keys/", &ada.auth(), json!({"name": "  "}))
        .await
        .assert_error(400, "validation_error");
    app.post("/api/api-keys/", &ada.auth(), json!({}))
        .await
        .assert_error(400, "validation_error");
}

async fn a_5_mb_body_gets_413_not_a_dropped_connection(app: TestApp) {
    let ada = app.user("ada@example.com").await;
    let huge = json!({"name": "x".repeat(5 * 1024 * 1024)})
        .to_string()
        .into_bytes();
    let reply = app
        .request(Method::POST, "/api/api-keys/", &ada.auth(), Some(huge))
        .await;
    reply.assert_error(413, "payload_too_large");
    let still_fine = app.get("/api/api-keys/", &ada.auth()).await;
    assert_eq!(still_fine.status, 200);
}

async fn unknown_and_non_numeric_ids_are_not_found(app: TestApp) {
    let ada = app.user("ada@example.com").await;
    for path in [
        "/api/api-keys/999999/",
        "/api/api-keys/abc/",
        "/api/api-keys/1.5/",
        "/api/api-keys/99999999999999999999999/",
        "/api/api-keys/-1/stats/",
        "/api/api-keys/%00/",
    ] {
        app.get(path, &ada.auth()).await.assert_error(404, "not_found");
    }
    app.delete("/api/api-keys/999999/", &ada.auth())
        .await
        .assert_error(404, "not_found");
    app.patch("/api/api-keys/x/", &ada.auth(), json!({"name": "y"}))
        .await
        .assert_error(404, "not_found");
}

async fn unknown_routes_and_methods_answer_json(app: TestApp) {
    app.get("/nope", &Auth::None).await.assert_error(404, "not_found");
    app.request(Method::PUT, "/api/api-keys/", &Auth::None, None)
        .await
        .assert_error(405, "method_not_allowed");
    app.request(Method::GET, "/api/auth/token", &Auth::None, None)
        .await
        .assert_error(405, "method_not_allowed");
}
