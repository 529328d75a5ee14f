//! `POST /api/keys/verify`: for services that check keys themselves (as with Unkey). An admin's
//! bearer token asks whether a key is good and, unless `"consume": false`, counts one request
//! against its limits. Not counted by the gate itself: the caller is a service, not a consumer.

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use crate::clock::Now;
use crate::error::ApiError;
use crate::keys::KeyStatus;
use crate::keys::cache::KeyInfo;
use crate::keys::secret::PresentedKey;
use crate::limits::Bucket;
use crate::routes::api::body::{Fields, JsonObject};
use crate::routes::api::principal::Principal;
use crate::state::AppState;

pub async fn verify(
    state: web::Data<AppState>,
    who: Principal,
    body: JsonObject,
    now: Now,
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
    let verdict = match info.status_at(now) {
        KeyStatus::Active => windows(&state, &info, consume, now).await?,
        KeyStatus::Expired => Verdict::of("EXPIRED"),
        KeyStatus::Inactive => Verdict::of("INACTIVE"),
    };
    let limits: serde_json::Map<String, Value> = info
        .policy
        .windows()
        .iter()
        .map(|(w, l)| (w.name().to_owned(), json!(l)))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "valid": verdict.code == "VALID",
        "code": verdict.code,
        "key_id": info.id,
        "owner": info.owner_email,
        "name": info.name,
        "limits": limits,
        "remaining": verdict.remaining,
        "reset": verdict.reset,
    })))
}

/// An active key's verdict: its code, and the binding window's room and wait.
struct Verdict {
    code: &'static str,
    remaining: Value,
    reset: Value,
}

impl Verdict {
    fn of(code: &'static str) -> Verdict {
        Verdict {
            code,
            remaining: Value::Null,
            reset: Value::Null,
        }
    }
}

/// Counts one request against an active key (unless `consume` is false) and reports its room.
async fn windows(state: &AppState, info: &KeyInfo, consume: bool, now: Now) -> Result<Verdict, ApiError> {
    let decision = state
        .limiter
        .hit(Bucket::Key(info.id), &info.policy, u32::from(consume), now)
        .await
        .map_err(|_| ApiError::RateLimiterUnavailable)?;
    let full = decision.counts.iter().any(|c| c.remaining() == Some(0));
    if consume {
        state.usage.record(info.id, decision.allowed, now);
    }
    let limited = (consume && !decision.allowed) || (!consume && full);
    let mut verdict = Verdict::of(if limited { "RATE_LIMITED" } else { "VALID" });
    if let Some(window) = decision.binding() {
        verdict.remaining = json!(window.remaining());
        let wait = if limited {
            window.retry_after_ms()
        } else {
            window.reset_ms()
        };
        verdict.reset = json!(wait.div_ceil(1000));
    }
    Ok(verdict)
}
