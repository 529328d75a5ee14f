//! Getting a dashboard account (`SIGNUP`): an invitation's one-time link (`invite`), or a form
//! anyone may use (`open`), behind the login throttle and a per-address limit. With `closed`,
//! there is no such page. Admins create invitations on the Users page.

use actix_session::Session;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::audit::Origin;
use crate::clock::Now;
use crate::gate::client_ip;
use crate::routes::admin::{
    Admin, AdminError, Form, Layout, check_csrf, csrf_token, field, flash, log_in, redirect, render,
};
use crate::state::AppState;
use crate::users::UserError;
use crate::users::signup::{self, INVITATION_DAYS, SignupMode};

#[derive(Template)]
#[template(path = "admin/signup.html")]
struct SignupPage {
    layout: Layout,
    /// The invitation's token and email (`invite`); `None` with `open`.
    invitation: Option<(String, String)>,
    email: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct SignupQuery {
    token: Option<String>,
}

fn page(
    session: &Session,
    invitation: Option<(String, String)>,
    email: &str,
    error: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, AdminError> {
    let layout = Layout::anonymous("Create your account", "signup", csrf_token(session));
    let page = SignupPage {
        layout,
        invitation,
        email: email.to_owned(),
        error,
    };
    // `render` marks every dashboard page no-store: the token in it stays out of caches.
    render(&page, status)
}

/// `GET /admin/signup[?token=…]`.
pub async fn form(
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<SignupQuery>,
    now: Now,
) -> Result<HttpResponse, AdminError> {
    match (state.signup, &query.token) {
        (SignupMode::Invite, Some(token)) => match signup::invitation(&state.pool, token, now).await {
            Ok(invitation) => page(
                &session,
                Some((token.clone(), invitation.email)),
                "",
                None,
                StatusCode::OK,
            ),
            Err(UserError::NotFound) => Err(used_up()),
            Err(e) => Err(e.into()),
        },
        (SignupMode::Open, _) => page(&session, None, "", None, StatusCode::OK),
        _ => Err(AdminError::NotFound),
    }
}

fn used_up() -> AdminError {
    AdminError::Refused(
        "This invitation link has been used or has expired. Ask an admin for a new one.".into(),
    )
}

/// `POST /admin/signup`: the account is made and its owner logged in.
pub async fn submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    form: Form,
    now: Now,
) -> Result<HttpResponse, AdminError> {
    check_csrf(&session, &form)?;
    let attempt = create_account(&req, &state, &form, now).await?;
    let refuse = |error: String, status| {
        page(
            &session,
            attempt.invitation.clone(),
            &attempt.email,
            Some(error),
            status,
        )
    };
    match attempt.created {
        Ok(user) => {
            log_in(&session, &user)?;
            flash(
                &session,
                "success",
                "Welcome! Your account is ready: create your first key here.",
            );
            Ok(redirect("/admin/keys"))
        }
        Err(UserError::Invalid(fields)) => refuse(
            format!("Not yet: {}.", fields.sentence()),
            StatusCode::BAD_REQUEST,
        ),
        Err(UserError::EmailTaken) => refuse(
            "An account with this email exists; log in instead.".into(),
            StatusCode::CONFLICT,
        ),
        Err(UserError::Throttled(seconds)) => refuse(
            format!("Too many attempts. Try again in {seconds} seconds."),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        Err(UserError::NotFound) => Err(used_up()),
        Err(e) => Err(e.into()),
    }
}

/// An attempt at an account: what came of it, and what the form showed (to show it again).
struct Attempt {
    created: Result<crate::db::models::User, UserError>,
    invitation: Option<(String, String)>,
    email: String,
}

/// The account the form asks for, by the instance's sign-up mode.
async fn create_account(
    req: &HttpRequest,
    state: &AppState,
    form: &Form,
    now: Now,
) -> Result<Attempt, AdminError> {
    let password = form.get("password").cloned().unwrap_or_default();
    match state.signup {
        SignupMode::Invite => {
            let token = field(form, "token").to_owned();
            let email = match signup::invitation(&state.pool, &token, now).await {
                Ok(invitation) => invitation.email,
                Err(UserError::NotFound) => return Err(used_up()),
                Err(e) => return Err(e.into()),
            };
            let origin = Origin::dashboard(client_ip(state, req));
            let created = signup::accept(&state.pool, origin, &token, &password, now).await;
            Ok(Attempt {
                created,
                invitation: Some((token, email.clone())),
                email,
            })
        }
        SignupMode::Open => {
            let email = field(form, "email").to_owned();
            let origin = Origin::dashboard(client_ip(state, req));
            let created =
                signup::sign_up(&state.pool, &state.limiter, origin, (&email, &password), now).await;
            Ok(Attempt {
                created,
                invitation: None,
                email,
            })
        }
        SignupMode::Closed => Err(AdminError::NotFound),
    }
}

#[derive(Template)]
#[template(path = "admin/invited.html")]
struct InvitedPage {
    layout: Layout,
    email: String,
    link: String,
    days: i64,
}

/// `POST /admin/users/invite`: an invitation for an email, and its link shown this once.
pub async fn invite(
    req: HttpRequest,
    state: web::Data<AppState>,
    admin: Admin,
    form: Form,
    now: Now,
) -> Result<HttpResponse, AdminError> {
    admin.check_csrf(&form)?;
    if state.signup != SignupMode::Invite {
        admin.flash("error", "Invitations need SIGNUP=invite.");
        return Ok(redirect("/admin/users"));
    }
    let email = field(&form, "email");
    let (invitation, token) = match signup::invite(&state.pool, admin.actor(), email, now).await {
        Ok(made) => made,
        Err(UserError::Invalid(fields)) => {
            admin.flash("error", format!("No invitation: {}.", fields.sentence()));
            return Ok(redirect("/admin/users"));
        }
        Err(UserError::EmailTaken) => {
            admin.flash("error", "A user with this email exists already.");
            return Ok(redirect("/admin/users"));
        }
        Err(e) => return Err(e.into()),
    };
    // The admin's own Host header (never X-Forwarded-Host, which a client may set) and scheme.
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if crate::routes::admin::over_https(&req, state.client_ip.trusted_hops) {
        "https"
    } else {
        "http"
    };
    let link = format!("{scheme}://{host}/admin/signup?token={token}");
    let page = InvitedPage {
        layout: admin.layout("Invitation", "users"),
        email: invitation.email,
        link,
        days: INVITATION_DAYS,
    };
    // `render` marks every dashboard page no-store: the token in it stays out of caches.
    render(&page, StatusCode::OK)
}

/// Whether the login page offers a sign-up link.
pub fn open(state: &AppState) -> bool {
    state.signup == SignupMode::Open
}
