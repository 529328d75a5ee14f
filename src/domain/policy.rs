//! The authorization policy: who may do what to which key or user, decided here and nowhere
//! else, for the API, the dashboard and the CLI alike (the README's authorization table is this
//! file in prose). Each rule that refuses says why, in a sentence the caller sees with a 403.
//!
//! - Admins may do everything.
//! - A user reaches only their own keys (others' are "not found", see `keys::service`).
//! - Within a user's **ceiling** (per window; set by admins, `KEY_RATE_LIMIT` by default) an
//!   owner may create keys and change them: rename, lower or raise limits up to the ceiling,
//!   set an earlier expiry, switch the key off and back on.
//! - Clearing a limit, going above the ceiling, clearing or extending an expiry, and switching
//!   on a key an admin switched off are admin-only.
//! - Only admins create keys for other users; a user naming any email but their own gets the
//!   same refusal whether or not that account exists.
//! - Users and key verification are admin-only.

use std::net::IpAddr;

use chrono::NaiveDateTime;

use crate::contract::{Contract, IpAllowlist, Meta, Scopes};
use crate::db::UserId;
use crate::db::models::{ApiKey, User};
use crate::ledger::CreditChange;
use crate::limits::{Limit, Limits, Window};

/// Where a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Api,
    Dashboard,
    Cli,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Api => "api",
            Via::Dashboard => "dashboard",
            Via::Cli => "cli",
        }
    }
}

/// The channel and client address of an actor's request (the CLI has no address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub via: Via,
    pub ip: Option<IpAddr>,
}

impl Origin {
    pub const CLI: Origin = Origin {
        via: Via::Cli,
        ip: None,
    };

    pub fn api(ip: Option<IpAddr>) -> Origin {
        Origin { via: Via::Api, ip }
    }

    pub fn dashboard(ip: Option<IpAddr>) -> Origin {
        Origin {
            via: Via::Dashboard,
            ip,
        }
    }
}

/// Who is acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub user_id: UserId,
    pub is_admin: bool,
    /// Where the request came from: the audit log records it with every change.
    pub origin: Origin,
}

impl Actor {
    pub fn of(user: &User, origin: Origin) -> Actor {
        Actor {
            user_id: user.id,
            is_admin: user.is_admin,
            origin,
        }
    }

    /// Whoever runs the CLI has the server's environment, so acts with admin rights, as
    /// nobody in particular.
    pub const CLI: Actor = Actor {
        user_id: UserId(0),
        is_admin: true,
        origin: Origin::CLI,
    };
}

/// What the policy judges of a change to a key: its limits, expiry and on/off switch (a
/// rename is anyone's who may see the key). `None` leaves a field alone; for nullable fields
/// `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct KeyChange {
    pub per_minute: Option<Option<Limit>>,
    pub per_hour: Option<Option<Limit>>,
    pub per_day: Option<Option<Limit>>,
    pub per_month: Option<Option<Limit>>,
    pub expires_at: Option<Option<NaiveDateTime>>,
    pub is_active: Option<bool>,
    pub meta: Option<Option<Meta>>,
    pub scopes: Option<Scopes>,
    pub ip_allowlist: Option<IpAllowlist>,
}

/// Credits are the price list: only admins set, top up or refill them, on keys and on plans.
pub fn may_change_credits(actor: Actor, change: &CreditChange) -> Result<(), Refusal> {
    if change.is_empty() {
        return Ok(());
    }
    require_admin(actor, "set or add credits")
}

/// A read that only some may make failed: the policy refused it, or the database did.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Forbidden(#[from] Refusal),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

/// A rule refused the action; the sentence says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

fn refuse<T>(text: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(text.into()))
}

/// Users reach only their own keys; admins reach all.
pub fn may_see(actor: Actor, key: &ApiKey) -> bool {
    actor.is_admin || key.user_id == actor.user_id
}

/// Admin-only actions: `what` completes "Only admins may …".
pub fn require_admin(actor: Actor, what: &str) -> Result<(), Refusal> {
    if actor.is_admin {
        Ok(())
    } else {
        refuse(format!("Only admins may {what}."))
    }
}

/// Whether `actor` may create a key for the account `requested` (an email, already
/// normalised), `own_email` being theirs.
pub fn may_create_for(actor: Actor, own_email: &str, requested: Option<&str>) -> Result<(), Refusal> {
    match requested {
        Some(email) if !actor.is_admin && email != own_email => {
            refuse("Only admins may create keys for other users.")
        }
        _ => Ok(()),
    }
}

fn window_name(window: Window) -> &'static str {
    window.name()
}

/// A limit an owner sets: present and within the ceiling in that window.
fn within_ceiling(window: Window, limit: Option<Limit>, ceiling: Option<Limit>) -> Result<(), Refusal> {
    match (limit, ceiling) {
        (_, None) => Ok(()),
        (None, Some(max)) => refuse(format!(
            "Only admins may remove the per-{} limit; yours may be at most {max}.",
            window_name(window)
        )),
        (Some(n), Some(max)) if n > max => refuse(format!(
            "The per-{} limit {n} is above your ceiling of {max}; only admins may set more.",
            window_name(window)
        )),
        _ => Ok(()),
    }
}

/// A new key's limits and contract, for an owner who is not an admin: limits within the
/// ceiling, no scopes (they open upstream routes) and no metadata (the upstream may trust it,
/// as `X-Keygate-Meta`): an admin grants both.
pub fn may_create(
    actor: Actor,
    ceiling: &Limits,
    limits: &Limits,
    contract: &Contract,
) -> Result<(), Refusal> {
    if actor.is_admin {
        return Ok(());
    }
    if !contract.scopes.is_empty() {
        return refuse("Only admins may give a key scopes.");
    }
    if contract.meta.is_some() {
        return refuse(META_IS_ADMINS);
    }
    for ((window, limit), (_, max)) in limits.windows().into_iter().zip(ceiling.windows()) {
        within_ceiling(window, limit, max)?;
    }
    Ok(())
}

/// A change of `key` (which `actor` may see), for an owner who is not an admin.
pub fn may_change(actor: Actor, ceiling: &Limits, key: &ApiKey, patch: &KeyChange) -> Result<(), Refusal> {
    if actor.is_admin {
        return Ok(());
    }
    let current = Limits::of(key);
    let changes = [
        (
            Window::Minute,
            patch.per_minute,
            ceiling.per_minute,
            current.per_minute,
        ),
        (Window::Hour, patch.per_hour, ceiling.per_hour, current.per_hour),
        (Window::Day, patch.per_day, ceiling.per_day, current.per_day),
        // A ceiling has no month of its own: a monthly limit an admin set is then its own
        // ceiling (a quota the owner may lower, never raise or remove).
        (
            Window::Month,
            patch.per_month,
            ceiling.per_month.or(current.per_month),
            current.per_month,
        ),
    ];
    for (window, change, max, now) in changes {
        match (change, now) {
            // Lowering a limit is always the owner's to do, even one an admin set above the
            // ceiling.
            (Some(Some(new)), Some(now)) if new <= now => {}
            (Some(limit), _) => within_ceiling(window, limit, max)?,
            (None, _) => {}
        }
    }
    if let Some(expiry) = patch.expires_at {
        may_set_expiry(key.expires_at, expiry)?;
    }
    if let Some(scopes) = &patch.scopes {
        may_set_scopes(&Scopes::of_column(&key.scopes), scopes)?;
    }
    if patch
        .meta
        .as_ref()
        .is_some_and(|meta| *meta != Meta::of_column(key.meta.as_deref()))
    {
        return refuse(META_IS_ADMINS);
    }
    if patch.is_active == Some(true) && !key.is_active && key.deactivated_by_admin {
        return refuse("An admin deactivated this key; only an admin may activate it again.");
    }
    Ok(())
}

const META_IS_ADMINS: &str =
    "Only admins may set a key's metadata: the upstream may trust it as it trusts the key.";

/// Owners may drop scopes from their keys, never add one (an admin grants them).
fn may_set_scopes(current: &Scopes, new: &Scopes) -> Result<(), Refusal> {
    match new.iter().find(|s| !current.contains(s)) {
        Some(scope) => refuse(format!(
            "Only admins may give a key scopes; \"{scope}\" is not one this key has."
        )),
        None => Ok(()),
    }
}

/// Owners may bring an expiry forward (or set one), never remove or postpone it.
fn may_set_expiry(current: Option<NaiveDateTime>, new: Option<NaiveDateTime>) -> Result<(), Refusal> {
    match (current, new) {
        (Some(_), None) => refuse("Only admins may remove a key's expiry."),
        (Some(now), Some(new)) if new > now => {
            refuse("Only admins may postpone a key's expiry; you may set an earlier one.")
        }
        _ => Ok(()),
    }
}

/// Whether a key switched off by `actor` counts as switched off by an admin (which its owner
/// cannot undo): an admin's doing, or an owner's switching off again a key an admin had already
/// switched off (it stays the admin's).
pub fn deactivated_by_admin(actor: Actor, key: &ApiKey) -> bool {
    actor.is_admin || (!key.is_active && key.deactivated_by_admin)
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: Actor = Actor {
        user_id: UserId(2),
        is_admin: false,
        origin: Origin::CLI,
    };
    const ADMIN: Actor = Actor {
        user_id: UserId(1),
        is_admin: true,
        origin: Origin::CLI,
    };
    const CEILING: Limits = Limits {
        per_minute: Limit::new(60),
        per_hour: Limit::new(1000),
        per_day: None,
        per_month: None,
    };

    #[test]
    fn owners_create_within_their_ceiling() {
        let ok = Limits {
            per_minute: Limit::new(60),
            per_hour: Limit::new(10),
            per_day: None,
            per_month: Limit::new(100_000),
        };
        assert_eq!(may_create(USER, &CEILING, &ok, &Contract::default()), Ok(()));
        let unlimited = Limits::default();
        assert!(may_create(USER, &CEILING, &unlimited, &Contract::default()).is_err());
        let above = Limits {
            per_minute: Limit::new(61),
            ..ok
        };
        let refusal = may_create(USER, &CEILING, &above, &Contract::default()).expect_err("above");
        assert!(refusal.0.contains("61") && refusal.0.contains("60"), "{refusal}");
        assert_eq!(
            may_create(ADMIN, &CEILING, &unlimited, &Contract::default()),
            Ok(())
        );
    }

    #[test]
    fn only_admins_create_for_others_and_the_answer_does_not_depend_on_the_account() {
        assert_eq!(may_create_for(USER, "a@x", Some("a@x")), Ok(()));
        assert_eq!(may_create_for(USER, "a@x", None), Ok(()));
        assert_eq!(
            may_create_for(USER, "a@x", Some("b@x")),
            may_create_for(USER, "a@x", Some("nobody@x"))
        );
        assert_eq!(may_create_for(ADMIN, "a@x", Some("b@x")), Ok(()));
    }

    #[test]
    fn only_admins_grant_scopes_and_owners_may_drop_them() {
        let scopes = |s: &[&str]| Scopes::parse(s.iter().copied()).expect("scopes");
        let some = Contract {
            scopes: scopes(&["orders:read"]),
            ..Contract::default()
        };
        assert!(may_create(USER, &CEILING, &Limits::default(), &some).is_err());
        assert_eq!(may_create(ADMIN, &CEILING, &Limits::default(), &some), Ok(()));
        let meta = Contract {
            meta: Meta::of_column(Some("{\"plan\":\"pro\"}")),
            ..Contract::default()
        };
        assert!(
            may_create(USER, &CEILING, &Limits::default(), &meta).is_err(),
            "metadata is an admin's"
        );
        let held = scopes(&["orders:read", "orders:write"]);
        assert_eq!(may_set_scopes(&held, &scopes(&["orders:read"])), Ok(()));
        assert_eq!(may_set_scopes(&held, &Scopes::default()), Ok(()));
        assert!(may_set_scopes(&held, &scopes(&["orders:read", "admin:all"])).is_err());
        assert!(
            may_set_scopes(&held, &scopes(&["orders:*"])).is_err(),
            "a wildcard is a new scope"
        );
    }

    #[test]
    fn expiry_moves_only_forward_for_owners() {
        let at = |d| chrono::DateTime::from_timestamp(d, 0).expect("time").naive_utc();
        assert_eq!(may_set_expiry(None, Some(at(10))), Ok(()));
        assert_eq!(may_set_expiry(Some(at(10)), Some(at(5))), Ok(()));
        assert!(may_set_expiry(Some(at(10)), Some(at(11))).is_err());
        assert!(may_set_expiry(Some(at(10)), None).is_err());
        assert_eq!(may_set_expiry(None, None), Ok(()));
    }
}
