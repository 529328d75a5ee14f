//! The ledger: credits around the limiter. The live balances are in the counter store (Redis,
//! or in process), where each request spends from them atomically with its windows; the
//! database holds their checkpoint, written every `USAGE_FLUSH_MS` and at shutdown for the
//! balances spent since the last one.
//!
//! A store that holds no balance (first use, a Redis restarted without persistence, a new
//! instance without Redis) says so instead of deciding; the ledger then reads the checkpoint
//! and asks again with it as the seed, which the store uses only if it still holds none (two
//! instances seeding at once seed once). A restart so loses at most the spend since the last
//! checkpoint (`USAGE_FLUSH_MS`; see the README's quota model).
//!
//! Checkpoints carry the balance's sequence number (it grows with every change), and a row is
//! written only over an older one: instances checkpointing the same balance out of order
//! never move it back.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::clock::Now;
use crate::db::models::{ApiKey, CreditHolder, StoredCredits, User};
use crate::db::{self, DbError, DbPool, UserId};
use crate::limits::credits::{Adjustment, CreditOp, CreditState, Credits, Refill};
use crate::limits::{
    Ask, Bucket, Charged, CounterState, Decision, Limiter, LimiterError, Limits, Meter, Part, Policy, Seeds,
};
use crate::striped::Striped;

/// Credit terms as a row (a key's or a user's) stores them: none without a balance.
fn terms(
    remaining: Option<i64>,
    amount: Option<i32>,
    interval: Option<&str>,
    day: Option<i32>,
) -> Option<Credits> {
    remaining?;
    Some(Credits {
        refill: Refill::of_columns(amount, interval, day),
    })
}

/// A key's credit terms, if it has a balance.
pub fn key_terms(key: &ApiKey) -> Option<Credits> {
    terms(
        key.remaining,
        key.refill_amount,
        key.refill_interval.as_deref(),
        key.refill_day,
    )
}

/// A user's plan's credit terms, if the plan has a balance.
pub fn user_terms(user: &User) -> Option<Credits> {
    terms(
        user.remaining,
        user.refill_amount,
        user.refill_interval.as_deref(),
        user.refill_day,
    )
}

/// What the gate decides for `key` (counted under `policy`) when it has credits or its owner
/// has a plan; `None` for a plain key (the limiter's single-caller path).
pub fn ask_of(key: &ApiKey, owner: &User, policy: &Policy) -> Option<Ask> {
    let windows: Vec<_> = Limits::plan_of(owner)
        .windows()
        .into_iter()
        .filter(|(_, limit)| limit.is_some())
        .collect();
    let plan_credits = user_terms(owner);
    let plan = (!windows.is_empty() || plan_credits.is_some()).then(|| Meter {
        bucket: Bucket::Plan(owner.id),
        policy: Policy::new(windows),
        credits: plan_credits,
    });
    let credits = key_terms(key);
    if plan.is_none() && credits.is_none() {
        return None;
    }
    let key = Meter {
        bucket: Bucket::Key(key.id),
        policy: policy.clone(),
        credits,
    };
    Some(Ask::new(owner.id, key, plan))
}

/// One balance: whose (`owner`, and `Key` or `Plan` bucket) and its terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Holder {
    pub owner: UserId,
    pub bucket: Bucket,
    pub terms: Credits,
}

impl Holder {
    fn row(self) -> Option<CreditHolder> {
        match self.bucket {
            Bucket::Key(id) => Some(CreditHolder::Key(id)),
            Bucket::Plan(id) => Some(CreditHolder::User(id)),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Limiter(#[from] LimiterError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the counter store holds no balance even after seeding it")]
    Unseeded,
    #[error("no credit balance to add to (unlimited); set one first")]
    NoBalance,
}

/// An admin's change of a holder's credits, each part optional: a new balance (`None`:
/// unlimited), new refill terms (`None`: no refill), credits added to the balance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreditChange {
    pub remaining: Option<Option<u64>>,
    pub refill: Option<Option<Refill>>,
    pub add: Option<u64>,
}

impl CreditChange {
    pub fn is_empty(&self) -> bool {
        *self == CreditChange::default()
    }

    /// The change in a few words (`add:5`, `set:100`), to tell two requests apart.
    pub fn describe(&self) -> String {
        format!("{self:?}")
    }
}

pub struct Ledger {
    pool: DbPool,
    limiter: Arc<Limiter>,
    /// Balances spent from since the last checkpoint, per thread.
    spent: Striped<Mutex<HashSet<Holder>>>,
}

fn state_of(stored: StoredCredits) -> Option<CreditState> {
    Some(CreditState {
        remaining: u64::try_from(stored.remaining?).unwrap_or(0),
        period: u64::try_from(stored.period).unwrap_or(0),
        seq: u64::try_from(stored.seq).unwrap_or(0),
        // The store counts a seed under the terms of the request it seeds.
        terms: 0,
    })
}

fn stored(state: CreditState) -> StoredCredits {
    StoredCredits {
        remaining: Some(state.remaining as i64),
        period: state.period as i64,
        seq: state.seq as i64,
    }
}

impl Ledger {
    pub fn new(pool: DbPool, limiter: Arc<Limiter>) -> Ledger {
        Ledger {
            pool,
            limiter,
            spent: Striped::default(),
        }
    }

    /// Decides an ask: one store decision, two when a balance must first be seeded from the
    /// checkpoint.
    pub async fn charge(&self, ask: &Arc<Ask>, cost: u32, now: Now) -> Result<Decision, LedgerError> {
        let mut charged = self.limiter.charge(ask, Seeds::default(), cost, now).await?;
        if charged == Charged::Unseeded {
            let seeds = self.seeds(ask, now.unix_ms()).await?;
            charged = self.limiter.charge(ask, seeds, cost, now).await?;
        }
        let Charged::Decided(decision) = charged else {
            return Err(LedgerError::Unseeded);
        };
        if decision.allowed && cost > 0 {
            let mut spent = self.spent.mine().lock().unwrap_or_else(PoisonError::into_inner);
            for (_, meter) in ask.meters() {
                if let Some(terms) = meter.credits {
                    spent.insert(Holder {
                        owner: ask.owner,
                        bucket: meter.bucket,
                        terms,
                    });
                }
            }
        }
        Ok(decision)
    }

    /// The checkpoints of an ask's balances.
    async fn seeds(&self, ask: &Ask, now_ms: u64) -> Result<Seeds, DbError> {
        let rows: Vec<(Part, CreditHolder, u64)> = ask
            .meters()
            .filter(|(_, m)| m.credits.is_some())
            .filter_map(|(part, m)| {
                let holder = Holder {
                    owner: ask.owner,
                    bucket: m.bucket,
                    terms: m.credits?,
                };
                Some((part, holder.row()?, holder.terms.period(now_ms)))
            })
            .collect();
        db::run(&self.pool, move |conn| {
            let mut seeds = Seeds::default();
            for (part, row, period) in rows {
                // A balance the database no longer has (made unlimited a moment ago, by a
                // change this instance's cache has not caught up with yet) is unlimited too:
                // the checkpoint never writes it back (the row has no balance), and credits set
                // later start afresh (`apply` forgets the store's value first).
                let seed = row
                    .read(conn)
                    .map_err(DbError::Query)?
                    .and_then(state_of)
                    .unwrap_or(CreditState {
                        remaining: Adjustment::MAX,
                        period,
                        ..CreditState::default()
                    });
                match part {
                    Part::Key => seeds.key = Some(seed),
                    Part::Plan => seeds.plan = Some(seed),
                }
            }
            Ok(seeds)
        })
        .await
    }

    /// An admin's change to a balance: in the store first (atomically with the requests
    /// spending from it, after any refill due), then written to the database. `None` makes the
    /// holder unlimited. Returns the balance now.
    pub async fn adjust(
        &self,
        holder: Holder,
        change: Option<Adjustment>,
        now: Now,
    ) -> Result<Option<CreditState>, LedgerError> {
        let Some(row) = holder.row() else {
            return Ok(None);
        };
        let checkpoint = db::run(&self.pool, move |conn| row.read(conn).map_err(DbError::Query)).await?;
        let seed = checkpoint.and_then(state_of).unwrap_or(CreditState {
            remaining: 0,
            period: holder.terms.period(now.unix_ms()),
            seq: checkpoint.map_or(0, |c| c.seq.max(0) as u64),
            terms: holder.terms.tag(),
        });
        let op = match change {
            Some(change) => CreditOp::Change(change, seed),
            None => CreditOp::Forget,
        };
        let state = self
            .limiter
            .credits(holder.owner, holder.bucket, op, holder.terms, now.unix_ms())
            .await?;
        let row_state = match (change, state) {
            (Some(_), Some(state)) => stored(state),
            // Forgotten: past every sequence the store or a checkpoint reached, so that no
            // checkpoint read before counts once credits are set again.
            (_, forgotten) => StoredCredits {
                remaining: None,
                period: 0,
                seq: forgotten.map_or(0, |f| f.seq).max(seed.seq) as i64 + 1,
            },
        };
        db::run(&self.pool, move |conn| {
            row.set(conn, row_state).map_err(DbError::Query)
        })
        .await?;
        Ok(state)
    }

    /// Applies an admin's change to the credits of `bucket` (a key or a plan of `owner`), whose
    /// terms are `current` (`None`: unlimited): refill terms in the database, the balance in the
    /// store and then the database. The caller makes the gate's cache forget the holder.
    pub async fn apply(
        &self,
        owner: UserId,
        bucket: Bucket,
        current: Option<Credits>,
        change: CreditChange,
        now: Now,
    ) -> Result<(), LedgerError> {
        let terms = Credits {
            refill: change.refill.unwrap_or(current.and_then(|c| c.refill)),
        };
        let holder = Holder { owner, bucket, terms };
        let had = current.is_some();
        if change.add.is_some() && !change.remaining.map_or(had, |r| r.is_some()) {
            return Err(LedgerError::NoBalance);
        }
        if let (Some(refill), Some(row)) = (change.refill, holder.row()) {
            let columns = refill.map(Refill::columns);
            db::run(&self.pool, move |conn| {
                row.set_refill(conn, columns).map_err(DbError::Query)
            })
            .await?;
        }
        match change.remaining {
            Some(None) => {
                self.adjust(holder, None, now).await?;
            }
            Some(Some(n)) => {
                if !had {
                    // Whatever the store kept from before starts over at the current period.
                    self.adjust(holder, None, now).await?;
                } else if change.refill.is_some() {
                    self.adjust(holder, Some(Adjustment::Rebase), now).await?;
                }
                self.adjust(holder, Some(Adjustment::Set(n)), now).await?;
            }
            None if had && change.refill.is_some() => {
                self.adjust(holder, Some(Adjustment::Rebase), now).await?;
            }
            None => {}
        }
        if let Some(n) = change.add {
            self.adjust(holder, Some(Adjustment::Add(n)), now).await?;
        }
        Ok(())
    }

    /// A key's current windows (and credits, plan), counting nothing: read the way the gate
    /// counts it (an ask, under its owner's hash tag, when it has credits or a plan).
    pub async fn peek_key(&self, key: &ApiKey, owner: &User, now: Now) -> Result<Decision, LedgerError> {
        let policy = Limits::of(key).policy();
        match ask_of(key, owner, &policy) {
            Some(ask) => self.charge(&Arc::new(ask), 0, now).await,
            None => Ok(self.limiter.peek(Bucket::Key(key.id), &policy, now).await?),
        }
    }

    /// A key's live balance; `None` when it has no credits (unlimited).
    pub async fn key_balance(&self, key: &ApiKey, now: Now) -> Result<Option<CreditState>, LedgerError> {
        let Some(terms) = key_terms(key) else {
            return Ok(None);
        };
        let holder = Holder {
            owner: key.user_id,
            bucket: Bucket::Key(key.id),
            terms,
        };
        self.balance(holder, now).await
    }

    /// A user's live plan balance; `None` when the plan has no credits.
    pub async fn plan_balance(&self, user: &User, now: Now) -> Result<Option<CreditState>, LedgerError> {
        let Some(terms) = user_terms(user) else {
            return Ok(None);
        };
        let holder = Holder {
            owner: user.id,
            bucket: Bucket::Plan(user.id),
            terms,
        };
        self.balance(holder, now).await
    }

    /// A holder's live balance (the store's, else the checkpoint's).
    pub async fn balance(&self, holder: Holder, now: Now) -> Result<Option<CreditState>, LedgerError> {
        let live = self
            .limiter
            .credits(
                holder.owner,
                holder.bucket,
                CreditOp::Read,
                holder.terms,
                now.unix_ms(),
            )
            .await?;
        if let Some(live) = live {
            return Ok(Some(
                holder.terms.refilled(live, holder.terms.period(now.unix_ms())),
            ));
        }
        let Some(row) = holder.row() else {
            return Ok(None);
        };
        let checkpoint = db::run(&self.pool, move |conn| row.read(conn).map_err(DbError::Query)).await?;
        let state = checkpoint.and_then(state_of);
        Ok(state.map(|s| holder.terms.refilled(s, holder.terms.period(now.unix_ms()))))
    }

    /// Writes the balances spent from since the last checkpoint; returns how many were written.
    /// A balance the store could not be read for is kept for the next one.
    pub async fn checkpoint(&self) -> Result<usize, LedgerError> {
        let mut holders: HashSet<Holder> = HashSet::new();
        for stripe in self.spent.all() {
            holders.extend(stripe.lock().unwrap_or_else(PoisonError::into_inner).drain());
        }
        if holders.is_empty() {
            return Ok(0);
        }
        // While Redis fails, the balances spent here (failure mode `local`) are this instance's
        // own copies: they are not written over Redis's checkpoints (see the README's quota
        // model); the holders wait for Redis.
        if matches!(self.limiter.state(), CounterState::Degraded(_)) {
            self.restore(holders);
            return Ok(0);
        }
        let now_ms = Now::read().unix_ms();
        let mut states = Vec::with_capacity(holders.len());
        let mut failed = None;
        for holder in &holders {
            let read = self
                .limiter
                .credits(holder.owner, holder.bucket, CreditOp::Read, holder.terms, now_ms)
                .await;
            match read {
                Ok(Some(state)) => states.extend(holder.row().map(|row| (row, stored(state)))),
                Ok(None) => {}
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            self.restore(holders);
            return Err(e.into());
        }
        let count = states.len();
        let written = db::run(&self.pool, move |conn| {
            for (row, state) in &states {
                row.checkpoint(conn, *state).map_err(DbError::Query)?;
            }
            Ok::<_, DbError>(())
        })
        .await;
        if let Err(e) = written {
            self.restore(holders);
            return Err(e.into());
        }
        Ok(count)
    }

    fn restore(&self, holders: HashSet<Holder>) {
        self.spent
            .mine()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(holders);
    }

    /// Checkpoints every `every` until the ledger is dropped.
    pub fn spawn_checkpoints(self: &Arc<Self>, every: Duration) {
        let ledger = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(ledger) = ledger.upgrade() else { return };
                if let Err(e) = ledger.checkpoint().await {
                    log::warn!("could not checkpoint credits, will retry: {e}");
                }
            }
        });
    }
}
