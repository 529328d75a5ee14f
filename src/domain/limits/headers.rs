//! RateLimit headers (IETF httpapi draft) and GitHub's legacy `X-RateLimit-*`, rendered as
//! strings from a [`Decision`]; the gate puts them on the response.

use std::fmt::Write;
use std::sync::Arc;

use super::{Decision, Limit, Policy, Window};

/// Header values for one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitHeaders {
    /// `RateLimit-Policy`: `"minute";q=60;w=60, "hour";q=1000;w=3600`
    pub policy: Arc<str>,
    /// `RateLimit`: `"minute";r=12;t=37`, for the window with the least room.
    pub current: String,
    pub limit: u32,
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
        let refusal = decision.refusal();
        let (window, seconds) = match refusal {
            Some((window, wait)) => (window, ceil_secs(wait).max(1)),
            None => {
                let window = decision.binding()?;
                (window, ceil_secs(window.reset_ms()).max(1))
            }
        };
        let limit = window.limit?.get();
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
                prop_assert!(h.remaining <= u64::from(h.limit));
                prop_assert!(h.reset_at >= now / 1000);
                prop_assert_eq!(h.retry_after.is_some(), !d.allowed);
                prop_assert!(h.retry_after.is_none_or(|s| s >= 1));
            } else {
                prop_assert!(minute.is_none() && hour.is_none());
            }
        }
    }

    #[test]
    fn unlimited_callers_get_no_headers() {
        let open = Policy::new(vec![(Window::Minute, None)]);
        assert!(RateLimitHeaders::of(&decide(&open, 0, &[(0, 5)], 1), &open).is_none());
        assert!(RateLimitHeaders::of(&Decision::unlimited(0), &policy()).is_none());
    }
}
