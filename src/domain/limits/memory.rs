//! The in-process counter store: one per process, shared by every worker (a per-worker store
//! would multiply each limit by the number of workers).
//!
//! Memory is bounded two ways: entries whose windows have all passed are swept, and each shard
//! holds at most `capacity / SHARDS` callers, rounded down to what a hash table of that size
//! holds (a table doubles when it is 7/8 full: a bound just past that would leave half of the
//! doubled table empty, ~140 bytes a caller instead of ~75). When a flood of distinct callers (say, spoofed
//! addresses through a misconfigured proxy, or IPv6 /64s) fills a shard, its stale entries go
//! first, then a 64th of the shard, anonymous callers (addresses) first: their counts restart,
//! which costs accuracy for a few of them instead of unbounded memory for the process. Key and
//! user counters go only when a shard holds nothing else, so a flood of addresses cannot reset a
//! key's count.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::credits::{CreditOp, CreditState, Credits};
use super::{Ask, Before, Bucket, Charged, Decision, Part, Policy, Seeds, Window, decide};

const SHARDS: usize = 64;

/// One caller's counts in every window: the current clock-aligned window's and the previous
/// one's. Each window's number is derived from `at`, the second of the last update (all windows
/// move together), which keeps a caller at 44 bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    at: u32,
    curr: [u32; WINDOWS],
    prev: [u32; WINDOWS],
}

const WINDOWS: usize = Window::ALL.len();

impl Counters {
    /// Moves every window to the one `now_s` (Unix seconds) falls in.
    fn roll(&mut self, now_s: u32) {
        if now_s == self.at {
            return;
        }
        for (i, window) in Window::ALL.iter().enumerate() {
            let (was, idx) = (
                window.number(u64::from(self.at) * 1000),
                window.number(u64::from(now_s) * 1000),
            );
            if was == idx {
                // Windows nest (a minute's boundaries are seconds', a month's are days'): when
                // one has not moved, no longer one has.
                break;
            }
            self.prev[i] = if was + 1 == idx { self.curr[i] } else { 0 };
            self.curr[i] = 0;
        }
        self.at = now_s;
    }

    /// True when no window's counts matter at `now_s` any more.
    fn is_stale(&self, now_s: u32) -> bool {
        let mut rolled = *self;
        rolled.roll(now_s);
        rolled.curr.iter().chain(&rolled.prev).all(|&c| c == 0)
    }
}

fn unix_seconds(now_ms: u64) -> u32 {
    (now_ms / 1000) as u32
}

type Shard = HashMap<Bucket, Counters>;

pub struct MemoryStore {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    hasher: RandomState,
    /// Credit balances, never evicted (they are money; there is one per key or user with
    /// credits). Every ask holds this lock while it decides, so an ask's two holders (key and
    /// plan, maybe on two shards) change together; a plain request never takes it.
    credits: Mutex<HashMap<Bucket, CreditState>>,
}

impl MemoryStore {
    pub const DEFAULT_CAPACITY: usize = 1_000_000;

    /// A store tracking at most about `capacity` callers.
    pub fn new(capacity: usize) -> MemoryStore {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: table_capacity(capacity.div_ceil(SHARDS)),
            hasher: RandomState::new(),
            credits: Mutex::new(HashMap::new()),
        }
    }

    fn shard(&self, bucket: &Bucket) -> &Mutex<Shard> {
        &self.shards[self.shard_of(bucket)]
    }

    fn shard_of(&self, bucket: &Bucket) -> usize {
        self.hasher.hash_one(bucket) as usize % SHARDS
    }

    /// Decides an ask (see `limits::ask`): its key's and plan's windows and credits together,
    /// atomically.
    pub fn charge(&self, ask: &Ask, seeds: &Seeds, cost: u32, now_ms: u64) -> Charged {
        let mut credits = self.credits.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(mut before) = balances(&mut credits, ask, seeds, now_ms) else {
            return Charged::Unseeded;
        };
        let mut shards = Locked::new(self, ask.meters().map(|(_, m)| m.bucket));
        let now_ms = ask
            .meters()
            .map(|(_, m)| shards.read(m.bucket).at)
            .fold(now_ms, |now, at| now.max(u64::from(at) * 1000));
        let mut rolled = Vec::with_capacity(2);
        for (part, meter) in ask.meters() {
            let mut counters = shards.read(meter.bucket);
            counters.roll(unix_seconds(now_ms));
            let counts = meter
                .policy
                .windows()
                .iter()
                .map(|&(w, _)| {
                    (
                        u64::from(counters.prev[w.index()]),
                        u64::from(counters.curr[w.index()]),
                    )
                })
                .collect();
            match part {
                Part::Key => before.key = counts,
                Part::Plan => before.plan = counts,
            }
            rolled.push((meter, counters));
        }
        let cost = u64::from(cost);
        let allowed = before.admits(ask, now_ms, cost);
        if allowed && cost > 0 {
            before.count(cost);
            for (meter, mut counters) in rolled {
                for &(window, _) in meter.policy.windows() {
                    let c = &mut counters.curr[window.index()];
                    *c = c.saturating_add(cost as u32);
                }
                shards.write(meter.bucket, counters, now_ms);
            }
            for (part, meter) in ask.meters() {
                if let (Some(_), Some(state)) = (meter.credits, credits.get_mut(&meter.bucket)) {
                    state.remaining = slot(&mut before, part).unwrap_or(state.remaining);
                    state.seq += 1;
                }
            }
        }
        Charged::Decided(before.decision(ask, now_ms, cost, allowed))
    }

    /// Forgets every balance: after an outage of Redis in failure mode `local`, the next one
    /// starts from the checkpoint again, not from what this instance spent the last time.
    pub fn forget_credits(&self) {
        self.credits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// A holder's balance: read, changed by an admin (after any refill due at `now_ms`; from
    /// the seed when the store holds none), or forgotten (answering what it was).
    pub fn credits(&self, bucket: Bucket, op: CreditOp, terms: Credits, now_ms: u64) -> Option<CreditState> {
        let mut credits = self.credits.lock().unwrap_or_else(PoisonError::into_inner);
        match op {
            CreditOp::Read => credits.get(&bucket).copied(),
            CreditOp::Forget => credits.remove(&bucket),
            CreditOp::Change(change, seed) => {
                let seed = CreditState {
                    terms: terms.tag(),
                    ..seed
                };
                let state = credits.get(&bucket).copied().unwrap_or(seed);
                let state = change.apply(terms, state, terms.period(now_ms));
                credits.insert(bucket, state);
                Some(state)
            }
        }
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
        // Requests reach the store slightly out of order (their time is read at the gate,
        // before a cache miss or a wait for this lock): a late one is decided at the latest
        // time seen, never rolling the windows back (which would wipe their counts).
        let now_ms = now_ms.max(u64::from(counters.at) * 1000);
        counters.roll(unix_seconds(now_ms));
        let mut counts = [(0, 0); WINDOWS];
        for (slot, &(window, _)) in counts.iter_mut().zip(policy.windows()) {
            let i = window.index();
            *slot = (u64::from(counters.prev[i]), u64::from(counters.curr[i]));
        }
        let decision = decide(policy, now_ms, &counts[..policy.windows().len()], u64::from(cost));
        if decision.allowed && cost > 0 {
            for &(window, _) in policy.windows() {
                let c = &mut counters.curr[window.index()];
                *c = c.saturating_add(cost);
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
                .retain(|_, c| !c.is_stale(unix_seconds(now_ms)));
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

/// An ask's balances, seeded and refilled as due (kept so): `None` when one is missing and no
/// seed was given.
fn balances(
    credits: &mut HashMap<Bucket, CreditState>,
    ask: &Ask,
    seeds: &Seeds,
    now_ms: u64,
) -> Option<Before> {
    let mut before = Before::default();
    for (part, meter) in ask.meters() {
        let Some(terms) = meter.credits else { continue };
        // A seed is counted under the request's terms, as in the Redis script.
        let seed = seeds.of(part).map(|seed| CreditState {
            terms: terms.tag(),
            ..seed
        });
        let state = credits.get(&meter.bucket).copied().or(seed)?;
        let state = terms.refilled(state, terms.period(now_ms));
        credits.insert(meter.bucket, state);
        *slot(&mut before, part) = Some(state.remaining);
    }
    Some(before)
}

fn slot(before: &mut Before, part: Part) -> &mut Option<u64> {
    match part {
        Part::Key => &mut before.credits,
        Part::Plan => &mut before.plan_credits,
    }
}

/// The shards of an ask's holders, locked (each once: two holders may share one).
struct Locked<'s> {
    store: &'s MemoryStore,
    guards: Vec<(usize, MutexGuard<'s, Shard>)>,
}

impl<'s> Locked<'s> {
    fn new(store: &'s MemoryStore, buckets: impl Iterator<Item = Bucket>) -> Locked<'s> {
        let mut guards: Vec<(usize, MutexGuard<'s, Shard>)> = Vec::with_capacity(2);
        for bucket in buckets {
            let i = store.shard_of(&bucket);
            if guards.iter().all(|(j, _)| *j != i) {
                let guard = store.shards[i].lock().unwrap_or_else(PoisonError::into_inner);
                guards.push((i, guard));
            }
        }
        Locked { store, guards }
    }

    fn map(&mut self, bucket: Bucket) -> &mut Shard {
        let i = self.store.shard_of(&bucket);
        let at = self.guards.iter().position(|(j, _)| *j == i).unwrap_or(0);
        &mut self.guards[at].1
    }

    fn read(&mut self, bucket: Bucket) -> Counters {
        self.map(bucket).get(&bucket).copied().unwrap_or_default()
    }

    fn write(&mut self, bucket: Bucket, counters: Counters, now_ms: u64) {
        let per_shard = self.store.per_shard;
        let map = self.map(bucket);
        if map.len() >= per_shard && !map.contains_key(&bucket) {
            make_room(map, now_ms, per_shard);
        }
        map.insert(bucket, counters);
    }
}

/// The most entries a hash table holds without growing, at most `at_most` (at least 1).
fn table_capacity(at_most: usize) -> usize {
    let holds = |n: usize| HashMap::<Bucket, Counters>::with_capacity(n).capacity();
    let mut capacity = holds(1);
    loop {
        let next = holds(capacity + 1);
        if next > at_most {
            return capacity;
        }
        capacity = next;
    }
}

/// Frees room in a full shard: stale callers first; if none, a 64th of the shard, anonymous
/// callers before keys and users, so that a flood of new callers pays for the scan once per
/// that many callers rather than on every request. The table is then rebuilt at the same size:
/// removals leave tombstones that would make the next insert double it.
fn make_room(map: &mut HashMap<Bucket, Counters>, now_ms: u64, limit: usize) {
    evict(map, now_ms, limit);
    let kept = std::mem::take(map);
    *map = HashMap::with_capacity(limit);
    map.extend(kept);
}

fn evict(map: &mut HashMap<Bucket, Counters>, now_ms: u64, limit: usize) {
    map.retain(|_, c| !c.is_stale(unix_seconds(now_ms)));
    if map.len() >= limit {
        let evict = (limit / 64).max(1);
        let mut victims: Vec<Bucket> = map
            .keys()
            .filter(|b| b.is_anonymous())
            .take(evict)
            .copied()
            .collect();
        if victims.len() < evict {
            let more = evict - victims.len();
            victims.extend(map.keys().filter(|b| !b.is_anonymous()).take(more).copied());
        }
        for victim in victims {
            map.remove(&victim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::KeyId;
    use crate::limits::Limit;

    #[test]
    fn memory_stays_bounded_under_a_flood_of_callers() {
        let store = MemoryStore::new(6_400);
        let policy = Policy::new(vec![(Window::Hour, Limit::new(100))]);
        for i in 0..50_000u32 {
            let ip = std::net::IpAddr::from(i.to_be_bytes());
            store.hit(Bucket::Ip(ip), &policy, 1, 1_000_000);
        }
        assert!(store.len() <= 6_400, "{} callers tracked", store.len());
    }

    #[test]
    fn a_flood_of_addresses_does_not_reset_key_counters() {
        let store = MemoryStore::new(6_400);
        let policy = Policy::new(vec![(Window::Hour, Limit::new(100))]);
        for id in 0..1_000 {
            store.hit(Bucket::Key(KeyId(id)), &policy, 60, 1_000_000);
        }
        for i in 0..50_000u64 {
            let v6 = std::net::Ipv6Addr::from(u128::from(i) << 64 | 1);
            store.hit(Bucket::ip(v6.into()), &policy, 1, 1_000_000);
        }
        for id in 0..1_000 {
            let decision = store.hit(Bucket::Key(KeyId(id)), &policy, 0, 1_000_000);
            assert_eq!(
                decision.counts[0].remaining(),
                Some(40),
                "key {id} kept its count"
            );
        }
    }

    /// A request stamped just before a minute ends that reaches the store after one stamped
    /// just after it is decided in the later minute: the counts of the minute before are kept.
    #[test]
    fn a_late_request_never_rolls_the_windows_back() {
        let store = MemoryStore::new(1000);
        let policy = Policy::new(vec![(Window::Minute, Limit::new(10))]);
        let k = Bucket::Key(KeyId(7));
        let minute = 60_000 * 1_000_000;
        for _ in 0..10 {
            assert!(store.hit(k, &policy, 1, minute + 59_000).allowed);
        }
        store.hit(k, &policy, 0, minute + 60_001);
        let late = store.hit(k, &policy, 1, minute + 59_999);
        assert!(!late.allowed, "the previous minute's 10 still weigh in");
        let next = store.hit(k, &policy, 0, minute + 60_002);
        assert_eq!((next.counts[0].prev, next.counts[0].curr), (10, 0));
    }

    #[test]
    fn a_full_shard_stays_at_its_table_size() {
        let capacity = table_capacity(200);
        assert_eq!(
            HashMap::<Bucket, Counters>::with_capacity(capacity).capacity(),
            capacity
        );
        assert!(HashMap::<Bucket, Counters>::with_capacity(capacity + 1).capacity() > 200);
        let store = MemoryStore::new(capacity * SHARDS);
        let policy = Policy::new(vec![(Window::Hour, Limit::new(100))]);
        for i in 0..(4 * capacity * SHARDS) as u32 {
            store.hit(
                Bucket::Ip(std::net::IpAddr::from(i.to_be_bytes())),
                &policy,
                1,
                1_000_000,
            );
        }
        for shard in &store.shards {
            let map = shard.lock().expect("shard");
            assert!(map.len() <= capacity);
            assert_eq!(map.capacity(), capacity, "evicting did not grow the table");
        }
    }

    #[test]
    fn sweeping_forgets_callers_whose_windows_have_passed() {
        let store = MemoryStore::new(1000);
        let policy = Policy::new(vec![(Window::Minute, Limit::new(5))]);
        store.hit(Bucket::Key(KeyId(1)), &policy, 1, 0);
        store.sweep(60_000);
        assert_eq!(store.len(), 1, "still the previous window");
        store.sweep(120_000);
        assert_eq!(store.len(), 0);
    }
}
