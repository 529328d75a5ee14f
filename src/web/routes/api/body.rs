//! Request bodies: JSON objects read field by field, so every bad field is reported by name
//! (`{"error":"validation_error","fields":{...}}`) and "absent" stays distinct from `null`
//! (PATCH needs both). Unknown fields are refused, which catches typos such as
//! `rate_limit_per_min`.

use actix_web::error::JsonPayloadError;
use actix_web::{HttpRequest, web};
use chrono::{DateTime, NaiveDateTime, Timelike};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::validation::FieldErrors;

/// Largest JSON body accepted anywhere in the API.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

pub type JsonObject = web::Json<Map<String, Value>>;

/// Turns actix's JSON extraction failures into API errors (registered in `startup`).
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match err {
        JsonPayloadError::Overflow { limit } | JsonPayloadError::OverflowKnownLength { limit, .. } => {
            ApiError::PayloadTooLarge(limit)
        }
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::InvalidJson("expected a JSON object".into())
        }
        JsonPayloadError::Deserialize(e) => ApiError::InvalidJson(e.to_string()),
        other => ApiError::InvalidJson(other.to_string()),
    };
    api.into()
}

pub struct Fields {
    map: Map<String, Value>,
    errors: FieldErrors,
}

impl Fields {
    pub fn new(body: JsonObject) -> Fields {
        Fields::of(body.into_inner())
    }

    /// Fields of a JSON object that did not come as a request body (a line of an import).
    pub fn of(map: Map<String, Value>) -> Fields {
        Fields {
            map,
            errors: FieldErrors::new(),
        }
    }

    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.add(field, message);
    }

    /// Absent → `None`; `null` → `Some(None)`; otherwise the converted value, or an error
    /// recorded for the field (and `None`).
    fn nullable<T>(
        &mut self,
        field: &str,
        convert: impl FnOnce(Value) -> Result<T, String>,
    ) -> Option<Option<T>> {
        match self.map.remove(field)? {
            Value::Null => Some(None),
            value => match convert(value) {
                Ok(v) => Some(Some(v)),
                Err(message) => {
                    self.error(field, message);
                    None
                }
            },
        }
    }

    fn non_null<T>(&mut self, field: &str, convert: impl FnOnce(Value) -> Result<T, String>) -> Option<T> {
        match self.nullable(field, convert)? {
            Some(v) => Some(v),
            None => {
                self.error(field, "must not be null");
                None
            }
        }
    }

    /// A string field that must be present, parsed by `parse`.
    pub fn required<T>(&mut self, field: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        if !self.map.contains_key(field) {
            self.error(field, "is required");
            return None;
        }
        self.text(field, parse)
    }

    /// An optional string field (not null), parsed by `parse`.
    pub fn text<T>(&mut self, field: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        self.non_null(field, |v| match v {
            Value::String(s) => parse(&s),
            _ => Err("must be a string".into()),
        })
    }

    /// An optional, nullable whole number, parsed by `parse`.
    pub fn integer<T>(
        &mut self,
        field: &str,
        parse: impl FnOnce(i64) -> Result<T, String>,
    ) -> Option<Option<T>> {
        // JSON Schema counts 4750.0 as an integer, so this does too.
        self.nullable(field, |v| match whole_number(&v) {
            Some(n) => parse(n),
            None => Err("must be a whole number or null".into()),
        })
    }

    /// An optional, nullable value of any JSON type, converted by `convert`.
    pub fn json<T>(
        &mut self,
        field: &str,
        convert: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Option<Option<T>> {
        self.nullable(field, |v| convert(&v))
    }

    /// An optional value of any JSON type but null, converted by `convert`.
    pub fn json_non_null<T>(
        &mut self,
        field: &str,
        convert: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Option<T> {
        self.non_null(field, |v| convert(&v))
    }

    pub fn boolean(&mut self, field: &str) -> Option<bool> {
        self.non_null(field, |v| {
            v.as_bool().ok_or_else(|| "must be true or false".into())
        })
    }

    /// An optional, nullable RFC 3339 timestamp (`2027-01-31T12:00:00Z`), stored as UTC in
    /// whole seconds. One in the past is taken as given (a key expiring then is expired).
    pub fn timestamp(&mut self, field: &str) -> Option<Option<NaiveDateTime>> {
        self.nullable(field, |v| {
            let text = v.as_str().ok_or("must be an RFC 3339 timestamp string or null")?;
            let at = DateTime::parse_from_rfc3339(text)
                .map_err(|_| "must be an RFC 3339 timestamp such as 2027-01-31T12:00:00Z")?
                .naive_utc();
            Ok(at.with_nanosecond(0).unwrap_or(at))
        })
    }

    /// Fails with every recorded error, and with one per unknown field.
    pub fn finish(self) -> Result<(), ApiError> {
        self.finish_fields().map_err(ApiError::ValidationError)
    }

    /// [`Fields::finish`], with the errors as they are.
    pub fn finish_fields(mut self) -> Result<(), FieldErrors> {
        let unknown: Vec<String> = self.map.keys().cloned().collect();
        for field in unknown {
            self.error(&field, "is not a known field");
        }
        self.errors.into_result(())
    }
}

/// A JSON number with no fractional part, as an `i64`.
pub fn whole_number(value: &Value) -> Option<i64> {
    if let Some(n) = value.as_i64() {
        return Some(n);
    }
    // Up to 2^53, where every whole number is still exact in a double (and where the schema's
    // largest amounts end): 9007199254740992.0 is 2^53 itself.
    let f = value.as_f64()?;
    (f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0).then_some(f as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Fields {
        let Value::Object(map) = value else {
            panic!("test bodies are objects")
        };
        Fields::new(web::Json(map))
    }

    fn field_errors(result: Result<(), ApiError>) -> Vec<String> {
        match result {
            Err(ApiError::ValidationError(errors)) => errors.iter().map(|(k, _)| k.to_owned()).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn absent_null_and_values_are_distinct() {
        let mut f = fields(json!({"a": null, "b": 5}));
        assert_eq!(f.integer("a", Ok), Some(None));
        assert_eq!(f.integer("b", Ok), Some(Some(5)));
        assert_eq!(f.integer("c", Ok), None);
        assert!(f.finish().is_ok());
    }

    #[test]
    fn every_bad_field_is_reported_and_unknown_fields_are_refused() {
        let mut f = fields(json!({"n": "x", "flag": 1, "extra": true}));
        assert_eq!(f.integer("n", Ok), None);
        assert_eq!(f.boolean("flag"), None);
        assert_eq!(f.required("name", |s| Ok::<_, String>(s.to_owned())), None);
        assert_eq!(field_errors(f.finish()), ["extra", "flag", "n", "name"]);
    }

    #[test]
    fn timestamps_must_be_rfc3339_and_are_kept_in_utc_seconds() {
        let mut f = fields(
            json!({"a": "2026-01-01T01:00:00.75+01:00", "b": "tomorrow", "c": "2001-06-01T00:00:00Z"}),
        );
        let utc = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("valid")
            .naive_utc();
        assert_eq!(f.timestamp("a"), Some(Some(utc)));
        assert_eq!(f.timestamp("b"), None);
        assert!(
            matches!(f.timestamp("c"), Some(Some(_))),
            "the past is taken as given"
        );
        assert_eq!(field_errors(f.finish()), ["b"]);
    }

    #[test]
    fn whole_numbers_may_be_written_with_a_zero_fraction() {
        let mut f = fields(
            json!({"a": 4750.0, "b": 4750.5, "c": 1e300, "d": 9007199254740992.0,
                                  "e": 9007199254740994.0}),
        );
        assert_eq!(f.integer("a", Ok), Some(Some(4750)));
        assert_eq!(f.integer("b", Ok), None);
        assert_eq!(f.integer("c", Ok), None);
        assert_eq!(
            f.integer("d", Ok),
            Some(Some(9_007_199_254_740_992)),
            "2^53 written as a float"
        );
        assert_eq!(f.integer("e", Ok), None);
        assert_eq!(field_errors(f.finish()), ["b", "c", "e"]);
    }
}
