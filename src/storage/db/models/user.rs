use std::fmt;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::users;
use crate::db::{DbConnection, UserId};

#[derive(Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub password_hash: String,
    pub is_admin: bool,
    pub is_active: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// Moves when the user's tokens and sessions must end (see `users::token`).
    pub auth_epoch: i64,
    pub max_rate_limit_per_minute: Option<i32>,
    pub max_rate_limit_per_hour: Option<i32>,
    pub max_rate_limit_per_day: Option<i32>,
    /// False until an admin sets a ceiling: the default ceiling (`KEY_RATE_LIMIT`) applies.
    pub ceiling_set: bool,
    /// The plan: limits on the sum of all the user's keys' requests.
    pub rate_limit_per_minute: Option<i32>,
    pub rate_limit_per_hour: Option<i32>,
    pub rate_limit_per_day: Option<i32>,
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

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("is_admin", &self.is_admin)
            .field("is_active", &self.is_active)
            .finish_non_exhaustive()
    }
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub email: &'a str,
    pub password_hash: &'a str,
    pub is_admin: bool,
    pub is_active: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A partial change of a user: `None` leaves a column alone, `Some(None)` sets it to NULL.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = users)]
pub struct UserChanges {
    pub password_hash: Option<String>,
    pub is_admin: Option<bool>,
    pub is_active: Option<bool>,
    pub max_rate_limit_per_minute: Option<Option<i32>>,
    pub max_rate_limit_per_hour: Option<Option<i32>>,
    pub max_rate_limit_per_day: Option<Option<i32>>,
    pub ceiling_set: Option<bool>,
    pub rate_limit_per_minute: Option<Option<i32>>,
    pub rate_limit_per_hour: Option<Option<i32>>,
    pub rate_limit_per_day: Option<Option<i32>>,
    pub rate_limit_per_month: Option<Option<i32>>,
    pub updated_at: Option<NaiveDateTime>,
}

impl UserChanges {
    /// No change but `updated_at`.
    pub fn default_at(now: NaiveDateTime) -> UserChanges {
        UserChanges {
            updated_at: Some(now),
            ..UserChanges::default()
        }
    }
}

impl User {
    pub fn insert(conn: &mut DbConnection, new: &NewUser<'_>) -> QueryResult<User> {
        diesel::insert_into(users::table).values(new).get_result(conn)
    }

    pub fn find(conn: &mut DbConnection, id: UserId) -> QueryResult<Option<User>> {
        users::table
            .find(id)
            .select(User::as_select())
            .first(conn)
            .optional()
    }

    pub fn find_by_email(conn: &mut DbConnection, email: &str) -> QueryResult<Option<User>> {
        users::table
            .filter(users::email.eq(email))
            .select(User::as_select())
            .first(conn)
            .optional()
    }

    pub fn count(conn: &mut DbConnection) -> QueryResult<i64> {
        users::table.count().get_result(conn)
    }

    pub fn list(conn: &mut DbConnection) -> QueryResult<Vec<User>> {
        users::table
            .order(users::id.asc())
            .select(User::as_select())
            .load(conn)
    }

    /// Applies `changes`; `end_sessions` also moves the epoch, ending every token and session.
    pub fn update(
        conn: &mut DbConnection,
        id: UserId,
        changes: &UserChanges,
        end_sessions: bool,
    ) -> QueryResult<Option<User>> {
        let epoch = users::auth_epoch + i64::from(end_sessions);
        diesel::update(users::table.find(id))
            .set((changes, users::auth_epoch.eq(epoch)))
            .get_result(conn)
            .optional()
    }
}
