//! Dashboard pages for users: list, create (optionally as admin), deactivate and activate, and
//! set the ceiling of what a user may set on their own keys.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;

use crate::clock::Now;
use crate::db::UserId;
use crate::db::models::User;
use crate::limits::{Limit, Limits};
use crate::routes::admin::AdminError;
use crate::routes::admin::{Admin, Confirmation, Form, Layout, Switch, field, redirect, render};
use crate::state::AppState;
use crate::users::{self, UserError};

pub struct UserRow {
    pub id: UserId,
    pub email: String,
    pub is_admin: bool,
    pub is_active: bool,
    pub created: String,
    pub is_self: bool,
    /// The ceiling per minute, hour and day as the form shows it (empty: none).
    pub ceiling: [String; 3],
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<UserRow>,
    email: String,
    is_admin: bool,
    errors: HashMap<String, String>,
    /// `SIGNUP=invite`: the page offers invitations.
    invites: bool,
}

impl UsersPage {
    fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }
}

async fn page(
    state: &AppState,
    admin: &Admin,
    email: String,
    is_admin: bool,
    errors: HashMap<String, String>,
) -> Result<UsersPage, AdminError> {
    let list = users::list(&state.pool).await?;
    let rows = list
        .iter()
        .map(|u: &User| UserRow {
            id: u.id,
            email: u.email.clone(),
            is_admin: u.is_admin,
            is_active: u.is_active,
            created: u.created_at.format("%Y-%m-%d").to_string(),
            is_self: u.id == admin.user.id,
            ceiling: {
                let c = users::ceiling(u, &state.key_defaults);
                let shown = |v: Option<Limit>| v.map_or_else(String::new, |n| n.to_string());
                [shown(c.per_minute), shown(c.per_hour), shown(c.per_day)]
            },
        })
        .collect();
    Ok(UsersPage {
        layout: admin.layout("Users", "users"),
        users: rows,
        email,
        is_admin,
        errors,
        invites: state.signup == crate::users::signup::SignupMode::Invite,
    })
}

pub async fn list(state: web::Data<AppState>, admin: Admin) -> Result<HttpResponse, AdminError> {
    render(
        &page(&state, &admin, String::new(), false, HashMap::new()).await?,
        StatusCode::OK,
    )
}

pub async fn create(
    state: web::Data<AppState>,
    admin: Admin,
    form: Form,
    now: Now,
) -> Result<HttpResponse, AdminError> {
    admin.check_csrf(&form)?;
    let email = field(&form, "email").to_owned();
    let is_admin = form.contains_key("is_admin");
    let password = form.get("password").cloned().unwrap_or_default();
    let patch = users::UserPatch::default();
    match users::create(
        &state.pool,
        admin.actor(),
        (&email, &password),
        is_admin,
        patch,
        now,
    )
    .await
    {
        Ok(user) => {
            admin.flash(
                "success",
                format!(
                    "Created {}{}.",
                    user.email,
                    if is_admin { " (admin)" } else { "" }
                ),
            );
            Ok(redirect("/admin/users"))
        }
        Err(e @ (UserError::Invalid(_) | UserError::EmailTaken)) => {
            let errors = match e {
                UserError::Invalid(fields) => {
                    fields.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
                }
                other => HashMap::from([("email".to_owned(), other.to_string())]),
            };
            render(
                &page(&state, &admin, email, is_admin, errors).await?,
                StatusCode::BAD_REQUEST,
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /admin/users/{id}/activate|deactivate`, confirmed first.
pub async fn switch(
    state: web::Data<AppState>,
    admin: Admin,
    path: web::Path<(UserId, Switch)>,
    form: Form,
    now: Now,
) -> Result<HttpResponse, AdminError> {
    admin.check_csrf(&form)?;
    let (id, switch) = path.into_inner();
    if id == admin.user.id && !switch.active() {
        return Err(AdminError::BadRequest("You cannot deactivate yourself.".into()));
    }
    let user = users::find(&state.pool, id).await?;
    let confirmation = Confirmation {
        switch,
        noun: "user",
        section: "users",
        subject: user.email.clone(),
        consequence: if switch.active() {
            "They can log in again."
        } else {
            "They can no longer log in, and their bearer tokens and sessions stop working at once. Their API keys are not changed."
        },
        base: format!("/admin/users/{id}"),
        cancel: "/admin/users".to_owned(),
    };
    if let Some(page) = confirmation.ask(&admin, &form) {
        return page;
    }
    users::set_active(&state.pool, &state.keys, admin.actor(), id, switch.active(), now).await?;
    admin.flash("success", format!("{}d {}.", switch.title(), user.email));
    Ok(redirect("/admin/users"))
}

/// `POST /admin/users/{id}/ceiling`: the most this user may set on their own keys; an empty
/// field means no ceiling in that window.
pub async fn ceiling(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<UserId>,
    form: Form,
    now: Now,
) -> Result<HttpResponse, AdminError> {
    admin.check_csrf(&form)?;
    let user = users::find(&state.pool, *id).await?;
    let mut problems = Vec::new();
    let mut limit = |name: &str, window: &str| -> Option<Limit> {
        let text = field(&form, name);
        if text.is_empty() {
            return None;
        }
        match text
            .parse::<i64>()
            .map_err(|_| String::new())
            .and_then(Limit::parse)
        {
            Ok(n) => Some(n),
            Err(_) => {
                problems.push(format!(
                    "the per-{window} ceiling must be a positive whole number or empty"
                ));
                None
            }
        }
    };
    let ceiling = Limits {
        per_minute: limit("max_rate_limit_per_minute", "minute"),
        per_hour: limit("max_rate_limit_per_hour", "hour"),
        per_day: limit("max_rate_limit_per_day", "day"),
        per_month: None,
    };
    if !problems.is_empty() {
        admin.flash("error", format!("Nothing changed: {}.", problems.join("; ")));
        return Ok(redirect("/admin/users"));
    }
    let patch = users::UserPatch {
        ceiling: Some(ceiling),
        ..users::UserPatch::default()
    };
    users::update(&state.pool, &state.keys, admin.actor(), user.id, patch, now).await?;
    admin.flash("success", format!("Saved the ceiling of {}.", user.email));
    Ok(redirect("/admin/users"))
}
