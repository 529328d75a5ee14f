//! Rates (`60/minute`) and the windows they count in.

use std::fmt;

use super::Limit;

/// A fixed span of time a limit is counted over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    Second,
    Minute,
    Hour,
    Day,
}

impl Window {
    pub const fn seconds(self) -> u64 {
        match self {
            Window::Second => 1,
            Window::Minute => 60,
            Window::Hour => 3_600,
            Window::Day => 86_400,
        }
    }

    /// The name used on the wire: in `RateLimit-Policy`, 429 bodies and `stats`.
    pub const fn name(self) -> &'static str {
        match self {
            Window::Second => "second",
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
        }
    }

    /// Seconds from `unix_now` until the current (clock-aligned) window ends.
    pub const fn seconds_to_reset(self, unix_now: u64) -> u64 {
        self.seconds() - unix_now % self.seconds()
    }

    fn parse(unit: &str) -> Option<Self> {
        // The short forms are the ones Django REST Framework accepts ("100/min", "5/s").
        match unit {
            "second" | "sec" | "s" => Some(Window::Second),
            "minute" | "min" | "m" => Some(Window::Minute),
            "hour" | "h" => Some(Window::Hour),
            "day" | "d" => Some(Window::Day),
            _ => None,
        }
    }
}

impl Window {
    pub const ALL: [Window; 4] = [Window::Second, Window::Minute, Window::Hour, Window::Day];

    /// Position in [`Window::ALL`], for per-window arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn millis(self) -> u64 {
        self.seconds() * 1000
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
    #[error("\"{0}\" is not a rate; expected N/second, N/minute, N/hour or N/day")]
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
