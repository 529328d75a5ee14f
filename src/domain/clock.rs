//! Time as an input (as governor injects its clock). A request reads the clock once — at the
//! gate, or where its handler starts for a route outside the gate — and passes that [`Now`]
//! down: the key's status, the token's expiry, the in-process counters' windows, the usage
//! hour and the timestamps it writes all see the same instant. With Redis, rate-limit windows
//! follow Redis's own clock instead (`TIME` in the script): the one clock every instance
//! shares, so instances with skewed clocks still count in the same windows.

use chrono::{DateTime, NaiveDateTime};

/// One instant, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Now {
    unix_ms: u64,
}

impl Now {
    /// The system clock: the one place keygate reads the time of day.
    pub fn read() -> Now {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Now { unix_ms }
    }

    /// A given instant (tests, and times read from elsewhere).
    pub const fn at_unix_ms(unix_ms: u64) -> Now {
        Now { unix_ms }
    }

    pub const fn unix_ms(self) -> u64 {
        self.unix_ms
    }

    pub const fn unix_secs(self) -> i64 {
        (self.unix_ms / 1000) as i64
    }

    /// To the second, as the databases store times (UTC).
    pub fn naive(self) -> NaiveDateTime {
        DateTime::from_timestamp(self.unix_secs(), 0)
            .unwrap_or_default()
            .naive_utc()
    }
}

/// A stored time as the API, exports, audit entries and webhook payloads write it:
/// RFC 3339 in UTC, to the second (`2026-11-30T10:00:00Z`).
pub fn rfc3339(at: NaiveDateTime) -> String {
    at.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_instant_in_every_unit() {
        let now = Now::at_unix_ms(1_700_000_000_999);
        assert_eq!(now.unix_secs(), 1_700_000_000);
        assert_eq!(now.naive().and_utc().timestamp(), 1_700_000_000);
        assert_eq!(now.naive().and_utc().timestamp_subsec_millis(), 0);
        assert!(Now::read().unix_secs() > 1_700_000_000);
    }
}
