//! API keys: the secret (`secret`), the rules of their life cycle (`service`) and the value
//! types both share. Knows nothing of HTTP.

pub mod cache;
pub mod handoff;
pub mod secret;
pub mod service;

use chrono::NaiveDateTime;

use crate::db::models::ApiKey;
use crate::limits::{Rate, Window};

/// A key's per-window limits; `None` means no limit in that window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub per_minute: Option<u32>,
    pub per_hour: Option<u32>,
    pub per_day: Option<u32>,
}

impl Limits {
    /// Keys are limited per minute, hour and day; other windows are refused.
    pub fn from_rates(rates: &[Rate]) -> Result<Limits, String> {
        let mut limits = Limits::default();
        for rate in rates {
            let slot = match rate.window {
                Window::Minute => &mut limits.per_minute,
                Window::Hour => &mut limits.per_hour,
                Window::Day => &mut limits.per_day,
                Window::Second => {
                    return Err(format!(
                        "keys have per-minute, per-hour and per-day limits; {rate} is not supported"
                    ));
                }
            };
            *slot = Some(rate.limit);
        }
        Ok(limits)
    }

    pub fn of(key: &ApiKey) -> Limits {
        let positive = |v: Option<i32>| v.and_then(|n| u32::try_from(n).ok()).filter(|&n| n > 0);
        Limits {
            per_minute: positive(key.rate_limit_per_minute),
            per_hour: positive(key.rate_limit_per_hour),
            per_day: positive(key.rate_limit_per_day),
        }
    }

    /// The windows in order, with their limits.
    pub fn windows(&self) -> [(Window, Option<u32>); 3] {
        [
            (Window::Minute, self.per_minute),
            (Window::Hour, self.per_hour),
            (Window::Day, self.per_day),
        ]
    }
}

/// Checks one limit as a caller sent it: a positive 32-bit integer.
pub fn parse_limit(value: i64) -> Result<u32, String> {
    u32::try_from(value)
        .ok()
        .filter(|n| (1..=i32::MAX as u32).contains(n))
        .ok_or_else(|| "must be a positive whole number (up to 2147483647), or null for no limit".to_owned())
}

/// A key's human name: 1–100 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyName(String);

impl KeyName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(raw: &str) -> Result<KeyName, String> {
        let name = raw.trim();
        if name.is_empty() {
            return Err("must not be empty".into());
        }
        // Counted as sent (spaces around included), as the OpenAPI schema's maxLength counts.
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        if name.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(KeyName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Inactive,
    Expired,
}

impl KeyStatus {
    /// The one rule: switched off is inactive; else past its expiry (to the second, in Unix
    /// seconds) is expired; else active. The cache, the views and (checked by a repository
    /// test) the SQL status filter all follow it.
    pub fn at(is_active: bool, expires_at: Option<i64>, unix_now: i64) -> KeyStatus {
        if !is_active {
            KeyStatus::Inactive
        } else if expires_at.is_some_and(|at| at <= unix_now) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }

    pub fn of(key: &ApiKey, now: NaiveDateTime) -> KeyStatus {
        let expires_at = key.expires_at.map(|at| at.and_utc().timestamp());
        KeyStatus::at(key.is_active, expires_at, now.and_utc().timestamp())
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Inactive => "inactive",
            KeyStatus::Expired => "expired",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            KeyName::parse("  ci deploy ").map(KeyName::into_inner),
            Ok("ci deploy".into())
        );
        assert!(KeyName::parse("   ").is_err());
        assert!(KeyName::parse(&"é".repeat(100)).is_ok());
        assert!(KeyName::parse(&"x".repeat(101)).is_err());
        assert!(KeyName::parse("tab\there").is_err());
    }

    #[test]
    fn limits_must_be_positive_32_bit_integers() {
        assert_eq!(parse_limit(1), Ok(1));
        assert_eq!(parse_limit(2_147_483_647), Ok(2_147_483_647));
        for bad in [0, -1, 2_147_483_648, i64::MIN] {
            assert!(parse_limit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_limits_come_from_minute_hour_and_day_rates_only() {
        let rates = Rate::parse_list("5/minute,7/day").expect("rates");
        assert_eq!(
            Limits::from_rates(&rates),
            Ok(Limits {
                per_minute: Some(5),
                per_hour: None,
                per_day: Some(7)
            })
        );
        let per_second = Rate::parse_list("5/second").expect("rates");
        assert!(Limits::from_rates(&per_second).is_err());
    }
}
