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
    /// Adds each row's counts to the stored row for the same key and hour, creating it if
    /// needed. On PostgreSQL one statement per `CHUNK` rows (a round trip each); rows must
    /// differ in key or hour (PostgreSQL refuses to update one row twice in a statement).
    /// SQLite, in process, has no round trips to save, and Diesel has no multi-row upsert
    /// for it: a statement per row. MultiConnection has no ON CONFLICT, so each backend gets
    /// the statement on its own connection type.
    /// Returns the number of statements.
    pub fn add_all(conn: &mut DbConnection, rows: &[UsageRow]) -> QueryResult<usize> {
        use api_key_usage::{allowed, rejected};
        use diesel::upsert::excluded;
        // Four parameters a row: far inside PostgreSQL's 65,535 and SQLite's 32,766.
        const CHUNK: usize = 1_000;
        macro_rules! upsert {
            ($c:expr, $chunk:expr) => {
                diesel::insert_into(api_key_usage::table)
                    .values($chunk)
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
            DbConnection::Postgresql(c) => {
                for chunk in rows.chunks(CHUNK) {
                    upsert!(c, chunk)?;
                }
                Ok(rows.len().div_ceil(CHUNK))
            }
            DbConnection::Sqlite(c) => {
                for row in rows {
                    upsert!(c, row)?;
                }
                Ok(rows.len())
            }
        }
    }

    /// [`add_all`](Self::add_all) of one row.
    pub fn add(&self, conn: &mut DbConnection) -> QueryResult<usize> {
        UsageRow::add_all(conn, std::slice::from_ref(self))
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
