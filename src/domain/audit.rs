//! The audit log: who changed which key, user, limit, credits or webhook, from where, and the
//! fields before and after. An entry is written by [`record`] on the connection of the change,
//! inside its transaction, so a change and its entry land together or not at all. Entries are
//! only ever added; the retention job ([`prune`]) removes them by age when
//! `AUDIT_RETENTION_DAYS` is set. Secrets and hashes never enter an entry: the snapshots below
//! name the fields they keep, and nothing else is read.

use chrono::NaiveDateTime;
use serde_json::{Map, Value, json};

use crate::clock::Now;
use crate::db::models::{ApiKey, AuditFilter, AuditRow, NewAuditRow, User};
use crate::db::{self, DbConnection, DbError, DbPool, KeyId, UserId};
use crate::events;
use crate::policy::{self, Actor, ReadError};
pub use crate::policy::{Origin, Via};

/// What an entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Key(KeyId),
    User(UserId),
    /// An invitation names no user yet.
    Invitation,
    Webhook(i64),
}

impl Target {
    fn parts(self) -> (&'static str, Option<i64>) {
        match self {
            Target::Key(id) => ("key", Some(id.0)),
            Target::User(id) => ("user", Some(id.0)),
            Target::Invitation => ("user", None),
            Target::Webhook(id) => ("webhook", Some(id)),
        }
    }
}

/// Field name → value, as JSON.
pub type Fields = Map<String, Value>;

/// One change, ready to record: the action (`key.created`), its target, and the fields as they
/// were and as they are (`None` where there was nothing: before a creation).
#[derive(Debug, Clone)]
pub struct Change {
    pub action: &'static str,
    pub target: Target,
    pub before: Option<Fields>,
    pub after: Option<Fields>,
}

impl Change {
    /// A change of something that existed before: only the fields that differ are kept.
    pub fn diff(action: &'static str, target: Target, before: Fields, after: Fields) -> Change {
        let (mut was, mut is) = (Fields::new(), Fields::new());
        for (name, value) in after {
            let old = before.get(&name).cloned().unwrap_or(Value::Null);
            if old != value {
                was.insert(name.clone(), old);
                is.insert(name, value);
            }
        }
        Change {
            action,
            target,
            before: Some(was),
            after: Some(is),
        }
    }

    /// A change whose fields are not recorded (a password: that it changed is all).
    pub fn bare(action: &'static str, target: Target) -> Change {
        Change {
            action,
            target,
            before: None,
            after: None,
        }
    }

    pub fn created(action: &'static str, target: Target, after: Fields) -> Change {
        Change {
            action,
            target,
            before: None,
            after: Some(after),
        }
    }
}

/// Writes `change` on `conn`: call it inside the transaction that makes the change. The actor's
/// email is read there too, as it is at that moment (the CLI acts as nobody).
pub fn record(conn: &mut DbConnection, actor: Actor, change: Change, now: Now) -> Result<(), DbError> {
    let email = match actor.origin.via {
        Via::Cli => None,
        _ => User::find(conn, actor.user_id)?.map(|user| user.email),
    };
    let (target_type, target_id) = change.target.parts();
    // The webhook event of the change, in the same transaction (see `events`).
    if let (Some(event), Some(id)) = (events::of_action(change.action), target_id) {
        let data = json!({"key_id": id, "before": change.before, "after": change.after});
        events::emit(conn, event, data, now)?;
    }
    let text = |fields: Option<Fields>| fields.map(|f| Value::Object(f).to_string());
    AuditRow::insert(
        conn,
        &NewAuditRow {
            at: now.naive(),
            actor_id: (actor.origin.via != Via::Cli).then_some(actor.user_id.0),
            actor_email: email.as_deref(),
            via: actor.origin.via.as_str(),
            ip: actor.origin.ip.map(|ip| ip.to_string()),
            action: change.action,
            target_type,
            target_id,
            before_fields: text(change.before),
            after_fields: text(change.after),
        },
    )?;
    Ok(())
}

fn time(at: Option<NaiveDateTime>) -> Value {
    at.map_or(Value::Null, |t| Value::String(crate::clock::rfc3339(t)))
}

/// A key's auditable fields: everything an admin sets or sees, never its hashes.
pub fn key_fields(key: &ApiKey) -> Fields {
    let fields = json!({
        "name": key.name,
        "owner_id": key.user_id.0,
        "prefix": key.prefix,
        "rate_limit_per_minute": key.rate_limit_per_minute,
        "rate_limit_per_hour": key.rate_limit_per_hour,
        "rate_limit_per_day": key.rate_limit_per_day,
        "rate_limit_per_month": key.rate_limit_per_month,
        "expires_at": time(key.expires_at),
        "is_active": key.is_active,
        "meta": key.meta.as_deref().and_then(|m| serde_json::from_str::<Value>(m).ok()),
        // Stored space-separated; shown as the API shows them.
        "scopes": key.scopes.split_whitespace().collect::<Vec<_>>(),
        "ip_allowlist": key.ip_allowlist.split_whitespace().collect::<Vec<_>>(),
        "previous_key_expires_at": time(key.previous_expires_at),
        "refill_amount": key.refill_amount,
        "refill_interval": key.refill_interval,
        "refill_day": key.refill_day,
    });
    into_fields(fields)
}

/// A user's auditable fields: never the password hash or the session epoch.
pub fn user_fields(user: &User) -> Fields {
    let fields = json!({
        "email": user.email,
        "is_admin": user.is_admin,
        "is_active": user.is_active,
        "max_rate_limit_per_minute": user.max_rate_limit_per_minute,
        "max_rate_limit_per_hour": user.max_rate_limit_per_hour,
        "max_rate_limit_per_day": user.max_rate_limit_per_day,
        "ceiling_set": user.ceiling_set,
        "rate_limit_per_minute": user.rate_limit_per_minute,
        "rate_limit_per_hour": user.rate_limit_per_hour,
        "rate_limit_per_day": user.rate_limit_per_day,
        "rate_limit_per_month": user.rate_limit_per_month,
        "refill_amount": user.refill_amount,
        "refill_interval": user.refill_interval,
        "refill_day": user.refill_day,
    });
    into_fields(fields)
}

/// The fields of a credits entry: the refill (from a key's or user's fields) and the live
/// balance (`None`: unlimited).
pub fn credit_fields(all: &Fields, remaining: Option<u64>) -> Fields {
    let mut fields = Fields::new();
    fields.insert("remaining".into(), remaining.into());
    for name in ["refill_amount", "refill_interval", "refill_day"] {
        fields.insert(name.into(), all.get(name).cloned().unwrap_or_default());
    }
    fields
}

/// A JSON object's fields (anything else: none).
pub fn into_fields(value: Value) -> Fields {
    match value {
        Value::Object(fields) => fields,
        _ => Fields::new(),
    }
}

/// The action of a change between two states of something that can be switched off.
pub fn switched(before: bool, after: bool, prefix: Noun) -> &'static str {
    match (prefix, before, after) {
        (Noun::Key, true, false) => "key.deactivated",
        (Noun::Key, false, true) => "key.activated",
        (Noun::Key, _, _) => "key.updated",
        (Noun::User, true, false) => "user.deactivated",
        (Noun::User, false, true) => "user.activated",
        (Noun::User, _, _) => "user.updated",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noun {
    Key,
    User,
}

/// An entry as readers see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    pub id: i64,
    pub at: String,
    pub actor: Option<EntryActor>,
    pub via: String,
    pub ip: Option<String>,
    pub action: String,
    pub target: EntryTarget,
    pub before: Value,
    pub after: Value,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EntryActor {
    pub id: i64,
    pub email: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EntryTarget {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Option<i64>,
}

impl Entry {
    /// Who made the change, as people read it: the email, else the user's id; `cli` for the
    /// command line.
    pub fn who(&self) -> String {
        match &self.actor {
            Some(actor) => actor
                .email
                .clone()
                .unwrap_or_else(|| format!("user {}", actor.id)),
            None => "cli".to_owned(),
        }
    }

    /// The target as `key<sep>7` (or `user` for an invitation, which names none).
    pub fn target_label(&self, separator: char) -> String {
        match self.target.id {
            Some(id) => format!("{}{separator}{id}", self.target.kind),
            None => self.target.kind.clone(),
        }
    }
}

impl From<AuditRow> for Entry {
    fn from(row: AuditRow) -> Entry {
        let json = |text: Option<String>| {
            text.and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(Value::Null)
        };
        Entry {
            id: row.id,
            at: crate::clock::rfc3339(row.at),
            actor: row.actor_id.map(|id| EntryActor {
                id,
                email: row.actor_email,
            }),
            via: row.via,
            ip: row.ip,
            action: row.action,
            target: EntryTarget {
                kind: row.target_type,
                id: row.target_id,
            },
            before: json(row.before_fields),
            after: json(row.after_fields),
        }
    }
}

/// The most entries one page holds.
pub const MAX_PAGE: i64 = 200;

/// One page of entries matching `filter`, newest first, and the cursor of the next page (the
/// last id shown) when there may be more. Admins only.
pub async fn page(
    pool: &DbPool,
    actor: Actor,
    filter: AuditFilter,
    limit: i64,
) -> Result<(Vec<Entry>, Option<i64>), ReadError> {
    policy::require_admin(actor, "read the audit log")?;
    let limit = limit.clamp(1, MAX_PAGE);
    let rows = db::run(pool, move |conn| {
        AuditRow::page(conn, &filter, limit).map_err(DbError::Query)
    })
    .await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|row| row.id))
        .flatten();
    Ok((rows.into_iter().map(Entry::from).collect(), next))
}

/// Removes entries older than `days` days (the retention job; never called without
/// `AUDIT_RETENTION_DAYS`).
pub async fn prune(pool: &DbPool, days: u32, now: Now) -> Result<usize, DbError> {
    let cutoff = now.naive() - chrono::Duration::days(i64::from(days));
    db::run(pool, move |conn| {
        AuditRow::prune(conn, cutoff).map_err(DbError::Query)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_keeps_only_what_changed() {
        let before = into_fields(json!({"name": "a", "is_active": true, "scopes": ""}));
        let after = into_fields(json!({"name": "b", "is_active": true, "scopes": ""}));
        let change = Change::diff("key.updated", Target::Key(KeyId(1)), before, after);
        assert_eq!(
            Value::Object(change.before.expect("a diff has a before")),
            json!({"name": "a"})
        );
        assert_eq!(
            Value::Object(change.after.expect("a diff has an after")),
            json!({"name": "b"})
        );
    }

    #[test]
    fn switching_names_the_action() {
        assert_eq!(switched(true, false, Noun::Key), "key.deactivated");
        assert_eq!(switched(false, true, Noun::User), "user.activated");
        assert_eq!(switched(true, true, Noun::Key), "key.updated");
    }
}
