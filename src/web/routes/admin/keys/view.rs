//! What the key pages show: rows of the list, usage bars, the 24-hour chart, and the number and
//! time formats they use.

use chrono::{NaiveDateTime, Timelike};

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

/// One hour of the 24-hour chart, in SVG coordinates.
pub struct ChartBar {
    pub x: u32,
    pub allowed_y: u32,
    pub allowed_h: u32,
    pub rejected_y: u32,
    pub rejected_h: u32,
    pub label: String,
    pub title: String,
}

pub struct Chart {
    pub bars: Vec<ChartBar>,
    pub max: i64,
    pub empty: bool,
}

const CHART_HEIGHT: u32 = 140;

impl Chart {
    pub(super) fn of(history: &[crate::db::models::UsageRow]) -> Chart {
        let max = history.iter().map(|h| h.allowed + h.rejected).max().unwrap_or(0);
        let scale = |n: i64| {
            if max == 0 {
                0
            } else {
                ((n as f64 / max as f64) * f64::from(CHART_HEIGHT)).round() as u32
            }
        };
        let bars = history
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let (allowed_h, rejected_h) = (scale(h.allowed), scale(h.rejected));
                let hour = h.hour.hour();
                ChartBar {
                    x: 40 + i as u32 * 28,
                    allowed_y: CHART_HEIGHT + 10 - allowed_h,
                    allowed_h,
                    rejected_y: CHART_HEIGHT + 10 - allowed_h - rejected_h,
                    rejected_h,
                    label: if i % 3 == 0 {
                        format!("{hour:02}:00")
                    } else {
                        String::new()
                    },
                    title: format!("{hour:02}:00 UTC: {} allowed, {} rejected", h.allowed, h.rejected),
                }
            })
            .collect();
        Chart {
            bars,
            max,
            empty: max == 0,
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
