//! `GET /api/usage`: usage for billing, as JSON or CSV, streamed a page of rows at a time so an
//! export of a year of hours holds one page in memory. Users export their own keys; admins any
//! key or owner. The rows are what the usage flush wrote: exact per key and period.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime};
use futures_util::stream;

use crate::analytics::{Export, Granularity};
use crate::clock::{Now, rfc3339};
use crate::db::models::{Counted, UsageFilter};
use crate::db::{DbPool, KeyId};
use crate::error::ApiError;
use crate::policy::Actor;
use crate::routes::api::principal::Principal;
use crate::routes::params::Params;
use crate::state::AppState;
use crate::users::{self, Email, UserError};

/// The query parameters, as the route table documents them (`openapi`).
pub const QUERY: &[(&str, &str)] = &[
    (
        "from",
        r#"{"type": "string", "format": "date-time", "description": "periods starting at or after (default: the start of this month, UTC)"}"#,
    ),
    (
        "to",
        r#"{"type": "string", "format": "date-time", "description": "periods starting before (default: now)"}"#,
    ),
    (
        "granularity",
        r#"{"enum": ["hour", "day", "month"], "description": "default day; hours are kept 35 days, days 400"}"#,
    ),
    (
        "key_id",
        r#"{"type": "integer", "minimum": 0, "maximum": 9223372036854775807}"#,
    ),
    (
        "owner",
        r#"{"type": "string", "format": "email", "maxLength": 254, "description": "an owner's email (users: only their own)"}"#,
    ),
    (
        "format",
        r#"{"enum": ["json", "csv"], "description": "or send Accept: text/csv"}"#,
    ),
];

pub const CSV_HEADER: &str = "key_id,period_start,allowed,rejected\n";

/// One row as a CSV line.
pub fn csv_line(&(key, start, allowed, rejected): &Counted) -> String {
    format!("{},{},{allowed},{rejected}\n", key.0, rfc3339(start))
}

/// One row as a JSON object.
pub fn json_row(&(key, start, allowed, rejected): &Counted) -> String {
    serde_json::json!({"key_id": key.0, "period_start": rfc3339(start), "allowed": allowed, "rejected": rejected})
        .to_string()
}

/// The first instant of the month of `at`.
pub fn month_start(at: NaiveDateTime) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(at.year(), at.month(), 1)
        .unwrap_or(at.date())
        .and_time(NaiveTime::MIN)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

type Cursor = (KeyId, NaiveDateTime);

/// Where a stream is: a page read and not yet sent, a page to read, or the end.
enum Step {
    Page(Vec<Counted>, Option<Cursor>),
    Fetch(Cursor),
    Done,
}

/// Streams `export` in `format`: the first page is read before answering, so a failing
/// database is a 503 and not a cut-off body.
pub async fn stream_export(pool: DbPool, export: Export, format: Format) -> Result<HttpResponse, ApiError> {
    let (rows, next) = export.page(&pool, None).await?;
    let start = (Step::Page(rows, next), true, false);
    let body = stream::unfold(start, move |(step, first, mut any)| {
        let pool = pool.clone();
        async move {
            let (rows, next) = match step {
                Step::Done => return None,
                Step::Page(rows, next) => (rows, next),
                Step::Fetch(cursor) => match export.page(&pool, Some(cursor)).await {
                    Ok(page) => page,
                    Err(e) => {
                        // The answer has begun: all that is left is to cut it short.
                        log::warn!("usage export stopped: {e}");
                        let error = actix_web::error::ErrorServiceUnavailable(e);
                        return Some((Err(error), (Step::Done, false, any)));
                    }
                },
            };
            let mut chunk = String::new();
            if first {
                chunk.push_str(match format {
                    Format::Csv => CSV_HEADER,
                    Format::Json => "{\"rows\":[",
                });
            }
            for row in &rows {
                match format {
                    Format::Csv => chunk.push_str(&csv_line(row)),
                    Format::Json => {
                        if any {
                            chunk.push(',');
                        }
                        chunk.push_str(&json_row(row));
                    }
                }
                any = true;
            }
            let step = match next {
                Some(cursor) => Step::Fetch(cursor),
                None => {
                    if format == Format::Json {
                        chunk.push_str("]}");
                    }
                    Step::Done
                }
            };
            Some((
                Ok::<_, actix_web::Error>(web::Bytes::from(chunk)),
                (step, false, any),
            ))
        }
    });
    let content_type = match format {
        Format::Csv => "text/csv; charset=utf-8",
        Format::Json => "application/json",
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .streaming(body))
}

/// Reads the export's parameters; users are narrowed to their own keys by the domain.
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Principal,
    query: web::Query<HashMap<String, String>>,
    now: Now,
) -> Result<HttpResponse, ApiError> {
    let mut p = Params::new(query.into_inner());
    let from = p.time("from").unwrap_or_else(|| month_start(now.naive()));
    let to = p
        .time("to")
        .unwrap_or_else(|| now.naive() + chrono::Duration::seconds(1));
    let granularity = p
        .choice("granularity", &["hour", "day", "month"])
        .and_then(Granularity::parse)
        .unwrap_or(Granularity::Day);
    let key = p.integer("key_id", 0, i64::MAX).map(KeyId);
    let owner = p.text("owner", |t| Email::parse(t).map_err(|e| e.to_string()));
    let format = p.choice("format", &["json", "csv"]);
    p.finish().map_err(ApiError::ValidationError)?;
    let csv = match format {
        Some(f) => f == "csv",
        None => accepts_csv(&req),
    };
    let format = if csv { Format::Csv } else { Format::Json };
    // An empty period, or an owner no account has: no rows (as a filter that matches nothing).
    if from >= to {
        return Ok(empty(format));
    }
    let owner = match owner {
        Some(email) => match owner_id(&state, who.actor(), &email).await? {
            Some(id) => Some(id),
            None => return Ok(empty(format)),
        },
        None => None,
    };
    let export = Export::new(UsageFilter { from, to, key, owner }, granularity)
        .for_actor(who.actor())
        .map_err(|r| ApiError::Forbidden(r.0))?;
    stream_export(state.pool.clone(), export, format).await
}

/// An export with no rows.
fn empty(format: Format) -> HttpResponse {
    match format {
        Format::Csv => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "text/csv; charset=utf-8"))
            .body(CSV_HEADER),
        Format::Json => HttpResponse::Ok().json(serde_json::json!({"rows": []})),
    }
}

/// `Accept: text/csv` (and not JSON first).
fn accepts_csv(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            let csv = accept.find("text/csv");
            let json = accept.find("application/json");
            matches!((csv, json), (Some(c), j) if j.is_none_or(|j| c < j))
        })
}

/// The id behind an owner's email (`None`: no account has it). A user naming anyone but
/// themselves is refused before any lookup, so the answer reveals no account.
async fn owner_id(
    state: &AppState,
    actor: Actor,
    email: &Email,
) -> Result<Option<crate::db::UserId>, ApiError> {
    if !actor.is_admin {
        let me = users::find(&state.pool, actor.user_id).await?;
        if me.email != email.as_str() {
            return Err(ApiError::Forbidden(
                "Only admins may export other users' usage.".into(),
            ));
        }
        return Ok(Some(me.id));
    }
    match users::find_by_email(&state.pool, email).await {
        Ok(user) => Ok(Some(user.id)),
        Err(UserError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
