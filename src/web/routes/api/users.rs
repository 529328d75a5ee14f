//! `/api/users/`: accounts, for admins. Switching a user off or on ends every token and session
//! they hold; the ceiling is what they may set on their own keys (see `crate::policy`).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::clock::Now;
use crate::db::UserId;
use crate::db::models::User;
use crate::error::ApiError;
use crate::limits::{Limit, Limits};
use crate::policy;
use crate::routes::api::body::{Fields, JsonObject};
use crate::routes::api::principal::Principal;
use crate::state::AppState;
use crate::users::{self, UserPatch};

#[derive(Serialize)]
struct UserView<'a> {
    id: UserId,
    email: &'a str,
    is_admin: bool,
    is_active: bool,
    max_rate_limit_per_minute: Option<Limit>,
    max_rate_limit_per_hour: Option<Limit>,
    max_rate_limit_per_day: Option<Limit>,
    created_at: DateTime<Utc>,
}

impl<'a> UserView<'a> {
    fn of(user: &'a User, defaults: &Limits) -> UserView<'a> {
        let ceiling = users::ceiling(user, defaults);
        UserView {
            id: user.id,
            email: &user.email,
            is_admin: user.is_admin,
            is_active: user.is_active,
            max_rate_limit_per_minute: ceiling.per_minute,
            max_rate_limit_per_hour: ceiling.per_hour,
            max_rate_limit_per_day: ceiling.per_day,
            created_at: user.created_at.and_utc(),
        }
    }
}

fn admin_only(who: &Principal) -> Result<(), ApiError> {
    policy::require_admin(who.actor(), "manage users").map_err(|r| ApiError::Forbidden(r.0))
}

/// The ceiling fields of a body: `None` when none is there; otherwise `current` with those
/// that are there replaced (null: no ceiling in that window).
fn ceiling_fields(f: &mut Fields, current: Limits) -> Option<Limits> {
    let minute = f.integer("max_rate_limit_per_minute", Limit::parse);
    let hour = f.integer("max_rate_limit_per_hour", Limit::parse);
    let day = f.integer("max_rate_limit_per_day", Limit::parse);
    if minute.is_none() && hour.is_none() && day.is_none() {
        return None;
    }
    Some(Limits {
        per_minute: minute.unwrap_or(current.per_minute),
        per_hour: hour.unwrap_or(current.per_hour),
        per_day: day.unwrap_or(current.per_day),
        per_month: None,
    })
}

pub async fn list(state: web::Data<AppState>, who: Principal) -> Result<HttpResponse, ApiError> {
    admin_only(&who)?;
    let list = users::list(&state.pool).await?;
    let views: Vec<UserView<'_>> = list
        .iter()
        .map(|u| UserView::of(u, &state.key_defaults))
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

pub async fn get(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<UserId>,
) -> Result<HttpResponse, ApiError> {
    admin_only(&who)?;
    let user = users::find(&state.pool, *id).await?;
    Ok(HttpResponse::Ok().json(UserView::of(&user, &state.key_defaults)))
}

pub async fn create(
    state: web::Data<AppState>,
    who: Principal,
    body: JsonObject,
    now: Now,
) -> Result<HttpResponse, ApiError> {
    admin_only(&who)?;
    let mut f = Fields::new(body);
    let email = f.required("email", |s| Ok(s.to_owned()));
    let password = f.required("password", |s| Ok(s.to_owned()));
    let is_admin = f.boolean("is_admin").unwrap_or(false);
    let ceiling = ceiling_fields(&mut f, state.key_defaults);
    f.finish()?;
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::InvalidJson("email and password are required".into()));
    };
    let mut user = users::create(&state.pool, &email, &password, is_admin, now).await?;
    if let Some(ceiling) = ceiling {
        let patch = UserPatch {
            ceiling: Some(ceiling),
            ..UserPatch::default()
        };
        user = users::update(&state.pool, &state.keys, user.id, patch, now).await?;
    }
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/users/{}/", user.id)))
        .json(UserView::of(&user, &state.key_defaults)))
}

pub async fn update(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<UserId>,
    body: JsonObject,
    now: Now,
) -> Result<HttpResponse, ApiError> {
    admin_only(&who)?;
    let current = users::find(&state.pool, *id).await?;
    let mut f = Fields::new(body);
    let patch = UserPatch {
        is_active: f.boolean("is_active"),
        is_admin: f.boolean("is_admin"),
        ceiling: ceiling_fields(&mut f, users::ceiling(&current, &state.key_defaults)),
    };
    f.finish()?;
    if current.id == who.0.id && (patch.is_active == Some(false) || patch.is_admin == Some(false)) {
        return Err(ApiError::Forbidden(
            "Admins may not deactivate themselves or take away their own admin rights; ask another admin."
                .into(),
        ));
    }
    let user = users::update(&state.pool, &state.keys, *id, patch, now).await?;
    Ok(HttpResponse::Ok().json(UserView::of(&user, &state.key_defaults)))
}
