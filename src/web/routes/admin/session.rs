//! Dashboard sessions: login and logout (with revocation), the logged-in user and admin guards
//! (`Member`, `Admin`), CSRF tokens, flash messages, and Secure cookies over HTTPS.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use actix_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, HttpRequest, web};
use serde::{Deserialize, Serialize};

use crate::audit::Origin;
use crate::clock::Now;
use crate::db::UserId;
use crate::db::models::User;
use crate::gate::client_ip;
use crate::keys::service::Actor;
use crate::routes::admin::AdminError;
use crate::state::AppState;
use crate::users::UserError;

/// A message shown once, on the next page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flash {
    /// `success`, `error` or `info`.
    pub kind: String,
    pub text: String,
}

const CSRF: &str = "csrf";
const FLASHES: &str = "flashes";
const USER: &str = "user_id";
/// The user's epoch at login: the session ends when it moves (deactivation, new password).
const EPOCH: &str = "epoch";
/// This session's own id, recorded as revoked at logout (cookie sessions cannot be deleted).
const SID: &str = "sid";

/// The session's CSRF token, made on first use.
pub fn csrf_token(session: &Session) -> String {
    if let Ok(Some(token)) = session.get::<String>(CSRF) {
        return token;
    }
    let token = random_hex();
    let _ = session.insert(CSRF, &token);
    token
}

/// Refuses a form whose `csrf_token` is not this session's.
pub fn check_csrf(session: &Session, form: &HashMap<String, String>) -> Result<(), AdminError> {
    let expected = session.get::<String>(CSRF).ok().flatten();
    match (expected, form.get("csrf_token")) {
        (Some(expected), Some(given))
            if crate::credentials::constant_time_eq(expected.as_bytes(), given.as_bytes()) =>
        {
            Ok(())
        }
        _ => Err(AdminError::CsrfRejected),
    }
}

pub fn flash(session: &Session, kind: &str, text: impl Into<String>) {
    let mut flashes: Vec<Flash> = session.get(FLASHES).ok().flatten().unwrap_or_default();
    flashes.push(Flash {
        kind: kind.to_owned(),
        text: text.into(),
    });
    let _ = session.insert(FLASHES, flashes);
}

pub(super) fn take_flashes(session: &Session) -> Vec<Flash> {
    session
        .remove_as::<Vec<Flash>>(FLASHES)
        .and_then(Result::ok)
        .unwrap_or_default()
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    hex::encode(bytes)
}

/// Starts an admin's session: a fresh session id (against fixation), a fresh CSRF token, the
/// user's epoch and an id of its own (for logout).
pub fn log_in(session: &Session, user: &User) -> Result<(), AdminError> {
    session.renew();
    session.remove(CSRF);
    let stored = session
        .insert(USER, user.id)
        .and_then(|()| session.insert(EPOCH, user.auth_epoch))
        .and_then(|()| session.insert(SID, random_hex()));
    stored.map_err(|e| AdminError::internal(std::io::Error::other(e.to_string())))
}

/// Ends the session here and on every instance: with cookie sessions a saved cookie would
/// otherwise keep working until it expires.
pub async fn log_out(state: &AppState, session: &Session, now: Now) -> Result<(), AdminError> {
    if let Ok(Some(sid)) = session.get::<String>(SID) {
        let until = now.naive() + chrono::Duration::hours(crate::sessions::SESSION_HOURS);
        crate::users::end_session(&state.pool, sid, until, now).await?;
    }
    session.purge();
    Ok(())
}

/// The session's user, if one is logged in, still active, the session was not ended and the
/// user's epoch has not moved since the login.
pub async fn session_user(state: &AppState, session: &Session) -> Result<Option<User>, AdminError> {
    let (Some(id), Some(epoch), Some(sid)) = (
        session.get::<UserId>(USER).ok().flatten(),
        session.get::<i64>(EPOCH).ok().flatten(),
        session.get::<String>(SID).ok().flatten(),
    ) else {
        return Ok(None);
    };
    match crate::users::of_session(&state.pool, id, sid).await {
        Ok(Some(user)) if user.is_active && user.auth_epoch == epoch => Ok(Some(user)),
        Ok(_) | Err(UserError::NotFound) => {
            session.purge();
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// A logged-in user, admin or not: the dashboard shows each what the authorization policy lets
/// them reach (an admin everything, a user their own keys and account). Anyone else is sent to
/// the login page.
pub struct Member {
    pub user: User,
    pub session: Session,
    /// The dashboard, and the client's address: what the audit log records of a change.
    pub origin: Origin,
}

/// A logged-in admin: the pages only admins have (users, invitations). A user gets a 403 page.
pub struct Admin(Member);

impl std::ops::Deref for Admin {
    type Target = Member;

    fn deref(&self) -> &Member {
        &self.0
    }
}

impl Member {
    pub fn actor(&self) -> Actor {
        Actor::of(&self.user, self.origin)
    }

    pub fn is_admin(&self) -> bool {
        self.user.is_admin
    }

    pub fn flash(&self, kind: &str, text: impl Into<String>) {
        flash(&self.session, kind, text);
    }

    pub fn check_csrf(&self, form: &HashMap<String, String>) -> Result<(), AdminError> {
        check_csrf(&self.session, form)
    }
}

impl FromRequest for Member {
    type Error = AdminError;
    type Future = Pin<Box<dyn Future<Output = Result<Member, AdminError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let session = req.get_session();
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let origin = Origin::dashboard(state.as_ref().and_then(|s| client_ip(s, req)));
        Box::pin(async move {
            let state = state
                .ok_or_else(|| AdminError::internal(std::io::Error::other("AppState is not registered")))?;
            match session_user(&state, &session).await? {
                Some(user) => Ok(Member {
                    user,
                    session,
                    origin,
                }),
                None => Err(AdminError::LoginRequired),
            }
        })
    }
}

impl FromRequest for Admin {
    type Error = AdminError;
    type Future = Pin<Box<dyn Future<Output = Result<Admin, AdminError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let member = Member::from_request(req, payload);
        Box::pin(async move {
            let member = member.await?;
            if member.is_admin() {
                Ok(Admin(member))
            } else {
                Err(AdminError::Forbidden)
            }
        })
    }
}

/// Marks cookies `Secure` when the request came over HTTPS, directly or (with trusted proxies)
/// as `X-Forwarded-Proto` says; plain-HTTP development keeps working.
pub fn over_https(req: &HttpRequest, trusted_hops: usize) -> bool {
    if trusted_hops == 0 {
        // No proxy to vouch for the scheme: only a TLS listener counts.
        return req.app_config().secure();
    }
    req.headers()
        .get_all("x-forwarded-proto")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

pub async fn secure_cookies(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let hops = req
        .app_data::<web::Data<AppState>>()
        .map_or(0, |s| s.client_ip.trusted_hops);
    let https = over_https(req.request(), hops);
    let mut response = next.call(req).await?;
    if https {
        let headers = response.headers_mut();
        let cookies: Vec<HeaderValue> = headers.get_all(header::SET_COOKIE).cloned().collect();
        headers.remove(header::SET_COOKIE);
        for cookie in cookies {
            let text = cookie.to_str().unwrap_or_default();
            let secured = if text.to_ascii_lowercase().contains("; secure") {
                text.to_owned()
            } else {
                format!("{text}; Secure")
            };
            if let Ok(value) = HeaderValue::from_str(&secured) {
                headers.append(header::SET_COOKIE, value);
            }
        }
    }
    Ok(response)
}
