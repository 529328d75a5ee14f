//! RateLimit headers (IETF httpapi draft) and GitHub's legacy `X-RateLimit-*`, rendered as
//! strings from a [`Decision`]; the gate puts them on the response.

use std::fmt::Write;
use std::sync::Arc;

use super::ask::{Part, Quota, Refusal};
use super::credits::Balance;
use super::{Decision, Limit, Policy, Window, WindowCount};

/// Header values for one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitHeaders {
    /// `RateLimit-Policy`: `"minute";q=60;w=60, "hour";q=1000;w=3600`
    pub policy: Arc<str>,
    /// `RateLimit`: `"minute";r=12;t=37`, for the window with the least room.
    pub current: String,
    pub limit: u64,
    pub remaining: u64,
    /// `X-RateLimit-Reset`: Unix seconds.
    pub reset_at: u64,
    /// `Retry-After` in whole seconds, for a refused request.
    pub retry_after: Option<u64>,
}

fn ceil_secs(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

impl RateLimitHeaders {
    /// `None` when nothing limits the caller (no limited window, or failure mode `open`).
    /// `policy` is the one `decision` was made under (its `RateLimit-Policy` value is rendered
    /// once, with the policy).
    pub fn of(decision: &Decision, policy: &Policy) -> Option<RateLimitHeaders> {
        if let Some(quota) = &decision.quota {
            return of_quota(decision, policy, quota);
        }
        let refusal = decision.refusal();
        let (window, seconds) = match refusal {
            Some((window, wait)) => (window, ceil_secs(wait).max(1)),
            None => {
                let window = decision.binding()?;
                (window, ceil_secs(window.reset_ms()).max(1))
            }
        };
        let limit = u64::from(window.limit?.get());
        let remaining = window.remaining().unwrap_or(0);
        Some(RateLimitHeaders {
            current: format!("\"{}\";r={remaining};t={seconds}", window.window.name()),
            policy: policy.header().clone(),
            limit,
            remaining,
            reset_at: decision.now_ms / 1000 + seconds,
            retry_after: refusal.map(|_| seconds),
        })
    }
}

/// One policy of an ask's decision: a key or plan window, or a balance.
struct Item {
    name: &'static str,
    /// The plan's (carries the partition key, so clients tell it from the key's own).
    plan: bool,
    limit: u64,
    remaining: u64,
    /// Seconds until it resets (none for a balance that is never refilled).
    reset: Option<u64>,
    window: Option<u64>,
}

/// The plan's windows' names, by `Window::index`.
const PLAN_WINDOWS: [&str; 5] = [
    "plan-second",
    "plan-minute",
    "plan-hour",
    "plan-day",
    "plan-month",
];

impl Item {
    fn window(count: &WindowCount, part: Part) -> Option<Item> {
        let plan = part == Part::Plan;
        Some(Item {
            name: if plan {
                PLAN_WINDOWS[count.window.index()]
            } else {
                count.window.name()
            },
            plan,
            limit: u64::from(count.limit?.get()),
            remaining: count.remaining().unwrap_or(0),
            reset: Some(ceil_secs(count.reset_ms()).max(1)),
            window: Some(count.window.seconds()),
        })
    }

    fn credits(balance: &Balance, part: Part, now_ms: u64) -> Item {
        let plan = part == Part::Plan;
        Item {
            name: if plan { "plan-credits" } else { "credits" },
            plan,
            limit: balance.refill.map_or(balance.remaining, |r| u64::from(r.amount)),
            remaining: balance.remaining,
            reset: balance
                .next_refill_ms
                .map(|at| ceil_secs(at.saturating_sub(now_ms)).max(1)),
            window: balance.refill.map(|r| r.seconds()),
        }
    }

    fn refused(refusal: &Refusal) -> &'static str {
        match refusal {
            Refusal::Window {
                count,
                part: Part::Key,
                ..
            } => count.window.name(),
            Refusal::Window {
                count,
                part: Part::Plan,
                ..
            } => PLAN_WINDOWS[count.window.index()],
            Refusal::Credits { part: Part::Key, .. } => "credits",
            Refusal::Credits { part: Part::Plan, .. } => "plan-credits",
        }
    }
}

/// Headers for an ask's decision (draft -11's multiple policies): every policy in
/// `RateLimit-Policy` (the key's windows, the plan's with its partition key, the balances as
/// quota policies), and in `RateLimit` the one with the least room — or the one that refused.
fn of_quota(decision: &Decision, policy: &Policy, quota: &Quota) -> Option<RateLimitHeaders> {
    let items = items(decision, quota);
    let refusal = decision.refused_by();
    let tightest = match &refusal {
        Some(refused) => items.iter().find(|i| i.name == Item::refused(refused)),
        None => items.iter().min_by_key(|i| i.remaining),
    }?;
    // A refusal with no refill coming has no wait: no `t`, no `Retry-After` (a 403).
    let (seconds, retry_after) = match refusal {
        Some(refused) => {
            let wait = refused.wait_ms().map(|ms| ceil_secs(ms).max(1));
            (wait, wait)
        }
        None => (tightest.reset, None),
    };
    let pk: &str = &quota.partition;
    let mut current = String::with_capacity(64);
    current.push('"');
    current.push_str(tightest.name);
    current.push_str("\";r=");
    push_number(&mut current, tightest.remaining);
    if let Some(t) = seconds {
        current.push_str(";t=");
        push_number(&mut current, t);
    }
    if tightest.plan {
        current.push_str(pk);
    }
    Some(RateLimitHeaders {
        policy: policy_of_quota(policy, &items, pk).into(),
        current,
        limit: tightest.limit,
        remaining: tightest.remaining,
        reset_at: decision.now_ms / 1000 + seconds.unwrap_or(0),
        retry_after,
    })
}

/// Every policy of an ask's decision: the key's windows, the plan's, the balances.
fn items(decision: &Decision, quota: &Quota) -> Vec<Item> {
    let mut items: Vec<Item> = Vec::with_capacity(12);
    items.extend(decision.counts.iter().filter_map(|c| Item::window(c, Part::Key)));
    let plan = quota.plan.iter().flat_map(|p| p.iter());
    items.extend(plan.filter_map(|c| Item::window(c, Part::Plan)));
    for (balance, part) in [(&quota.credits, Part::Key), (&quota.plan_credits, Part::Plan)] {
        if let Some(balance) = balance {
            items.push(Item::credits(balance, part, decision.now_ms));
        }
    }
    items
}

/// `RateLimit-Policy` of an ask: the key's windows (rendered with its policy), then the plan's
/// with the partition key `pk`, then the balances. Written digit by digit: on every request
/// with credits or a plan, `write!`'s formatting machinery cost more than the rest.
fn policy_of_quota(policy: &Policy, items: &[Item], pk: &str) -> String {
    let mut header = String::with_capacity(policy.header().len() + 160);
    header.push_str(policy.header());
    for item in items.iter().filter(|i| i.plan || i.name == "credits") {
        if !header.is_empty() {
            header.push_str(", ");
        }
        header.push('"');
        header.push_str(item.name);
        header.push_str("\";q=");
        push_number(&mut header, item.limit);
        if let Some(w) = item.window {
            header.push_str(";w=");
            push_number(&mut header, w);
        }
        if item.plan {
            header.push_str(pk);
        }
    }
    header
}

/// Appends `n` in decimal.
fn push_number(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

/// The `RateLimit-Policy` value of a policy's windows: the limited ones, shortest first.
pub(crate) fn policy_header(windows: &[(Window, Option<Limit>)]) -> String {
    let mut policy = String::new();
    for (window, limit) in windows {
        if let Some(limit) = limit {
            let sep = if policy.is_empty() { "" } else { ", " };
            let _ = write!(
                policy,
                "{sep}\"{}\";q={limit};w={}",
                window.name(),
                window.seconds()
            );
        }
    }
    policy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{Policy, Window, decide};

    fn policy() -> Policy {
        Policy::new(vec![
            (Window::Minute, Limit::new(60)),
            (Window::Hour, Limit::new(1000)),
            (Window::Day, Limit::new(10000)),
        ])
    }

    #[test]
    fn an_allowed_request_reports_the_window_with_least_room() {
        // 23 s into a minute, 47 used this minute, 100 this hour, none today before.
        let now = 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000 + 3_600_000 * 5 + 23_000;
        let d = decide(&policy(), now, &[(0, 47), (0, 100), (0, 100)], 1);
        let h = RateLimitHeaders::of(&d, &policy()).expect("limited");
        assert_eq!(
            h.policy,
            "\"minute\";q=60;w=60, \"hour\";q=1000;w=3600, \"day\";q=10000;w=86400".into()
        );
        assert_eq!(h.current, "\"minute\";r=12;t=37");
        assert_eq!((h.limit, h.remaining, h.retry_after), (60, 12, None));
        assert_eq!(h.reset_at, now / 1000 + 37);
    }

    #[test]
    fn a_refused_request_reports_the_wait() {
        let now = 1_700_000_000_000 - 1_700_000_000_000 % 60_000 + 43_500;
        let d = decide(&policy(), now, &[(0, 60), (0, 60), (0, 60)], 1);
        let h = RateLimitHeaders::of(&d, &policy()).expect("limited");
        assert_eq!(h.current, "\"minute\";r=0;t=17");
        assert_eq!(h.retry_after, Some(17));
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn headers_are_plain_ascii_and_consistent_for_any_counts(
            minute in proptest::option::of(1..1000u32),
            hour in proptest::option::of(1..100_000u32),
            prev in 0..5000u64,
            curr in 0..5000u64,
            now in 0..4_000_000_000_000u64,
            cost in 0..2u64,
        ) {
            let policy = Policy::new(vec![(Window::Minute, minute.and_then(crate::limits::Limit::new)), (Window::Hour, hour.and_then(crate::limits::Limit::new))]);
            let d = decide(&policy, now, &[(prev, curr), (prev, curr)], cost);
            if let Some(h) = RateLimitHeaders::of(&d, &policy) {
                for value in [&*h.policy, h.current.as_str()] {
                    prop_assert!(value.bytes().all(|b| (0x20..0x7f).contains(&b)), "{}", value);
                }
                prop_assert!(h.remaining <= h.limit);
                prop_assert!(h.reset_at >= now / 1000);
                prop_assert_eq!(h.retry_after.is_some(), !d.allowed);
                prop_assert!(h.retry_after.is_none_or(|s| s >= 1));
            } else {
                prop_assert!(minute.is_none() && hour.is_none());
            }
        }
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 10, 99, 1_000_000, u64::MAX] {
            let mut out = String::new();
            push_number(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }

    #[test]
    fn unlimited_callers_get_no_headers() {
        let open = Policy::new(vec![(Window::Minute, None)]);
        assert!(RateLimitHeaders::of(&decide(&open, 0, &[(0, 5)], 1), &open).is_none());
        assert!(RateLimitHeaders::of(&Decision::unlimited(0), &policy()).is_none());
    }
}
