//! The key life cycle: issue, list, read, change, deactivate, and read usage. Every call is
//! made on behalf of an [`Actor`]: users reach only their own keys, admins reach all; a key the
//! actor may not see is reported as not found, so ids cannot be probed. What an owner may
//! change is the authorization policy's to say (`crate::policy`), asked inside the transaction
//! that makes the change.

use chrono::{Duration, NaiveDateTime};

use crate::audit::{self, Change, Fields, Noun, Target};
use crate::clock::Now;
use crate::contract::{Contract, IpAllowlist, Meta, Scopes};
use crate::db::models::{ApiKey, ApiKeyChanges, KeyFilter, NewApiKey, NewCredits, User};
use crate::db::models::{Claim, CreditHolder};
use crate::db::{self, DbConnection, DbError, DbPool, KeyId};
use crate::keys::KeyName;
use crate::keys::cache::KeyCache;
use crate::keys::secret::IssuedKey;
use crate::ledger::{self, CreditChange, Ledger, LedgerError};
use crate::limits::credits::{CreditState, Refill};
use crate::limits::{Bucket, Limit, Limits};
use crate::policy::{self, Refusal};
pub use crate::policy::{Actor, KeyChange};
use crate::users;
use crate::validation::FieldErrors;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no such key")]
    NotFound,
    #[error("invalid key fields")]
    Invalid(FieldErrors),
    #[error(transparent)]
    Forbidden(#[from] Refusal),
    #[error("no user has this email")]
    UnknownOwner,
    #[error("this user is deactivated")]
    OwnerInactive,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// An `Idempotency-Key` in use for another change, or still being applied.
    #[error("{0}")]
    Idempotency(&'static str),
}

impl From<diesel::result::Error> for KeyError {
    fn from(e: diesel::result::Error) -> KeyError {
        KeyError::Db(DbError::Query(e))
    }
}

/// A key with its owner's email, as every listing shows it.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub key: ApiKey,
    pub owner_email: String,
}

/// What a new key is made of. `owner` is an email; `None` means the actor.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: KeyName,
    pub owner: Option<String>,
    pub limits: Limits,
    pub expires_at: Option<NaiveDateTime>,
    pub contract: Contract,
    /// A balance and refill (admins only; nothing to add to yet).
    pub credits: CreditChange,
}

/// A partial change of a key: a new name, and what the policy judges.
#[derive(Debug, Clone, Default)]
pub struct KeyPatch {
    pub name: Option<KeyName>,
    pub change: KeyChange,
}

fn column(limit: Option<Limit>) -> Option<i32> {
    limit.map(Limit::column)
}

/// Issues a key. The returned [`IssuedKey`] is the only copy of the secret. `defaults` is the
/// default ceiling (`KEY_RATE_LIMIT`) of owners who have none of their own.
pub async fn create(
    pool: &DbPool,
    actor: Actor,
    defaults: Limits,
    new: NewKey,
    now: Now,
) -> Result<(KeyRecord, IssuedKey), KeyError> {
    db::run(pool, move |conn| {
        db::write(conn, |conn| {
            let owner = resolve_owner(conn, actor, new.owner.as_deref())?;
            let ceiling = users::ceiling(&owner, &defaults);
            policy::may_create(actor, &ceiling, &new.limits, &new.contract)?;
            policy::may_change_credits(actor, &new.credits)?;
            let issued = IssuedKey::generate();
            let credits = new_credits(&new.credits, now.unix_ms());
            let at = now.naive();
            let (scopes, ip_allowlist) = (new.contract.scopes.column(), new.contract.ip_allowlist.column());
            let key = ApiKey::insert(
                conn,
                &NewApiKey {
                    user_id: owner.id,
                    name: new.name.as_str(),
                    prefix: &issued.display_prefix(),
                    key_hash: issued.hash().as_str(),
                    rate_limit_per_minute: column(new.limits.per_minute),
                    rate_limit_per_hour: column(new.limits.per_hour),
                    rate_limit_per_day: column(new.limits.per_day),
                    rate_limit_per_month: column(new.limits.per_month),
                    expires_at: new.expires_at,
                    is_active: true,
                    created_at: at,
                    updated_at: at,
                    last_used_at: None,
                    meta: new.contract.meta.as_ref().map(Meta::as_str),
                    scopes: &scopes,
                    ip_allowlist: &ip_allowlist,
                    credits,
                },
            )?;
            audit::record(conn, actor, created(&key), now)?;
            Ok((
                KeyRecord {
                    key,
                    owner_email: owner.email,
                },
                issued,
            ))
        })
    })
    .await
}

/// The audit entry of a new key: its fields, with the balance it starts with.
pub fn created(key: &ApiKey) -> Change {
    let mut fields = audit::key_fields(key);
    fields.insert("remaining".into(), key.remaining.into());
    Change::created("key.created", Target::Key(key.id), fields)
}

/// A new key's credit columns: its balance, and its refill counted from the current period.
fn new_credits(change: &CreditChange, now_ms: u64) -> NewCredits<'static> {
    let refill = change.refill.flatten();
    let (refill_amount, refill_interval, refill_day) = match refill.map(Refill::columns) {
        Some((amount, interval, day)) => (Some(amount), Some(interval), day),
        None => (None, None, None),
    };
    NewCredits {
        remaining: change.remaining.flatten().map(|n| n as i64),
        refill_amount,
        refill_interval,
        refill_day,
        credit_period: refill.map_or(0, |r| r.period(now_ms) as i64),
    }
}

/// The owner of a new key: the actor, or the account an admin names. A non-admin naming any
/// other email is refused before anything is looked up, so the answer reveals no account.
fn resolve_owner(conn: &mut DbConnection, actor: Actor, email: Option<&str>) -> Result<User, KeyError> {
    let requested = email.map(users::normalized_email);
    let owner = match requested {
        Some(email) if actor.is_admin => User::find_by_email(conn, &email)?,
        requested => {
            let me = User::find(conn, actor.user_id)?.ok_or(KeyError::NotFound)?;
            policy::may_create_for(actor, &me.email, requested.as_deref())?;
            Some(me)
        }
    };
    match owner {
        None => Err(KeyError::UnknownOwner),
        Some(user) if !user.is_active => Err(KeyError::OwnerInactive),
        Some(user) => Ok(user),
    }
}

/// The actor's keys (an admin's: everyone's), newest first.
pub async fn list(pool: &DbPool, actor: Actor, active: Option<bool>) -> Result<Vec<KeyRecord>, KeyError> {
    let filter = KeyFilter {
        owner: (!actor.is_admin).then_some(actor.user_id),
        active,
    };
    db::run(pool, move |conn| {
        let rows = ApiKey::list(conn, filter)?;
        Ok(rows
            .into_iter()
            .map(|(key, owner_email)| KeyRecord { key, owner_email })
            .collect())
    })
    .await
}

fn visible(conn: &mut DbConnection, actor: Actor, id: KeyId) -> Result<KeyRecord, KeyError> {
    match ApiKey::find_with_owner(conn, id)? {
        Some((key, owner_email)) if policy::may_see(actor, &key) => Ok(KeyRecord { key, owner_email }),
        _ => Err(KeyError::NotFound),
    }
}

pub async fn get(pool: &DbPool, actor: Actor, id: KeyId) -> Result<KeyRecord, KeyError> {
    db::run(pool, move |conn| visible(conn, actor, id)).await
}

/// Applies `patch` (as far as the policy allows `actor`) and announces the change, so every
/// instance's gate sees it within a second.
pub async fn update(
    pool: &DbPool,
    cache: &KeyCache,
    actor: Actor,
    defaults: Limits,
    id: KeyId,
    patch: KeyPatch,
    now: Now,
) -> Result<KeyRecord, KeyError> {
    let check = patch.change.clone();
    let changes = columns(patch, now);
    let record = db::run(pool, move |conn| {
        db::write::<_, KeyError, _>(conn, |conn| {
            // What the policy reads (state, who switched it off) stays true until the write.
            ApiKey::lock(conn, id)?;
            let record = visible(conn, actor, id)?;
            if !actor.is_admin {
                let owner = User::find(conn, record.key.user_id)?.ok_or(KeyError::NotFound)?;
                policy::may_change(actor, &users::ceiling(&owner, &defaults), &record.key, &check)?;
            }
            let changes = ApiKeyChanges {
                deactivated_by_admin: check
                    .is_active
                    .map(|active| !active && policy::deactivated_by_admin(actor, &record.key)),
                ..changes
            };
            let key = ApiKey::update(conn, id, &changes)?.ok_or(KeyError::NotFound)?;
            let action = audit::switched(record.key.is_active, key.is_active, Noun::Key);
            let change = Change::diff(
                action,
                Target::Key(id),
                audit::key_fields(&record.key),
                audit::key_fields(&key),
            );
            audit::record(conn, actor, change, now)?;
            Ok(KeyRecord { key, ..record })
        })
    })
    .await?;
    cache.changed(id).await;
    Ok(record)
}

/// A change of credits, and the idempotency key it came with (`Idempotency-Key`), if any.
#[derive(Debug, Clone, Default)]
pub struct CreditRequest {
    pub change: CreditChange,
    pub idempotency: Option<String>,
}

impl From<CreditChange> for CreditRequest {
    fn from(change: CreditChange) -> CreditRequest {
        CreditRequest {
            change,
            idempotency: None,
        }
    }
}

/// An admin's change of a key's credits (balance, refill, top-up): applied in the counter
/// store and the database by the ledger, then announced like any change of the key. With an
/// idempotency key, a top-up is made once however often the request is retried: a repeat
/// answers the key as it is (`true`: replayed) without adding again.
pub async fn change_credits(
    pool: &DbPool,
    cache: &KeyCache,
    ledger: &Ledger,
    actor: Actor,
    id: KeyId,
    request: CreditRequest,
    now: Now,
) -> Result<(KeyRecord, bool), KeyError> {
    let CreditRequest { change, idempotency } = request;
    policy::may_change_credits(actor, &change)?;
    let record = get(pool, actor, id).await?;
    let key = &record.key;
    // Read before anything is claimed: a failure here leaves no claim behind.
    let before = credit_fields(key, ledger.key_balance(key, now).await?);
    let row = CreditHolder::Key(id);
    if let Some(token) = idempotency.clone()
        && claim(pool, row, token, &change, now).await?
    {
        return Ok((record, true));
    }
    let requested = change.describe();
    let applied = ledger
        .apply(key.user_id, Bucket::Key(id), ledger::key_terms(key), change, now)
        .await;
    // From here the change is made: nothing may fail before the idempotency key is marked done
    // (a retry would make it again). The balance after is read if it can be, else the entry
    // says what was asked.
    let after = match &applied {
        Ok(()) => Some(match balance_after(pool, ledger, actor, id, now).await {
            Some(fields) => fields,
            None => audit::into_fields(serde_json::json!({"requested": requested})),
        }),
        Err(_) => None,
    };
    // The balance lives in the counter store: its entry is written once the store has made
    // the change, together with the idempotency key's completion.
    let made = applied.is_ok();
    db::run(pool, move |conn| {
        db::write::<_, DbError, _>(conn, |conn| {
            if let Some(after) = after {
                let change = Change::diff("key.credits_changed", Target::Key(id), before, after);
                audit::record(conn, actor, change, now)?;
            }
            if let Some(token) = idempotency {
                match made {
                    true => row.done(conn, &token)?,
                    false => row.release(conn, &token)?,
                };
            }
            Ok(())
        })
    })
    .await?;
    applied?;
    cache.changed(id).await;
    Ok((get(pool, actor, id).await?, false))
}

async fn balance_after(pool: &DbPool, ledger: &Ledger, actor: Actor, id: KeyId, now: Now) -> Option<Fields> {
    let key = get(pool, actor, id).await.ok()?.key;
    let balance = ledger.key_balance(&key, now).await.ok()?;
    Some(credit_fields(&key, balance))
}

fn credit_fields(key: &ApiKey, balance: Option<CreditState>) -> Fields {
    audit::credit_fields(&audit::key_fields(key), balance.map(|b| b.remaining))
}

/// Claims an idempotency key for `change`: true when the change was made before (answer it
/// again), false when it is this request's to make; refused while another request with the key
/// is making it, or when the key was used for another change.
async fn claim(
    pool: &DbPool,
    row: CreditHolder,
    token: String,
    change: &CreditChange,
    now: Now,
) -> Result<bool, KeyError> {
    let (at, stale) = (now.naive(), now.naive() - Duration::minutes(1));
    let request = change.describe();
    let claim = db::run(pool, move |conn| {
        row.claim(conn, &token, &request, at, stale)
            .map_err(DbError::Query)
    })
    .await?;
    match claim {
        Claim::New => Ok(false),
        Claim::Done => Ok(true),
        Claim::Pending => Err(KeyError::Idempotency(
            "A request with this Idempotency-Key is being applied; retry in a moment.",
        )),
        Claim::OtherRequest => Err(KeyError::Idempotency(
            "This Idempotency-Key was used for a different change; use a new key.",
        )),
    }
}

/// The longest a replaced secret may keep working after a roll.
pub const MAX_GRACE: Duration = Duration::days(7);

/// Rolls a key: a new secret (returned, the only copy), the same key otherwise — name, limits,
/// contract, owner and counters (which belong to the key's id, not its secret). The old secret
/// keeps working for `grace` (0 to [`MAX_GRACE`]; a previous overlap ends), then stops on every
/// instance: its end is checked against each request's clock.
pub async fn roll(
    pool: &DbPool,
    cache: &KeyCache,
    actor: Actor,
    id: KeyId,
    grace: Duration,
    now: Now,
) -> Result<(KeyRecord, IssuedKey), KeyError> {
    let grace = grace.clamp(Duration::zero(), MAX_GRACE);
    let issued = IssuedKey::generate();
    let (hash, prefix) = (issued.hash().as_str().to_owned(), issued.display_prefix());
    let record = db::run(pool, move |conn| {
        db::write::<_, KeyError, _>(conn, |conn| {
            ApiKey::lock(conn, id)?;
            let record = visible(conn, actor, id)?;
            let overlap = grace > Duration::zero();
            let changes = ApiKeyChanges {
                key_hash: Some(hash),
                prefix: Some(prefix),
                previous_key_hash: Some(overlap.then(|| record.key.key_hash.clone())),
                previous_expires_at: Some(overlap.then(|| now.naive() + grace)),
                updated_at: Some(now.naive()),
                ..ApiKeyChanges::default()
            };
            let key = ApiKey::update(conn, id, &changes)?.ok_or(KeyError::NotFound)?;
            let change = Change::diff(
                "key.rolled",
                Target::Key(id),
                audit::key_fields(&record.key),
                audit::key_fields(&key),
            );
            audit::record(conn, actor, change, now)?;
            Ok(KeyRecord { key, ..record })
        })
    })
    .await?;
    cache.changed(id).await;
    Ok((record, issued))
}

/// The columns a patch sets (`deactivated_by_admin` is decided in the transaction).
fn columns(patch: KeyPatch, now: Now) -> ApiKeyChanges {
    let change = patch.change;
    ApiKeyChanges {
        name: patch.name.map(KeyName::into_inner),
        rate_limit_per_minute: change.per_minute.map(column),
        rate_limit_per_hour: change.per_hour.map(column),
        rate_limit_per_day: change.per_day.map(column),
        rate_limit_per_month: change.per_month.map(column),
        expires_at: change.expires_at,
        is_active: change.is_active,
        updated_at: Some(now.naive()),
        meta: change.meta.map(|m| m.map(|m| m.as_str().to_owned())),
        scopes: change.scopes.as_ref().map(Scopes::column),
        ip_allowlist: change.ip_allowlist.as_ref().map(IpAllowlist::column),
        ..ApiKeyChanges::default()
    }
}

/// Soft delete: the row stays, the key stops working.
pub async fn deactivate(
    pool: &DbPool,
    cache: &KeyCache,
    actor: Actor,
    defaults: Limits,
    id: KeyId,
    now: Now,
) -> Result<KeyRecord, KeyError> {
    update(
        pool,
        cache,
        actor,
        defaults,
        id,
        KeyPatch {
            name: None,
            change: KeyChange {
                is_active: Some(false),
                ..KeyChange::default()
            },
        },
        now,
    )
    .await
}
