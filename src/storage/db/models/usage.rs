use chrono::NaiveDateTime;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use crate::db::schema::api_key_usage;
use crate::db::{DbConnection, KeyId};

/// Requests one key made in one clock hour (`hour` is the hour's start, UTC).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_key_usage, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct UsageRow {
    pub api_key_id: KeyId,
    pub hour: NaiveDateTime,
    pub allowed: i64,
    pub rejected: i64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UsageTotals {
    pub allowed: i64,
    pub rejected: i64,
}

impl UsageRow {
    /// Adds this row's counts to the stored row for the same key and hour, creating it if
    /// needed. MultiConnection has no ON CONFLICT, so each backend gets the same statement on
    /// its own connection type.
    pub fn add(&self, conn: &mut DbConnection) -> QueryResult<usize> {
        use api_key_usage::{allowed, rejected};
        use diesel::upsert::excluded;
        macro_rules! upsert {
            ($c:expr) => {
                diesel::insert_into(api_key_usage::table)
                    .values(self)
                    .on_conflict((api_key_usage::api_key_id, api_key_usage::hour))
                    .do_update()
                    .set((
                        allowed.eq(allowed + excluded(allowed)),
                        rejected.eq(rejected + excluded(rejected)),
                    ))
                    .execute($c)
            };
        }
        match conn {
            DbConnection::Postgresql(c) => upsert!(c),
            DbConnection::Sqlite(c) => upsert!(c),
        }
    }

    /// Rows of one key from `since` on, oldest first.
    pub fn since(conn: &mut DbConnection, key_id: KeyId, since: NaiveDateTime) -> QueryResult<Vec<UsageRow>> {
        api_key_usage::table
            .filter(api_key_usage::api_key_id.eq(key_id))
            .filter(api_key_usage::hour.ge(since))
            .order(api_key_usage::hour.asc())
            .select(UsageRow::as_select())
            .load(conn)
    }

    /// All-time totals of one key.
    pub fn totals(conn: &mut DbConnection, key_id: KeyId) -> QueryResult<UsageTotals> {
        // SUM(bigint) is NUMERIC on PostgreSQL; cast back so both backends yield BIGINT.
        let (allowed, rejected) = api_key_usage::table
            .filter(api_key_usage::api_key_id.eq(key_id))
            .select((
                sql::<BigInt>("CAST(COALESCE(SUM(allowed), 0) AS BIGINT)"),
                sql::<BigInt>("CAST(COALESCE(SUM(rejected), 0) AS BIGINT)"),
            ))
            .first::<(i64, i64)>(conn)?;
        Ok(UsageTotals { allowed, rejected })
    }
}
