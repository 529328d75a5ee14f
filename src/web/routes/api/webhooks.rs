//! `/api/webhooks` (admins): register endpoints, list, change, delete them, and read an
//! endpoint's recent deliveries. The secret is in the creation's answer only.

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use crate::clock::{Now, rfc3339};
use crate::db::models::{Delivery, Webhook};
use crate::error::ApiError;
use crate::routes::api::body::{Fields, JsonObject};
use crate::routes::api::principal::Principal;
use crate::state::AppState;
use crate::webhooks::{self, EndpointUrl, WebhookError, WebhookPatch};

/// An endpoint as the API shows it: never its secret.
pub fn shown(hook: &Webhook) -> Value {
    json!({
        "id": hook.id,
        "url": hook.url,
        "events": hook.events.split_whitespace().collect::<Vec<_>>(),
        "enabled": hook.enabled,
        "created_at": rfc3339(hook.created_at),
        "updated_at": rfc3339(hook.updated_at),
    })
}

fn delivery(d: &Delivery) -> Value {
    json!({
        "id": d.id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "status": d.status,
        "attempts": d.attempts,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "last_latency_ms": d.last_latency_ms,
        "created_at": rfc3339(d.created_at),
        "next_attempt_at": (d.status == "pending").then(|| rfc3339(d.next_attempt_at)),
        "delivered_at": d.delivered_at.map(rfc3339),
    })
}

fn events(v: &Value) -> Result<String, String> {
    let names: Option<Vec<String>> = v
        .as_array()
        .map(|items| items.iter().map(|i| i.as_str().map(str::to_owned)).collect())
        .unwrap_or(None);
    webhooks::parse_events(&names.ok_or("must be a list of event names")?)
}

fn url(text: &str) -> Result<EndpointUrl, String> {
    EndpointUrl::parse(text)
}

pub async fn create(
    state: web::Data<AppState>,
    who: Principal,
    body: JsonObject,
    now: Now,
) -> Result<HttpResponse, ApiError> {
    let has_events = body.contains_key("events");
    let mut f = Fields::new(body);
    let endpoint = f.required("url", url);
    let names = f.json_non_null("events", events);
    if !has_events {
        f.error("events", "is required: a list of event names");
    }
    f.finish()?;
    let (Some(endpoint), Some(names)) = (endpoint, names) else {
        return Err(ApiError::InvalidJson("url and events are required".into()));
    };
    let (hook, secret) = webhooks::create(
        &state.pool,
        who.actor(),
        (endpoint, names),
        state.deliverer.allow_private,
        now,
    )
    .await?;
    let mut answer = shown(&hook);
    answer["secret"] = Value::String(secret);
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/webhooks/{}/", hook.id)))
        .insert_header(("Cache-Control", "no-store"))
        .json(answer))
}

pub async fn list(state: web::Data<AppState>, who: Principal) -> Result<HttpResponse, ApiError> {
    let hooks = webhooks::list(&state.pool, who.actor()).await?;
    Ok(HttpResponse::Ok().json(hooks.iter().map(shown).collect::<Vec<_>>()))
}

pub async fn get(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let (hook, deliveries) = webhooks::get(&state.pool, who.actor(), *id).await?;
    let mut answer = shown(&hook);
    answer["deliveries"] = Value::Array(deliveries.iter().map(delivery).collect());
    Ok(HttpResponse::Ok().json(answer))
}

pub async fn update(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<i64>,
    body: JsonObject,
    now: Now,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body);
    let patch = WebhookPatch {
        url: f.text("url", url),
        events: f.json_non_null("events", events),
        enabled: f.boolean("enabled"),
    };
    f.finish()?;
    let hook = webhooks::update(
        &state.pool,
        who.actor(),
        *id,
        patch,
        state.deliverer.allow_private,
        now,
    )
    .await?;
    Ok(HttpResponse::Ok().json(shown(&hook)))
}

pub async fn delete(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<i64>,
    now: Now,
) -> Result<HttpResponse, ApiError> {
    webhooks::delete(&state.pool, who.actor(), *id, now).await?;
    Ok(HttpResponse::NoContent().finish())
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> ApiError {
        match e {
            WebhookError::NotFound => ApiError::NotFound,
            WebhookError::Invalid(fields) => ApiError::ValidationError(fields),
            WebhookError::Forbidden(refusal) => ApiError::Forbidden(refusal.0),
            WebhookError::Db(e) => e.into(),
        }
    }
}
