//! [`Principal`]: the user behind a key-management request, from `Authorization: Bearer` or
//! else a dashboard admin's session (SameSite=Lax, so other sites cannot ride on it for
//! writes). An API key alone never authorises key management.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use chrono::Utc;

use actix_session::SessionExt;

use crate::db::models::User;
use crate::error::ApiError;
use crate::keys::service::Actor;
use crate::routes::admin::session_admin;
use crate::state::AppState;
use crate::users::{self, UserError};

pub struct Principal(pub User);

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor::of(&self.0)
    }
}

const KEY_CANNOT_MANAGE: &str =
    "API keys cannot manage keys; send Authorization: Bearer <token> from POST /api/auth/token.";
const NO_CREDENTIALS: &str =
    "Authentication required; send Authorization: Bearer <token> from POST /api/auth/token.";

/// The bearer token of the request; `None` when it carries no credentials at all.
fn bearer(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let headers = req.headers();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::InvalidToken("it is not ASCII".into()))?;
        let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            return Ok(Some(credentials.trim().to_owned()));
        }
        if scheme.eq_ignore_ascii_case("api-key") {
            return Err(ApiError::AuthenticationRequired(KEY_CANNOT_MANAGE));
        }
        return Err(ApiError::InvalidToken(
            "the Authorization scheme must be Bearer".into(),
        ));
    }
    if headers.contains_key("api-key") {
        return Err(ApiError::AuthenticationRequired(KEY_CANNOT_MANAGE));
    }
    Ok(None)
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Principal, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer(req);
        let session = req.get_session();
        Box::pin(async move {
            let state = state
                .ok_or_else(|| ApiError::internal(std::io::Error::other("AppState is not registered")))?;
            let Some(token) = token? else {
                return match session_admin(&state, &session).await {
                    Ok(Some(admin)) => Ok(Principal(admin)),
                    Ok(None) => Err(ApiError::AuthenticationRequired(NO_CREDENTIALS)),
                    Err(_) => Err(ApiError::internal(std::io::Error::other(
                        "reading the session failed",
                    ))),
                };
            };
            let claims = state.tokens.verify(&token, Utc::now().timestamp())?;
            match users::find(&state.pool, claims.user_id).await {
                Ok(user) if user.is_active => Ok(Principal(user)),
                Ok(_) | Err(UserError::NotFound) => {
                    Err(ApiError::InvalidToken("its user is no longer active".into()))
                }
                Err(e) => Err(e.into()),
            }
        })
    }
}
