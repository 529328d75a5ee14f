//! The dashboard under `/admin`, for admins and (as a developer portal) every user:
//! server-rendered pages (askama), session login, sign-up, CSRF tokens on every form, flash
//! messages. Handlers stay thin: read the form, call the domain (whose authorization policy
//! decides what each may do), render.

pub mod audit;
pub mod auth;
pub mod chart;
mod error;
pub mod keys;
pub mod overview;
mod page;
mod session;
pub mod signup;
pub mod users;
pub mod webhooks;

pub use error::AdminError;
pub use page::{Confirmation, Form, Layout, Switch, ago, error_page, field, redirect, render};
pub use session::Flash;
pub use session::{
    Admin, Member, check_csrf, csrf_token, flash, log_in, log_out, over_https, secure_cookies, session_user,
};

use actix_web::{HttpRequest, HttpResponse, web};

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

/// Fetch Metadata (what browsers say about a request's origin): the dashboard answers the
/// browser's own navigations — pages, links, its forms — and not scripts, frames or other
/// sites' form posts. In gateway mode the upstream shares keygate's origin, so an upstream page
/// (or an XSS on it) could otherwise `fetch()` a dashboard page with the admin's cookie and read
/// its CSRF token. Requests without the headers (older browsers, curl) pass: CSRF tokens and
/// SameSite cookies still guard them.
async fn navigations_only(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    use actix_web::ResponseError;
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let script = header("sec-fetch-mode").is_some_and(|mode| mode != "navigate");
    let embedded = header("sec-fetch-dest").is_some_and(|dest| dest != "document");
    let foreign_post = header("sec-fetch-site")
        .is_some_and(|site| site == "cross-site" || site == "same-site")
        && req.method() != actix_web::http::Method::GET;
    if script || embedded || foreign_post {
        let refused = AdminError::Refused(
            "The dashboard answers its own pages and forms in the browser, not scripts, frames or other sites."
                .into(),
        );
        return Ok(req.into_response(refused.error_response()));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

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
            .wrap(crate::routes::head_as_get_middleware())
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
        .wrap(actix_web::middleware::from_fn(navigations_only))
        .wrap(actix_web::middleware::from_fn(secure_cookies))
        .wrap(headers)
        .service(resource!("", get => overview::index))
        .service(resource!("/", get => overview::index))
        .service(resource!("/login", get => auth::form, post => auth::submit))
        .service(resource!("/logout", post => auth::logout))
        .service(resource!("/account", get => auth::account))
        .service(resource!("/account/password", post => auth::change_password))
        .service(resource!("/keys", get => keys::list, post => keys::create))
        .service(resource!("/keys/new", get => keys::new))
        .service(resource!("/keys/{id}", get => keys::detail, post => keys::update))
        .service(resource!("/signup", get => signup::form, post => signup::submit))
        .service(resource!("/users/invite", post => signup::invite))
        .service(resource!("/keys/{id}/created", get => keys::created))
        // Before /keys/{id}/{switch}, which would take "roll" for a switch.
        .service(resource!("/keys/{id}/roll", post => keys::roll))
        .service(resource!("/keys/{id}/credits", post => keys::credits))
        .service(resource!("/keys/{id}/{switch}", post => keys::switch))
        .service(resource!("/audit", get => audit::list))
        .service(resource!("/webhooks", get => webhooks::list, post => webhooks::create))
        .service(resource!("/webhooks/{id}", get => webhooks::detail))
        .service(resource!("/webhooks/{id}/deliveries/{delivery}/resend", post => webhooks::resend))
        .service(resource!("/webhooks/{id}/{action}", post => webhooks::switch))
        .service(resource!("/users", get => users::list, post => users::create))
        .service(resource!("/users/{id}/ceiling", post => users::ceiling))
        .service(resource!("/users/{id}/{switch}", post => users::switch))
        .default_service(web::to(not_found))
}

pub async fn not_found() -> Result<HttpResponse, AdminError> {
    Err(AdminError::NotFound)
}

/// Answers a form that could not be read (too large, not URL-encoded) with an HTML 400.
pub fn form_error(err: actix_web::error::UrlencodedError, _req: &HttpRequest) -> actix_web::Error {
    AdminError::BadRequest(format!("The form could not be read: {err}.")).into()
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
