//! `POST /api/keys/verify`: for services that check keys themselves (as with Unkey). An admin's
//! bearer token asks whether a key is good and, unless `"consume": false`, counts one request
//! against its limits. Not counted by the gate itself: the caller is a service, not a consumer.

use actix_web::{HttpResponse, web};
use chrono::Utc;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::keys::KeyStatus;
use crate::keys::secret::PresentedKey;
use crate::limits::Bucket;
use crate::routes::api::body::{Fields, JsonObject};
use crate::routes::api::principal::Principal;
use crate::state::AppState;

pub async fn verify(
    state: web::Data<AppState>,
    who: Principal,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    crate::policy::require_admin(who.actor(), "verify keys").map_err(|r| ApiError::Forbidden(r.0))?;
    let mut fields = Fields::new(body);
    let key = fields.required("key", |s| Ok(s.to_owned()));
    let consume = fields.boolean("consume").unwrap_or(true);
    fields.finish()?;
    let key = key.ok_or_else(|| ApiError::InvalidJson("key is missing".into()))?;

    let info = match PresentedKey::parse(&key) {
        Ok(presented) => state.keys.lookup(&state.pool, &presented).await?,
        Err(_) => None,
    };
    let Some(info) = info else {
        return Ok(HttpResponse::Ok().json(json!({
            "valid": false, "code": "NOT_FOUND", "key_id": null, "owner": null, "name": null,
            "limits": null, "remaining": null, "reset": null,
        })));
    };
    let now = Utc::now().timestamp();
    let mut code = match info.status_at(now) {
        KeyStatus::Active => "VALID",
        KeyStatus::Expired => "EXPIRED",
        KeyStatus::Inactive => "INACTIVE",
    };
    let (mut remaining, mut reset) = (Value::Null, Value::Null);
    if code == "VALID" {
        let decision = state
            .limiter
            .hit(Bucket::Key(info.id), &info.policy, u32::from(consume))
            .await
            .map_err(|_| ApiError::RateLimiterUnavailable)?;
        let full = decision.counts.iter().any(|c| c.remaining() == Some(0));
        if consume {
            state.usage.record(info.id, decision.allowed, now);
        }
        if (consume && !decision.allowed) || (!consume && full) {
            code = "RATE_LIMITED";
        }
        if let Some(window) = decision.binding() {
            remaining = json!(window.remaining());
            let wait = if code == "RATE_LIMITED" {
                window.retry_after_ms()
            } else {
                window.reset_ms()
            };
            reset = json!(wait.div_ceil(1000));
        }
    }
    let limits: serde_json::Map<String, Value> = info
        .policy
        .windows()
        .iter()
        .map(|(w, l)| (w.name().to_owned(), json!(l)))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "valid": code == "VALID",
        "code": code,
        "key_id": info.id,
        "owner": info.owner_email,
        "name": info.name,
        "limits": limits,
        "remaining": remaining,
        "reset": reset,
    })))
}
