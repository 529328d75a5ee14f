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

/// What an idempotency key's claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not seen before (or abandoned): the change is this request's to make.
    New,
    /// The change was made: answer without making it again.
    Done,
    /// Another request with this key is making it now.
    Pending,
    /// The key was used for a different change.
    OtherRequest,
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

    /// Claims an idempotency key for a change (`request`, e.g. `add:5`) of this holder's
    /// credits, in one transaction: a new key is claimed (pending); a key whose change was made
    /// answers [`Claim::Done`]; one still being applied, [`Claim::Pending`], unless it has been
    /// pending since before `stale_before` (its request died), when it is taken over.
    pub fn claim(
        self,
        conn: &mut DbConnection,
        key: &str,
        request: &str,
        now: NaiveDateTime,
        stale_before: NaiveDateTime,
    ) -> QueryResult<Claim> {
        let holder = self.name();
        let existing: Option<(String, bool, NaiveDateTime)> = credit_grants::table
            .filter(credit_grants::holder.eq(&holder))
            .filter(credit_grants::idempotency_key.eq(key))
            .select((
                credit_grants::request,
                credit_grants::done,
                credit_grants::created_at,
            ))
            .first(conn)
            .optional()?;
        let mine = credit_grants::table
            .filter(credit_grants::holder.eq(&holder))
            .filter(credit_grants::idempotency_key.eq(key));
        match existing {
            Some((asked, _, _)) if asked != request => Ok(Claim::OtherRequest),
            Some((_, true, _)) => Ok(Claim::Done),
            Some((_, false, at)) if at >= stale_before => Ok(Claim::Pending),
            Some(_) => {
                // Taken over only if no one else took it over first.
                let taken = diesel::update(mine.filter(credit_grants::created_at.lt(stale_before)))
                    .set(credit_grants::created_at.eq(now))
                    .execute(conn)?;
                Ok(if taken == 1 { Claim::New } else { Claim::Pending })
            }
            None => {
                let inserted = diesel::insert_into(credit_grants::table)
                    .values((
                        credit_grants::holder.eq(&holder),
                        credit_grants::idempotency_key.eq(key),
                        credit_grants::request.eq(request),
                        credit_grants::created_at.eq(now),
                    ))
                    .execute(conn);
                match inserted {
                    Ok(_) => Ok(Claim::New),
                    // Another request claimed it a moment ago.
                    Err(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(Claim::Pending),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Marks a claimed change made: a retry is answered without making it again.
    pub fn done(self, conn: &mut DbConnection, key: &str) -> QueryResult<()> {
        diesel::update(
            credit_grants::table
                .filter(credit_grants::holder.eq(self.name()))
                .filter(credit_grants::idempotency_key.eq(key)),
        )
        .set(credit_grants::done.eq(true))
        .execute(conn)?;
        Ok(())
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

    /// An admin's write: a balance, unless a checkpoint already holds a later one of this
    /// balance (a higher sequence); or `None` (unlimited), always.
    pub fn set(self, conn: &mut DbConnection, state: StoredCredits) -> QueryResult<()> {
        let guarded = state.remaining.is_some();
        match self {
            CreditHolder::Key(id) => {
                let values = (
                    api_keys::remaining.eq(state.remaining),
                    api_keys::credit_period.eq(state.period),
                    api_keys::credit_seq.eq(state.seq),
                );
                let newer = api_keys::credit_seq
                    .lt(state.seq)
                    .or(api_keys::remaining.is_null());
                if guarded {
                    diesel::update(api_keys::table.find(id).filter(newer))
                        .set(values)
                        .execute(conn)?;
                } else {
                    diesel::update(api_keys::table.find(id))
                        .set(values)
                        .execute(conn)?;
                }
            }
            CreditHolder::User(id) => {
                let values = (
                    users::remaining.eq(state.remaining),
                    users::credit_period.eq(state.period),
                    users::credit_seq.eq(state.seq),
                );
                let newer = users::credit_seq.lt(state.seq).or(users::remaining.is_null());
                if guarded {
                    diesel::update(users::table.find(id).filter(newer))
                        .set(values)
                        .execute(conn)?;
                } else {
                    diesel::update(users::table.find(id)).set(values).execute(conn)?;
                }
            }
        }
        Ok(())
    }
}
