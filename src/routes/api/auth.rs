//! `POST /api/auth/token`: email and password in, a bearer token out.

use actix_web::{HttpResponse, web};
use chrono::Utc;
use serde_json::json;

use crate::error::ApiError;
use crate::routes::api::body::{Fields, JsonObject};
use crate::state::AppState;
use crate::users;

pub async fn token(state: web::Data<AppState>, body: JsonObject) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::new(body);
    let email = fields.required("email", |s| Ok(s.to_owned()));
    let password = fields.required("password", |s| Ok(s.to_owned()));
    fields.finish()?;
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::InvalidCredentials);
    };
    let user = users::authenticate(&state.pool, &email, &password).await?;
    let ttl = state.token_ttl.as_secs();
    let expires_at = Utc::now().timestamp().saturating_add_unsigned(ttl);
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({
            "access_token": state.tokens.issue(user.id, expires_at),
            "token_type": "Bearer",
            "expires_in": ttl,
        })))
}
