//! How many requests a window allows: [`Limit`] (never zero) and a key's or a ceiling's
//! per-minute/hour/day [`Limits`].

use std::fmt;
use std::num::NonZeroU32;

use super::{Policy, Rate, Window};
use crate::db::models::{ApiKey, User};

/// A request count a window allows: 1 to 2,147,483,647 (what the databases' `INTEGER` columns
/// hold). Zero is not a limit (it would refuse everything); "no limit" is a `None` beside it.
/// Parsed once at the edge, so nothing further in checks or converts it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Limit(NonZeroU32);

impl Limit {
    pub const MAX: u32 = i32::MAX as u32;

    pub const fn new(n: u32) -> Option<Limit> {
        match NonZeroU32::new(n) {
            Some(n) if n.get() <= Limit::MAX => Some(Limit(n)),
            _ => None,
        }
    }

    /// One limit as a caller sent it (a JSON number, a form field, a CLI flag).
    pub fn parse(value: i64) -> Result<Limit, String> {
        u32::try_from(value).ok().and_then(Limit::new).ok_or_else(|| {
            "must be a positive whole number (up to 2147483647), or null for no limit".to_owned()
        })
    }

    /// A stored column: `NULL`, and (from rows written before the checks existed) values
    /// below 1, mean no limit.
    pub fn of_column(value: Option<i32>) -> Option<Limit> {
        value.and_then(|n| u32::try_from(n).ok()).and_then(Limit::new)
    }

    pub const fn get(self) -> u32 {
        self.0.get()
    }

    /// The value as stored: it fits, by construction.
    pub const fn column(self) -> i32 {
        self.0.get() as i32
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<Limit> for u64 {
    fn from(limit: Limit) -> u64 {
        u64::from(limit.get())
    }
}

impl serde::Serialize for Limit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.get())
    }
}

/// A key's per-window limits (or a user's ceiling); `None` means no limit in that window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub per_minute: Option<Limit>,
    pub per_hour: Option<Limit>,
    pub per_day: Option<Limit>,
    /// Per calendar month (UTC); keys only (a user's ceiling has none of its own).
    pub per_month: Option<Limit>,
}

impl Limits {
    /// Keys are limited per minute, hour, day and month; seconds are refused.
    pub fn from_rates(rates: &[Rate]) -> Result<Limits, String> {
        let mut limits = Limits::default();
        for rate in rates {
            let slot = match rate.window {
                Window::Minute => &mut limits.per_minute,
                Window::Hour => &mut limits.per_hour,
                Window::Day => &mut limits.per_day,
                Window::Month => &mut limits.per_month,
                Window::Second => {
                    return Err(format!(
                        "keys have per-minute, per-hour, per-day and per-month limits; {rate} is not supported"
                    ));
                }
            };
            *slot = Some(rate.limit);
        }
        Ok(limits)
    }

    /// A key's limits as stored.
    pub fn of(key: &ApiKey) -> Limits {
        Limits {
            per_minute: Limit::of_column(key.rate_limit_per_minute),
            per_hour: Limit::of_column(key.rate_limit_per_hour),
            per_day: Limit::of_column(key.rate_limit_per_day),
            per_month: Limit::of_column(key.rate_limit_per_month),
        }
    }

    /// A user's own ceiling as stored (see `users::ceiling` for the default).
    pub fn ceiling_of(user: &User) -> Limits {
        Limits {
            per_minute: Limit::of_column(user.max_rate_limit_per_minute),
            per_hour: Limit::of_column(user.max_rate_limit_per_hour),
            per_day: Limit::of_column(user.max_rate_limit_per_day),
            per_month: None,
        }
    }

    /// A user's plan: limits on the sum of all their keys' requests.
    pub fn plan_of(user: &User) -> Limits {
        Limits {
            per_minute: Limit::of_column(user.rate_limit_per_minute),
            per_hour: Limit::of_column(user.rate_limit_per_hour),
            per_day: Limit::of_column(user.rate_limit_per_day),
            per_month: Limit::of_column(user.rate_limit_per_month),
        }
    }

    /// The policy a key with these limits is counted under (its windows in use).
    pub fn policy(&self) -> Policy {
        Policy::new(self.in_use())
    }

    /// The windows in use: minute, hour and day always (a key counts an unlimited one
    /// too, for its stats), the month only when limited: a fifth window on every key
    /// would cost every request a larger Redis value and the calendar arithmetic.
    pub fn in_use(&self) -> Vec<(Window, Option<Limit>)> {
        let mut windows = self.windows().to_vec();
        windows.retain(|&(window, limit)| window != Window::Month || limit.is_some());
        windows
    }

    /// The windows in order, with their limits.
    pub fn windows(&self) -> [(Window, Option<Limit>); 4] {
        [
            (Window::Minute, self.per_minute),
            (Window::Hour, self.per_hour),
            (Window::Day, self.per_day),
            (Window::Month, self.per_month),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_positive_32_bit_integers() {
        assert_eq!(Limit::parse(1).map(Limit::get), Ok(1));
        assert_eq!(Limit::parse(2_147_483_647).map(Limit::column), Ok(i32::MAX));
        for bad in [0, -1, 2_147_483_648, i64::MIN] {
            assert!(Limit::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Limit::of_column(Some(0)), None);
        assert_eq!(Limit::of_column(Some(-5)), None);
        assert_eq!(Limit::new(u32::MAX), None);
    }

    #[test]
    fn key_limits_come_from_minute_hour_day_and_month_rates_only() {
        let rates = Rate::parse_list("5/minute,7/day,9/month").expect("rates");
        assert_eq!(
            Limits::from_rates(&rates),
            Ok(Limits {
                per_minute: Limit::new(5),
                per_hour: None,
                per_day: Limit::new(7),
                per_month: Limit::new(9),
            })
        );
        let per_second = Rate::parse_list("5/second").expect("rates");
        assert!(Limits::from_rates(&per_second).is_err());
    }
}
