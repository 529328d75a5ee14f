//! The dashboard's errors: HTML pages in its layout, never a stack trace.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use crate::db::DbError;
use crate::error::chain;
use crate::keys::service::KeyError;
use crate::ledger::LedgerError;
use crate::users::UserError;

/// Errors as the dashboard answers them: HTML pages in the dashboard's layout (or a redirect to
/// the login page). 500s are opaque, as in the API.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("Please log in.")]
    LoginRequired,
    #[error("{0}")]
    BadRequest(String),
    #[error("This form has expired or did not come from this dashboard. Reload the page and try again.")]
    CsrfRejected,
    #[error("Only admins may open this page.")]
    Forbidden,
    /// An authorization rule refused the action; the sentence says which.
    #[error("{0}")]
    Refused(String),
    #[error("There is no such page.")]
    NotFound,
    /// With the methods the page serves, for `Allow`.
    #[error("This page does not answer that method; it serves {0}.")]
    MethodNotAllowed(String),
    #[error("The database is unavailable; try again shortly.")]
    DatabaseUnavailable(#[source] DbError),
    #[error("Something went wrong on our side; it has been logged.")]
    InternalError(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl AdminError {
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> AdminError {
        AdminError::InternalError(Box::new(e))
    }
}

impl From<DbError> for AdminError {
    fn from(e: DbError) -> AdminError {
        if e.is_unavailable() {
            AdminError::DatabaseUnavailable(e)
        } else {
            AdminError::internal(e)
        }
    }
}

impl From<KeyError> for AdminError {
    fn from(e: KeyError) -> AdminError {
        match e {
            KeyError::NotFound => AdminError::NotFound,
            KeyError::Invalid(fields) => AdminError::BadRequest(fields.sentence()),
            KeyError::Forbidden(refusal) => AdminError::Refused(refusal.0),
            KeyError::UnknownOwner => AdminError::BadRequest("No user has this email.".into()),
            KeyError::OwnerInactive => AdminError::BadRequest("The owner's account is deactivated.".into()),
            KeyError::Db(e) => e.into(),
            KeyError::Idempotency(message) => AdminError::BadRequest(message.into()),
            KeyError::Ledger(LedgerError::Db(e)) => e.into(),
            KeyError::Ledger(LedgerError::NoBalance) => AdminError::BadRequest(
                "There is no credit balance to add to (credits are unlimited); set one first.".into(),
            ),
            KeyError::Ledger(e) => AdminError::internal(e),
        }
    }
}

impl From<UserError> for AdminError {
    fn from(e: UserError) -> AdminError {
        match e {
            UserError::NotFound => AdminError::NotFound,
            UserError::EmailTaken => AdminError::BadRequest("A user with this email exists.".into()),
            UserError::Invalid(fields) => AdminError::BadRequest(fields.sentence()),
            UserError::InvalidCredentials => AdminError::LoginRequired,
            UserError::Throttled(seconds) => AdminError::Refused(format!(
                "Too many login attempts. Try again in {seconds} seconds."
            )),
            UserError::Db(e) => e.into(),
            UserError::Hash(e) => AdminError::internal(e),
            UserError::Forbidden(refusal) => AdminError::Refused(refusal.0),
            UserError::Ledger(e) => KeyError::Ledger(e).into(),
        }
    }
}

impl From<crate::policy::ReadError> for AdminError {
    fn from(e: crate::policy::ReadError) -> AdminError {
        match e {
            crate::policy::ReadError::Forbidden(refusal) => AdminError::Refused(refusal.0),
            crate::policy::ReadError::Db(e) => e.into(),
        }
    }
}

impl From<askama::Error> for AdminError {
    fn from(e: askama::Error) -> AdminError {
        AdminError::internal(e)
    }
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        match self {
            AdminError::LoginRequired => StatusCode::SEE_OTHER,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::CsrfRejected | AdminError::Forbidden | AdminError::Refused(_) => {
                StatusCode::FORBIDDEN
            }
            AdminError::NotFound => StatusCode::NOT_FOUND,
            AdminError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            AdminError::DatabaseUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::InternalError(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let AdminError::LoginRequired = self {
            return HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/admin/login"))
                .finish();
        }
        let status = self.status_code();
        match self {
            AdminError::InternalError(_) => log::error!("{} {}", status.as_u16(), chain(self)),
            AdminError::DatabaseUnavailable(e) => log::warn!("503 {}", chain(e)),
            _ => {}
        }
        let mut page = crate::routes::admin::error_page(status, &self.to_string());
        if let AdminError::MethodNotAllowed(allow) = self
            && let Ok(value) = HeaderValue::from_str(allow)
        {
            page.headers_mut().insert(header::ALLOW, value);
        }
        page
    }
}
