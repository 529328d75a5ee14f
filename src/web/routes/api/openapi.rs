//! The API's one route table, and the OpenAPI 3.1 document made from it.
//!
//! `startup` registers the JSON API from [`OPERATIONS`], and `GET /api/openapi.json` describes
//! the same table, so the document cannot drift from the routes: an operation that is not in
//! the table is not served.

use actix_web::{HttpResponse, Route, web};
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::routes::api::{auth, caller, keys, users, verify};
use crate::routes::health;
use crate::routes::metrics;

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; not rate limited.
    Open,
    /// Any caller (API key, bearer token or anonymous), counted by the gate.
    Gated,
    /// A user: a keygate bearer token (never a dashboard session).
    User,
    /// An admin's bearer token.
    Admin,
}

pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
    /// Whether the gate stands in front of it. Only keygate's own probes and key verification
    /// (a service checking its callers' keys) are not: `startup` registers those outside the
    /// gated scope.
    pub gated: bool,
    /// The JSON body's schema name in `components.schemas`, if there is a body.
    pub request: Option<&'static str>,
    /// Documented answers: status, description, response schema name.
    pub responses: &'static [(u16, &'static str, Option<&'static str>)],
    pub route: fn() -> Route,
}

pub static OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/healthz",
        summary: "Liveness, and whether the database answers",
        access: Access::Open,
        gated: false,
        request: None,
        responses: &[
            (200, "Healthy", Some("Health")),
            (503, "The database is unreachable", Some("Health")),
        ],
        route: || web::get().to(health::healthz),
    },
    Operation {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics (bearer METRICS_TOKEN when set)",
        access: Access::Open,
        gated: false,
        request: None,
        responses: &[
            (200, "Prometheus text format", None),
            (401, "METRICS_TOKEN is set and was not sent", Some("Error")),
        ],
        route: || web::get().to(metrics::metrics),
    },
    Operation {
        method: "get",
        path: "/api/openapi.json",
        summary: "This document",
        access: Access::Gated,
        gated: true,
        request: None,
        responses: &[(200, "The OpenAPI 3.1 document", None)],
        route: || web::get().to(openapi),
    },
    Operation {
        method: "post",
        path: "/api/auth/token",
        summary: "Exchange email and password for a bearer token",
        access: Access::Gated,
        gated: true,
        request: Some("Credentials"),
        responses: &[
            (200, "A bearer token", Some("Token")),
            (400, "The body is not valid", Some("Error")),
            (401, "Wrong email or password", Some("Error")),
        ],
        route: || web::post().to(auth::token),
    },
    Operation {
        method: "get",
        path: "/api/whoami",
        summary: "Who the gate thinks is calling (counted like any request)",
        access: Access::Gated,
        gated: true,
        request: None,
        responses: &[
            (200, "The caller", Some("WhoAmI")),
            (401, "A bad API key or token", Some("Error")),
        ],
        route: || web::get().to(caller::whoami),
    },
    Operation {
        method: "get",
        path: "/api/rate-limit",
        summary: "The caller's tier and windows (not counted)",
        access: Access::Gated,
        gated: true,
        request: None,
        responses: &[
            (200, "The caller's windows", Some("RateLimitStatus")),
            (401, "A bad API key or token", Some("Error")),
        ],
        route: || web::get().to(caller::rate_limit),
    },
    Operation {
        method: "post",
        path: "/api/keys/verify",
        summary: "Verify a key for a service, counting one request unless consume is false",
        access: Access::Admin,
        gated: false,
        request: Some("VerifyRequest"),
        responses: &[
            (200, "The verdict", Some("Verification")),
            (400, "The body is not valid", Some("Error")),
            (401, "No bearer token", Some("Error")),
            (403, "Not an admin", Some("Error")),
        ],
        route: || web::post().to(verify::verify),
    },
    Operation {
        method: "get",
        path: "/api/api-keys",
        summary: "The caller's keys (an admin's: everyone's), newest first",
        access: Access::User,
        gated: true,
        request: None,
        responses: &[
            (200, "Keys", Some("KeyList")),
            (400, "A bad `active` filter", Some("Error")),
            (401, "Not a user", Some("Error")),
        ],
        route: || web::get().to(keys::list),
    },
    Operation {
        method: "post",
        path: "/api/api-keys",
        summary: "Create a key; the full key is in this answer only",
        access: Access::User,
        gated: true,
        request: Some("NewKey"),
        responses: &[
            (201, "The key, with its secret", Some("CreatedKey")),
            (400, "Fields are not valid", Some("Error")),
            (401, "Not a user", Some("Error")),
            (
                403,
                "Above the owner's ceiling, or for another user (admins only)",
                Some("Error"),
            ),
            (404, "No user has the owner's email", Some("Error")),
            (409, "The owner's account is deactivated", Some("Error")),
            (413, "The body is too large", Some("Error")),
        ],
        route: || web::post().to(keys::create),
    },
    Operation {
        method: "get",
        path: "/api/api-keys/{id}",
        summary: "One key",
        access: Access::User,
        gated: true,
        request: None,
        responses: &[
            (200, "The key", Some("Key")),
            (401, "Not a user", Some("Error")),
            (404, "No such key (or not yours)", Some("Error")),
        ],
        route: || web::get().to(keys::get),
    },
    Operation {
        method: "patch",
        path: "/api/api-keys/{id}",
        summary: "Change a key's name, limits, expiry or state",
        access: Access::User,
        gated: true,
        request: Some("KeyPatch"),
        responses: &[
            (200, "The changed key", Some("Key")),
            (400, "Fields are not valid", Some("Error")),
            (401, "Not a user", Some("Error")),
            (
                403,
                "A change only admins may make (see the authorization table)",
                Some("Error"),
            ),
            (404, "No such key (or not yours)", Some("Error")),
        ],
        route: || web::patch().to(keys::update),
    },
    Operation {
        method: "delete",
        path: "/api/api-keys/{id}",
        summary: "Deactivate a key (the row stays)",
        access: Access::User,
        gated: true,
        request: None,
        responses: &[
            (204, "Deactivated", None),
            (401, "Not a user", Some("Error")),
            (404, "No such key (or not yours)", Some("Error")),
        ],
        route: || web::delete().to(keys::deactivate),
    },
    Operation {
        method: "get",
        path: "/api/api-keys/{id}/stats",
        summary: "Current windows, totals and the last 24 hours of a key",
        access: Access::User,
        gated: true,
        request: None,
        responses: &[
            (200, "Usage", Some("KeyStats")),
            (401, "Not a user", Some("Error")),
            (404, "No such key (or not yours)", Some("Error")),
        ],
        route: || web::get().to(keys::stats),
    },
    Operation {
        method: "post",
        path: "/api/auth/password",
        summary: "Change the caller's own password; every token and dashboard session of theirs ends",
        access: Access::User,
        gated: true,
        request: Some("PasswordChange"),
        responses: &[
            (204, "Changed", None),
            (400, "The new password is not valid", Some("Error")),
            (401, "Not a user", Some("Error")),
            (403, "The current password is wrong", Some("Error")),
            (429, "Too many wrong current passwords", Some("Error")),
        ],
        route: || web::post().to(auth::password),
    },
    Operation {
        method: "get",
        path: "/api/users",
        summary: "Every user, with their ceiling",
        access: Access::Admin,
        gated: true,
        request: None,
        responses: &[
            (200, "Users", Some("UserList")),
            (401, "Not a user", Some("Error")),
            (403, "Not an admin", Some("Error")),
        ],
        route: || web::get().to(users::list),
    },
    Operation {
        method: "post",
        path: "/api/users",
        summary: "Create a user",
        access: Access::Admin,
        gated: true,
        request: Some("NewUser"),
        responses: &[
            (201, "The user", Some("User")),
            (409, "A user with this email exists", Some("Error")),
            (400, "Fields are not valid", Some("Error")),
            (401, "Not a user", Some("Error")),
            (403, "Not an admin", Some("Error")),
        ],
        route: || web::post().to(users::create),
    },
    Operation {
        method: "get",
        path: "/api/users/{id}",
        summary: "One user",
        access: Access::Admin,
        gated: true,
        request: None,
        responses: &[
            (200, "The user", Some("User")),
            (401, "Not a user", Some("Error")),
            (403, "Not an admin", Some("Error")),
            (404, "No such user", Some("Error")),
        ],
        route: || web::get().to(users::get),
    },
    Operation {
        method: "patch",
        path: "/api/users/{id}",
        summary: "Activate or deactivate a user (ending their tokens and sessions), make or unmake an admin, set their ceiling",
        access: Access::Admin,
        gated: true,
        request: Some("UserPatch"),
        responses: &[
            (200, "The changed user", Some("User")),
            (400, "Fields are not valid", Some("Error")),
            (401, "Not a user", Some("Error")),
            (
                403,
                "Not an admin, or an admin's change of their own account",
                Some("Error"),
            ),
            (404, "No such user", Some("Error")),
        ],
        route: || web::patch().to(users::update),
    },
];

fn schemas() -> Value {
    let key = json!({
        "type": "object",
        "required": ["id", "name", "prefix", "owner", "owner_id", "rate_limit_per_minute", "rate_limit_per_hour",
                     "rate_limit_per_day", "expires_at", "is_active", "status", "created_at", "updated_at", "last_used_at"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string", "maxLength": 100},
            "prefix": {"type": "string", "description": "kg_ and the first 6 characters"},
            "owner": {"type": "string", "format": "email"},
            "owner_id": {"type": "integer"},
            "rate_limit_per_minute": {"type": ["integer", "null"], "minimum": 1},
            "rate_limit_per_hour": {"type": ["integer", "null"], "minimum": 1},
            "rate_limit_per_day": {"type": ["integer", "null"], "minimum": 1},
            "expires_at": {"type": ["string", "null"], "format": "date-time"},
            "is_active": {"type": "boolean"},
            "status": {"enum": ["active", "inactive", "expired"]},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "last_used_at": {"type": ["string", "null"], "format": "date-time"}
        }
    });
    let limit = json!({"type": ["integer", "null"], "minimum": 1, "maximum": 2147483647});
    // What KeyName::parse enforces: 1–100 characters, at least one not a space, no control
    // characters (Unicode Cc).
    let name = json!({"type": "string", "minLength": 1, "maxLength": 100,
        "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"});
    // What Email::parse enforces.
    let email = json!({"type": "string", "format": "email", "maxLength": 254});
    let password = json!({"type": "string", "minLength": 8, "maxLength": 1024});
    let expiry = json!({"type": ["string", "null"], "format": "date-time",
        "description": "UTC, whole seconds; a time already past makes the key expired at once"});
    let window = json!({"type": "object", "required": ["limit", "remaining", "reset"], "properties": {
        "limit": {"type": ["integer", "null"]}, "used": {"type": "integer"},
        "remaining": {"type": ["integer", "null"]}, "reset": {"type": "integer", "description": "seconds"}}});
    json!({
        "Error": {"type": "object", "required": ["error", "message"], "properties": {
            "error": {"type": "string", "description": "snake_case code"},
            "message": {"type": "string"},
            "fields": {"type": "object", "additionalProperties": {"type": "string"}}}},
        "TooManyRequests": {"type": "object", "required": ["error", "message"], "properties": {
            "error": {"enum": ["rate_limit_exceeded", "too_many_attempts"]}, "message": {"type": "string"},
            "limit": {"type": "integer"}, "window": {"enum": ["second", "minute", "hour", "day"]},
            "retry_after": {"type": "integer", "description": "seconds, as in Retry-After"}}},
        "Health": {"type": "object", "required": ["status", "database", "counters"], "properties": {
            "status": {"enum": ["ok", "degraded"]}, "database": {"enum": ["ok", "unavailable"]},
            "counters": {"enum": ["redis", "memory", "none", "unavailable"]}, "redis": {"enum": ["ok", "unavailable"]}}},
        "Credentials": {"type": "object", "required": ["email", "password"], "additionalProperties": false, "properties": {
            "email": {"type": "string"}, "password": {"type": "string"}}},
        "Token": {"type": "object", "required": ["access_token", "token_type", "expires_in"], "properties": {
            "access_token": {"type": "string"}, "token_type": {"const": "Bearer"}, "expires_in": {"type": "integer"}}},
        "WhoAmI": {"type": "object", "required": ["tier", "key", "user", "client_ip"], "properties": {
            "tier": {"enum": ["api_key", "user", "anonymous"]},
            "key": {"type": ["object", "null"]}, "user": {"type": ["object", "null"]}, "client_ip": {"type": ["string", "null"]}}},
        "RateLimitStatus": {"type": "object", "required": ["tier", "windows"], "properties": {
            "tier": {"type": "string"}, "windows": {"type": "object", "additionalProperties": window.clone()}}},
        "VerifyRequest": {"type": "object", "required": ["key"], "additionalProperties": false, "properties": {
            "key": {"type": "string"}, "consume": {"type": "boolean", "default": true}}},
        "Verification": {"type": "object", "required": ["valid", "code", "key_id", "owner", "name", "limits", "remaining", "reset"], "properties": {
            "valid": {"type": "boolean"}, "code": {"enum": ["VALID", "NOT_FOUND", "EXPIRED", "INACTIVE", "RATE_LIMITED"]},
            "key_id": {"type": ["integer", "null"]}, "owner": {"type": ["string", "null"]}, "name": {"type": ["string", "null"]},
            "limits": {"type": ["object", "null"]}, "remaining": {"type": ["integer", "null"]}, "reset": {"type": ["integer", "null"]}}},
        "Key": key,
        "KeyList": {"type": "array", "items": {"$ref": "#/components/schemas/Key"}},
        "CreatedKey": {"allOf": [{"$ref": "#/components/schemas/Key"}, {"type": "object", "required": ["key"], "properties": {
            "key": {"type": "string", "pattern": "^kg_[0-9A-Za-z]{36}$", "description": "the full key, shown once"}}}]},
        "NewKey": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {
            "name": name.clone(),
            "owner": {"allOf": [email.clone()], "description": "the owner's email (admins: anyone; users: only their own); 404 when no user has it"},
            "rate_limit_per_minute": limit.clone(), "rate_limit_per_hour": limit.clone(), "rate_limit_per_day": limit.clone(),
            "expires_at": expiry.clone()}},
        "KeyPatch": {"type": "object", "additionalProperties": false, "properties": {
            "name": name, "rate_limit_per_minute": limit.clone(),
            "rate_limit_per_hour": limit.clone(), "rate_limit_per_day": limit.clone(),
            "expires_at": expiry, "is_active": {"type": "boolean"}}},
        "PasswordChange": {"type": "object", "required": ["current_password", "new_password"], "additionalProperties": false, "properties": {
            "current_password": {"type": "string"}, "new_password": password.clone()}},
        "User": {"type": "object", "required": ["id", "email", "is_admin", "is_active", "max_rate_limit_per_minute",
                 "max_rate_limit_per_hour", "max_rate_limit_per_day", "created_at"], "properties": {
            "id": {"type": "integer"}, "email": {"type": "string", "format": "email"},
            "is_admin": {"type": "boolean"}, "is_active": {"type": "boolean"},
            "max_rate_limit_per_minute": {"type": ["integer", "null"], "description": "the most this user may set on their own keys; null: no ceiling"},
            "max_rate_limit_per_hour": {"type": ["integer", "null"]}, "max_rate_limit_per_day": {"type": ["integer", "null"]},
            "created_at": {"type": "string", "format": "date-time"}}},
        "UserList": {"type": "array", "items": {"$ref": "#/components/schemas/User"}},
        "NewUser": {"type": "object", "required": ["email", "password"], "additionalProperties": false, "properties": {
            "email": email, "password": password,
            "is_admin": {"type": "boolean", "default": false},
            "max_rate_limit_per_minute": limit.clone(), "max_rate_limit_per_hour": limit.clone(), "max_rate_limit_per_day": limit.clone()}},
        "UserPatch": {"type": "object", "additionalProperties": false, "properties": {
            "is_active": {"type": "boolean"}, "is_admin": {"type": "boolean"},
            "max_rate_limit_per_minute": limit.clone(), "max_rate_limit_per_hour": limit.clone(), "max_rate_limit_per_day": limit.clone()}},
        "KeyStats": {"type": "object", "required": ["id", "last_used_at", "current", "totals", "history"], "properties": {
            "id": {"type": "integer"}, "last_used_at": {"type": ["string", "null"]},
            "current": {"type": "object", "additionalProperties": window},
            "totals": {"type": "object", "required": ["allowed", "rejected"]},
            "history": {"type": "array", "maxItems": 24, "items": {"type": "object", "required": ["hour", "allowed", "rejected"]}}}}
    })
}

/// Registers the operations of [`OPERATIONS`] that are `gated` (or not): one resource per
/// path, whose other methods answer 405. `startup` calls it twice: outside the gated scope for
/// the exempt ones, inside it for the rest.
pub fn register(cfg: &mut web::ServiceConfig, gated: bool) {
    let mut paths: Vec<&str> = Vec::new();
    for op in OPERATIONS.iter().filter(|op| op.gated == gated) {
        if !paths.contains(&op.path) {
            paths.push(op.path);
        }
    }
    for path in paths {
        let methods: Vec<String> = OPERATIONS
            .iter()
            .filter(|op| op.path == path)
            .map(|op| op.method.to_uppercase())
            .collect();
        let allow = crate::routes::allow(&methods.iter().map(String::as_str).collect::<Vec<_>>());
        let resource = OPERATIONS
            .iter()
            .filter(|op| op.path == path)
            .fold(web::resource(path), |r, op| r.route((op.route)()))
            .default_service(web::to(move || {
                let allow = allow.clone();
                async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed(allow)) }
            }))
            .wrap(crate::routes::head_as_get_middleware());
        if gated {
            cfg.service(resource.wrap(actix_web::middleware::from_fn(crate::gate::gate)));
        } else {
            cfg.service(resource);
        }
    }
}

/// What an operation can answer besides its own outcomes, from its row in the table: the gate's
/// refusals on gated routes, authentication and authorization refusals by access rule, body
/// errors where there is a body, and 503 everywhere (database or counters unavailable).
fn common_responses(op: &Operation) -> Vec<(u16, &'static str, Option<&'static str>)> {
    let mut extra = Vec::new();
    if op.request.is_some() {
        extra.push((400, "The body is not valid", Some("Error")));
        extra.push((413, "The body is too large", Some("Error")));
    }
    if op.gated || matches!(op.access, Access::User | Access::Admin) {
        extra.push((
            401,
            "A bad API key or token, or none where one is needed",
            Some("Error"),
        ));
    }
    if op.gated && op.path != crate::gate::UNCOUNTED {
        extra.push((429, "Rate limited", Some("TooManyRequests")));
    }
    if op.access == Access::Admin {
        extra.push((403, "Not an admin", Some("Error")));
    }
    extra.push((
        503,
        "The database or the counters are unavailable; retry",
        Some("Error"),
    ));
    extra
}

/// The OpenAPI 3.1 document of [`OPERATIONS`].
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in OPERATIONS {
        let mut responses = Map::new();
        for (status, description, schema) in op.responses.iter().chain(&common_responses(op)) {
            let mut response = json!({"description": description});
            if let Some(schema) = schema {
                response["content"] = json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}});
            }
            if *status == 429 || *status == 503 {
                response["headers"] = json!({"Retry-After": {"schema": {"type": "integer"}}});
            }
            responses.entry(status.to_string()).or_insert(response);
        }
        let security = match op.access {
            Access::Open => json!([]),
            Access::Gated => json!([{}, {"apiKey": []}, {"bearer": []}]),
            Access::User => json!([{"bearer": []}]),
            Access::Admin => json!([{"bearer": []}]),
        };
        let mut operation = json!({
            "summary": op.summary,
            "operationId": format!("{}{}", op.method, op.path.replace(['/', '{', '}', '.', '-'], "_")),
            "security": security,
            "responses": responses,
        });
        if op.path.contains("{id}") {
            operation["parameters"] =
                json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}]);
        }
        if op.path == "/api/api-keys" && op.method == "get" {
            operation["parameters"] =
                json!([{"name": "active", "in": "query", "schema": {"type": "boolean"}}]);
        }
        if let Some(body) = op.request {
            operation["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{body}")}}}});
        }
        let entry = paths.entry(op.path).or_insert_with(|| json!({}));
        entry[op.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "keygate",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "API keys and rate limits. Every path also answers with a trailing slash. Gated answers carry RateLimit-Policy, RateLimit and X-RateLimit-* headers.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "Api-Key"},
                "bearer": {"type": "http", "scheme": "bearer", "description": "from POST /api/auth/token"},
            },
        },
    })
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(document())
}
