//! The API's one route table, and the OpenAPI 3.1 document made from it.
//!
//! `startup` registers the JSON API from [`OPERATIONS`], and `GET /api/openapi.json` describes
//! the same table, so the document cannot drift from the routes: an operation that is not in
//! the table is not served.

use actix_web::body::BoxBody;
use actix_web::dev::ServiceRequest;
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpResponse, Route, web};

use crate::error::ApiError;
use crate::routes::api::{audit, auth, caller, import, keys, usage, users, verify, webhooks};
use crate::routes::health;
use crate::routes::metrics;

mod document;

pub use document::{document, openapi};

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
    /// An admin's bearer token, or an API key holding `keygate:verify` (key verification).
    Verifier,
}

/// Whether the gate stands in front of an operation, and what one request costs there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// keygate's own probes and key verification (a service checking its callers' keys).
    Exempt,
    /// Counted: each request spends this much of the caller's windows (0: only reads them).
    Counts(u32),
}

pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
    /// Whether the gate stands in front of it, and at what cost per request: the gate takes
    /// both from here.
    pub gate: Gate,
    /// The JSON body's schema name in `components.schemas`, if there is a body.
    pub request: Option<&'static str>,
    /// Query parameters: name and JSON Schema (as JSON text), exactly what the handler parses.
    pub query: &'static [(&'static str, &'static str)],
    /// Whether the success answer may also be CSV (`text/csv`, a string).
    pub csv: bool,
    /// Documented answers: status, description, response schema name.
    pub responses: &'static [(u16, &'static str, Option<&'static str>)],
    pub route: fn() -> Route,
}

impl Operation {
    pub fn gated(&self) -> bool {
        self.gate != Gate::Exempt
    }
}

pub static OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/healthz",
        summary: "Liveness, and whether the database answers",
        access: Access::Open,
        gate: Gate::Exempt,
        request: None,
        query: &[],
        csv: false,
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
        gate: Gate::Exempt,
        request: None,
        query: &[],
        csv: false,
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
        gate: Gate::Counts(1),
        request: None,
        query: &[],
        csv: false,
        responses: &[(200, "The OpenAPI 3.1 document", None)],
        route: || web::get().to(openapi),
    },
    Operation {
        method: "post",
        path: "/api/auth/token",
        summary: "Exchange email and password for a bearer token",
        access: Access::Gated,
        gate: Gate::Counts(1),
        request: Some("Credentials"),
        query: &[],
        csv: false,
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
        gate: Gate::Counts(1),
        request: None,
        query: &[],
        csv: false,
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
        gate: Gate::Counts(0),
        request: None,
        query: &[],
        csv: false,
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
        access: Access::Verifier,
        gate: Gate::Exempt,
        request: Some("VerifyRequest"),
        query: &[],
        csv: false,
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
        gate: Gate::Counts(1),
        request: None,
        query: &[("active", r#"{"type": "boolean"}"#)],
        csv: false,
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
        gate: Gate::Counts(1),
        request: Some("NewKey"),
        query: &[],
        csv: false,
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
    // Before /api/api-keys/{id}: the router tries paths in this order.
    Operation {
        method: "post",
        path: "/api/api-keys/import",
        summary: "Import keys from another system (JSON array, or JSON lines as application/x-ndjson)",
        access: Access::Admin,
        gate: Gate::Counts(1),
        request: Some("KeyImport"),
        query: &[],
        csv: false,
        responses: &[
            (
                200,
                "What was imported, left unchanged, or refused, line by line",
                Some("ImportReport"),
            ),
            (400, "Not a JSON array (or JSON lines)", Some("Error")),
            (401, "Not a user", Some("Error")),
            (413, "The body is too large", Some("Error")),
        ],
        route: || web::post().to(import::import),
    },
    Operation {
        method: "get",
        path: "/api/api-keys/{id}",
        summary: "One key",
        access: Access::User,
        gate: Gate::Counts(1),
        request: None,
        query: &[],
        csv: false,
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
        summary: "Change a key's name, limits, expiry, state, metadata, scopes or IP allowlist",
        access: Access::User,
        gate: Gate::Counts(1),
        request: Some("KeyPatch"),
        query: &[],
        csv: false,
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
        gate: Gate::Counts(1),
        request: None,
        query: &[],
        csv: false,
        responses: &[
            (204, "Deactivated", None),
            (401, "Not a user", Some("Error")),
            (404, "No such key (or not yours)", Some("Error")),
        ],
        route: || web::delete().to(keys::deactivate),
    },
    Operation {
        method: "post",
        path: "/api/api-keys/{id}/roll",
        summary: "A new secret for a key (shown once); the old one works for grace_seconds more",
        access: Access::User,
        gate: Gate::Counts(1),
        request: Some("KeyRoll"),
        query: &[],
        csv: false,
        responses: &[
            (201, "The key, with its new secret", Some("CreatedKey")),
            (400, "Fields are not valid", Some("Error")),
            (401, "Not a user", Some("Error")),
            (404, "No such key (or not yours)", Some("Error")),
        ],
        route: || web::post().to(keys::roll),
    },
    Operation {
        method: "get",
        path: "/api/api-keys/{id}/stats",
        summary: "Current windows, totals and the last 24 hours of a key",
        access: Access::User,
        gate: Gate::Counts(1),
        request: None,
        query: &[],
        csv: false,
        responses: &[
            (200, "Usage", Some("KeyStats")),
            (401, "Not a user", Some("Error")),
            (404, "No such key (or not yours)", Some("Error")),
        ],
        route: || web::get().to(keys::stats),
    },
    Operation {
        method: "post",
        path: "/api/api-keys/{id}/credits",
        summary: "Top up (`add`) or replace (`set`) a key's credits, atomically with the requests spending them; with an Idempotency-Key header, a retried top-up is made once",
        access: Access::Admin,
        gate: Gate::Counts(1),
        request: Some("CreditChange"),
        query: &[],
        csv: false,
        responses: &[
            (200, "The key, with its balance", Some("Key")),
            (
                400,
                "Neither or both of add and set, or not a whole number",
                Some("Error"),
            ),
            (401, "Not a user", Some("Error")),
            (404, "No such key", Some("Error")),
            (409, "add on a key without a balance (unlimited)", Some("Error")),
        ],
        route: || web::post().to(keys::credits),
    },
    Operation {
        method: "post",
        path: "/api/auth/password",
        summary: "Change the caller's own password; every token and dashboard session of theirs ends",
        access: Access::User,
        gate: Gate::Counts(1),
        request: Some("PasswordChange"),
        query: &[],
        csv: false,
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
        gate: Gate::Counts(1),
        request: None,
        query: &[],
        csv: false,
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
        gate: Gate::Counts(1),
        request: Some("NewUser"),
        query: &[],
        csv: false,
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
        gate: Gate::Counts(1),
        request: None,
        query: &[],
        csv: false,
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
        gate: Gate::Counts(1),
        request: Some("UserPatch"),
        query: &[],
        csv: false,
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
    Operation {
        method: "get",
        path: "/api/webhooks",
        summary: "Webhook endpoints (never their secrets)",
        access: Access::Admin,
        gate: Gate::Counts(1),
        request: None,
        query: &[],
        csv: false,
        responses: &[
            (200, "The endpoints", Some("WebhookList")),
            (401, "Not a user", Some("Error")),
            (403, "Not an admin", Some("Error")),
        ],
        route: || web::get().to(webhooks::list),
    },
    Operation {
        method: "post",
        path: "/api/webhooks",
        summary: "Register an endpoint for events; the answer holds its signing secret, shown once",
        access: Access::Admin,
        gate: Gate::Counts(1),
        request: Some("NewWebhook"),
        query: &[],
        csv: false,
        responses: &[
            (201, "The endpoint, with its secret", Some("WebhookCreated")),
            (
                400,
                "Fields are not valid, or the URL resolves to a private address",
                Some("Error"),
            ),
            (401, "Not a user", Some("Error")),
            (403, "Not an admin", Some("Error")),
        ],
        route: || web::post().to(webhooks::create),
    },
    Operation {
        method: "get",
        path: "/api/webhooks/{id}",
        summary: "An endpoint and its 50 most recent deliveries (status, attempts, latency)",
        access: Access::Admin,
        gate: Gate::Counts(1),
        request: None,
        query: &[],
        csv: false,
        responses: &[
            (200, "The endpoint", Some("WebhookDetail")),
            (401, "Not a user", Some("Error")),
            (403, "Not an admin", Some("Error")),
            (404, "No such endpoint", Some("Error")),
        ],
        route: || web::get().to(webhooks::get),
    },
    Operation {
        method: "patch",
        path: "/api/webhooks/{id}",
        summary: "Change an endpoint's URL or events, or switch it off and on",
        access: Access::Admin,
        gate: Gate::Counts(1),
        request: Some("WebhookPatch"),
        query: &[],
        csv: false,
        responses: &[
            (200, "The changed endpoint", Some("Webhook")),
            (400, "Fields are not valid", Some("Error")),
            (401, "Not a user", Some("Error")),
            (403, "Not an admin", Some("Error")),
            (404, "No such endpoint", Some("Error")),
        ],
        route: || web::patch().to(webhooks::update),
    },
    Operation {
        method: "delete",
        path: "/api/webhooks/{id}",
        summary: "Delete an endpoint and its deliveries",
        access: Access::Admin,
        gate: Gate::Counts(1),
        request: None,
        query: &[],
        csv: false,
        responses: &[
            (204, "Deleted", None),
            (401, "Not a user", Some("Error")),
            (403, "Not an admin", Some("Error")),
            (404, "No such endpoint", Some("Error")),
        ],
        route: || web::delete().to(webhooks::delete),
    },
    Operation {
        method: "get",
        path: "/api/usage",
        summary: "Usage for billing: allowed and refused requests per key and hour, day or month, as JSON or CSV (format=csv or Accept: text/csv), streamed; users see their own keys",
        access: Access::User,
        gate: Gate::Counts(1),
        request: None,
        query: usage::QUERY,
        csv: true,
        responses: &[
            (200, "The rows, in key and period order", Some("UsageReport")),
            (400, "A query parameter is not valid", Some("Error")),
            (401, "Not a user", Some("Error")),
            (403, "A user naming another owner", Some("Error")),
        ],
        route: || web::get().to(usage::list),
    },
    Operation {
        method: "get",
        path: "/api/audit-log",
        summary: "Who changed which key, user or webhook, from where, with the fields before and after; newest first, a page at a time (next_cursor)",
        access: Access::Admin,
        gate: Gate::Counts(1),
        request: None,
        query: audit::QUERY,
        csv: false,
        responses: &[
            (200, "A page of entries", Some("AuditLog")),
            (400, "A query parameter is not valid", Some("Error")),
            (401, "Not a user", Some("Error")),
            (403, "Not an admin", Some("Error")),
        ],
        route: || web::get().to(audit::list),
    },
];

/// Registers the operations of [`OPERATIONS`] that are `gated` (or not): one resource per
/// path, whose other methods answer 405, behind the gate at the path's cost when it is gated.
/// `startup` calls it twice: outside the gated scope for the exempt ones, inside it for the rest.
pub fn register(cfg: &mut web::ServiceConfig, gated: bool) {
    let mut paths: Vec<(&str, Gate)> = Vec::new();
    for op in OPERATIONS.iter().filter(|op| op.gated() == gated) {
        if !paths.iter().any(|(path, _)| *path == op.path) {
            paths.push((op.path, op.gate));
        }
    }
    for (path, gate) in paths {
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
        match gate {
            Gate::Exempt => cfg.service(resource),
            Gate::Counts(cost) => cfg.service(resource.wrap(from_fn(
                move |req: ServiceRequest, next: Next<BoxBody>| crate::gate::gate_at_cost(req, next, cost),
            ))),
        };
    }
}
