//! The in-process counter store: one per process, shared by every worker (a per-worker store
//! would multiply each limit by the number of workers).
//!
//! Memory is bounded two ways: entries whose windows have all passed are swept, and each shard
//! holds at most `capacity / SHARDS` callers. When a flood of distinct callers (say, spoofed
//! addresses through a misconfigured proxy) fills a shard, its stale entries go first, then an
//! arbitrary one: that caller's counts restart, which costs accuracy for one caller instead of
//! unbounded memory for the process.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, PoisonError};

use super::{Bucket, Decision, Policy, Window, decide};

const SHARDS: usize = 64;

/// The counts of one window, `idx` being the clock-aligned window number.
#[derive(Debug, Clone, Copy, Default)]
struct Counter {
    idx: u32,
    curr: u32,
    prev: u32,
}

impl Counter {
    /// Moves the counter to window `idx`, returning (prev, curr) there.
    fn roll(&mut self, idx: u32) -> (u64, u64) {
        if self.idx != idx {
            self.prev = if self.idx.wrapping_add(1) == idx {
                self.curr
            } else {
                0
            };
            self.curr = 0;
            self.idx = idx;
        }
        (u64::from(self.prev), u64::from(self.curr))
    }

    fn is_stale(&self, idx: u32) -> bool {
        self.idx.wrapping_add(1) < idx || (self.curr == 0 && self.prev == 0)
    }
}

type Counters = [Counter; Window::ALL.len()];

fn window_index(window: Window, now_ms: u64) -> u32 {
    (now_ms / window.millis()) as u32
}

pub struct MemoryStore {
    shards: Vec<Mutex<HashMap<Bucket, Counters>>>,
    per_shard: usize,
    hasher: RandomState,
}

impl MemoryStore {
    pub const DEFAULT_CAPACITY: usize = 1_000_000;

    /// A store tracking at most about `capacity` callers.
    pub fn new(capacity: usize) -> MemoryStore {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, bucket: &Bucket) -> &Mutex<HashMap<Bucket, Counters>> {
        &self.shards[self.hasher.hash_one(bucket) as usize % SHARDS]
    }

    /// Counts `cost` requests of `bucket` at `now_ms` if every window of `policy` has room.
    /// A `cost` of 0 only reads.
    pub fn hit(&self, bucket: Bucket, policy: &Policy, cost: u32, now_ms: u64) -> Decision {
        // A poisoned lock only means another thread panicked mid-update of plain integers.
        let mut map = self.shard(&bucket).lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.per_shard && !map.contains_key(&bucket) {
            make_room(&mut map, now_ms, self.per_shard);
        }
        let counters = map.entry(bucket).or_default();
        let counts: Vec<(u64, u64)> = policy
            .windows()
            .iter()
            .map(|&(window, _)| counters[window.index()].roll(window_index(window, now_ms)))
            .collect();
        let decision = decide(policy, now_ms, &counts, u64::from(cost));
        if decision.allowed && cost > 0 {
            for &(window, _) in policy.windows() {
                let c = &mut counters[window.index()];
                c.curr = c.curr.saturating_add(cost);
            }
        }
        decision
    }

    /// Drops every caller whose counters no longer matter.
    pub fn sweep(&self, now_ms: u64) {
        for shard in &self.shards {
            shard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|_, c| !all_stale(c, now_ms));
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn all_stale(counters: &Counters, now_ms: u64) -> bool {
    Window::ALL
        .iter()
        .all(|&w| counters[w.index()].is_stale(window_index(w, now_ms)))
}

fn make_room(map: &mut HashMap<Bucket, Counters>, now_ms: u64, limit: usize) {
    map.retain(|_, c| !all_stale(c, now_ms));
    if map.len() >= limit
        && let Some(victim) = map.keys().next().copied()
    {
        map.remove(&victim);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_stays_bounded_under_a_flood_of_callers() {
        let store = MemoryStore::new(6_400);
        let policy = Policy::new(vec![(Window::Hour, Some(100))]);
        for i in 0..50_000u32 {
            let ip = std::net::IpAddr::from(i.to_be_bytes());
            store.hit(Bucket::Ip(ip), &policy, 1, 1_000_000);
        }
        assert!(store.len() <= 6_400, "{} callers tracked", store.len());
    }

    #[test]
    fn sweeping_forgets_callers_whose_windows_have_passed() {
        let store = MemoryStore::new(1000);
        let policy = Policy::new(vec![(Window::Minute, Some(5))]);
        store.hit(Bucket::Key(1), &policy, 1, 0);
        store.sweep(60_000);
        assert_eq!(store.len(), 1, "still the previous window");
        store.sweep(120_000);
        assert_eq!(store.len(), 0);
    }
}
