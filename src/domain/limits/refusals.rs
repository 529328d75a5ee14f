//! Callers Redis refused lately, and until when: their next requests before then are refused
//! here, without a Redis call, so a flood on an exhausted key costs what the in-process store
//! costs (Envoy's rate-limit service keeps such a local cache).
//!
//! Exact: other instances can only add to a caller's counts, never take away, so a request
//! that would not fit until T does not fit before T either. "Until" is measured with this
//! process's monotonic clock from the moment of Redis's answer (a wait, not a wall-clock time,
//! so skew between machines does not matter). An entry holds only for the policy it was
//! decided under: a changed limit asks Redis again. Entries live per worker thread (a stripe),
//! each bounded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Bucket, Decision, Policy};
use crate::striped::Striped;

/// Entries kept per stripe; a full stripe starts afresh (the next refusals are learnt again).
const PER_STRIPE: usize = 4096;

struct Refused {
    until: Instant,
    at: Instant,
    policy: Policy,
    decision: Decision,
}

#[derive(Default)]
pub struct Refusals {
    stripes: Striped<Mutex<HashMap<Bucket, Refused>>>,
    /// Entries in all stripes: while none is held, a decision takes no lock at all (the usual
    /// case on the hot path, where callers have room).
    held: AtomicUsize,
}

impl Refusals {
    /// A refusal still in force for `bucket` under `policy`, as the decision Redis would make:
    /// the remembered one, its clocks moved on by the time since.
    pub fn check(&self, bucket: Bucket, policy: &Policy, now: Instant) -> Option<Decision> {
        if self.held.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut entries = self.stripes.mine().lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(&bucket)?;
        let since = now.saturating_duration_since(entry.at);
        if now >= entry.until || entry.policy != *policy {
            entries.remove(&bucket);
            self.held.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        aged(&entry.decision, since)
    }

    /// Remembers Redis's answer: a refusal until the caller's next request could fit; an
    /// admission forgets any refusal of the caller.
    pub fn learn(&self, bucket: Bucket, policy: &Policy, decision: &Decision, now: Instant) {
        let refusal = decision.refusal().filter(|(_, wait_ms)| *wait_ms > 0);
        if refusal.is_none() && self.held.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut entries = self.stripes.mine().lock().unwrap_or_else(PoisonError::into_inner);
        let before = entries.len();
        match refusal {
            Some((_, wait_ms)) => {
                if entries.len() >= PER_STRIPE {
                    entries.clear();
                }
                entries.insert(
                    bucket,
                    Refused {
                        until: now + Duration::from_millis(wait_ms),
                        at: now,
                        policy: policy.clone(),
                        decision: decision.clone(),
                    },
                );
            }
            None => {
                entries.remove(&bucket);
            }
        }
        // Kept in step under the stripe's lock, so it never undercounts: a stale count only
        // costs a lock.
        let after = entries.len();
        if after > before {
            self.held.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.held.fetch_sub(before - after, Ordering::Relaxed);
        }
    }
}

/// `decision` as it stands `since` later: the same counts, their windows further along; `None`
/// when a window would have closed meanwhile (then Redis decides again).
fn aged(decision: &Decision, since: Duration) -> Option<Decision> {
    let since_ms = since.as_millis() as u64;
    let mut aged = decision.clone();
    aged.now_ms += since_ms;
    for count in aged.counts.iter_mut() {
        count.elapsed_ms += since_ms;
        if count.elapsed_ms >= count.length_ms {
            return None;
        }
    }
    Some(aged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::KeyId;
    use crate::limits::{Limit, Window, decide};

    fn policy(limit: u32) -> Policy {
        Policy::new(vec![(Window::Minute, Limit::new(limit))])
    }

    #[test]
    fn a_refusal_holds_until_a_request_could_fit_and_only_for_its_policy() {
        let refusals = Refusals::default();
        let bucket = Bucket::Key(KeyId(1));
        let start = Instant::now();
        // 3 of 3 used, 10 s into the minute: the next fits in 50 s.
        let full = decide(&policy(3), 60_000 * 1000 + 10_000, &[(0, 3)], 1);
        assert!(!full.allowed);
        refusals.learn(bucket, &policy(3), &full, start);
        let held = refusals
            .check(bucket, &policy(3), start + Duration::from_secs(1))
            .expect("held");
        assert!(!held.allowed);
        assert_eq!(held.counts[0].elapsed_ms, 11_000, "its window moved on");
        assert!(
            refusals.check(bucket, &policy(4), start).is_none(),
            "a changed limit asks Redis"
        );
        assert!(
            refusals
                .check(bucket, &policy(3), start + Duration::from_secs(51))
                .is_none(),
            "over at the wait's end"
        );
        // An admission forgets the refusal.
        refusals.learn(bucket, &policy(3), &full, start);
        let fits = decide(&policy(3), 60_000 * 1000 + 10_000, &[(0, 1)], 1);
        refusals.learn(bucket, &policy(3), &fits, start);
        assert!(refusals.check(bucket, &policy(3), start).is_none());
        assert_eq!(
            refusals.held.load(Ordering::Relaxed),
            0,
            "nothing held: no lock taken"
        );
    }
}
