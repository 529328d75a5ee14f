use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::models::User;
use crate::db::schema::{api_keys, users};
use crate::db::{DbConnection, KeyId, UserId};

/// A key row. Field order is the `table!` order: inserts and updates read it back through an
/// implicit `RETURNING *` (the only form MultiConnection supports).
#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct ApiKey {
    pub id: KeyId,
    pub user_id: UserId,
    pub name: String,
    pub prefix: String,
    pub key_hash: String,
    pub rate_limit_per_minute: Option<i32>,
    pub rate_limit_per_hour: Option<i32>,
    pub rate_limit_per_day: Option<i32>,
    pub expires_at: Option<NaiveDateTime>,
    pub is_active: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
    /// Switched off by an admin: its owner may not switch it back on.
    pub deactivated_by_admin: bool,
    /// A JSON object, as text.
    pub meta: Option<String>,
    /// Space-separated scopes.
    pub scopes: String,
    /// Space-separated addresses and CIDR blocks; empty: any address.
    pub ip_allowlist: String,
    /// The secret a roll replaced, working until `previous_expires_at`.
    pub previous_key_hash: Option<String>,
    pub previous_expires_at: Option<NaiveDateTime>,
    /// Per calendar month (UTC).
    pub rate_limit_per_month: Option<i32>,
    /// Credits left (the checkpoint of the counter store's balance); `None`: unlimited.
    pub remaining: Option<i64>,
    pub refill_amount: Option<i32>,
    /// `day` or `month`.
    pub refill_interval: Option<String>,
    /// The day of the month a monthly refill comes (1–28).
    pub refill_day: Option<i32>,
    /// The refill period `remaining` belongs to (see `limits::credits`).
    pub credit_period: i64,
    /// Grows with every change of the balance: a checkpoint writes only over an older one.
    pub credit_seq: i64,
}

#[derive(Insertable)]
#[diesel(table_name = api_keys)]
pub struct NewApiKey<'a> {
    pub user_id: UserId,
    pub name: &'a str,
    pub prefix: &'a str,
    pub key_hash: &'a str,
    pub rate_limit_per_minute: Option<i32>,
    pub rate_limit_per_hour: Option<i32>,
    pub rate_limit_per_day: Option<i32>,
    pub rate_limit_per_month: Option<i32>,
    pub expires_at: Option<NaiveDateTime>,
    pub is_active: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
    pub meta: Option<&'a str>,
    pub scopes: &'a str,
    pub ip_allowlist: &'a str,
    #[diesel(embed)]
    pub credits: NewCredits<'a>,
}

/// A new key's credits; the default is none (unlimited).
#[derive(Insertable, Default)]
#[diesel(table_name = api_keys)]
pub struct NewCredits<'a> {
    pub remaining: Option<i64>,
    pub refill_amount: Option<i32>,
    pub refill_interval: Option<&'a str>,
    pub refill_day: Option<i32>,
    pub credit_period: i64,
}

/// A partial update: `None` leaves a column alone, `Some(None)` sets it to NULL.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = api_keys)]
pub struct ApiKeyChanges {
    pub name: Option<String>,
    pub rate_limit_per_minute: Option<Option<i32>>,
    pub rate_limit_per_hour: Option<Option<i32>>,
    pub rate_limit_per_day: Option<Option<i32>>,
    pub rate_limit_per_month: Option<Option<i32>>,
    pub expires_at: Option<Option<NaiveDateTime>>,
    pub is_active: Option<bool>,
    pub deactivated_by_admin: Option<bool>,
    pub updated_at: Option<NaiveDateTime>,
    pub meta: Option<Option<String>>,
    pub scopes: Option<String>,
    pub ip_allowlist: Option<String>,
    /// A roll: the new secret's hash and prefix, and the replaced one's grace.
    pub key_hash: Option<String>,
    pub prefix: Option<String>,
    pub previous_key_hash: Option<Option<String>>,
    pub previous_expires_at: Option<Option<NaiveDateTime>>,
}

/// The dashboard's key search: text in name, prefix or owner email; status; order; page.
#[derive(Debug, Clone, Default)]
pub struct KeySearch {
    /// Only this user's keys (a non-admin's view); `None`: everyone's.
    pub owner: Option<UserId>,
    pub text: Option<String>,
    pub status: Option<KeyStatusFilter>,
    pub order: KeyOrder,
    /// Zero-based.
    pub page: i64,
    pub per_page: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatusFilter {
    Active,
    Inactive,
    Expired,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyOrder {
    #[default]
    Newest,
    LastUsed,
    Name,
}

diesel::define_sql_function! {
    /// SQL `lower()`, the same on both backends.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// The filtered join of keys and owners, boxed; used for both the page and its count.
macro_rules! searched {
    ($search:expr, $now:expr) => {{
        let mut query = api_keys::table.inner_join(users::table).into_boxed();
        if let Some(owner) = $search.owner {
            query = query.filter(api_keys::user_id.eq(owner));
        }
        if let Some(text) = &$search.text {
            let escaped = text
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            let pattern = format!("%{escaped}%");
            query = query.filter(
                lower(api_keys::name)
                    .like(pattern.clone())
                    .escape('\\')
                    .or(lower(api_keys::prefix).like(pattern.clone()).escape('\\'))
                    .or(users::email.like(pattern).escape('\\')),
            );
        }
        let now: NaiveDateTime = $now;
        query = match $search.status {
            None => query,
            Some(KeyStatusFilter::Inactive) => query.filter(api_keys::is_active.eq(false)),
            Some(KeyStatusFilter::Expired) => query
                .filter(api_keys::is_active.eq(true))
                .filter(api_keys::expires_at.le(now)),
            Some(KeyStatusFilter::Active) => query
                .filter(api_keys::is_active.eq(true))
                .filter(api_keys::expires_at.is_null().or(api_keys::expires_at.gt(now))),
        };
        query
    }};
}

#[derive(Debug, Default, Clone, Copy)]
pub struct KeyFilter {
    pub owner: Option<UserId>,
    pub active: Option<bool>,
}

impl ApiKey {
    /// While the secret a roll replaced still works (at `now`): until when.
    pub fn replaced_secret_until(&self, now: NaiveDateTime) -> Option<NaiveDateTime> {
        self.previous_key_hash
            .as_ref()
            .and(self.previous_expires_at)
            .filter(|at| *at > now)
    }

    pub fn insert(conn: &mut DbConnection, new: &NewApiKey<'_>) -> QueryResult<ApiKey> {
        diesel::insert_into(api_keys::table).values(new).get_result(conn)
    }

    pub fn find(conn: &mut DbConnection, id: KeyId) -> QueryResult<Option<ApiKey>> {
        api_keys::table
            .find(id)
            .select(ApiKey::as_select())
            .first(conn)
            .optional()
    }

    /// The key whose secret, or whose replaced secret (see `previous_key_hash`), has this
    /// hash, and its owner's email.
    /// The key whose secret (or replaced secret) hashes to `hash`, with its owner (whose plan
    /// the gate applies too).
    pub fn find_by_hash(conn: &mut DbConnection, hash: &str) -> QueryResult<Option<(ApiKey, User)>> {
        api_keys::table
            .inner_join(users::table)
            .filter(
                api_keys::key_hash
                    .eq(hash)
                    .or(api_keys::previous_key_hash.eq(hash)),
            )
            .select((ApiKey::as_select(), User::as_select()))
            .first(conn)
            .optional()
    }

    /// Which of `hashes` are a key's secret or a rolled key's replaced one.
    pub fn known_hashes(conn: &mut DbConnection, hashes: &[&str]) -> QueryResult<Vec<String>> {
        let current: Vec<String> = api_keys::table
            .filter(api_keys::key_hash.eq_any(hashes))
            .select(api_keys::key_hash)
            .load(conn)?;
        let replaced: Vec<Option<String>> = api_keys::table
            .filter(api_keys::previous_key_hash.eq_any(hashes))
            .select(api_keys::previous_key_hash)
            .load(conn)?;
        Ok(current
            .into_iter()
            .chain(replaced.into_iter().flatten())
            .collect())
    }

    /// The key and its owner's email.
    pub fn find_with_owner(conn: &mut DbConnection, id: KeyId) -> QueryResult<Option<(ApiKey, String)>> {
        api_keys::table
            .inner_join(users::table)
            .filter(api_keys::id.eq(id))
            .select((ApiKey::as_select(), users::email))
            .first(conn)
            .optional()
    }

    /// The keys of `ids` (those that exist), with their owners' emails.
    pub fn with_owners(conn: &mut DbConnection, ids: &[KeyId]) -> QueryResult<Vec<(ApiKey, String)>> {
        api_keys::table
            .inner_join(users::table)
            .filter(api_keys::id.eq_any(ids))
            .select((ApiKey::as_select(), users::email))
            .load(conn)
    }

    /// Active keys whose expiry fell in `(from, to]`: the ones to announce as expired.
    pub fn expired_between(
        conn: &mut DbConnection,
        from: NaiveDateTime,
        to: NaiveDateTime,
    ) -> QueryResult<Vec<ApiKey>> {
        api_keys::table
            .filter(api_keys::is_active.eq(true))
            .filter(api_keys::expires_at.gt(from))
            .filter(api_keys::expires_at.le(to))
            .select(ApiKey::as_select())
            .load(conn)
    }

    /// Keys with their owners' emails, newest first.
    pub fn list(conn: &mut DbConnection, filter: KeyFilter) -> QueryResult<Vec<(ApiKey, String)>> {
        let mut query = api_keys::table
            .inner_join(users::table)
            .select((ApiKey::as_select(), users::email))
            .order(api_keys::id.desc())
            .into_boxed();
        if let Some(owner) = filter.owner {
            query = query.filter(api_keys::user_id.eq(owner));
        }
        if let Some(active) = filter.active {
            query = query.filter(api_keys::is_active.eq(active));
        }
        query.load(conn)
    }

    /// One page of the dashboard's search, and the number of matches in all.
    pub fn search(
        conn: &mut DbConnection,
        search: &KeySearch,
        now: NaiveDateTime,
    ) -> QueryResult<(Vec<(ApiKey, String)>, i64)> {
        let total = searched!(search, now).count().get_result(conn)?;
        let query = searched!(search, now).select((ApiKey::as_select(), users::email));
        let query = match search.order {
            KeyOrder::Newest => query.order(api_keys::id.desc()),
            // Never-used keys last: NULL sorts first in descending order on SQLite.
            KeyOrder::LastUsed => query.order((
                api_keys::last_used_at.is_null().asc(),
                api_keys::last_used_at.desc(),
                api_keys::id.desc(),
            )),
            KeyOrder::Name => query.order((lower(api_keys::name).asc(), api_keys::id.asc())),
        };
        let rows = query
            .limit(search.per_page)
            .offset(search.page * search.per_page)
            .load(conn)?;
        Ok((rows, total))
    }

    /// Locks the key's row until the transaction ends (PostgreSQL `FOR UPDATE`), so a change
    /// decided on what was read cannot interleave with another change of the same key. SQLite
    /// has one writer at a time already.
    pub fn lock(conn: &mut DbConnection, id: KeyId) -> QueryResult<()> {
        if let DbConnection::Postgresql(pg) = conn {
            api_keys::table
                .find(id)
                .select(api_keys::id)
                .for_update()
                .first::<KeyId>(pg)
                .optional()?;
        }
        Ok(())
    }

    /// Applies `changes`; `None` when no key has this id.
    pub fn update(
        conn: &mut DbConnection,
        id: KeyId,
        changes: &ApiKeyChanges,
    ) -> QueryResult<Option<ApiKey>> {
        diesel::update(api_keys::table.find(id))
            .set(changes)
            .get_result(conn)
            .optional()
    }
}
