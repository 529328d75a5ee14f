//! API keys: the secret (`secret`), the rules of their life cycle (`service`) and the value
//! types both share. Knows nothing of HTTP.

pub mod cache;
pub mod handoff;
pub mod import;
pub mod secret;
pub mod service;

use chrono::NaiveDateTime;

use crate::db::models::ApiKey;

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
}
