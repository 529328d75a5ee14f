//! `GET /api/audit-log` (admins): the audit log, newest first, filtered and a page at a time.

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::audit::{self, MAX_PAGE};
use crate::db::models::AuditFilter;
use crate::error::ApiError;
use crate::routes::api::principal::Principal;
use crate::routes::params::Params;
use crate::state::AppState;

/// The query parameters, as the route table documents them (`openapi`).
pub const QUERY: &[(&str, &str)] = &[
    (
        "actor",
        r#"{"type": "integer", "minimum": 0, "maximum": 9223372036854775807, "description": "a user's id"}"#,
    ),
    (
        "action",
        r#"{"type": "string", "pattern": "^[a-z_]{1,32}\\.[a-z_]{1,32}$", "description": "key.created, user.updated, …"}"#,
    ),
    ("target_type", r#"{"enum": ["key", "user", "webhook"]}"#),
    (
        "target_id",
        r#"{"type": "integer", "minimum": 0, "maximum": 9223372036854775807}"#,
    ),
    (
        "from",
        r#"{"type": "string", "format": "date-time", "description": "entries at or after"}"#,
    ),
    (
        "to",
        r#"{"type": "string", "format": "date-time", "description": "entries before"}"#,
    ),
    (
        "cursor",
        r#"{"type": "string", "pattern": "^[0-9]{1,18}$", "description": "next_cursor of the page before"}"#,
    ),
    (
        "limit",
        r#"{"type": "integer", "minimum": 1, "maximum": 200, "description": "entries per page (default 50)"}"#,
    ),
];

/// What a filter of the audit log may say, read from a query string (the API's and the
/// dashboard's).
pub fn filter(query: HashMap<String, String>) -> Result<(AuditFilter, i64), crate::validation::FieldErrors> {
    let mut p = Params::new(query);
    let filter = AuditFilter {
        actor_id: p.integer("actor", 0, i64::MAX),
        action: p.text("action", action),
        target_type: p
            .choice("target_type", &["key", "user", "webhook"])
            .map(str::to_owned),
        target_id: p.integer("target_id", 0, i64::MAX),
        from: p.time("from"),
        to: p.time("to"),
        before_id: p.text("cursor", |t| {
            (t.len() <= 18 && t.bytes().all(|b| b.is_ascii_digit()))
                .then(|| t.parse::<i64>().ok())
                .flatten()
                .ok_or_else(|| "must be the next_cursor of a page".to_owned())
        }),
    };
    let limit = p.integer("limit", 1, MAX_PAGE).unwrap_or(50);
    p.finish()?;
    Ok((filter, limit))
}

/// A dotted action name: two runs of lower-case letters and underscores.
fn action(text: &str) -> Result<String, String> {
    let ok = text.split_once('.').is_some_and(|(noun, verb)| {
        [noun, verb].iter().all(|part| {
            (1..=32).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
    });
    if ok {
        Ok(text.to_owned())
    } else {
        Err("must be a dotted action such as key.created".to_owned())
    }
}

pub async fn list(
    state: web::Data<AppState>,
    who: Principal,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let (filter, limit) = filter(query.into_inner()).map_err(ApiError::ValidationError)?;
    let (entries, next) = audit::page(&state.pool, who.actor(), filter, limit).await?;
    Ok(HttpResponse::Ok().json(json!({
        "entries": entries,
        "next_cursor": next.map(|id| id.to_string()),
    })))
}
