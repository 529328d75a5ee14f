use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::revoked_sessions;

/// Dashboard sessions ended by logout, kept until they would have expired anyway, so a cookie
/// saved before the logout stops working on every instance, with or without Redis.
pub struct RevokedSession;

impl RevokedSession {
    /// Records `session_id` as ended (and forgets those past their expiry).
    pub fn insert(
        conn: &mut DbConnection,
        session_id: &str,
        expires_at: NaiveDateTime,
        now: NaiveDateTime,
    ) -> QueryResult<()> {
        diesel::delete(revoked_sessions::table.filter(revoked_sessions::expires_at.lt(now))).execute(conn)?;
        let inserted = diesel::insert_into(revoked_sessions::table)
            .values((
                revoked_sessions::session_id.eq(session_id),
                revoked_sessions::expires_at.eq(expires_at),
            ))
            .execute(conn);
        match inserted {
            // Ended twice (a replayed logout form): it stays ended.
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    pub fn exists(conn: &mut DbConnection, session_id: &str) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(
            revoked_sessions::table.filter(revoked_sessions::session_id.eq(session_id)),
        ))
        .get_result(conn)
    }
}
