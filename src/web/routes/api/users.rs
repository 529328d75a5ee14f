//! `/api/users/`: accounts, for admins. Switching a user off or on ends every token and session
//! they hold; the ceiling is what they may set on their own keys (see `crate::policy`).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::clock::Now;
use crate::db::UserId;
use crate::db::models::User;
use crate::error::ApiError;
use crate::ledger::{self, CreditChange, Holder};
use crate::limits::Bucket;
use crate::limits::{Limit, Limits};
use crate::policy::{self, Actor};
use crate::routes::api::body::{Fields, JsonObject};
use crate::routes::api::keys::{RefillView, next_refill_at, parse_credits};
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
    /// The plan: limits on the sum of all the user's keys' requests.
    rate_limit_per_minute: Option<Limit>,
    rate_limit_per_hour: Option<Limit>,
    rate_limit_per_day: Option<Limit>,
    rate_limit_per_month: Option<Limit>,
    /// The plan's credits left; `None`: unlimited.
    remaining: Option<u64>,
    refill: Option<RefillView>,
    next_refill_at: Option<DateTime<Utc>>,
}

impl<'a> UserView<'a> {
    fn of(user: &'a User, defaults: &Limits, now: Now) -> UserView<'a> {
        let ceiling = users::ceiling(user, defaults);
        let plan = Limits::plan_of(user);
        let refill = ledger::user_terms(user).and_then(|t| t.refill);
        UserView {
            rate_limit_per_minute: plan.per_minute,
            rate_limit_per_hour: plan.per_hour,
            rate_limit_per_day: plan.per_day,
            rate_limit_per_month: plan.per_month,
            remaining: user.remaining.map(|n| n.max(0) as u64),
            refill: refill.map(RefillView::of),
            next_refill_at: next_refill_at(refill, now),
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

/// A user as the API shows them, with the plan's live balance.
async fn shown<'u>(state: &AppState, user: &'u User, now: Now) -> Result<UserView<'u>, ApiError> {
    let mut view = UserView::of(user, &state.key_defaults, now);
    if let Some(terms) = ledger::user_terms(user) {
        let holder = Holder {
            owner: user.id,
            bucket: Bucket::Plan(user.id),
            terms,
        };
        if let Some(balance) = state.ledger.balance(holder, now).await? {
            view.remaining = Some(balance.remaining);
        }
    }
    Ok(view)
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

/// The plan's limit fields of a body: `None` when none is there; otherwise `current` with
/// those that are there replaced (null: no limit in that window).
fn plan_fields(f: &mut Fields, current: Limits) -> Option<Limits> {
    let minute = f.integer("rate_limit_per_minute", Limit::parse);
    let hour = f.integer("rate_limit_per_hour", Limit::parse);
    let day = f.integer("rate_limit_per_day", Limit::parse);
    let month = f.integer("rate_limit_per_month", Limit::parse);
    if minute.is_none() && hour.is_none() && day.is_none() && month.is_none() {
        return None;
    }
    Some(Limits {
        per_minute: minute.unwrap_or(current.per_minute),
        per_hour: hour.unwrap_or(current.per_hour),
        per_day: day.unwrap_or(current.per_day),
        per_month: month.unwrap_or(current.per_month),
    })
}

/// Applies a change of the plan's credits, then has every instance read the user's keys again.
async fn change_credits(
    state: &AppState,
    actor: Actor,
    user: User,
    change: CreditChange,
    now: Now,
) -> Result<User, ApiError> {
    if change.is_empty() {
        return Ok(user);
    }
    Ok(users::change_credits(
        &state.pool,
        (&state.ledger, &*state.keys),
        actor,
        user,
        change,
        now,
    )
    .await?)
}

pub async fn list(state: web::Data<AppState>, who: Principal, now: Now) -> Result<HttpResponse, ApiError> {
    admin_only(&who)?;
    let list = users::list(&state.pool).await?;
    let views: Vec<UserView<'_>> = list
        .iter()
        .map(|u| UserView::of(u, &state.key_defaults, now))
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

pub async fn get(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<UserId>,
    now: Now,
) -> Result<HttpResponse, ApiError> {
    admin_only(&who)?;
    let user = users::find(&state.pool, *id).await?;
    Ok(HttpResponse::Ok().json(shown(&state, &user, now).await?))
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
    let plan = plan_fields(&mut f, Limits::default());
    let credits = parse_credits(&mut f);
    f.finish()?;
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::InvalidJson("email and password are required".into()));
    };
    let patch = UserPatch {
        ceiling,
        plan,
        ..UserPatch::default()
    };
    let user = users::create(
        &state.pool,
        who.actor(),
        (&email, &password),
        is_admin,
        patch,
        now,
    )
    .await?;
    let user = change_credits(&state, who.actor(), user, credits, now).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/users/{}/", user.id)))
        .json(shown(&state, &user, now).await?))
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
        plan: plan_fields(&mut f, Limits::plan_of(&current)),
    };
    let credits = parse_credits(&mut f);
    f.finish()?;
    if current.id == who.0.id && (patch.is_active == Some(false) || patch.is_admin == Some(false)) {
        return Err(ApiError::Forbidden(
            "Admins may not deactivate themselves or take away their own admin rights; ask another admin."
                .into(),
        ));
    }
    let user = users::update(&state.pool, &state.keys, who.actor(), *id, patch, now).await?;
    let user = change_credits(&state, who.actor(), user, credits, now).await?;
    Ok(HttpResponse::Ok().json(shown(&state, &user, now).await?))
}
