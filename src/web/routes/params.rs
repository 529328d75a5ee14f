//! Query-string parameters read one by one, so every bad one is reported by name, as body
//! fields are (`api::body`). Unknown parameters are ignored, as most APIs do with queries.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Timelike};

use crate::validation::FieldErrors;

pub struct Params {
    map: HashMap<String, String>,
    errors: FieldErrors,
}

impl Params {
    pub fn new(map: HashMap<String, String>) -> Params {
        Params {
            map,
            errors: FieldErrors::new(),
        }
    }

    /// A parameter's text, read by `parse` (absent: `None`; present but empty is a value, and
    /// refused by parsers that want one: `?to=` is not "no end").
    pub fn text<T>(&mut self, name: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let text = self.map.get(name)?;
        match parse(text) {
            Ok(value) => Some(value),
            Err(message) => {
                self.errors.add(name, message);
                None
            }
        }
    }

    /// A whole number from `min` to `max`.
    pub fn integer(&mut self, name: &str, min: i64, max: i64) -> Option<i64> {
        self.text(name, |t| match t.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!("must be a whole number from {min} to {max}")),
        })
    }

    /// An RFC 3339 timestamp, as UTC in whole seconds.
    pub fn time(&mut self, name: &str) -> Option<NaiveDateTime> {
        self.text(name, |t| {
            let at = DateTime::parse_from_rfc3339(t)
                .map_err(|_| "must be an RFC 3339 timestamp such as 2026-11-01T00:00:00Z".to_owned())?
                .naive_utc();
            // An offset can carry 9999-12-31 into year 10000, which SQLite's text would sort
            // before every other time.
            let last =
                NaiveDateTime::parse_from_str("9999-12-31 23:59:59", "%Y-%m-%d %H:%M:%S").unwrap_or(at);
            Ok(at.with_nanosecond(0).unwrap_or(at).min(last))
        })
    }

    /// One of `choices`.
    pub fn choice(&mut self, name: &str, choices: &[&'static str]) -> Option<&'static str> {
        self.text(name, |t| {
            choices
                .iter()
                .find(|c| **c == t)
                .copied()
                .ok_or_else(|| format!("must be one of {}", choices.join(", ")))
        })
    }

    /// The errors recorded, if any.
    pub fn finish(self) -> Result<(), FieldErrors> {
        self.errors.into_result(())
    }
}
