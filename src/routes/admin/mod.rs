//! The dashboard under `/admin`: server-rendered pages (askama), session login, CSRF tokens on
//! every form, flash messages. Handlers stay thin: read the form, call the domain, render.

pub mod auth;
pub mod keys;
pub mod users;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use actix_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use crate::db::models::User;
use crate::error::AdminError;
use crate::keys::service::Actor;
use crate::state::AppState;
use crate::users::UserError;

/// What every page's layout shows.
pub struct Layout {
    pub title: String,
    /// The navigation entry to highlight.
    pub section: &'static str,
    /// The logged-in admin's email; `None` on the login and error pages.
    pub admin: Option<String>,
    pub csrf: String,
    pub flashes: Vec<Flash>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flash {
    /// `success`, `error` or `info`.
    pub kind: String,
    pub text: String,
}

#[derive(Template)]
#[template(path = "admin/error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    status: u16,
    reason: &'a str,
    message: &'a str,
}

/// The HTML error page, in the dashboard's layout.
pub fn error_page(status: StatusCode, message: &str) -> HttpResponse {
    let page = ErrorPage {
        layout: Layout {
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            section: "",
            admin: None,
            csrf: String::new(),
            flashes: Vec::new(),
        },
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("Error"),
        message,
    };
    match page.render() {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(html),
        Err(e) => {
            log::error!("rendering the error page failed: {e}");
            HttpResponse::build(status)
                .content_type("text/plain; charset=utf-8")
                .body(message.to_owned())
        }
    }
}

/// Renders a page as a 200 (or `status`) HTML response.
pub fn render(page: &impl Template, status: StatusCode) -> Result<HttpResponse, AdminError> {
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(page.render()?))
}

pub fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
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

fn take_flashes(session: &Session) -> Vec<Flash> {
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
pub async fn log_out(state: &AppState, session: &Session) -> Result<(), AdminError> {
    if let Ok(Some(sid)) = session.get::<String>(SID) {
        let until = crate::db::now() + chrono::Duration::hours(crate::sessions::SESSION_HOURS);
        crate::users::end_session(&state.pool, sid, until).await?;
    }
    session.purge();
    Ok(())
}

/// The session's admin, if one is logged in, still an active admin, the session was not ended
/// and the user's epoch has not moved since the login.
pub async fn session_admin(state: &AppState, session: &Session) -> Result<Option<User>, AdminError> {
    let (Some(id), Some(epoch), Some(sid)) = (
        session.get::<i64>(USER).ok().flatten(),
        session.get::<i64>(EPOCH).ok().flatten(),
        session.get::<String>(SID).ok().flatten(),
    ) else {
        return Ok(None);
    };
    match crate::users::of_session(&state.pool, id, sid).await {
        Ok(Some(user)) if user.is_active && user.is_admin && user.auth_epoch == epoch => Ok(Some(user)),
        Ok(_) | Err(UserError::NotFound) => {
            session.purge();
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// A logged-in admin; anyone else is sent to the login page.
pub struct Admin {
    pub user: User,
    pub session: Session,
}

impl Admin {
    pub fn actor(&self) -> Actor {
        Actor::of(&self.user)
    }

    pub fn layout(&self, title: impl Into<String>, section: &'static str) -> Layout {
        Layout {
            title: title.into(),
            section,
            admin: Some(self.user.email.clone()),
            csrf: csrf_token(&self.session),
            flashes: take_flashes(&self.session),
        }
    }

    pub fn flash(&self, kind: &str, text: impl Into<String>) {
        flash(&self.session, kind, text);
    }

    pub fn check_csrf(&self, form: &HashMap<String, String>) -> Result<(), AdminError> {
        check_csrf(&self.session, form)
    }
}

impl FromRequest for Admin {
    type Error = AdminError;
    type Future = Pin<Box<dyn Future<Output = Result<Admin, AdminError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let session = req.get_session();
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let state = state
                .ok_or_else(|| AdminError::internal(std::io::Error::other("AppState is not registered")))?;
            match session_admin(&state, &session).await? {
                Some(user) => Ok(Admin { user, session }),
                None => Err(AdminError::LoginRequired),
            }
        })
    }
}

pub type Form = web::Form<HashMap<String, String>>;

/// A form field, trimmed; empty when absent.
pub fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> &'a str {
    form.get(name).map_or("", |v| v.trim())
}

/// "3 min ago", for last-used columns.
pub fn ago(then: Option<NaiveDateTime>, now: NaiveDateTime) -> String {
    let Some(then) = then else { return "never".into() };
    let seconds = (now - then).num_seconds().max(0);
    match seconds {
        0..=59 => "just now".into(),
        60..=3_599 => format!("{} min ago", seconds / 60),
        3_600..=86_399 => format!("{} h ago", seconds / 3_600),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

/// Activate or deactivate, as the last path segment says (`/admin/keys/7/deactivate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    Activate,
    Deactivate,
}

impl Switch {
    pub fn active(self) -> bool {
        self == Switch::Activate
    }

    fn verb(self) -> &'static str {
        if self.active() { "activate" } else { "deactivate" }
    }

    pub fn title(self) -> &'static str {
        if self.active() { "Activate" } else { "Deactivate" }
    }
}

#[derive(Template)]
#[template(path = "admin/confirm.html")]
struct ConfirmPage {
    layout: Layout,
    question: String,
    consequence: String,
    action: String,
    button: String,
    danger: bool,
    cancel: String,
}

/// A state change that is confirmed on a page of its own before it is made.
pub struct Confirmation<'a> {
    pub switch: Switch,
    /// "key" or "user".
    pub noun: &'static str,
    pub section: &'static str,
    /// What is switched, as the question names it.
    pub subject: String,
    pub consequence: &'a str,
    /// The page of the thing: the form posts to `<base>/<verb>`; Cancel leads to `cancel`.
    pub base: String,
    pub cancel: String,
}

impl Confirmation<'_> {
    /// The confirmation page, unless the form says `confirm=yes`.
    pub fn ask(
        &self,
        admin: &Admin,
        form: &HashMap<String, String>,
    ) -> Option<Result<HttpResponse, AdminError>> {
        if form.get("confirm").map(String::as_str) == Some("yes") {
            return None;
        }
        let (title, noun) = (self.switch.title(), self.noun);
        let page = ConfirmPage {
            layout: admin.layout(format!("{title} {noun}"), self.section),
            question: format!("{title} {}?", self.subject),
            consequence: self.consequence.to_owned(),
            action: format!("{}/{}", self.base, self.switch.verb()),
            button: format!("{title} {noun}"),
            danger: !self.switch.active(),
            cancel: self.cancel.clone(),
        };
        Some(render(&page, StatusCode::OK))
    }

    /// The flash message once done: "Key deactivated."
    pub fn done(&self) -> String {
        let mut noun = self.noun.chars();
        let noun = noun
            .next()
            .map_or_else(String::new, |c| c.to_uppercase().chain(noun).collect());
        format!("{noun} {}d.", self.switch.verb())
    }
}

/// What every dashboard response carries: no framing, no sniffing, no referrer leaving the
/// site, and nothing loaded or run that is not the dashboard's own file (no inline scripts or
/// styles anywhere in the templates).
const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
];

/// One dashboard resource: its routes by method, HEAD as GET, and 405 with `Allow` for the rest.
macro_rules! resource {
    ($path:expr, $($method:ident => $handler:expr),+ $(,)?) => {{
        let methods = [$(stringify!($method).to_uppercase()),+];
        let allow = crate::routes::allow(&methods.iter().map(String::as_str).collect::<Vec<_>>());
        web::resource($path)
            $(.route(web::$method().to($handler)))+
            .default_service(web::to(move || {
                let allow = allow.clone();
                async move { Err::<HttpResponse, _>(AdminError::MethodNotAllowed(allow)) }
            }))
            .wrap(crate::routes::HeadAsGet)
    }};
}

/// The dashboard under `/admin`: its routes, its sessions, `Secure` cookies over HTTPS and the
/// security headers.
pub fn scope(
    sessions: crate::sessions::Sessions,
) -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let headers = SECURITY_HEADERS
        .iter()
        .fold(actix_web::middleware::DefaultHeaders::new(), |h, pair| {
            h.add(*pair)
        });
    web::scope("/admin")
        .app_data(web::PathConfig::default().error_handler(|_, _| AdminError::NotFound.into()))
        .wrap(sessions.middleware())
        .wrap(actix_web::middleware::from_fn(secure_cookies))
        .wrap(headers)
        .service(resource!("", get => index))
        .service(resource!("/login", get => auth::form, post => auth::submit))
        .service(resource!("/logout", post => auth::logout))
        .service(resource!("/account", get => auth::account))
        .service(resource!("/account/password", post => auth::change_password))
        .service(resource!("/keys", get => keys::list, post => keys::create))
        .service(resource!("/keys/new", get => keys::new))
        .service(resource!("/keys/{id}", get => keys::detail, post => keys::update))
        .service(resource!("/keys/{id}/created", get => keys::created))
        .service(resource!("/keys/{id}/{switch}", post => keys::switch))
        .service(resource!("/users", get => users::list, post => users::create))
        .service(resource!("/users/{id}/ceiling", post => users::ceiling))
        .service(resource!("/users/{id}/{switch}", post => users::switch))
        .default_service(web::to(not_found))
}

/// `/admin` → the keys list.
pub async fn index() -> HttpResponse {
    redirect("/admin/keys")
}

pub async fn not_found() -> Result<HttpResponse, AdminError> {
    Err(AdminError::NotFound)
}

/// Answers a form that could not be read (too large, not URL-encoded) with an HTML 400.
pub fn form_error(err: actix_web::error::UrlencodedError, _req: &HttpRequest) -> actix_web::Error {
    AdminError::BadRequest(format!("The form could not be read: {err}.")).into()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_use_reads_like_a_person_would_say_it() {
        let now = chrono::DateTime::from_timestamp(1_000_000, 0)
            .expect("time")
            .naive_utc();
        let at = |s: i64| Some(now - chrono::Duration::seconds(s));
        assert_eq!(ago(None, now), "never");
        assert_eq!(ago(at(5), now), "just now");
        assert_eq!(ago(at(180), now), "3 min ago");
        assert_eq!(ago(at(7_200), now), "2 h ago");
        assert_eq!(ago(at(3 * 86_400), now), "3 days ago");
    }

    #[test]
    fn big_numbers_get_thousands_separators() {
        use super::keys::thousands;
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(2_147_483_647), "2,147,483,647");
    }
}
