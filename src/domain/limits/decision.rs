//! The sliding-window arithmetic (see the module comment of `limits`) and the decisions it
//! makes, shared by both stores.

use super::{Limit, Policy, Window};

/// `floor(prev × (W − elapsed) / W)`: the previous window's weight now. Computed in f64 in the
/// same order as the Redis script, so both stores decide identically.
pub fn weighted_previous(prev: u64, elapsed_ms: u64, window_ms: u64) -> u64 {
    let remaining = window_ms.saturating_sub(elapsed_ms) as f64;
    (prev as f64 * (remaining / window_ms as f64)).floor() as u64
}

/// True when `cost` more requests fit under `limit`.
pub fn admits(limit: Option<u32>, prev: u64, curr: u64, elapsed_ms: u64, window_ms: u64, cost: u64) -> bool {
    limit.is_none_or(|l| weighted_previous(prev, elapsed_ms, window_ms) + curr + cost <= u64::from(l))
}

/// One window's counters as a store saw them, after the request was counted (if it was).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    pub window: Window,
    pub limit: Option<Limit>,
    pub prev: u64,
    pub curr: u64,
    /// Milliseconds into the current window.
    pub elapsed_ms: u64,
    /// The current window's length (a month's varies).
    pub length_ms: u64,
}

impl WindowCount {
    /// The estimated use now: for a sliding window the weighted previous count and the
    /// current one, for a month the current count alone.
    pub fn used(&self) -> u64 {
        if self.window.slides() {
            weighted_previous(self.prev, self.elapsed_ms, self.length_ms) + self.curr
        } else {
            self.curr
        }
    }

    /// True when `cost` more requests fit.
    pub fn admits(&self, cost: u64) -> bool {
        self.limit.is_none_or(|l| self.used() + cost <= u64::from(l))
    }

    pub fn remaining(&self) -> Option<u64> {
        self.limit.map(|l| u64::from(l).saturating_sub(self.used()))
    }

    /// Milliseconds until the current window closes.
    pub fn reset_ms(&self) -> u64 {
        self.length_ms - self.elapsed_ms
    }

    /// Milliseconds until one more request would fit (0 when it fits now).
    pub fn retry_after_ms(&self) -> u64 {
        let Some(limit) = self.limit.map(u64::from) else {
            return 0;
        };
        if !self.window.slides() {
            // The next window starts empty.
            return if self.admits(1) { 0 } else { self.reset_ms() };
        }
        let w = self.length_ms;
        let fits = |prev, curr, elapsed| admits(Some(limit as u32), prev, curr, elapsed, w, 1);
        if fits(self.prev, self.curr, self.elapsed_ms) {
            return 0;
        }
        // Later in this window: the previous window's weight decays until it leaves room.
        if self.curr < limit && self.prev > 0 {
            let room = (limit - self.curr) as f64;
            let until = (w as f64 - room * w as f64 / self.prev as f64).max(0.0) as u64;
            let from = until.max(self.elapsed_ms);
            if let Some(at) = (from..from + 4).find(|&e| e < w && fits(self.prev, self.curr, e)) {
                return at - self.elapsed_ms;
            }
        }
        // In the next window, this window's count becomes the decaying previous one.
        let until = if self.curr < limit {
            0
        } else {
            (w as f64 - limit as f64 * w as f64 / self.curr as f64).max(0.0) as u64
        };
        let at = (until..until + 4)
            .find(|&e| fits(self.curr, 0, e))
            .unwrap_or(until);
        (w - self.elapsed_ms) + at
    }
}

/// A decision's window counts, at most one per window: kept inline, so a decision (made, and
/// copied into the request, on every request) costs no allocation.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    len: usize,
    items: [WindowCount; Window::ALL.len()],
}

impl Default for Counts {
    fn default() -> Self {
        let unused = WindowCount {
            window: Window::Second,
            limit: None,
            prev: 0,
            curr: 0,
            elapsed_ms: 0,
            length_ms: 1,
        };
        Counts {
            len: 0,
            items: [unused; Window::ALL.len()],
        }
    }
}

impl std::ops::Deref for Counts {
    type Target = [WindowCount];

    fn deref(&self) -> &[WindowCount] {
        &self.items[..self.len]
    }
}

impl std::ops::DerefMut for Counts {
    fn deref_mut(&mut self) -> &mut [WindowCount] {
        &mut self.items[..self.len]
    }
}

impl PartialEq for Counts {
    fn eq(&self, other: &Counts) -> bool {
        **self == **other
    }
}

impl Eq for Counts {}

impl FromIterator<WindowCount> for Counts {
    /// Takes the first `Window::ALL.len()` counts (a policy has no more: one per window).
    fn from_iter<I: IntoIterator<Item = WindowCount>>(iter: I) -> Counts {
        let mut counts = Counts::default();
        for (slot, count) in counts.items.iter_mut().zip(iter) {
            *slot = count;
            counts.len += 1;
        }
        counts
    }
}

/// What a store decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The store's clock (Redis server time with Redis), Unix milliseconds.
    pub now_ms: u64,
    pub counts: Counts,
    /// For an [`Ask`](super::Ask): the plan's windows and the credits (boxed: most requests
    /// have none, and a decision is copied into every request).
    pub quota: Option<Box<super::ask::Quota>>,
}

impl Decision {
    /// A request let through without counting (failure mode `open`).
    pub fn unlimited(now_ms: u64) -> Decision {
        Decision {
            allowed: true,
            now_ms,
            counts: Counts::default(),
            quota: None,
        }
    }

    /// The limited window with the least room left (the shortest on ties): the one headers
    /// report.
    pub fn binding(&self) -> Option<&WindowCount> {
        self.counts
            .iter()
            .filter(|c| c.limit.is_some())
            .min_by_key(|c| c.remaining())
    }

    /// For a refused request: the window that refused it and the wait until it would pass.
    pub fn refusal(&self) -> Option<(&WindowCount, u64)> {
        if self.allowed {
            return None;
        }
        self.counts
            .iter()
            .map(|c| (c, c.retry_after_ms()))
            .max_by_key(|(_, wait)| *wait)
    }
}

/// Decides from counts before the request; shared by both stores' arithmetic.
pub(crate) fn decide(policy: &Policy, now_ms: u64, counters: &[(u64, u64)], cost: u64) -> Decision {
    let mut decision = assemble(policy, now_ms, counters.iter().copied(), false);
    decision.allowed = decision.counts.iter().all(|c| c.admits(cost));
    if decision.allowed {
        decision.counts.iter_mut().for_each(|c| c.curr += cost);
    }
    decision
}

/// A decision from counts after the request was (or was not) counted.
pub(crate) fn assemble(
    policy: &Policy,
    now_ms: u64,
    after: impl IntoIterator<Item = (u64, u64)>,
    allowed: bool,
) -> Decision {
    let counts = policy
        .windows()
        .iter()
        .zip(after)
        .map(|(&(window, limit), (prev, curr))| {
            let span = window.span(now_ms);
            WindowCount {
                window,
                limit,
                prev,
                curr,
                elapsed_ms: now_ms - span.start_ms,
                length_ms: span.length_ms,
            }
        })
        .collect();
    Decision {
        allowed,
        now_ms,
        counts,
        quota: None,
    }
}
