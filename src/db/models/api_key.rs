use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::{api_keys, users};

/// A key row. Field order is the `table!` order: inserts and updates read it back through an
/// implicit `RETURNING *` (the only form MultiConnection supports).
#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct ApiKey {
    pub id: i64,
    pub user_id: i64,
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
}

#[derive(Insertable)]
#[diesel(table_name = api_keys)]
pub struct NewApiKey<'a> {
    pub user_id: i64,
    pub name: &'a str,
    pub prefix: &'a str,
    pub key_hash: &'a str,
    pub rate_limit_per_minute: Option<i32>,
    pub rate_limit_per_hour: Option<i32>,
    pub rate_limit_per_day: Option<i32>,
    pub expires_at: Option<NaiveDateTime>,
    pub is_active: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A partial update: `None` leaves a column alone, `Some(None)` sets it to NULL.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = api_keys)]
pub struct ApiKeyChanges {
    pub name: Option<String>,
    pub rate_limit_per_minute: Option<Option<i32>>,
    pub rate_limit_per_hour: Option<Option<i32>>,
    pub rate_limit_per_day: Option<Option<i32>>,
    pub expires_at: Option<Option<NaiveDateTime>>,
    pub is_active: Option<bool>,
    pub updated_at: Option<NaiveDateTime>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct KeyFilter {
    pub owner: Option<i64>,
    pub active: Option<bool>,
}

impl ApiKey {
    pub fn insert(conn: &mut DbConnection, new: &NewApiKey<'_>) -> QueryResult<ApiKey> {
        diesel::insert_into(api_keys::table).values(new).get_result(conn)
    }

    pub fn find(conn: &mut DbConnection, id: i64) -> QueryResult<Option<ApiKey>> {
        api_keys::table
            .find(id)
            .select(ApiKey::as_select())
            .first(conn)
            .optional()
    }

    pub fn find_by_hash(conn: &mut DbConnection, hash: &str) -> QueryResult<Option<ApiKey>> {
        api_keys::table
            .filter(api_keys::key_hash.eq(hash))
            .select(ApiKey::as_select())
            .first(conn)
            .optional()
    }

    /// The key and its owner's email.
    pub fn find_with_owner(conn: &mut DbConnection, id: i64) -> QueryResult<Option<(ApiKey, String)>> {
        api_keys::table
            .inner_join(users::table)
            .filter(api_keys::id.eq(id))
            .select((ApiKey::as_select(), users::email))
            .first(conn)
            .optional()
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

    /// Applies `changes`; `None` when no key has this id.
    pub fn update(conn: &mut DbConnection, id: i64, changes: &ApiKeyChanges) -> QueryResult<Option<ApiKey>> {
        diesel::update(api_keys::table.find(id))
            .set(changes)
            .get_result(conn)
            .optional()
    }
}
