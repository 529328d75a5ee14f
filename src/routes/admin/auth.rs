//! `/admin/login` and `/admin/logout`. Failed logins are throttled per client address and per
//! email (20 and 5 an hour) in the same counter store as the gate, so the limit holds across
//! instances.

use std::net::IpAddr;

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::AdminError;
use crate::limits::{Bucket, Policy, Window};
use crate::routes::admin::{
    Form, Layout, check_csrf, csrf_token, field, log_in, redirect, render, session_admin,
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
}

#[derive(Deserialize)]
pub struct LoginQuery {
    logged_out: Option<String>,
}

fn login_page(
    session: &Session,
    email: &str,
    error: Option<String>,
    notice: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, AdminError> {
    let layout = Layout {
        title: "Log in".into(),
        section: "login",
        admin: None,
        csrf: csrf_token(session),
        flashes: Vec::new(),
    };
    render(
        &LoginPage {
            layout,
            email: email.to_owned(),
            error,
            notice,
        },
        status,
    )
}

pub async fn form(
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, AdminError> {
    if session_admin(&state, &session).await?.is_some() {
        return Ok(redirect("/admin/keys"));
    }
    let notice = query
        .logged_out
        .as_ref()
        .map(|_| "You have been logged out.".to_owned());
    login_page(&session, "", None, notice, StatusCode::OK)
}

fn throttle_buckets(ip: Option<IpAddr>, email: &str) -> [(Bucket, Policy); 2] {
    let digest = Sha256::digest(email.trim().to_lowercase().as_bytes());
    let email_hash = u64::from_be_bytes(digest[..8].try_into().unwrap_or_default());
    [
        (
            Bucket::LoginEmail(email_hash),
            Policy::new(vec![(Window::Hour, Some(5))]),
        ),
        (
            Bucket::LoginIp(ip.unwrap_or(IpAddr::from([0, 0, 0, 0]))),
            Policy::new(vec![(Window::Hour, Some(20))]),
        ),
    ]
}

/// Seconds until another attempt is allowed, if the failures so far used up a window.
async fn blocked_for(state: &AppState, buckets: &[(Bucket, Policy)]) -> Option<u64> {
    let mut wait = None;
    for (bucket, policy) in buckets {
        // Without counters (Redis failing in mode closed) logins stay possible.
        let Ok(decision) = state.limiter.hit(*bucket, policy, 0).await else {
            continue;
        };
        for count in decision.counts.iter().filter(|c| c.remaining() == Some(0)) {
            let seconds = count.retry_after_ms().div_ceil(1000).max(1);
            wait = Some(wait.map_or(seconds, |w: u64| w.max(seconds)));
        }
    }
    wait
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
) -> Result<HttpResponse, AdminError> {
    check_csrf(&session, &form)?;
    let email = field(&form, "email").to_owned();
    let password = form.get("password").cloned().unwrap_or_default();
    let peer = req.peer_addr().map(|a| a.ip());
    let forwarded = req.headers().get_all("x-forwarded-for").map(|v| v.as_bytes());
    let header = state
        .client_ip
        .header
        .as_deref()
        .and_then(|h| req.headers().get(h))
        .map(|v| v.as_bytes());
    let buckets = throttle_buckets(state.client_ip.resolve(peer, forwarded, header), &email);

    if let Some(seconds) = blocked_for(&state, &buckets).await {
        let error = format!("Too many failed attempts. Try again in {}.", retry_text(seconds));
        return login_page(&session, &email, Some(error), None, StatusCode::TOO_MANY_REQUESTS);
    }
    match users::authenticate(&state.pool, &email, &password).await {
        Ok(user) if user.is_admin => {
            log_in(&session, &user)?;
            Ok(redirect("/admin/keys"))
        }
        Ok(_) => login_page(
            &session,
            &email,
            Some("Only admins can use the dashboard.".into()),
            None,
            StatusCode::FORBIDDEN,
        ),
        Err(UserError::InvalidCredentials) => {
            for (bucket, policy) in &buckets {
                let _ = state.limiter.hit(*bucket, policy, 1).await;
            }
            login_page(
                &session,
                &email,
                Some("The email or password is wrong.".into()),
                None,
                StatusCode::UNAUTHORIZED,
            )
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn logout(session: Session, form: Form) -> Result<HttpResponse, AdminError> {
    check_csrf(&session, &form)?;
    session.purge();
    Ok(redirect("/admin/login?logged_out=1"))
}
