//! `POST /api/auth/token`: email and password in, a bearer token out (behind the login
//! throttle). `POST /api/auth/password`: the caller's own password change, which ends every
//! token and session they hold.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::clock::Now;
use crate::error::ApiError;
use crate::gate::client_ip;
use crate::routes::api::body::{Fields, JsonObject};
use crate::routes::api::principal::Principal;
use crate::state::AppState;
use crate::users::{self, UserError};

pub async fn token(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: JsonObject,
    now: Now,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::new(body);
    let email = fields.required("email", |s| Ok(s.to_owned()));
    let password = fields.required("password", |s| Ok(s.to_owned()));
    fields.finish()?;
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::InvalidCredentials);
    };
    let address = client_ip(&state, &req);
    let user = users::log_in(&state.pool, &state.limiter, address, &email, &password, now).await?;
    let ttl = state.token_ttl.as_secs();
    let expires_at = now.unix_secs().saturating_add_unsigned(ttl);
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({
            "access_token": state.tokens.issue(user.id, user.auth_epoch, expires_at),
            "token_type": "Bearer",
            "expires_in": ttl,
        })))
}

pub async fn password(
    state: web::Data<AppState>,
    who: Principal,
    body: JsonObject,
    now: Now,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::new(body);
    let current = fields.required("current_password", |s| Ok(s.to_owned()));
    let new = fields.required("new_password", |s| Ok(s.to_owned()));
    fields.finish()?;
    let (Some(current), Some(new)) = (current, new) else {
        return Err(ApiError::InvalidJson(
            "current_password and new_password are required".into(),
        ));
    };
    let stores = (&*state.limiter, &*state.keys);
    match users::change_password(&state.pool, stores, who.actor(), (&current, &new), now).await {
        Ok(_) => Ok(HttpResponse::NoContent().finish()),
        Err(UserError::InvalidCredentials) => Err(ApiError::Forbidden(
            "The current password is wrong; the password was not changed.".into(),
        )),
        Err(e) => Err(e.into()),
    }
}
