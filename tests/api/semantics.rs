//! HTTP semantics every keygate route keeps (RFC 9110): HEAD wherever GET is (same status and
//! headers, no body), and 405 with `Allow` naming exactly the methods a path serves. Walks the
//! API's route table, the dashboard's pages and the static files.

use keygate::routes::api::openapi::OPERATIONS;

use crate::helpers::{Backend, raw_request, spawn_app};

/// The head and body of a raw answer.
fn split(response: &str) -> (String, String) {
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    (head.to_ascii_lowercase(), body.to_owned())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
}

#[actix_web::test]
async fn head_is_get_without_a_body_and_other_methods_get_405_with_allow() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let admin = app.admin().await;
    let key = app
        .create_key(&admin, serde_json::json!({"name": "walked"}))
        .await;
    let bearer = format!("Bearer {}", admin.token);
    let auth = [("Authorization", bearer.as_str())];
    let concrete = |path: &str| {
        if path.starts_with("/api/users/") {
            path.replace("{id}", &admin.id.to_string())
        } else {
            path.replace("{id}", &key["id"].to_string())
        }
    };

    let mut paths: Vec<(String, Vec<String>)> = Vec::new();
    for op in OPERATIONS {
        let path = concrete(op.path);
        let method = op.method.to_uppercase();
        match paths.iter_mut().find(|(p, _)| *p == path) {
            Some((_, methods)) => methods.push(method),
            None => paths.push((path, vec![method])),
        }
    }
    for (path, methods) in [
        ("/admin/login", &["GET", "POST"][..]),
        ("/admin/keys", &["GET", "POST"]),
        ("/admin/keys/new", &["GET"]),
        ("/admin/users", &["GET", "POST"]),
        ("/admin/account", &["GET"]),
        ("/admin/logout", &["POST"]),
        ("/static/admin.css", &["GET"]),
        ("/static/favicon.svg", &["GET"]),
    ] {
        paths.push((path.to_owned(), methods.iter().map(|m| m.to_string()).collect()));
    }

    let mut walked = 0;
    for (path, methods) in &paths {
        let served: Vec<&str> = methods.iter().map(String::as_str).collect();
        if served.contains(&"GET") {
            let (get_status, get) = raw_request(&app, "GET", path, &auth).await;
            let (head_status, head) = raw_request(&app, "HEAD", path, &auth).await;
            assert_eq!(head_status, get_status, "HEAD {path}");
            let ((get_head, _), (head_head, head_body)) = (split(&get), split(&head));
            assert!(head_body.is_empty(), "HEAD {path} sent a body: {head_body}");
            assert_eq!(
                header(&head_head, "content-type"),
                header(&get_head, "content-type"),
                "HEAD {path}"
            );
            walked += 1;
        }
        let allow = keygate::routes::allow(&served);
        for method in ["PUT", "DELETE", "PATCH", "POST", "OPTIONS"] {
            if served.contains(&method) {
                continue;
            }
            let (status, response) = raw_request(&app, method, path, &auth).await;
            let (head, _) = split(&response);
            assert_eq!(status, 405, "{method} {path}: {response}");
            assert_eq!(
                header(&head, "allow"),
                Some(allow.to_ascii_lowercase().as_str()),
                "{method} {path}"
            );
            walked += 1;
        }
    }
    assert!(walked > 60, "only {walked} checks");
}
