//! The OpenAPI document against the running API: every operation answers as documented (status
//! and body schema), and nothing outside the document answers.

use actix_web::http::Method;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, Auth, Backend, Reply, spawn_app};

/// Checks `value` against a JSON Schema subset: $ref, allOf, type, required, properties,
/// items, enum, const.
fn conforms(value: &Value, schema: &Value, doc: &Value, at: &str) -> Result<(), String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or_default();
        return conforms(value, &doc["components"]["schemas"][name], doc, at);
    }
    if let Some(all) = schema["allOf"].as_array() {
        return all.iter().try_for_each(|s| conforms(value, s, doc, at));
    }
    let type_of = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let allowed: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !allowed.is_empty() && !allowed.contains(&type_of(value)) {
        return Err(format!("{at}: {value} is not {allowed:?}"));
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {options:?}"));
    }
    if !schema["const"].is_null() && &schema["const"] != value {
        return Err(format!("{at}: {value} is not {}", schema["const"]));
    }
    if let Value::Object(object) = value {
        for field in schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(field) {
                return Err(format!("{at}: {field} is missing"));
            }
        }
        if let Some(properties) = schema["properties"].as_object() {
            for (name, sub) in properties {
                if let Some(v) = object.get(name) {
                    conforms(v, sub, doc, &format!("{at}.{name}"))?;
                }
            }
        }
    }
    if let (Value::Array(items), Some(sub)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            conforms(item, sub, doc, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Asserts `reply` is one of the answers documented for `method path`.
#[track_caller]
fn documented(doc: &Value, method: &str, path: &str, reply: &Reply) {
    let operation = &doc["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is not in the document");
    let response = &operation["responses"][reply.status.as_u16().to_string()];
    assert!(
        response.is_object(),
        "{method} {path} answered {} which is not documented: {}",
        reply.status,
        reply.text
    );
    if reply
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/csv"))
    {
        assert!(
            response["content"]["text/csv"].is_object(),
            "{method} {path} answered CSV, which is not documented"
        );
        return;
    }
    if let Some(schema) = response["content"]["application/json"].get("schema")
        && let Err(problem) = conforms(&reply.body, schema, doc, "body")
    {
        panic!("{method} {path} → {}: {problem}\n{}", reply.status, reply.text);
    }
}

#[actix_web::test]
async fn every_operation_answers_as_the_document_says_and_nothing_else_answers() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let reply = app.get("/api/openapi.json", &Auth::None).await;
    assert_eq!(reply.status, 200);
    let doc = reply.body.clone();
    assert_eq!(doc["openapi"], "3.1.0");
    documented(&doc, "get", "/api/openapi.json", &reply);
    let mut checked = Vec::new();
    let mut check = |method: &str, path: &str, reply: Reply| {
        documented(&doc, method, path, &reply);
        checked.push(format!("{method} {path}"));
    };

    check("get", "/healthz", app.get("/healthz", &Auth::None).await);
    check("get", "/metrics", app.get("/metrics", &Auth::None).await);
    check(
        "get",
        "/api/openapi.json",
        app.get("/api/openapi.json/", &Auth::None).await,
    );
    check("post", "/api/auth/token", app.login(ADMIN_EMAIL, "wrong").await);
    check(
        "post",
        "/api/auth/token",
        app.post("/api/auth/token", &Auth::None, json!({"email": 1}))
            .await,
    );
    check(
        "post",
        "/api/auth/token",
        app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await,
    );
    let admin = app.admin().await;
    let user = app.user("ada@example.com").await;

    check(
        "get",
        "/api/api-keys",
        app.get("/api/api-keys/", &Auth::None).await,
    );
    check(
        "post",
        "/api/api-keys",
        app.post("/api/api-keys/", &user.auth(), json!({"name": ""}))
            .await,
    );
    let created = app
        .post(
            "/api/api-keys/",
            &user.auth(),
            json!({"name": "documented", "rate_limit_per_minute": 5}),
        )
        .await;
    let id = created.body["id"].clone();
    let key = created.body["key"].as_str().expect("key").to_owned();
    check("post", "/api/api-keys", created);
    check(
        "get",
        "/api/api-keys",
        app.get("/api/api-keys/?active=true", &user.auth()).await,
    );
    check(
        "get",
        "/api/api-keys",
        app.get("/api/api-keys/?active=maybe", &user.auth()).await,
    );
    check(
        "get",
        "/api/api-keys/{id}",
        app.get(&format!("/api/api-keys/{id}/"), &user.auth()).await,
    );
    check(
        "get",
        "/api/api-keys/{id}",
        app.get("/api/api-keys/424242/", &user.auth()).await,
    );
    check(
        "patch",
        "/api/api-keys/{id}",
        app.patch(
            &format!("/api/api-keys/{id}/"),
            &user.auth(),
            json!({"name": "renamed"}),
        )
        .await,
    );
    check(
        "patch",
        "/api/api-keys/{id}",
        app.patch(&format!("/api/api-keys/{id}/"), &user.auth(), json!({"name": 5}))
            .await,
    );
    check(
        "get",
        "/api/api-keys/{id}/stats",
        app.get(&format!("/api/api-keys/{id}/stats/"), &user.auth()).await,
    );
    for body in [
        json!({"set": 100}),
        json!({"add": 5}),
        json!({"add": 1, "set": 2}),
        json!({}),
    ] {
        check(
            "post",
            "/api/api-keys/{id}/credits",
            app.post(&format!("/api/api-keys/{id}/credits/"), &admin.auth(), body)
                .await,
        );
    }
    check(
        "post",
        "/api/api-keys/{id}/credits",
        app.post(
            &format!("/api/api-keys/{id}/credits/"),
            &user.auth(),
            json!({"add": 5}),
        )
        .await,
    );
    check(
        "post",
        "/api/api-keys/import",
        app.post(
            "/api/api-keys/import/",
            &admin.auth(),
            json!([{"key": "imported.for-the-document", "owner": "ada@example.com", "name": "imported"}, {"name": 1}]),
        )
        .await,
    );
    check(
        "post",
        "/api/api-keys/import",
        app.post("/api/api-keys/import", &admin.auth(), json!({"not": "an array"}))
            .await,
    );
    check(
        "post",
        "/api/api-keys/import",
        app.post("/api/api-keys/import", &user.auth(), json!([])).await,
    );
    check(
        "post",
        "/api/api-keys/{id}/roll",
        app.post(
            &format!("/api/api-keys/{id}/roll/"),
            &user.auth(),
            json!({"grace_seconds": -1}),
        )
        .await,
    );
    check(
        "post",
        "/api/api-keys/{id}/roll",
        app.post("/api/api-keys/424242/roll", &user.auth(), json!({}))
            .await,
    );

    let spare = app
        .post("/api/api-keys/", &user.auth(), json!({"name": "to roll"}))
        .await;
    let spare = spare.body["id"].clone();
    check(
        "post",
        "/api/api-keys/{id}/roll",
        app.post(
            &format!("/api/api-keys/{spare}/roll"),
            &user.auth(),
            json!({"grace_seconds": 60}),
        )
        .await,
    );
    let with_key = Auth::Header("Api-Key", key.clone());
    check("get", "/api/whoami", app.get("/api/whoami", &with_key).await);
    check(
        "get",
        "/api/whoami",
        app.get("/api/whoami", &Auth::Header("Api-Key", "kg_nope".into()))
            .await,
    );
    check(
        "get",
        "/api/rate-limit",
        app.get("/api/rate-limit", &with_key).await,
    );
    check(
        "post",
        "/api/keys/verify",
        app.post("/api/keys/verify", &admin.auth(), json!({"key": key}))
            .await,
    );
    check(
        "post",
        "/api/keys/verify",
        app.post("/api/keys/verify", &user.auth(), json!({"key": key}))
            .await,
    );
    check(
        "post",
        "/api/keys/verify",
        app.post("/api/keys/verify", &Auth::None, json!({"key": key}))
            .await,
    );
    check(
        "patch",
        "/api/api-keys/{id}",
        app.patch(
            &format!("/api/api-keys/{id}/"),
            &user.auth(),
            json!({"rate_limit_per_minute": null}),
        )
        .await,
    );
    check(
        "delete",
        "/api/api-keys/{id}",
        app.delete(&format!("/api/api-keys/{id}/"), &user.auth()).await,
    );

    check("get", "/api/users", app.get("/api/users/", &admin.auth()).await);
    check("get", "/api/users", app.get("/api/users/", &user.auth()).await);
    let made = app
        .post(
            "/api/users/",
            &admin.auth(),
            json!({"email": "new@example.com", "password": "long-enough-1", "max_rate_limit_per_day": null}),
        )
        .await;
    let new_id = made.body["id"].clone();
    check("post", "/api/users", made);
    check(
        "post",
        "/api/users",
        app.post(
            "/api/users/",
            &admin.auth(),
            json!({"email": "bad", "password": "x"}),
        )
        .await,
    );
    check(
        "get",
        "/api/users/{id}",
        app.get(&format!("/api/users/{new_id}/"), &admin.auth()).await,
    );
    check(
        "get",
        "/api/users/{id}",
        app.get("/api/users/424242/", &admin.auth()).await,
    );
    check(
        "patch",
        "/api/users/{id}",
        app.patch(
            &format!("/api/users/{new_id}/"),
            &admin.auth(),
            json!({"max_rate_limit_per_minute": 5}),
        )
        .await,
    );
    check(
        "patch",
        "/api/users/{id}",
        app.patch(
            &format!("/api/users/{}/", admin.id),
            &admin.auth(),
            json!({"is_active": false}),
        )
        .await,
    );
    check(
        "post",
        "/api/auth/password",
        app.post(
            "/api/auth/password",
            &user.auth(),
            json!({"current_password": "wrong-password", "new_password": "another-one-1"}),
        )
        .await,
    );
    check(
        "post",
        "/api/auth/password",
        app.post(
            "/api/auth/password",
            &user.auth(),
            json!({"current_password": crate::helpers::PASSWORD, "new_password": "another-one-1"}),
        )
        .await,
    );

    let hook = app
        .post(
            "/api/webhooks",
            &admin.auth(),
            json!({"url": "https://hooks.example.com/keygate", "events": ["key.created"]}),
        )
        .await;
    let hook_id = hook.body["id"].clone();
    check("post", "/api/webhooks", hook);
    check(
        "post",
        "/api/webhooks",
        app.post(
            "/api/webhooks",
            &admin.auth(),
            json!({"url": "ftp://x", "events": []}),
        )
        .await,
    );
    check(
        "get",
        "/api/webhooks",
        app.get("/api/webhooks", &admin.auth()).await,
    );
    check(
        "get",
        "/api/webhooks",
        app.get("/api/webhooks", &user.auth()).await,
    );
    check(
        "get",
        "/api/webhooks/{id}",
        app.get(&format!("/api/webhooks/{hook_id}"), &admin.auth()).await,
    );
    check(
        "get",
        "/api/webhooks/{id}",
        app.get("/api/webhooks/424242", &admin.auth()).await,
    );
    check(
        "patch",
        "/api/webhooks/{id}",
        app.patch(
            &format!("/api/webhooks/{hook_id}"),
            &admin.auth(),
            json!({"enabled": false}),
        )
        .await,
    );
    check(
        "patch",
        "/api/webhooks/{id}",
        app.patch(
            &format!("/api/webhooks/{hook_id}"),
            &admin.auth(),
            json!({"events": ["nope"]}),
        )
        .await,
    );
    check(
        "delete",
        "/api/webhooks/{id}",
        app.delete(&format!("/api/webhooks/{hook_id}"), &admin.auth())
            .await,
    );
    check(
        "delete",
        "/api/webhooks/{id}",
        app.delete(&format!("/api/webhooks/{hook_id}"), &admin.auth())
            .await,
    );
    for (query, who) in [
        ("?granularity=month", &admin),
        ("?format=csv", &user),
        ("?granularity=week", &user),
        ("?owner=admin@example.com", &user),
    ] {
        check(
            "get",
            "/api/usage",
            app.get(&format!("/api/usage{query}"), &who.auth()).await,
        );
    }
    check(
        "get",
        "/api/audit-log",
        app.get("/api/audit-log?limit=5", &admin.auth()).await,
    );
    check(
        "get",
        "/api/audit-log",
        app.get("/api/audit-log?limit=0", &admin.auth()).await,
    );
    check(
        "get",
        "/api/audit-log",
        app.get("/api/audit-log", &user.auth()).await,
    );

    // Every documented operation was exercised...
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in paths {
        for method in methods.as_object().expect("methods").keys() {
            assert!(
                checked.contains(&format!("{method} {path}")),
                "{method} {path} was not exercised"
            );
        }
    }
    // ...and nothing outside the document answers: other methods are 405, other paths 404.
    for (path, methods) in paths {
        let concrete = path.replace("{id}", &id.to_string());
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if !methods
                .as_object()
                .expect("methods")
                .contains_key(&method.to_lowercase())
            {
                let reply = app
                    .request(
                        Method::from_bytes(method.as_bytes()).expect("method"),
                        &concrete,
                        &admin.auth(),
                        None,
                    )
                    .await;
                assert_eq!(
                    reply.status, 405,
                    "{method} {path} is not documented, yet answered {}",
                    reply.status
                );
            }
        }
    }
    for undocumented in [
        "/api",
        "/api/keys",
        "/api/user",
        "/api/api-keys/1/usage",
        "/api/openapi.yaml",
    ] {
        assert_eq!(
            app.get(undocumented, &admin.auth()).await.status,
            404,
            "{undocumented}"
        );
    }
    println!(
        "OpenAPI: {} operations on {} paths answered as documented",
        checked.len(),
        paths.len()
    );
}
