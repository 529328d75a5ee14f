//! Importing keys from another system, so that a migration breaks no customer: keys arrive as
//! plaintext (hashed here, never stored) or as the SHA-256 another system kept, with their
//! owner, limits, dates and contract. Import is idempotent: a key whose hash keygate already
//! holds is left as it is ("unchanged"), so running the same file twice changes nothing. Bad
//! lines are reported by number and never stop the good ones.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;

use super::KeyName;
use super::cache::KeyCache;
use super::secret::KeyHash;
use crate::audit::{self, Change, Target};
use crate::clock::Now;
use crate::contract::{Contract, Meta};
use crate::db::models::{ApiKey, NewApiKey, NewCredits, User};
use crate::db::{self, DbConnection, DbPool, UserId};
use crate::limits::{Limit, Limits};
use crate::policy::{self, Actor};

use super::service::KeyError;

/// One key as a line of an import gives it, parsed.
#[derive(Debug, Clone)]
pub struct ImportedKey {
    pub hash: KeyHash,
    /// What lists show of it: given, or the start of the plaintext.
    pub prefix: String,
    /// The owner's email, normalised.
    pub owner: String,
    pub name: KeyName,
    pub limits: Limits,
    pub expires_at: Option<NaiveDateTime>,
    pub is_active: bool,
    pub created_at: Option<NaiveDateTime>,
    pub last_used_at: Option<NaiveDateTime>,
    pub contract: Contract,
}

/// What an import did, line by line (lines count from 1).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    pub imported: usize,
    pub unchanged: usize,
    pub errors: Vec<LineError>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

/// Rows per statement batch and lookup: well under SQLite's limit on bound parameters.
const CHUNK: usize = 500;

/// Imports `lines` (each already parsed, or the reason it could not be) for `actor`, who must
/// be an admin. One transaction: the report describes exactly what was written.
pub async fn import(
    pool: &DbPool,
    cache: &KeyCache,
    actor: Actor,
    lines: Vec<(usize, Result<ImportedKey, String>)>,
    now: Now,
) -> Result<ImportReport, KeyError> {
    policy::require_admin(actor, "import keys")?;
    let report = db::run(pool, move |conn| {
        db::write::<_, KeyError, _>(conn, |conn| write(conn, actor, lines, now))
    })
    .await?;
    if report.imported > 0 {
        // Instances may remember the new keys as unknown for a few seconds: forget that (and
        // only that: known keys stay cached).
        cache.unknown_changed().await;
    }
    Ok(report)
}

fn write(
    conn: &mut DbConnection,
    actor: Actor,
    lines: Vec<(usize, Result<ImportedKey, String>)>,
    now: Now,
) -> Result<ImportReport, KeyError> {
    let mut report = ImportReport::default();
    let mut good = Vec::new();
    for (line, parsed) in lines {
        match parsed {
            Ok(key) => good.push((line, key)),
            Err(message) => report.errors.push(LineError { line, message }),
        }
    }
    let owners = owners(conn, good.iter().map(|(_, k)| k.owner.as_str()))?;
    let mut known = existing(conn, good.iter().map(|(_, k)| k.hash.as_str()))?;
    for (line, key) in good {
        let owner = match owners.get(&key.owner) {
            Some(Ok(id)) => *id,
            Some(Err(message)) => {
                report.errors.push(LineError {
                    line,
                    message: format!("owner {}: {message}", key.owner),
                });
                continue;
            }
            None => {
                report.errors.push(LineError {
                    line,
                    message: format!("no user has the email {}; create the user first", key.owner),
                });
                continue;
            }
        };
        // Known already (or earlier in this file): left as it is.
        if !known.insert(key.hash.as_str().to_owned()) {
            report.unchanged += 1;
            continue;
        }
        let key = insert(conn, owner, &key, now.naive())?;
        // One entry per key written, each as a creation would be.
        let mut fields = audit::key_fields(&key);
        fields.insert("imported".into(), true.into());
        audit::record(
            conn,
            actor,
            Change::created("key.imported", Target::Key(key.id), fields),
            now,
        )?;
        report.imported += 1;
    }
    report.errors.sort_by_key(|e| e.line);
    Ok(report)
}

/// The users behind `emails`: an id, or why they cannot own keys.
fn owners<'a>(
    conn: &mut DbConnection,
    emails: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, Result<UserId, String>>, KeyError> {
    let mut found = HashMap::new();
    for email in emails.collect::<HashSet<_>>() {
        if let Some(user) = User::find_by_email(conn, email)? {
            let owner = if user.is_active {
                Ok(user.id)
            } else {
                Err("this user is deactivated".to_owned())
            };
            found.insert(email.to_owned(), owner);
        }
    }
    Ok(found)
}

/// Which of `hashes` keygate holds already, as a key's secret or a rolled key's replaced one.
fn existing<'a>(
    conn: &mut DbConnection,
    hashes: impl Iterator<Item = &'a str>,
) -> Result<HashSet<String>, KeyError> {
    let hashes: Vec<&str> = hashes.collect();
    let mut known = HashSet::new();
    for chunk in hashes.chunks(CHUNK) {
        known.extend(ApiKey::known_hashes(conn, chunk)?);
    }
    Ok(known)
}

fn insert(
    conn: &mut DbConnection,
    owner: UserId,
    key: &ImportedKey,
    now: NaiveDateTime,
) -> Result<ApiKey, KeyError> {
    let (scopes, ip_allowlist) = (key.contract.scopes.column(), key.contract.ip_allowlist.column());
    ApiKey::insert(
        conn,
        &NewApiKey {
            user_id: owner,
            name: key.name.as_str(),
            prefix: &key.prefix,
            key_hash: key.hash.as_str(),
            rate_limit_per_minute: key.limits.per_minute.map(Limit::column),
            rate_limit_per_hour: key.limits.per_hour.map(Limit::column),
            rate_limit_per_day: key.limits.per_day.map(Limit::column),
            rate_limit_per_month: key.limits.per_month.map(Limit::column),
            expires_at: key.expires_at,
            is_active: key.is_active,
            created_at: key.created_at.unwrap_or(now),
            updated_at: now,
            last_used_at: key.last_used_at,
            meta: key.contract.meta.as_ref().map(Meta::as_str),
            scopes: &scopes,
            ip_allowlist: &ip_allowlist,
            // Imported keys start with unlimited credits; an admin sets them afterwards.
            credits: NewCredits::default(),
        },
    )
    .map_err(KeyError::from)
}
