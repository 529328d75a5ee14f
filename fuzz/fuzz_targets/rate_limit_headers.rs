//! Header rendering never panics and stays plain ASCII for any counters.
#![no_main]

use keygate::limits::headers::RateLimitHeaders;
use keygate::limits::{Decision, Window, WindowCount};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut numbers = data.chunks(8).map(|c| {
        let mut bytes = [0u8; 8];
        bytes[..c.len()].copy_from_slice(c);
        u64::from_le_bytes(bytes)
    });
    let mut next = || numbers.next().unwrap_or(0);
    let now_ms = next() % 4_000_000_000_000;
    let counts = Window::ALL
        .iter()
        .map(|&window| WindowCount {
            window,
            limit: match next() % 3 {
                0 => None,
                _ => Some((next() % u64::from(u32::MAX)) as u32),
            },
            prev: next() % 1_000_000_000,
            curr: next() % 1_000_000_000,
            elapsed_ms: now_ms % window.millis(),
        })
        .collect();
    let decision = Decision { allowed: next() % 2 == 0, now_ms, counts };
    if let Some(headers) = RateLimitHeaders::of(&decision) {
        assert!(headers.policy.is_ascii() && headers.current.is_ascii());
    }
});
