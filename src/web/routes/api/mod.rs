//! The JSON API under `/api`.

pub mod audit;
pub mod auth;
pub mod body;
pub mod caller;
pub mod import;
pub mod keys;
pub mod openapi;
pub mod principal;
pub mod usage;
pub mod users;
pub mod verify;
pub mod webhooks;

use actix_web::HttpResponse;

use crate::error::ApiError;

/// Answers requests that match no route.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
