//! Errors as the JSON API answers them: one variant per answer, one status per variant, the
//! wire code being the variant's name in snake_case. 500s are opaque to the caller; the log
//! keeps the cause chain.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Map, Value, json};

use crate::db::DbError;
use crate::keys::service::KeyError;
use crate::ledger::LedgerError;
use crate::policy::ReadError;
use crate::users::UserError;
use crate::users::token::TokenError;
use crate::validation::FieldErrors;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("The request body is not valid JSON: {0}.")]
    InvalidJson(String),
    #[error("The query string is not valid: {0}.")]
    InvalidQuery(String),
    #[error("Some fields are not valid; see \"fields\".")]
    ValidationError(FieldErrors),
    #[error("The request body is larger than the {0} bytes allowed.")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    AuthenticationRequired(&'static str),
    #[error("The bearer token is not valid: {0}; get a new one from POST /api/auth/token.")]
    InvalidToken(String),
    #[error("The email or password is wrong.")]
    InvalidCredentials,
    #[error("{0}")]
    InvalidApiKey(String),
    #[error("This API key has expired.")]
    ApiKeyExpired,
    #[error("This API key has been deactivated.")]
    ApiKeyInactive,
    #[error("{message}")]
    RateLimitExceeded {
        message: String,
        limit: u32,
        window: &'static str,
        retry_after: u64,
    },
    /// A balance cannot pay for the request: 429 while a refill will come (`retry_after`
    /// seconds), 403 when none will.
    #[error("{message}")]
    QuotaExhausted {
        message: String,
        remaining: u64,
        retry_after: Option<u64>,
    },
    #[error("Rate limits cannot be checked right now; try again shortly.")]
    RateLimiterUnavailable,
    /// An authorization rule refused the request; the message says which.
    #[error("{0}")]
    Forbidden(String),
    /// The key lacks scopes the route needs (named in `missing_scopes`).
    #[error("This API key lacks the scope{} this route needs: {}.", if .0.len() == 1 { "" } else { "s" }, .0.join(", "))]
    InsufficientScope(Vec<String>),
    #[error("This API key may not be used from this address.")]
    IpNotAllowed,
    #[error("Not found.")]
    NotFound,
    #[error("No user has this email.")]
    UnknownUser,
    /// The request conflicts with what is stored; the sentence says how.
    #[error("{0}")]
    Conflict(String),
    #[error("The path is not allowed: it has a dot segment (. or ..) or an encoded slash.")]
    InvalidPath,
    #[error("Too many login attempts. Try again in {retry_after} seconds.")]
    TooManyAttempts { retry_after: u64 },
    #[error("The upstream service could not be reached.")]
    UpstreamUnavailable,
    #[error("The upstream service did not answer in time.")]
    UpstreamTimeout,
    /// With the methods the path serves, for `Allow`.
    #[error("This method is not allowed here; this path serves {0}.")]
    MethodNotAllowed(String),
    #[error("The database is unavailable; try again shortly.")]
    DatabaseUnavailable(#[source] DbError),
    #[error("Something went wrong on our side; it has been logged.")]
    InternalError(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// `{"error", "message"}` and the fields some errors add.
    fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("error".into(), json!(self.code()));
        body.insert("message".into(), json!(self.to_string()));
        match self {
            ApiError::ValidationError(fields) => {
                let fields: Map<String, Value> =
                    fields.iter().map(|(k, v)| (k.to_owned(), json!(v))).collect();
                body.insert("fields".into(), Value::Object(fields));
            }
            ApiError::RateLimitExceeded {
                limit,
                window,
                retry_after,
                ..
            } => {
                body.insert("limit".into(), json!(limit));
                body.insert("window".into(), json!(window));
                body.insert("retry_after".into(), json!(retry_after));
            }
            ApiError::InsufficientScope(missing) => {
                body.insert("missing_scopes".into(), json!(missing));
            }
            ApiError::QuotaExhausted {
                remaining,
                retry_after,
                ..
            } => {
                body.insert("remaining".into(), json!(remaining));
                body.insert("retry_after".into(), json!(retry_after));
            }
            _ => {}
        }
        Value::Object(body)
    }

    /// The headers an error's answer carries: `WWW-Authenticate` on 401s, `Retry-After` on
    /// 429/503, `Allow` on 405.
    fn headers(&self) -> Vec<(header::HeaderName, HeaderValue)> {
        let mut headers = Vec::new();
        if self.status_code() == StatusCode::UNAUTHORIZED {
            headers.push((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"keygate\""),
            ));
        }
        match self {
            ApiError::DatabaseUnavailable(e) => {
                log::warn!("503 {}", chain(e));
                headers.push((header::RETRY_AFTER, HeaderValue::from_static("5")));
            }
            ApiError::RateLimiterUnavailable => {
                headers.push((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            ApiError::MethodNotAllowed(allow) => {
                if let Ok(value) = HeaderValue::from_str(allow) {
                    headers.push((header::ALLOW, value));
                }
            }
            ApiError::RateLimitExceeded { retry_after, .. }
            | ApiError::TooManyAttempts { retry_after }
            | ApiError::QuotaExhausted {
                retry_after: Some(retry_after),
                ..
            } => {
                headers.push((header::RETRY_AFTER, HeaderValue::from(*retry_after)));
            }
            _ => {}
        }
        headers
    }

    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> ApiError {
        ApiError::InternalError(Box::new(e))
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::ValidationError(_) => "validation_error",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::AuthenticationRequired(_) => "authentication_required",
            ApiError::InvalidToken(_) => "invalid_token",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::InvalidApiKey(_) => "invalid_api_key",
            ApiError::ApiKeyExpired => "api_key_expired",
            ApiError::ApiKeyInactive => "api_key_inactive",
            ApiError::RateLimitExceeded { .. } => "rate_limit_exceeded",
            ApiError::QuotaExhausted { .. } => "quota_exhausted",
            ApiError::RateLimiterUnavailable => "rate_limiter_unavailable",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::InsufficientScope(_) => "insufficient_scope",
            ApiError::IpNotAllowed => "ip_not_allowed",
            ApiError::NotFound | ApiError::UnknownUser => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::InvalidPath => "invalid_path",
            ApiError::TooManyAttempts { .. } => "too_many_attempts",
            ApiError::UpstreamUnavailable => "upstream_unavailable",
            ApiError::UpstreamTimeout => "upstream_timeout",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::DatabaseUnavailable(_) => "database_unavailable",
            ApiError::InternalError(_) => "internal_error",
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> ApiError {
        if e.is_unavailable() {
            ApiError::DatabaseUnavailable(e)
        } else {
            ApiError::internal(e)
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> ApiError {
        match e {
            KeyError::NotFound => ApiError::NotFound,
            KeyError::Invalid(fields) => ApiError::ValidationError(fields),
            KeyError::Forbidden(refusal) => ApiError::Forbidden(refusal.0),
            KeyError::UnknownOwner => ApiError::UnknownUser,
            KeyError::OwnerInactive => ApiError::Conflict("The owner's account is deactivated.".into()),
            KeyError::Db(e) => e.into(),
            KeyError::Idempotency(message) => ApiError::Conflict(message.into()),
            KeyError::Ledger(e) => e.into(),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> ApiError {
        match e {
            ReadError::Forbidden(refusal) => ApiError::Forbidden(refusal.0),
            ReadError::Db(e) => e.into(),
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> ApiError {
        match e {
            LedgerError::Limiter(_) => ApiError::RateLimiterUnavailable,
            LedgerError::Db(e) => e.into(),
            LedgerError::Unseeded => ApiError::internal(e),
            LedgerError::NoBalance => ApiError::Conflict(
                "There is no credit balance to add to (credits are unlimited); set one with {\"set\": N} first.".into(),
            ),
        }
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> ApiError {
        match e {
            UserError::Invalid(fields) => ApiError::ValidationError(fields),
            UserError::InvalidCredentials => ApiError::InvalidCredentials,
            UserError::NotFound => ApiError::NotFound,
            UserError::EmailTaken => ApiError::Conflict("A user with this email exists.".into()),
            UserError::Throttled(retry_after) => ApiError::TooManyAttempts { retry_after },
            UserError::Db(e) => e.into(),
            UserError::Hash(e) => ApiError::internal(e),
            UserError::Ledger(e) => e.into(),
            UserError::Forbidden(refusal) => ApiError::Forbidden(refusal.0),
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> ApiError {
        ApiError::InvalidToken(e.to_string())
    }
}

/// Renders an error and its causes on one line, for the log.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_)
            | ApiError::InvalidQuery(_)
            | ApiError::ValidationError(_)
            | ApiError::InvalidPath => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::AuthenticationRequired(_)
            | ApiError::InvalidToken(_)
            | ApiError::InvalidCredentials
            | ApiError::InvalidApiKey(_)
            | ApiError::ApiKeyExpired
            | ApiError::ApiKeyInactive => StatusCode::UNAUTHORIZED,
            ApiError::RateLimitExceeded { .. } | ApiError::TooManyAttempts { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::QuotaExhausted { retry_after, .. } => match retry_after {
                Some(_) => StatusCode::TOO_MANY_REQUESTS,
                None => StatusCode::FORBIDDEN,
            },
            ApiError::RateLimiterUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Forbidden(_) | ApiError::InsufficientScope(_) | ApiError::IpNotAllowed => {
                StatusCode::FORBIDDEN
            }
            ApiError::NotFound | ApiError::UnknownUser => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            ApiError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::DatabaseUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InternalError(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if let ApiError::InternalError(_) = self {
            log::error!("{} {}", status.as_u16(), chain(self));
        }
        let mut response = HttpResponse::build(status);
        for (name, value) in self.headers() {
            response.insert_header((name, value));
        }
        response.json(self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn body_of(e: ApiError) -> (u16, Value) {
        let response = e.error_response();
        let status = response.status().as_u16();
        let bytes = response.into_body().try_into_bytes().expect("a complete body");
        (status, serde_json::from_slice(&bytes).expect("JSON body"))
    }

    #[test]
    fn validation_errors_list_their_fields() {
        let (status, body) = body_of(ApiError::ValidationError(FieldErrors::single(
            "name",
            "must not be empty",
        )));
        assert_eq!(status, 400);
        assert_eq!(body["error"], "validation_error");
        assert_eq!(body["fields"]["name"], "must not be empty");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let cause = std::io::Error::other("password=hunter2 at 10.0.0.5");
        let (status, body) = body_of(ApiError::internal(cause));
        assert_eq!(status, 500);
        assert_eq!(body["error"], "internal_error");
        assert!(!body.to_string().contains("hunter2"));
    }
}
