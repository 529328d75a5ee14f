//! Users: accounts that own keys and log in, with argon2id password hashes (`password`) and
//! signed bearer tokens (`token`). Knows nothing of HTTP.

mod bootstrap;
pub mod password;
pub mod signup;
pub mod throttle;
pub mod token;

use std::net::IpAddr;

use crate::db::models::{NewUser, RevokedSession, User, UserChanges};
use chrono::NaiveDateTime;

use crate::audit::{self, Change, Noun, Origin, Target};
use crate::clock::Now;
use crate::db::{self, DbConnection, DbError, DbPool, UserId};
use crate::ledger::{self, CreditChange, Ledger, LedgerError};
use crate::limits::Bucket;
use crate::limits::credits::CreditState;
use crate::limits::{Limit, Limiter, Limits};
use crate::policy::{self, Actor};
use crate::validation::FieldErrors;

pub use bootstrap::{AdminBootstrap, FIRST_RUN_ADMIN, GeneratedAdmin, bootstrap_admin, random_password};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("invalid user fields")]
    Invalid(FieldErrors),
    #[error("email or password is wrong")]
    InvalidCredentials,
    #[error("no such user")]
    NotFound,
    #[error("a user with this email exists")]
    EmailTaken,
    #[error("too many failed attempts; try again in {0} seconds")]
    Throttled(u64),
    #[error(transparent)]
    Hash(#[from] password::HashError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Forbidden(#[from] policy::Refusal),
}

impl From<diesel::result::Error> for UserError {
    fn from(e: diesel::result::Error) -> UserError {
        UserError::Db(DbError::Query(e))
    }
}

/// The one normalisation of an email, valid or not (lookups, throttle buckets): trimmed and
/// lower-cased.
pub fn normalized_email(raw: &str) -> String {
    raw.trim().to_lowercase()
}

/// An email address as stored: trimmed and lower-cased, so lookups ignore case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, String> {
        let email = normalized_email(raw);
        let valid = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && !domain.is_empty() && !domain.contains('@')
            });
        if valid {
            Ok(Email(email))
        } else {
            Err("must be an email address".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 1024;

pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!("must be at least {MIN_PASSWORD_CHARS} characters"));
    }
    if password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(format!("must be at most {MAX_PASSWORD_CHARS} characters"));
    }
    Ok(())
}

pub(crate) fn insert(
    conn: &mut DbConnection,
    email: &Email,
    password_hash: &str,
    is_admin: bool,
    now: NaiveDateTime,
) -> Result<User, UserError> {
    if User::find_by_email(conn, email.as_str())?.is_some() {
        return Err(UserError::EmailTaken);
    }
    // Two sign-ups racing for one email: the loser meets the unique index, not a 500.
    let inserted = User::insert(
        conn,
        &NewUser {
            email: email.as_str(),
            password_hash,
            is_admin,
            is_active: true,
            created_at: now,
            updated_at: now,
        },
    );
    match inserted {
        Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => {
            Err(UserError::EmailTaken)
        }
        other => Ok(other?),
    }
}

/// Creates a user (`patch` may give a ceiling and a plan at once; activity and admin rights
/// are the arguments'). One transaction, one audit entry.
pub async fn create(
    pool: &DbPool,
    actor: Actor,
    credentials: (&str, &str),
    is_admin: bool,
    patch: UserPatch,
    now: Now,
) -> Result<User, UserError> {
    let (email, hash) = checked(credentials).await?;
    let limits = patch.ceiling.is_some() || patch.plan.is_some();
    let changes = UserPatch {
        is_active: None,
        is_admin: None,
        ..patch
    }
    .columns(now);
    db::run(pool, move |conn| {
        db::write(conn, |conn| {
            let mut user = insert(conn, &email, &hash, is_admin, now.naive())?;
            if limits {
                user = User::update(conn, user.id, &changes, false)?.ok_or(UserError::NotFound)?;
            }
            created(conn, actor, &user, now)?;
            Ok(user)
        })
    })
    .await
}

/// A person signing themselves up (no admin rights): the new user is the entry's actor.
pub async fn register(
    pool: &DbPool,
    origin: Origin,
    credentials: (&str, &str),
    now: Now,
) -> Result<User, UserError> {
    let (email, hash) = checked(credentials).await?;
    db::run(pool, move |conn| {
        db::write(conn, |conn| {
            let user = insert(conn, &email, &hash, false, now.naive())?;
            created(conn, Actor::of(&user, origin), &user, now)?;
            Ok(user)
        })
    })
    .await
}

/// A new account's email, checked, and its password, checked and hashed.
async fn checked((email, password): (&str, &str)) -> Result<(Email, String), UserError> {
    let mut errors = FieldErrors::new();
    let email = Email::parse(email).map_err(|e| errors.add("email", e)).ok();
    if let Err(e) = check_password(password) {
        errors.add("password", e);
    }
    let (Some(email), true) = (email, errors.is_empty()) else {
        return Err(UserError::Invalid(errors));
    };
    Ok((email, password::hash_bounded(password).await?))
}

/// The audit entry of a new user.
fn created(conn: &mut DbConnection, actor: Actor, user: &User, now: Now) -> Result<(), DbError> {
    let change = Change::created("user.created", Target::User(user.id), audit::user_fields(user));
    audit::record(conn, actor, change, now)
}

/// Checks an email and password. Unknown emails cost the same argon2 work as wrong passwords,
/// so response times do not reveal which accounts exist.
pub async fn authenticate(pool: &DbPool, email: &str, password: &str) -> Result<User, UserError> {
    let email = normalized_email(email);
    let user = db::run(pool, move |conn| {
        Ok::<_, UserError>(User::find_by_email(conn, &email)?)
    })
    .await?;
    let phc = user
        .as_ref()
        .map_or(DUMMY_HASH, |u| u.password_hash.as_str())
        .to_owned();
    let matches = password::verify_bounded(password, phc).await;
    match user {
        Some(user) if matches && user.is_active => Ok(user),
        _ => Err(UserError::InvalidCredentials),
    }
}

/// One attempt against the login throttle (see [`throttle`]): logging in, changing a password,
/// signing up.
pub(crate) async fn throttled(
    limiter: &Limiter,
    address: Option<IpAddr>,
    email: &str,
    now: Now,
) -> Result<(), UserError> {
    throttle::Attempt::new(address, email)
        .begin(limiter, now)
        .await
        .map_err(UserError::Throttled)
}

/// [`authenticate`] behind the login throttle (see [`throttle`]): what both the dashboard and
/// `POST /api/auth/token` call.
pub async fn log_in(
    pool: &DbPool,
    limiter: &Limiter,
    address: Option<IpAddr>,
    email: &str,
    password: &str,
    now: Now,
) -> Result<User, UserError> {
    throttled(limiter, address, email, now).await?;
    authenticate(pool, email, password).await
}

/// Where a change of a user's standing (active, epoch) is announced, so that every instance
/// stops honouring their old tokens and sessions: the key cache, which holds the standing the
/// gate reads. A trait, so that users need not know the cache (keys build on users, not the
/// other way round).
pub trait Standing {
    fn user_changed(&self, id: UserId) -> impl std::future::Future<Output = ()>;
}

impl<T: Standing> Standing for std::sync::Arc<T> {
    fn user_changed(&self, id: UserId) -> impl std::future::Future<Output = ()> {
        T::user_changed(self, id)
    }
}

/// The most `user` may set on their own keys: what an admin set, or `defaults`
/// (`KEY_RATE_LIMIT`) until then. `None` in a window: no ceiling there.
pub fn ceiling(user: &User, defaults: &Limits) -> Limits {
    if !user.ceiling_set {
        return *defaults;
    }
    Limits::ceiling_of(user)
}

/// A change of a user by an admin: `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub is_active: Option<bool>,
    pub is_admin: Option<bool>,
    /// A new ceiling, all three windows at once (`None` in a window: no ceiling there).
    pub ceiling: Option<Limits>,
    /// A new plan: limits on the sum of all the user's keys, all four windows at once.
    pub plan: Option<Limits>,
}

fn column(limit: Option<Limit>) -> Option<i32> {
    limit.map(Limit::column)
}

impl UserPatch {
    fn columns(&self, now: Now) -> UserChanges {
        let (ceiling, plan) = (self.ceiling, self.plan);
        UserChanges {
            is_active: self.is_active,
            is_admin: self.is_admin,
            max_rate_limit_per_minute: ceiling.map(|c| column(c.per_minute)),
            max_rate_limit_per_hour: ceiling.map(|c| column(c.per_hour)),
            max_rate_limit_per_day: ceiling.map(|c| column(c.per_day)),
            ceiling_set: ceiling.map(|_| true),
            rate_limit_per_minute: plan.map(|p| column(p.per_minute)),
            rate_limit_per_hour: plan.map(|p| column(p.per_hour)),
            rate_limit_per_day: plan.map(|p| column(p.per_day)),
            rate_limit_per_month: plan.map(|p| column(p.per_month)),
            ..UserChanges::default_at(now.naive())
        }
    }
}

/// Applies `patch`. Switching a user off or on ends every token and session they hold, on
/// every instance (their epoch moves and the change is announced).
pub async fn update(
    pool: &DbPool,
    cache: &impl Standing,
    actor: Actor,
    id: UserId,
    patch: UserPatch,
    now: Now,
) -> Result<User, UserError> {
    let changes = patch.columns(now);
    let end_sessions = patch.is_active.is_some() || patch.is_admin == Some(false);
    let user = db::run(pool, move |conn| {
        db::write(conn, |conn| {
            let before = User::find(conn, id)?.ok_or(UserError::NotFound)?;
            let user = User::update(conn, id, &changes, end_sessions)?.ok_or(UserError::NotFound)?;
            let action = audit::switched(before.is_active, user.is_active, Noun::User);
            let change = Change::diff(
                action,
                Target::User(id),
                audit::user_fields(&before),
                audit::user_fields(&user),
            );
            audit::record(conn, actor, change, now)?;
            Ok::<_, UserError>(user)
        })
    })
    .await?;
    // Keys carry their owner's plan: they are read again after a change of it.
    if end_sessions || patch.plan.is_some() {
        cache.user_changed(id).await;
    }
    Ok(user)
}

/// Changes the password of user `id` (who must know the current one); every token and session
/// of theirs ends.
/// Guessing the current password (with a stolen token or session) is throttled as logging in
/// is, from `address`.
pub async fn change_password(
    pool: &DbPool,
    (limiter, cache): (&Limiter, &impl Standing),
    actor: Actor,
    (current, new): (&str, &str),
    now: Now,
) -> Result<User, UserError> {
    let stored = find(pool, actor.user_id).await?;
    throttled(limiter, actor.origin.ip, &stored.email, now).await?;
    if !password::verify_bounded(current, stored.password_hash).await {
        return Err(UserError::InvalidCredentials);
    }
    set_password(pool, cache, actor, actor.user_id, new, now).await
}

/// Sets the password of user `id` (the CLI's reset); every token and session of theirs ends.
pub async fn set_password(
    pool: &DbPool,
    cache: &impl Standing,
    actor: Actor,
    id: UserId,
    new: &str,
    now: Now,
) -> Result<User, UserError> {
    check_password(new).map_err(|e| UserError::Invalid(FieldErrors::single("new_password", e)))?;
    let changes = UserChanges {
        password_hash: Some(password::hash_bounded(new).await?),
        ..UserChanges::default_at(now.naive())
    };
    let user = db::run(pool, move |conn| {
        db::write(conn, |conn| {
            let user = User::update(conn, id, &changes, true)?.ok_or(UserError::NotFound)?;
            // That it changed is all the entry says: never the password or its hash.
            audit::record(
                conn,
                actor,
                Change::bare("user.password_changed", Target::User(id)),
                now,
            )?;
            Ok::<_, UserError>(user)
        })
    })
    .await?;
    cache.user_changed(id).await;
    Ok(user)
}

/// An admin's change of a user's plan credits (balance, refill, top-up), applied by the ledger
/// in the counter store and the database; the entry is written once it is made.
pub async fn change_credits(
    pool: &DbPool,
    (ledger, cache): (&Ledger, &impl Standing),
    actor: Actor,
    user: User,
    change: CreditChange,
    now: Now,
) -> Result<User, UserError> {
    policy::may_change_credits(actor, &change)?;
    let before = credit_fields(&user, ledger.plan_balance(&user, now).await?);
    let terms = ledger::user_terms(&user);
    ledger
        .apply(user.id, Bucket::Plan(user.id), terms, change, now)
        .await?;
    cache.user_changed(user.id).await;
    let user = find(pool, user.id).await?;
    let after = credit_fields(&user, ledger.plan_balance(&user, now).await?);
    let id = user.id;
    db::run(pool, move |conn| {
        audit::record(
            conn,
            actor,
            Change::diff("user.credits_changed", Target::User(id), before, after),
            now,
        )
    })
    .await?;
    Ok(user)
}

fn credit_fields(user: &User, balance: Option<CreditState>) -> audit::Fields {
    audit::credit_fields(&audit::user_fields(user), balance.map(|b| b.remaining))
}

/// An argon2id hash of a random string nobody knows, with the default parameters.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$8X1d3y4mDeTkBWgsUX5dbhHyR8l7WVyiCOUv5Da8UeU";

pub async fn find(pool: &DbPool, id: UserId) -> Result<User, UserError> {
    db::run(pool, move |conn| User::find(conn, id)?.ok_or(UserError::NotFound)).await
}

pub async fn list(pool: &DbPool) -> Result<Vec<User>, UserError> {
    db::run(pool, |conn| Ok(User::list(conn)?)).await
}

/// Activates or deactivates a user. A deactivated user cannot log in, and their bearer tokens
/// and dashboard sessions stop working on every instance within a second.
pub async fn set_active(
    pool: &DbPool,
    cache: &impl Standing,
    actor: Actor,
    id: UserId,
    active: bool,
    now: Now,
) -> Result<User, UserError> {
    let patch = UserPatch {
        is_active: Some(active),
        ..UserPatch::default()
    };
    update(pool, cache, actor, id, patch, now).await
}

/// The user of a dashboard session, unless that session was ended by a logout (one database
/// call for both).
pub async fn of_session(pool: &DbPool, id: UserId, session_id: String) -> Result<Option<User>, UserError> {
    db::run(pool, move |conn| {
        if RevokedSession::exists(conn, &session_id)? {
            return Ok(None);
        }
        Ok(User::find(conn, id)?)
    })
    .await
}

/// Ends a dashboard session on every instance, until `expires_at` (when it would have expired).
pub async fn end_session(
    pool: &DbPool,
    session_id: String,
    expires_at: NaiveDateTime,
    now: Now,
) -> Result<(), UserError> {
    db::run(pool, move |conn| {
        Ok(RevokedSession::insert(
            conn,
            &session_id,
            expires_at,
            now.naive(),
        )?)
    })
    .await
}

pub async fn find_by_email(pool: &DbPool, email: &Email) -> Result<User, UserError> {
    let email = email.clone();
    db::run(pool, move |conn| {
        User::find_by_email(conn, email.as_str())?.ok_or(UserError::NotFound)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").map(|e| e.0),
            Ok("ada@example.com".into())
        );
        for bad in ["", "ada", "@example.com", "ada@", "a b@c.d", "a@b@c"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_dummy_hash_is_a_valid_argon2id_hash() {
        assert!(DUMMY_HASH.starts_with("$argon2id$"));
        assert!(argon2::password_hash::phc::PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!password::verify("", DUMMY_HASH));
    }

    #[test]
    fn random_passwords_are_long_and_distinct() {
        let a = random_password();
        assert_eq!(a.len(), 20);
        assert!(check_password(&a).is_ok());
        assert_ne!(a, random_password());
    }
}
