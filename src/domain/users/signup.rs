//! Getting an account for the dashboard (`SIGNUP`): closed (admins create users), by invitation
//! (an admin creates a one-time link for an email, valid 7 days, kept only as a hash; no email
//! server needed: the admin passes the link on), or open to anyone, behind the login throttle
//! and a per-address limit on sign-ups.

use std::net::IpAddr;

use chrono::Duration;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Email, UserError, check_password, insert, password};
use crate::audit::{self, Change, Origin, Target};
use crate::clock::Now;
use crate::db::models::{Invitation, NewInvitation, User};
use crate::db::{self, DbPool};
use crate::limits::{Bucket, Limit, Limiter, Policy, Window};
use crate::policy::{self, Actor};
use crate::validation::FieldErrors;

/// How people get an account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SignupMode {
    /// Admins create users (API, dashboard, CLI).
    #[default]
    Closed,
    /// Admins invite an email with a one-time link.
    Invite,
    /// Anyone may sign up.
    Open,
}

/// How long an invitation link works.
pub const INVITATION_DAYS: i64 = 7;

/// Sign-ups per client address (an IPv6 /64) per hour, with `SIGNUP=open`.
const SIGNUPS_PER_ADDRESS: Limit = Limit::new(5).expect("positive");

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Invites `email` (an admin's action): the invitation, and the token of its link (the only
/// copy; keygate keeps its hash).
pub async fn invite(
    pool: &DbPool,
    actor: Actor,
    email: &str,
    now: Now,
) -> Result<(Invitation, String), UserError> {
    policy::require_admin(actor, "invite users")
        .map_err(|r| UserError::Invalid(FieldErrors::single("email", r.0)))?;
    let email = Email::parse(email).map_err(|e| UserError::Invalid(FieldErrors::single("email", e)))?;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    let token = hex::encode(bytes);
    let hash = token_hash(&token);
    let invitation = db::run(pool, move |conn| {
        if User::find_by_email(conn, email.as_str())?.is_some() {
            return Err(UserError::EmailTaken);
        }
        db::write(conn, |conn| {
            let invitation = Invitation::insert(
                conn,
                &NewInvitation {
                    email: email.as_str(),
                    token_hash: &hash,
                    created_by: actor.user_id,
                    created_at: now.naive(),
                    expires_at: now.naive() + Duration::days(INVITATION_DAYS),
                },
            )?;
            let fields =
                audit::into_fields(json!({"email": invitation.email, "invitation_id": invitation.id}));
            audit::record(
                conn,
                actor,
                Change::created("user.invited", Target::Invitation, fields),
                now,
            )?;
            Ok(invitation)
        })
    })
    .await?;
    Ok((invitation, token))
}

/// The open invitation behind a link's token (unused, unexpired), else `NotFound`.
pub async fn invitation(pool: &DbPool, token: &str, now: Now) -> Result<Invitation, UserError> {
    let hash = token_hash(token);
    db::run(pool, move |conn| {
        Invitation::open(conn, &hash, now.naive())?.ok_or(UserError::NotFound)
    })
    .await
}

/// Accepts an invitation: the person chooses a password and becomes a user (not an admin). The
/// link works once, however many use it at the same moment.
pub async fn accept(
    pool: &DbPool,
    origin: Origin,
    token: &str,
    new_password: &str,
    now: Now,
) -> Result<User, UserError> {
    check_password(new_password).map_err(|e| UserError::Invalid(FieldErrors::single("password", e)))?;
    let invitation = invitation(pool, token, now).await?;
    let hash = password::hash_bounded(new_password).await?;
    db::run(pool, move |conn| {
        db::write::<_, UserError, _>(conn, |conn| {
            if !Invitation::use_up(conn, invitation.id, now.naive())? {
                return Err(UserError::NotFound);
            }
            let user = insert(conn, &Email(invitation.email.clone()), &hash, false, now.naive())?;
            super::created(conn, Actor::of(&user, origin), &user, now)?;
            Ok(user)
        })
    })
    .await
}

/// Open sign-up: throttled as logging in is (the same buckets) and at most a few accounts per
/// address an hour.
pub async fn sign_up(
    pool: &DbPool,
    limiter: &Limiter,
    origin: Origin,
    (email, new_password): (&str, &str),
    now: Now,
) -> Result<User, UserError> {
    let address = origin.ip;
    super::throttled(limiter, address, email, now).await?;
    let bucket = Bucket::SignupIp(Bucket::subscriber(address.unwrap_or(IpAddr::from([0, 0, 0, 0]))));
    let policy = Policy::new(vec![(Window::Hour, Some(SIGNUPS_PER_ADDRESS))]);
    // Without counters (Redis failing in mode closed) sign-ups stay possible, as logins do.
    if let Ok(decision) = limiter.hit(bucket, &policy, 1, now).await
        && let Some((_, wait_ms)) = decision.refusal()
    {
        return Err(UserError::Throttled(wait_ms.div_ceil(1000).max(1)));
    }
    super::register(pool, origin, (email, new_password), now).await
}
