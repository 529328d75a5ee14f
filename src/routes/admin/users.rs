//! Dashboard pages for users: list, create (optionally as admin), deactivate and activate.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;

use crate::db;
use crate::db::models::User;
use crate::error::AdminError;
use crate::routes::admin::keys::ConfirmPage;
use crate::routes::admin::{Admin, Form, Layout, field, redirect, render};
use crate::state::AppState;
use crate::users::{self, UserError};

pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub is_admin: bool,
    pub is_active: bool,
    pub created: String,
    pub is_self: bool,
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<UserRow>,
    email: String,
    is_admin: bool,
    errors: HashMap<String, String>,
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
        })
        .collect();
    Ok(UsersPage {
        layout: admin.layout("Users", "users"),
        users: rows,
        email,
        is_admin,
        errors,
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
) -> Result<HttpResponse, AdminError> {
    admin.check_csrf(&form)?;
    let email = field(&form, "email").to_owned();
    let is_admin = form.contains_key("is_admin");
    let password = form.get("password").cloned().unwrap_or_default();
    match users::create(&state.pool, &email, &password, is_admin).await {
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
        Err(UserError::Invalid(fields)) => {
            let errors = fields.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            render(
                &page(&state, &admin, email, is_admin, errors).await?,
                StatusCode::BAD_REQUEST,
            )
        }
        Err(e) => Err(e.into()),
    }
}

async fn set_active(
    state: web::Data<AppState>,
    admin: Admin,
    id: i64,
    form: Form,
    active: bool,
) -> Result<HttpResponse, AdminError> {
    admin.check_csrf(&form)?;
    if id == admin.user.id && !active {
        return Err(AdminError::BadRequest("You cannot deactivate yourself.".into()));
    }
    let user = db::run(&state.pool, move |conn| Ok::<_, UserError>(User::find(conn, id)?))
        .await?
        .ok_or(AdminError::NotFound)?;
    let verb = if active { "activate" } else { "deactivate" };
    if form.get("confirm").map(String::as_str) != Some("yes") {
        let confirm = ConfirmPage {
            layout: admin.layout(
                format!("{} user", if active { "Activate" } else { "Deactivate" }),
                "users",
            ),
            question: format!(
                "{} {}?",
                if active { "Activate" } else { "Deactivate" },
                user.email
            ),
            consequence: if active {
                "They can log in again.".to_owned()
            } else {
                "They can no longer log in, and their bearer tokens and sessions stop working at once. Their API keys are not changed.".to_owned()
            },
            action: format!("/admin/users/{id}/{verb}"),
            button: if active {
                "Activate user"
            } else {
                "Deactivate user"
            },
            danger: !active,
            cancel: "/admin/users".to_owned(),
        };
        return render(&confirm, StatusCode::OK);
    }
    let user = users::set_active(&state.pool, id, active).await?;
    admin.flash(
        "success",
        format!(
            "{} {}.",
            if active { "Activated" } else { "Deactivated" },
            user.email
        ),
    );
    Ok(redirect("/admin/users"))
}

pub async fn deactivate(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<i64>,
    form: Form,
) -> Result<HttpResponse, AdminError> {
    set_active(state, admin, *id, form, false).await
}

pub async fn activate(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<i64>,
    form: Form,
) -> Result<HttpResponse, AdminError> {
    set_active(state, admin, *id, form, true).await
}
