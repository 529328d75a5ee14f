//! `/admin/login`, `/admin/logout` and `/admin/account` (password change). Logins go through
//! the one login throttle (`users::throttle`), shared with `POST /api/auth/token`.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::clock::Now;
use crate::gate::client_ip;
use crate::routes::admin::AdminError;
use crate::routes::admin::{
    Form, Layout, Member, check_csrf, csrf_token, field, log_in, log_out, redirect, render, session_user,
};
use crate::state::AppState;
use crate::users::{self, UserError};

#[derive(Template)]
#[template(path = "admin/login.html")]
struct LoginPage {
    layout: Layout,
    email: String,
    error: Option<String>,
    notice: Option<String>,
    signup_open: bool,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    logged_out: Option<String>,
    password_changed: Option<String>,
}

fn login_page(
    state: &AppState,
    session: &Session,
    email: &str,
    error: Option<String>,
    notice: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, AdminError> {
    let layout = Layout::anonymous("Log in", "login", csrf_token(session));
    render(
        &LoginPage {
            layout,
            email: email.to_owned(),
            error,
            notice,
            signup_open: crate::routes::admin::signup::open(state),
        },
        status,
    )
}

pub async fn form(
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, AdminError> {
    if session_user(&state, &session).await?.is_some() {
        return Ok(redirect("/admin/keys"));
    }
    let notice = match (&query.logged_out, &query.password_changed) {
        (_, Some(_)) => Some("Your password was changed. Log in with the new one.".to_owned()),
        (Some(_), None) => Some("You have been logged out.".to_owned()),
        (None, None) => None,
    };
    login_page(&state, &session, "", None, notice, StatusCode::OK)
}

fn retry_text(seconds: u64) -> String {
    if seconds < 90 {
        format!("{seconds} seconds")
    } else {
        format!("{} minutes", seconds.div_ceil(60))
    }
}

pub async fn submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    form: Form,
    now: Now,
) -> Result<HttpResponse, AdminError> {
    check_csrf(&session, &form)?;
    let email = field(&form, "email").to_owned();
    let password = form.get("password").cloned().unwrap_or_default();
    let address = client_ip(&state, &req);
    match users::log_in(&state.pool, &state.limiter, address, &email, &password, now).await {
        Ok(user) => {
            log_in(&session, &user)?;
            Ok(redirect("/admin/keys"))
        }
        Err(UserError::Throttled(seconds)) => {
            let error = format!("Too many login attempts. Try again in {}.", retry_text(seconds));
            let mut page = login_page(
                &state,
                &session,
                &email,
                Some(error),
                None,
                StatusCode::TOO_MANY_REQUESTS,
            )?;
            page.headers_mut()
                .insert(actix_web::http::header::RETRY_AFTER, seconds.into());
            Ok(page)
        }
        Err(UserError::InvalidCredentials) => login_page(
            &state,
            &session,
            &email,
            Some("The email or password is wrong.".into()),
            None,
            StatusCode::UNAUTHORIZED,
        ),
        Err(e) => Err(e.into()),
    }
}

pub async fn logout(
    state: web::Data<AppState>,
    session: Session,
    form: Form,
    now: Now,
) -> Result<HttpResponse, AdminError> {
    check_csrf(&session, &form)?;
    log_out(&state, &session, now).await?;
    Ok(redirect("/admin/login?logged_out=1"))
}

#[derive(Template)]
#[template(path = "admin/account.html")]
struct AccountPage {
    layout: Layout,
    error: Option<String>,
    /// The most they may set on their own keys (their ceiling), in words.
    plan: String,
}

pub async fn account(state: web::Data<AppState>, member: Member) -> Result<HttpResponse, AdminError> {
    let page = AccountPage {
        layout: member.layout("Your account", "account"),
        error: None,
        plan: plan(&state, &member),
    };
    render(&page, StatusCode::OK)
}

fn plan(state: &AppState, member: &Member) -> String {
    if member.is_admin() {
        "admin: any limits".to_owned()
    } else {
        crate::routes::admin::keys::ceiling_text(&users::ceiling(&member.user, &state.key_defaults))
    }
}

/// `POST /admin/account/password`: the user's own password; every session and token of theirs
/// ends (this one too), so they log in again.
pub async fn change_password(
    state: web::Data<AppState>,
    member: Member,
    form: Form,
    now: Now,
) -> Result<HttpResponse, AdminError> {
    let admin = member;
    admin.check_csrf(&form)?;
    let current = form.get("current_password").cloned().unwrap_or_default();
    let new = form.get("new_password").cloned().unwrap_or_default();
    let refuse = |error: String, status| {
        let page = AccountPage {
            layout: admin.layout("Your account", "account"),
            error: Some(error),
            plan: plan(&state, &admin),
        };
        render(&page, status)
    };
    let stores = (&*state.limiter, &*state.keys);
    match users::change_password(&state.pool, stores, admin.actor(), (&current, &new), now).await {
        Ok(_) => {
            admin.session.purge();
            Ok(redirect("/admin/login?password_changed=1"))
        }
        Err(UserError::Throttled(seconds)) => refuse(
            format!("Too many attempts. Try again in {}.", retry_text(seconds)),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        Err(UserError::InvalidCredentials) => refuse(
            "The current password is wrong; nothing changed.".into(),
            StatusCode::FORBIDDEN,
        ),
        Err(UserError::Invalid(fields)) => refuse(
            format!("Nothing changed: {}.", fields.sentence()),
            StatusCode::BAD_REQUEST,
        ),
        Err(e) => Err(e.into()),
    }
}
