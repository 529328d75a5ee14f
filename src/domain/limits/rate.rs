//! Rates (`60/minute`) and the windows they count in.

use std::fmt;

use super::Limit;

/// A span of time a limit is counted over: clock-aligned seconds, minutes, hours and days
/// (UTC), which slide (see the module comment of `limits`), and calendar months (UTC), which do
/// not: a monthly quota is a billing period, and last month's use must not weigh on this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    Second,
    Minute,
    Hour,
    Day,
    Month,
}

/// Where the window containing a moment starts, and how long it is, in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start_ms: u64,
    pub length_ms: u64,
}

impl Window {
    pub const ALL: [Window; 5] = [
        Window::Second,
        Window::Minute,
        Window::Hour,
        Window::Day,
        Window::Month,
    ];

    /// The window's length in seconds: fixed, or for a month a nominal 30 days (what
    /// `RateLimit-Policy`'s `w` shows; resets are exact).
    pub const fn seconds(self) -> u64 {
        match self {
            Window::Second => 1,
            Window::Minute => 60,
            Window::Hour => 3_600,
            Window::Day => 86_400,
            Window::Month => 30 * 86_400,
        }
    }

    /// Whether the previous window's count weighs in (sliding), or the window starts afresh.
    pub const fn slides(self) -> bool {
        !matches!(self, Window::Month)
    }

    /// The window containing `now_ms` (Unix milliseconds).
    pub fn span(self, now_ms: u64) -> Span {
        match self {
            Window::Month => calendar::month(now_ms).1,
            _ => {
                let length_ms = self.seconds() * 1000;
                Span {
                    start_ms: now_ms - now_ms % length_ms,
                    length_ms,
                }
            }
        }
    }

    /// The number of the window containing `now_ms`, counted from 1970 (consecutive windows
    /// have consecutive numbers).
    pub fn number(self, now_ms: u64) -> u64 {
        match self {
            Window::Month => calendar::month(now_ms).0,
            _ => now_ms / (self.seconds() * 1000),
        }
    }

    /// The name used on the wire: in `RateLimit-Policy`, 429 bodies and `stats`.
    pub const fn name(self) -> &'static str {
        match self {
            Window::Second => "second",
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Month => "month",
        }
    }

    fn parse(unit: &str) -> Option<Self> {
        // The short forms are the ones Django REST Framework accepts ("100/min", "5/s").
        match unit {
            "second" | "sec" | "s" => Some(Window::Second),
            "minute" | "min" | "m" => Some(Window::Minute),
            "hour" | "h" => Some(Window::Hour),
            "day" | "d" => Some(Window::Day),
            "month" | "mon" => Some(Window::Month),
            _ => None,
        }
    }

    /// Position in [`Window::ALL`], for per-window arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Calendar months in UTC. The Redis script finds them with its own integer arithmetic; the
/// two agree, as a replay across month ends on both stores shows (`tests/api/limits.rs`).
pub mod calendar {
    use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveTime};

    use super::Span;

    /// The number of the month containing `now_ms` (0 = January 1970) and its span.
    pub fn month(now_ms: u64) -> (u64, Span) {
        let ms = |date: NaiveDate| date.and_time(NaiveTime::MIN).and_utc().timestamp_millis() as u64;
        let day = DateTime::from_timestamp_millis(now_ms as i64)
            .unwrap_or_default()
            .date_naive();
        let first = day.with_day(1).unwrap_or(day);
        let next = first.checked_add_months(Months::new(1)).unwrap_or(first);
        let number = u64::from(day.year().abs_diff(1970)) * 12 + u64::from(day.month0());
        let span = Span {
            start_ms: ms(first),
            length_ms: ms(next) - ms(first),
        };
        (number, span)
    }
}

/// `limit` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: Limit,
    pub window: Window,
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.limit, self.window.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateParseError {
    #[error("no rate given; expected e.g. \"100/hour\" or \"60/minute,1000/day\"")]
    Empty,
    #[error("\"{0}\" is not a rate; expected N/second, N/minute, N/hour, N/day or N/month")]
    Malformed(String),
    #[error("\"{0}\": the count must be a whole number from 1 to 2147483647")]
    BadCount(String),
    #[error("\"{0}\": the {1} window is given twice")]
    Duplicate(String, &'static str),
}

impl Rate {
    /// Parses one `N/unit` rate.
    pub fn parse(input: &str) -> Result<Rate, RateParseError> {
        let text = input.trim();
        let (count, unit) = text
            .split_once('/')
            .ok_or_else(|| RateParseError::Malformed(text.to_owned()))?;
        let window = Window::parse(&unit.trim().to_ascii_lowercase())
            .ok_or_else(|| RateParseError::Malformed(text.to_owned()))?;
        let limit = count
            .trim()
            .parse::<u32>()
            .ok()
            .and_then(Limit::new)
            .ok_or_else(|| RateParseError::BadCount(text.to_owned()))?;
        Ok(Rate { limit, window })
    }

    /// Parses a comma-separated list such as `60/minute,1000/hour`, ordered from the shortest
    /// window to the longest, each window at most once.
    pub fn parse_list(input: &str) -> Result<Vec<Rate>, RateParseError> {
        if input.trim().is_empty() {
            return Err(RateParseError::Empty);
        }
        let mut rates = input.split(',').map(Rate::parse).collect::<Result<Vec<_>, _>>()?;
        rates.sort_by_key(|r| r.window);
        if let Some(pair) = rates.windows(2).find(|p| p[0].window == p[1].window) {
            return Err(RateParseError::Duplicate(
                input.trim().to_owned(),
                pair[0].window.name(),
            ));
        }
        Ok(rates)
    }
}
