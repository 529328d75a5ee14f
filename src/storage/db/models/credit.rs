//! Credit balances as the database keeps them: the checkpoint of the counter store's live
//! balance, per key and per user (a plan). Both tables have the same columns.

use diesel::prelude::*;

use chrono::NaiveDateTime;
use diesel::result::{DatabaseErrorKind, Error};

use crate::db::schema::{api_keys, credit_grants, users};
use crate::db::{DbConnection, KeyId, UserId};

/// Whose balance: a key's, or a user's plan's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CreditHolder {
    Key(KeyId),
    User(UserId),
}

/// A balance row: remaining (`None`: unlimited), its refill period, its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredCredits {
    pub remaining: Option<i64>,
    pub period: i64,
    pub seq: i64,
}

impl CreditHolder {
    /// The holder as `credit_grants` names it.
    fn name(self) -> String {
        match self {
            CreditHolder::Key(id) => format!("k:{id}"),
            CreditHolder::User(id) => format!("u:{id}"),
        }
    }

    /// Claims an idempotency key for a top-up of this holder: false when it was claimed before
    /// (the top-up was made, or is being made, by an earlier request with the same key).
    pub fn claim(self, conn: &mut DbConnection, key: &str, now: NaiveDateTime) -> QueryResult<bool> {
        let inserted = diesel::insert_into(credit_grants::table)
            .values((
                credit_grants::holder.eq(self.name()),
                credit_grants::idempotency_key.eq(key),
                credit_grants::created_at.eq(now),
            ))
            .execute(conn);
        match inserted {
            Ok(_) => Ok(true),
            Err(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives a claim back (its top-up failed), so a retry with the same key applies it.
    pub fn release(self, conn: &mut DbConnection, key: &str) -> QueryResult<()> {
        diesel::delete(
            credit_grants::table
                .filter(credit_grants::holder.eq(self.name()))
                .filter(credit_grants::idempotency_key.eq(key)),
        )
        .execute(conn)?;
        Ok(())
    }

    pub fn read(self, conn: &mut DbConnection) -> QueryResult<Option<StoredCredits>> {
        let row: Option<(Option<i64>, i64, i64)> = match self {
            CreditHolder::Key(id) => api_keys::table
                .find(id)
                .select((api_keys::remaining, api_keys::credit_period, api_keys::credit_seq))
                .first(conn)
                .optional()?,
            CreditHolder::User(id) => users::table
                .find(id)
                .select((users::remaining, users::credit_period, users::credit_seq))
                .first(conn)
                .optional()?,
        };
        Ok(row.map(|(remaining, period, seq)| StoredCredits {
            remaining,
            period,
            seq,
        }))
    }

    /// Writes a checkpoint unless the row holds a newer one (a higher sequence) or no longer
    /// has credits (an admin made it unlimited meanwhile). True when written.
    pub fn checkpoint(self, conn: &mut DbConnection, state: StoredCredits) -> QueryResult<bool> {
        let written = match self {
            CreditHolder::Key(id) => diesel::update(
                api_keys::table
                    .find(id)
                    .filter(api_keys::credit_seq.lt(state.seq))
                    .filter(api_keys::remaining.is_not_null()),
            )
            .set((
                api_keys::remaining.eq(state.remaining),
                api_keys::credit_period.eq(state.period),
                api_keys::credit_seq.eq(state.seq),
            ))
            .execute(conn)?,
            CreditHolder::User(id) => diesel::update(
                users::table
                    .find(id)
                    .filter(users::credit_seq.lt(state.seq))
                    .filter(users::remaining.is_not_null()),
            )
            .set((
                users::remaining.eq(state.remaining),
                users::credit_period.eq(state.period),
                users::credit_seq.eq(state.seq),
            ))
            .execute(conn)?,
        };
        Ok(written > 0)
    }

    /// New refill terms: (amount, `day`|`month`, day of month), or none.
    pub fn set_refill(
        self,
        conn: &mut DbConnection,
        refill: Option<(i32, &str, Option<i32>)>,
    ) -> QueryResult<()> {
        let (amount, interval, day) = match refill {
            Some((amount, interval, day)) => (Some(amount), Some(interval), day),
            None => (None, None, None),
        };
        match self {
            CreditHolder::Key(id) => diesel::update(api_keys::table.find(id))
                .set((
                    api_keys::refill_amount.eq(amount),
                    api_keys::refill_interval.eq(interval),
                    api_keys::refill_day.eq(day),
                ))
                .execute(conn)?,
            CreditHolder::User(id) => diesel::update(users::table.find(id))
                .set((
                    users::refill_amount.eq(amount),
                    users::refill_interval.eq(interval),
                    users::refill_day.eq(day),
                ))
                .execute(conn)?,
        };
        Ok(())
    }

    /// An admin's write: the balance (or `None`, unlimited), whatever the row held.
    pub fn set(self, conn: &mut DbConnection, state: StoredCredits) -> QueryResult<()> {
        match self {
            CreditHolder::Key(id) => diesel::update(api_keys::table.find(id))
                .set((
                    api_keys::remaining.eq(state.remaining),
                    api_keys::credit_period.eq(state.period),
                    api_keys::credit_seq.eq(state.seq),
                ))
                .execute(conn)?,
            CreditHolder::User(id) => diesel::update(users::table.find(id))
                .set((
                    users::remaining.eq(state.remaining),
                    users::credit_period.eq(state.period),
                    users::credit_seq.eq(state.seq),
                ))
                .execute(conn)?,
        };
        Ok(())
    }
}
