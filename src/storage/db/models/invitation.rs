use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::invitations;
use crate::db::{DbConnection, UserId};

/// An invitation to the dashboard: an email and the SHA-256 of a one-time link's token.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = invitations, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct Invitation {
    pub id: i64,
    pub email: String,
    pub token_hash: String,
    pub created_by: UserId,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub used_at: Option<NaiveDateTime>,
}

#[derive(Insertable)]
#[diesel(table_name = invitations)]
pub struct NewInvitation<'a> {
    pub email: &'a str,
    pub token_hash: &'a str,
    pub created_by: UserId,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

impl Invitation {
    pub fn insert(conn: &mut DbConnection, new: &NewInvitation<'_>) -> QueryResult<Invitation> {
        diesel::insert_into(invitations::table)
            .values(new)
            .get_result(conn)
    }

    /// The unused, unexpired invitation behind this token hash.
    pub fn open(
        conn: &mut DbConnection,
        token_hash: &str,
        now: NaiveDateTime,
    ) -> QueryResult<Option<Invitation>> {
        invitations::table
            .filter(invitations::token_hash.eq(token_hash))
            .filter(invitations::used_at.is_null())
            .filter(invitations::expires_at.gt(now))
            .select(Invitation::as_select())
            .first(conn)
            .optional()
    }

    /// Uses the invitation up, if it still is open: at most one caller gets `true`, however
    /// many race (the update is conditional on it being unused).
    pub fn use_up(conn: &mut DbConnection, id: i64, now: NaiveDateTime) -> QueryResult<bool> {
        let updated = diesel::update(
            invitations::table
                .filter(invitations::id.eq(id))
                .filter(invitations::used_at.is_null())
                .filter(invitations::expires_at.gt(now)),
        )
        .set(invitations::used_at.eq(now))
        .execute(conn)?;
        Ok(updated == 1)
    }
}
