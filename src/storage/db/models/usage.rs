use std::collections::BTreeMap;

use chrono::{NaiveDateTime, NaiveTime};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use crate::db::schema::{api_key_usage, api_key_usage_daily, api_keys};
use crate::db::{DbConnection, KeyId, UserId};

/// Adds rows to a usage table (`$table`, keyed by key and `$period`): see
/// [`UsageRow::add_all`].
macro_rules! upsert_all {
    ($conn:expr, $rows:expr, $table:ident, $period:ident) => {{
        use diesel::upsert::excluded;
        use $table::{allowed, rejected};
        // Four parameters a row: far inside PostgreSQL's 65,535 and SQLite's 32,766.
        const CHUNK: usize = 1_000;
        macro_rules! upsert {
            ($c:expr, $chunk:expr) => {
                diesel::insert_into($table::table)
                    .values($chunk)
                    .on_conflict(($table::api_key_id, $table::$period))
                    .do_update()
                    .set((
                        allowed.eq(allowed + excluded(allowed)),
                        rejected.eq(rejected + excluded(rejected)),
                    ))
                    .execute($c)
            };
        }
        let rows = $rows;
        match $conn {
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
    }};
}

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
    /// The same counts are added to the days they fall in (`api_key_usage_daily`), in one
    /// transaction: a day is always exactly the sum of its hours, whoever wrote them.
    /// Returns the number of statements.
    pub fn add_all(conn: &mut DbConnection, rows: &[UsageRow]) -> QueryResult<usize> {
        conn.transaction(|conn| {
            let hours = UsageRow::add_hours(conn, rows)?;
            let days = DayRow::add_all(conn, &DayRow::of_hours(rows))?;
            Ok(hours + days)
        })
    }

    fn add_hours(conn: &mut DbConnection, rows: &[UsageRow]) -> QueryResult<usize> {
        upsert_all!(conn, rows, api_key_usage, hour)
    }

    /// [`add_all`](Self::add_all) of one row.
    pub fn add(&self, conn: &mut DbConnection) -> QueryResult<usize> {
        UsageRow::add_all(conn, std::slice::from_ref(self))
    }

    /// Totals of one key over the days kept (400): the daily table holds every hour's
    /// counts, and outlives the hours.
    pub fn totals(conn: &mut DbConnection, key_id: KeyId) -> QueryResult<UsageTotals> {
        let (allowed, rejected) = api_key_usage_daily::table
            .filter(api_key_usage_daily::api_key_id.eq(key_id))
            .select((sql::<BigInt>(SUM_ALLOWED), sql::<BigInt>(SUM_REJECTED)))
            .first::<(i64, i64)>(conn)?;
        Ok(UsageTotals { allowed, rejected })
    }
}

/// Requests one key made in one UTC day (`day` is the day's start). Written with the hours, in
/// the same transaction, so a day is always the sum of its hours; kept longer (400 days).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_key_usage_daily, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct DayRow {
    pub api_key_id: KeyId,
    pub day: NaiveDateTime,
    pub allowed: i64,
    pub rejected: i64,
}

impl DayRow {
    /// Adds to the days alone: [`UsageRow::add_all`] writes days with their hours, and this is
    /// what it calls (and what tests call to write days older than any hour kept).
    pub fn add_all(conn: &mut DbConnection, rows: &[DayRow]) -> QueryResult<usize> {
        upsert_all!(conn, rows, api_key_usage_daily, day)
    }

    /// The days `hours` fall in, summed, in key and day order (one row per key and day).
    fn of_hours(hours: &[UsageRow]) -> Vec<DayRow> {
        let mut days: BTreeMap<(KeyId, NaiveDateTime), (i64, i64)> = BTreeMap::new();
        for row in hours {
            let day = row.hour.date().and_time(NaiveTime::MIN);
            let counts = days.entry((row.api_key_id, day)).or_default();
            counts.0 += row.allowed;
            counts.1 += row.rejected;
        }
        days.into_iter()
            .map(|((api_key_id, day), (allowed, rejected))| DayRow {
                api_key_id,
                day,
                allowed,
                rejected,
            })
            .collect()
    }
}

/// Which usage rows to read: a period `[from, to)`, optionally one key or one owner's keys.
#[derive(Debug, Clone, Copy)]
pub struct UsageFilter {
    pub from: NaiveDateTime,
    pub to: NaiveDateTime,
    pub key: Option<KeyId>,
    pub owner: Option<UserId>,
}

/// One row of a usage table: key, period start, allowed, rejected.
pub type Counted = (KeyId, NaiveDateTime, i64, i64);

// SUM(bigint) is NUMERIC on PostgreSQL; cast back so both backends yield BIGINT.
const SUM_ALLOWED: &str = "CAST(COALESCE(SUM(allowed), 0) AS BIGINT)";
const SUM_REJECTED: &str = "CAST(COALESCE(SUM(rejected), 0) AS BIGINT)";

/// The queries both usage tables answer alike (hourly: `api_key_usage`/`hour`, daily:
/// `api_key_usage_daily`/`day`).
macro_rules! usage_queries {
    ($row:ty, $table:ident, $period:ident) => {
        impl $row {
            /// Up to `limit` rows matching `filter`, in (key, period) order, after `after`: the
            /// export reads a table a page at a time this way.
            pub fn page(
                conn: &mut DbConnection,
                filter: &UsageFilter,
                after: Option<(KeyId, NaiveDateTime)>,
                limit: i64,
            ) -> QueryResult<Vec<Counted>> {
                let mut query = $table::table
                    .filter($table::$period.ge(filter.from))
                    .filter($table::$period.lt(filter.to))
                    .select((
                        $table::api_key_id,
                        $table::$period,
                        $table::allowed,
                        $table::rejected,
                    ))
                    .order(($table::api_key_id.asc(), $table::$period.asc()))
                    .limit(limit)
                    .into_boxed();
                if let Some(key) = filter.key {
                    query = query.filter($table::api_key_id.eq(key));
                }
                if let Some(owner) = filter.owner {
                    let keys = api_keys::table
                        .filter(api_keys::user_id.eq(owner))
                        .select(api_keys::id);
                    query = query.filter($table::api_key_id.eq_any(keys));
                }
                if let Some((key, at)) = after {
                    query = query.filter(
                        $table::api_key_id
                            .gt(key)
                            .or($table::api_key_id.eq(key).and($table::$period.gt(at))),
                    );
                }
                query.load(conn)
            }

            /// Per period from `since` on, summed over every key (or one): oldest first.
            pub fn per_period(
                conn: &mut DbConnection,
                key: Option<KeyId>,
                since: NaiveDateTime,
            ) -> QueryResult<Vec<(NaiveDateTime, i64, i64)>> {
                let mut query = $table::table
                    .filter($table::$period.ge(since))
                    .group_by($table::$period)
                    .select((
                        $table::$period,
                        sql::<BigInt>(SUM_ALLOWED),
                        sql::<BigInt>(SUM_REJECTED),
                    ))
                    .order($table::$period.asc())
                    .into_boxed();
                if let Some(key) = key {
                    query = query.filter($table::api_key_id.eq(key));
                }
                query.load(conn)
            }

            /// Per key from `since` on (keys with no rows are absent).
            pub fn per_key(
                conn: &mut DbConnection,
                since: NaiveDateTime,
            ) -> QueryResult<Vec<(KeyId, i64, i64)>> {
                $table::table
                    .filter($table::$period.ge(since))
                    .group_by($table::api_key_id)
                    .select((
                        $table::api_key_id,
                        sql::<BigInt>(SUM_ALLOWED),
                        sql::<BigInt>(SUM_REJECTED),
                    ))
                    .load(conn)
            }

            /// Deletes the rows of periods before `cutoff` (retention); returns how many.
            pub fn prune(conn: &mut DbConnection, cutoff: NaiveDateTime) -> QueryResult<usize> {
                diesel::delete($table::table.filter($table::$period.lt(cutoff))).execute(conn)
            }
        }
    };
}

usage_queries!(UsageRow, api_key_usage, hour);
usage_queries!(DayRow, api_key_usage_daily, day);
