//! Rate limits: rates and windows, the sliding-window arithmetic, and the counter stores
//! behind one [`Limiter`]. Knows nothing of HTTP or the database.
//!
//! Algorithm: a sliding-window counter per window (Cloudflare's). Each window of W seconds keeps
//! the count of the current clock-aligned window `c` and of the previous one `p`; at `e`
//! milliseconds into the current window the estimated use is `floor(p × (W − e) / W) + c`. A
//! request passes when every window has room for it, and only then is it counted, so a rejected
//! request consumes nothing. The estimate assumes the previous window's requests were spread
//! evenly; its error is bounded by the previous window's count times the unevenness, and it
//! never lets more than `limit` requests through inside one clock-aligned window.

mod ask;
pub mod client_ip;
pub mod credits;
pub mod headers;
pub mod latency;
mod limiter;
pub mod memory;
pub mod redis;

mod decision;
mod limit;
mod policy;
mod rate;
mod refusals;

pub use ask::{Ask, Before, Charged, Meter, Part, Quota, Refusal, Seeds};
pub use decision::{Counts, Decision, WindowCount, admits, weighted_previous};
pub(crate) use decision::{assemble, decide};
pub use limit::{Limit, Limits};
pub use limiter::{CounterState, FailureMode, Limiter, LimiterError};
pub use policy::{Bucket, Policy};
pub use rate::{Rate, RateParseError, Window};

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    #[test]
    fn parses_every_unit_and_its_short_forms() {
        for (text, window) in [
            ("5/second", Window::Second),
            ("5/s", Window::Second),
            ("5/min", Window::Minute),
            ("5/minute", Window::Minute),
            ("5/h", Window::Hour),
            (" 5 / HOUR ", Window::Hour),
            ("5/day", Window::Day),
        ] {
            assert_eq!(
                Rate::parse(text),
                Ok(Rate {
                    limit: Limit::new(5).expect("5"),
                    window
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_zero_negative_huge_and_malformed_counts() {
        for text in [
            "0/minute",
            "-1/minute",
            "2147483648/minute",
            "x/minute",
            "/minute",
        ] {
            assert!(
                matches!(Rate::parse(text), Err(RateParseError::BadCount(_))),
                "{text}"
            );
        }
        for text in ["60", "60/fortnight", "60-minute", ""] {
            assert!(
                matches!(Rate::parse(text), Err(RateParseError::Malformed(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn lists_are_sorted_by_window_and_reject_duplicates() {
        let rates = Rate::parse_list("10000/day, 60/minute,1000/hour").expect("valid list");
        let shown: Vec<String> = rates.iter().map(Rate::to_string).collect();
        assert_eq!(shown, ["60/minute", "1000/hour", "10000/day"]);
        assert_eq!(
            Rate::parse_list("1/minute,2/min"),
            Err(RateParseError::Duplicate("1/minute,2/min".into(), "minute"))
        );
        assert_eq!(Rate::parse_list("  "), Err(RateParseError::Empty));
        assert!(Rate::parse_list("1/minute,").is_err());
    }

    fn count(limit: u32, prev: u64, curr: u64, elapsed_ms: u64) -> WindowCount {
        WindowCount {
            window: Window::Minute,
            limit: Limit::new(limit),
            prev,
            curr,
            elapsed_ms,
            length_ms: 60_000,
        }
    }

    #[test]
    fn the_previous_window_weighs_in_proportion_to_its_overlap() {
        assert_eq!(weighted_previous(100, 0, 60_000), 100);
        assert_eq!(weighted_previous(100, 15_000, 60_000), 75);
        assert_eq!(weighted_previous(100, 59_999, 60_000), 0);
        assert_eq!(weighted_previous(3, 30_000, 60_000), 1, "floored");
        assert_eq!(count(10, 100, 2, 30_000).used(), 52);
    }

    #[test]
    fn retry_after_is_the_first_moment_a_request_fits() {
        // Brute force: step through time a millisecond at a time and compare.
        for (limit, prev, curr, elapsed) in [
            (10, 0, 10, 12_000),
            (10, 20, 0, 1_000),
            (10, 20, 5, 30_000),
            (5, 7, 5, 59_000),
            (1, 1, 0, 0),
            (3, 9, 3, 100),
        ] {
            let c = count(limit, prev, curr, elapsed);
            let wait = c.retry_after_ms();
            let fits_at = |t: u64| {
                let at = elapsed + t;
                if at < 60_000 {
                    admits(Some(limit), prev, curr, at, 60_000, 1)
                } else {
                    admits(Some(limit), curr, 0, at - 60_000, 60_000, 1)
                }
            };
            assert!(fits_at(wait), "{c:?}: fits after {wait} ms");
            if wait > 0 {
                assert!(!fits_at(wait - 1), "{c:?}: {wait} ms is the first moment");
            }
        }
    }

    #[test]
    fn a_decision_counts_only_when_every_window_has_room() {
        let policy = Policy::new(vec![
            (Window::Minute, Limit::new(2)),
            (Window::Hour, Limit::new(10)),
            (Window::Day, None),
        ]);
        let allowed = decide(&policy, 61_000, &[(0, 1), (0, 5), (0, 99)], 1);
        assert!(allowed.allowed);
        assert_eq!(
            allowed.counts.iter().map(|c| c.curr).collect::<Vec<_>>(),
            [2, 6, 100]
        );
        assert_eq!(allowed.binding().map(|c| c.window), Some(Window::Minute));
        let refused = decide(&policy, 61_000, &[(0, 2), (0, 5), (0, 99)], 1);
        assert!(!refused.allowed);
        assert_eq!(
            refused.counts.iter().map(|c| c.curr).collect::<Vec<_>>(),
            [2, 5, 99],
            "nothing consumed"
        );
        let (window, wait) = refused.refusal().expect("a refusal");
        assert_eq!((window.window, wait), (Window::Minute, 59_000 + 1));
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn rate_parsing_never_panics(text in any::<String>()) {
            let _ = Rate::parse(&text);
            let _ = Rate::parse_list(&text);
        }

        #[test]
        fn rates_round_trip_through_their_text(limit in 1..=i32::MAX as u32, window in 0..5usize) {
            let rate = Rate { limit: Limit::new(limit).expect("positive"), window: Window::ALL[window] };
            prop_assert_eq!(Rate::parse(&rate.to_string()), Ok(rate));
        }

        #[test]
        fn retry_after_is_always_the_first_moment_a_request_fits(
            limit in 1..40u32,
            prev in 0..120u64,
            curr_over in 0..45u32,
            elapsed in 0..60_000u64,
        ) {
            let curr = u64::from(curr_over.min(limit));
            let c = count(limit, prev, curr, elapsed);
            let wait = c.retry_after_ms();
            let fits_at = |t: u64| {
                let at = elapsed + t;
                if at < 60_000 { admits(Some(limit), prev, curr, at, 60_000, 1) } else { admits(Some(limit), curr, 0, at - 60_000, 60_000, 1) }
            };
            prop_assert!(fits_at(wait));
            // Nothing earlier fits: checked at a coarse grid and just before.
            prop_assert!(wait == 0 || !fits_at(wait - 1));
            for t in (0..wait).step_by(997) {
                prop_assert!(!fits_at(t), "fits already at {} < {}", t, wait);
            }
        }
    }

    #[test]
    fn ipv6_callers_share_a_bucket_per_64_block() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(Bucket::ip(a), Bucket::ip(b));
        assert_ne!(Bucket::ip(a), Bucket::ip(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        assert_eq!(Bucket::ip(mapped), Bucket::Ip("10.0.0.1".parse().expect("ip")));
    }

    /// Months tile the timeline: from 1970 to 2200 each starts where the one before ends, with
    /// the next number, 28 to 31 days long (29 in February of a leap year).
    #[test]
    fn months_follow_the_calendar() {
        let (mut number, mut span) = rate::calendar::month(0);
        assert_eq!((number, span.start_ms, span.length_ms), (0, 0, 31 * 86_400_000));
        for _ in 0..(230 * 12) {
            let at = span.start_ms + span.length_ms;
            let (next, next_span) = rate::calendar::month(at + 45_296_789);
            assert_eq!(
                (next, next_span.start_ms),
                (number + 1, at),
                "after month {number}"
            );
            assert!((28..=31).contains(&(next_span.length_ms / 86_400_000)));
            assert_eq!(Window::Month.number(at), next);
            (number, span) = (next, next_span);
        }
        let feb_2028 = rate::calendar::month(1_832_976_000_000 + 86_400_000);
        assert_eq!(feb_2028.1.length_ms, 29 * 86_400_000, "2028-02 has 29 days");
    }

    #[test]
    fn month_rates_parse_and_months_do_not_slide() {
        assert_eq!(Rate::parse("10000/month").map(|r| r.window), Ok(Window::Month));
        assert_eq!(Rate::parse("5/mon").map(|r| r.window), Ok(Window::Month));
        let rates = Rate::parse_list("10000/month,60/minute").expect("rates");
        assert_eq!(
            rates.iter().map(Rate::to_string).collect::<Vec<_>>(),
            ["60/minute", "10000/month"]
        );
        // 10 of 10 used last month and none this month: the month is whole.
        let month = WindowCount {
            window: Window::Month,
            limit: Limit::new(10),
            prev: 10,
            curr: 0,
            elapsed_ms: 1_000,
            length_ms: 30 * 86_400_000,
        };
        assert_eq!(month.remaining(), Some(10));
        let full = WindowCount { curr: 10, ..month };
        assert_eq!(
            full.retry_after_ms(),
            30 * 86_400_000 - 1_000,
            "until the month ends"
        );
    }

    #[test]
    fn reset_is_counted_to_the_next_aligned_window_boundary() {
        let to_reset = |window: Window, unix_now: u64| {
            let span = window.span(unix_now * 1000);
            (span.start_ms + span.length_ms) / 1000 - unix_now
        };
        assert_eq!(to_reset(Window::Minute, 120), 60);
        assert_eq!(to_reset(Window::Minute, 179), 1);
        assert_eq!(to_reset(Window::Hour, 3_600 * 5 + 10), 3_590);
    }
}
