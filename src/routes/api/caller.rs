//! `GET /api/whoami` (counted like any request: lets a consumer try a key) and
//! `GET /api/rate-limit` (not counted: the caller's windows).

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::gate::{Caller, Identity};
use crate::state::AppState;
use crate::users::{self, UserError};

pub async fn whoami(
    state: web::Data<AppState>,
    caller: web::ReqData<Caller>,
) -> Result<HttpResponse, ApiError> {
    let key = match &caller.identity {
        Identity::Key(info) => json!({"id": info.id, "name": info.name, "prefix": info.prefix}),
        _ => Value::Null,
    };
    let user = match &caller.identity {
        Identity::User(id) => match users::find(&state.pool, *id).await {
            Ok(user) if user.is_active => json!({"id": user.id, "email": user.email}),
            Ok(_) | Err(UserError::NotFound) => {
                Err(ApiError::InvalidToken("its user is no longer active".into()))?
            }
            Err(e) => Err(e)?,
        },
        _ => Value::Null,
    };
    Ok(HttpResponse::Ok().json(json!({
        "tier": caller.identity.tier(),
        "key": key,
        "user": user,
        "client_ip": caller.client_ip.map(|ip| ip.to_string()),
    })))
}

pub async fn rate_limit(caller: web::ReqData<Caller>) -> HttpResponse {
    let windows: serde_json::Map<String, Value> = caller
        .decision
        .counts
        .iter()
        .map(|c| {
            let entry =
                json!({"limit": c.limit, "remaining": c.remaining(), "reset": c.reset_ms().div_ceil(1000)});
            (c.window.name().to_owned(), entry)
        })
        .collect();
    HttpResponse::Ok().json(json!({"tier": caller.identity.tier(), "windows": windows}))
}
