//! `GET /api/whoami` (counted like any request: lets a consumer try a key) and
//! `GET /api/rate-limit` (not counted: the caller's windows).

use std::net::IpAddr;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::{Value, json};

use crate::contract::Scopes;
use crate::db::{KeyId, UserId};
use crate::error::ApiError;
use crate::gate::{Caller, Identity};
use crate::state::AppState;
use crate::users::{self, UserError};

/// `/api/whoami`'s answer, serialised straight from borrowed fields.
#[derive(Serialize)]
struct WhoAmI<'a> {
    tier: &'static str,
    key: Option<KeyRef<'a>>,
    user: Option<UserRef>,
    client_ip: Option<IpAddr>,
}

#[derive(Serialize)]
struct KeyRef<'a> {
    id: KeyId,
    name: &'a str,
    prefix: &'a str,
    scopes: &'a Scopes,
}

#[derive(Serialize)]
struct UserRef {
    id: UserId,
    email: String,
}

pub async fn whoami(req: HttpRequest, caller: web::ReqData<Caller>) -> Result<HttpResponse, ApiError> {
    let key = match &caller.identity {
        Identity::Key(info) => Some(KeyRef {
            id: info.id,
            name: &info.name,
            prefix: &info.prefix,
            scopes: &info.scopes,
        }),
        _ => None,
    };
    let user = match &caller.identity {
        // The state only where it is needed: taking it costs a shared reference count.
        Identity::User(id) => match users::find(&AppState::of(&req)?.pool, *id).await {
            Ok(user) if user.is_active => Some(UserRef {
                id: user.id,
                email: user.email,
            }),
            Ok(_) | Err(UserError::NotFound) => {
                Err(ApiError::InvalidToken("its user is no longer active".into()))?
            }
            Err(e) => Err(e)?,
        },
        _ => None,
    };
    Ok(HttpResponse::Ok().json(WhoAmI {
        tier: caller.identity.tier(),
        key,
        user,
        client_ip: caller.client_ip,
    }))
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
