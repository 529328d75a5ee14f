//! Write-behind usage: `last_used_at` and hourly allowed/rejected counts are gathered in memory
//! and written in one transaction every few seconds and at shutdown, so database writes grow
//! with the number of active keys, not with the request rate. A failed write keeps its counts
//! for the next attempt. The buffer holds at most `MAX_PENDING_KEYS` keys: during a long
//! database outage, new keys beyond that are dropped, counted and logged, never grown without
//! bound.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::DateTime;
use diesel::prelude::*;

use crate::clock::Now;
use crate::db::models::UsageRow;
use crate::db::schema::api_keys;
use crate::db::{self, DbConnection, DbError, DbPool, KeyId};
use crate::striped::Striped;

#[derive(Debug, Default, Clone)]
struct Pending {
    /// Unix seconds.
    last_used: i64,
    /// (hour start in Unix seconds, allowed, rejected)
    hours: Vec<(i64, i64, i64)>,
}

impl Pending {
    fn add(&mut self, unix_now: i64, allowed: i64, rejected: i64) {
        self.last_used = self.last_used.max(unix_now);
        let hour = unix_now - unix_now.rem_euclid(3600);
        match self.hours.iter_mut().find(|(h, _, _)| *h == hour) {
            Some((_, a, r)) => {
                *a += allowed;
                *r += rejected;
            }
            None => self.hours.push((hour, allowed, rejected)),
        }
    }

    fn merge(&mut self, other: Pending) {
        for (hour, allowed, rejected) in other.hours {
            self.add(hour, allowed, rejected);
        }
        self.last_used = self.last_used.max(other.last_used);
    }
}

pub struct UsageRecorder {
    pool: DbPool,
    /// Per thread, so workers noting the same key do not share a lock; a key used on two
    /// workers has an entry in each until the flush merges them.
    pending: Striped<Mutex<HashMap<KeyId, Pending>>>,
    /// Entries over all stripes: written only when an entry is added or flushed, so reading
    /// it on every request costs no cache-line transfer.
    entries: AtomicUsize,
    statements: AtomicU64,
    dropped: AtomicU64,
    /// Keys of the batch being written right now.
    in_flight: AtomicUsize,
    /// When everything buffered was last written (or the recorder made).
    written_at: Mutex<Instant>,
}

/// Keys buffered at most between two successful writes.
pub const MAX_PENDING_KEYS: usize = 100_000;

fn timestamp(unix: i64) -> chrono::NaiveDateTime {
    DateTime::from_timestamp(unix, 0).unwrap_or_default().naive_utc()
}

impl UsageRecorder {
    pub fn new(pool: DbPool) -> UsageRecorder {
        UsageRecorder {
            pool,
            pending: Striped::default(),
            entries: AtomicUsize::new(0),
            statements: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            written_at: Mutex::new(Instant::now()),
        }
    }

    /// Notes one request of `key_id` at `now`.
    pub fn record(&self, key_id: KeyId, allowed: bool, now: Now) {
        let mut pending = self.pending.mine().lock().unwrap_or_else(PoisonError::into_inner);
        let entry = match pending.entry(key_id) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(_) if self.entries.load(Ordering::Relaxed) >= MAX_PENDING_KEYS => {
                if self.dropped.fetch_add(1, Ordering::Relaxed).is_power_of_two() {
                    log::warn!(
                        "usage buffer full ({MAX_PENDING_KEYS} keys unwritten); dropping usage of further keys"
                    );
                }
                return;
            }
            Entry::Vacant(entry) => {
                self.entries.fetch_add(1, Ordering::Relaxed);
                entry.insert(Pending::default())
            }
        };
        entry.add(now.unix_secs(), i64::from(allowed), i64::from(!allowed));
    }

    /// Everything buffered, merged per key; the buffer is left empty.
    fn take(&self) -> HashMap<KeyId, Pending> {
        let mut batch: HashMap<KeyId, Pending> = HashMap::new();
        for stripe in self.pending.all() {
            let taken = std::mem::take(&mut *stripe.lock().unwrap_or_else(PoisonError::into_inner));
            self.entries.fetch_sub(taken.len(), Ordering::Relaxed);
            for (key_id, p) in taken {
                batch.entry(key_id).or_default().merge(p);
            }
        }
        batch
    }

    /// Requests whose usage was dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Keys with usage not yet written: buffered, or in a write under way.
    pub fn pending(&self) -> usize {
        self.entries.load(Ordering::Relaxed) + self.in_flight.load(Ordering::Acquire)
    }

    /// Writes everything gathered so far; returns the number of keys written.
    /// Puts a batch that could not be written back, for the next attempt (its keys were in the
    /// buffer, so this stays within its bound).
    fn restore(&self, batch: HashMap<KeyId, Pending>) {
        let mut pending = self.pending.mine().lock().unwrap_or_else(PoisonError::into_inner);
        for (key_id, p) in batch {
            match pending.entry(key_id) {
                Entry::Occupied(mut entry) => entry.get_mut().merge(p),
                Entry::Vacant(entry) => {
                    self.entries.fetch_add(1, Ordering::Relaxed);
                    entry.insert(p);
                }
            }
        }
    }

    pub async fn flush(&self) -> Result<usize, DbError> {
        let batch = self.take();
        if batch.is_empty() {
            *self.written_at.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
            return Ok(0);
        }
        let keys = batch.len();
        self.in_flight.store(keys, Ordering::Release);
        let rows = batch.clone();
        let written = db::run(&self.pool, move |conn| write(conn, &rows)).await;
        // Merge back or count as written before the batch stops counting as in flight.
        let outcome = match written {
            Ok(statements) => {
                self.statements.fetch_add(statements, Ordering::Relaxed);
                *self.written_at.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
                Ok(keys)
            }
            Err(e) => {
                self.restore(batch);
                Err(e)
            }
        };
        self.in_flight.store(0, Ordering::Release);
        outcome
    }

    /// How long usage has waited at most: the time since the buffer was last emptied.
    pub fn flush_lag(&self) -> Duration {
        self.written_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
    }

    /// Statements written so far (for tests and metrics).
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Flushes every `every` until the recorder is dropped.
    pub fn spawn_flusher(self: &Arc<Self>, every: Duration) {
        let recorder = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(recorder) = recorder.upgrade() else {
                    return;
                };
                if let Err(e) = recorder.flush().await {
                    log::warn!("could not write usage, will retry: {e}");
                }
            }
        });
    }
}

/// Writes one batch in one transaction: each key's last use (never moved back) and its hourly
/// counts; returns the number of statements. A handful of statements whatever the number of
/// keys: keys are updated together per second of last use (a flush every few seconds sees a few
/// distinct seconds), hours in multi-row upserts. Statement by statement, 1,000 active keys
/// cost 2,000 round trips a flush, which showed in the gate's p99 (`bench/run`).
fn write(conn: &mut DbConnection, rows: &HashMap<KeyId, Pending>) -> Result<u64, DbError> {
    // Far inside SQLite's limit of bound parameters.
    const IDS_PER_STATEMENT: usize = 1_000;
    let mut by_second: BTreeMap<i64, Vec<KeyId>> = BTreeMap::new();
    let mut hours = Vec::new();
    for (&key_id, pending) in rows {
        by_second.entry(pending.last_used).or_default().push(key_id);
        hours.extend(pending.hours.iter().map(|&(hour, allowed, rejected)| UsageRow {
            api_key_id: key_id,
            hour: timestamp(hour),
            allowed,
            rejected,
        }));
    }
    // In key order, so two instances flushing at once mostly lock rows in the same order. Not
    // always (the updates go per second of last use), and PostgreSQL then aborts one of the
    // two transactions: its batch is put back and written at the next flush.
    by_second.values_mut().for_each(|ids| ids.sort_unstable());
    hours.sort_unstable_by_key(|row| (row.api_key_id, row.hour));
    db::write::<u64, DbError, _>(conn, |conn| {
        let mut statements = 0;
        for (second, ids) in &by_second {
            let used = timestamp(*second);
            for ids in ids.chunks(IDS_PER_STATEMENT) {
                diesel::update(api_keys::table.filter(api_keys::id.eq_any(ids)))
                    .filter(
                        api_keys::last_used_at
                            .is_null()
                            .or(api_keys::last_used_at.lt(used)),
                    )
                    .set(api_keys::last_used_at.eq(used))
                    .execute(conn)?;
                statements += 1;
            }
        }
        // With the days they fall in (see `UsageRow::add_all`).
        statements += UsageRow::add_all(conn, &hours)? as u64;
        Ok(statements)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_usage_adds_up_per_hour() {
        let mut p = Pending::default();
        p.add(7_200 + 5, 1, 0);
        p.add(7_200 + 3_000, 1, 0);
        p.add(7_200 + 3_600, 0, 1);
        assert_eq!(p.last_used, 10_800);
        assert_eq!(p.hours, [(7_200, 2, 0), (10_800, 0, 1)]);
        let mut q = Pending::default();
        q.add(7_300, 0, 4);
        p.merge(q);
        assert_eq!(p.hours, [(7_200, 2, 4), (10_800, 0, 1)]);
    }
}
