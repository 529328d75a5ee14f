//! What the key pages show: rows of the list, usage bars, the 24-hour chart, and the number and
//! time formats they use.

use chrono::NaiveDateTime;

use crate::clock::Now;
use crate::db::KeyId;
use crate::db::models::ApiKey;
use crate::keys::KeyStatus;
use crate::limits::WindowCount;
use crate::routes::admin::ago;

pub(super) fn limit_text(limit: Option<i32>) -> String {
    limit.map_or_else(|| "∞".to_owned(), |n| thousands(u64::try_from(n).unwrap_or(0)))
}

/// 12345 → "12,345".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(super) fn utc(at: NaiveDateTime) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// One row of the keys table.
pub struct KeyRow {
    pub id: KeyId,
    pub name: String,
    pub prefix: String,
    pub owner: String,
    pub limits: String,
    pub last_used: String,
    pub status: &'static str,
}

impl KeyRow {
    pub(super) fn of(key: &ApiKey, owner: &str, now: Now) -> KeyRow {
        let now = now.naive();
        KeyRow {
            id: key.id,
            name: key.name.clone(),
            prefix: key.prefix.clone(),
            owner: owner.to_owned(),
            limits: format!(
                "{} / {} / {}",
                limit_text(key.rate_limit_per_minute),
                limit_text(key.rate_limit_per_hour),
                limit_text(key.rate_limit_per_day)
            ),
            last_used: ago(key.last_used_at, now),
            status: KeyStatus::of(key, now).as_str(),
        }
    }
}

/// Current use of one window, as a bar.
pub struct UsageBar {
    pub window: &'static str,
    pub used: String,
    pub limit: String,
    pub percent: u64,
    pub level: &'static str,
    pub resets_in: String,
}

impl UsageBar {
    pub fn of(count: &WindowCount) -> UsageBar {
        let used = count.used();
        let percent = count.limit.map_or(0, |l| (used * 100 / u64::from(l)).min(100));
        UsageBar {
            window: count.window.name(),
            used: thousands(used),
            limit: count
                .limit
                .map_or_else(|| "no limit".to_owned(), |l| thousands(u64::from(l))),
            percent,
            level: match percent {
                0..=74 => "ok",
                75..=99 => "warn",
                _ => "full",
            },
            resets_in: duration_text(count.reset_ms().div_ceil(1000)),
        }
    }
}

pub(super) fn duration_text(seconds: u64) -> String {
    match seconds {
        0..=90 => format!("{seconds} s"),
        91..=5_400 => format!("{} min", seconds.div_ceil(60)),
        _ => format!("{} h", seconds.div_ceil(3_600)),
    }
}
