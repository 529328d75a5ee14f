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

/// Calendar months in UTC, by integer arithmetic (Howard Hinnant's `civil_from_days`, as in the
/// Redis script: a month window is computed on every request that has one, and chrono's date
/// types cost several times as much). A test checks it against chrono over two centuries, and a
/// replay across month ends on both stores checks it against the script.
pub mod calendar {
    use super::Span;

    const DAY_MS: u64 = 86_400_000;

    /// (year, month 1–12, day 1–31) of a day counted from 1970-01-01.
    pub fn civil(days: i64) -> (i64, u32, u32) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        (year, month, day)
    }

    fn month_length(year: i64, month: u32) -> u64 {
        match month {
            2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    /// The number of the month containing `now_ms` (0 = January 1970) and its span.
    pub fn month(now_ms: u64) -> (u64, Span) {
        let days = (now_ms / DAY_MS) as i64;
        let (year, month, day) = civil(days);
        let start_day = (days - i64::from(day) + 1) as u64;
        let number = (year - 1970) as u64 * 12 + u64::from(month) - 1;
        let span = Span {
            start_ms: start_day * DAY_MS,
            length_ms: month_length(year, month) * DAY_MS,
        };
        (number, span)
    }

    /// The start (Unix ms) of month number `number` (0 = January 1970).
    pub fn month_start(number: u64) -> u64 {
        let (year, month) = (1970 + (number / 12) as i64, (number % 12) as u32 + 1);
        // Days from 1970 to the first of that month: days_from_civil.
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = i64::from(if month > 2 { month - 3 } else { month + 9 });
        let doy = (153 * mp + 2) / 5;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        (era * 146_097 + doe - 719_468) as u64 * DAY_MS
    }

    #[cfg(test)]
    mod tests {
        use chrono::{DateTime, Datelike, Months, NaiveTime};

        /// The integer calendar agrees with chrono's, day by day from 1970 to 2170.
        #[test]
        fn agrees_with_chrono() {
            for days in 0..73_000u64 {
                let ms = days * super::DAY_MS + (days * 7_919) % super::DAY_MS;
                let date = DateTime::from_timestamp_millis(ms as i64)
                    .expect("date")
                    .date_naive();
                let first = date.with_day(1).expect("first");
                let next = first.checked_add_months(Months::new(1)).expect("next");
                let at =
                    |d: chrono::NaiveDate| d.and_time(NaiveTime::MIN).and_utc().timestamp_millis() as u64;
                let (number, span) = super::month(ms);
                let expected = u64::from(date.year().abs_diff(1970)) * 12 + u64::from(date.month0());
                assert_eq!(
                    (number, span.start_ms, span.length_ms),
                    (expected, at(first), at(next) - at(first))
                );
                assert_eq!(super::month_start(number), at(first));
            }
        }
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
