//! `GET /healthz`.

use serde_json::json;

use crate::helpers::{Auth, Backend, TestApp, on_both_backends, spawn_app};

on_both_backends!(health_reports_the_database_and_the_counter_store);

async fn health_reports_the_database_and_the_counter_store(app: TestApp) {
    let reply = app.get("/healthz", &Auth::None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let expected = match app.redis {
        None => json!({"status": "ok", "database": "ok", "counters": "memory"}),
        Some(_) => json!({"status": "ok", "database": "ok", "counters": "redis", "redis": "ok"}),
    };
    assert_eq!(reply.body, expected);
    assert_eq!(app.get("/healthz/", &Auth::None).await.status, 200);
}

#[actix_web::test]
async fn health_and_the_api_answer_503_when_the_database_is_gone() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let ada = app.user("ada@example.com").await;
    app.drop_database();

    let reply = app.get("/healthz", &Auth::None).await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.body["database"], "unavailable");
    let reply = app.get("/api/api-keys/", &ada.auth()).await;
    reply.assert_error(503, "database_unavailable");
    assert_eq!(reply.header("retry-after"), Some("5"));
}
