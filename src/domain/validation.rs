//! Field-level validation errors, collected so a caller sees every problem of a request at
//! once (as Django REST Framework reports them), not just the first.

use std::collections::BTreeMap;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldErrors(BTreeMap<String, String>);

impl FieldErrors {
    pub fn new() -> FieldErrors {
        FieldErrors::default()
    }

    pub fn single(field: &str, message: impl Into<String>) -> FieldErrors {
        let mut errors = FieldErrors::new();
        errors.add(field, message);
        errors
    }

    /// Records `message` for `field`; the first message per field is kept.
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.entry(field.to_owned()).or_insert_with(|| message.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Every problem as one sentence, for places without a `fields` object (CLI, HTML pages):
    /// "name must not be empty; owner no user has this email".
    pub fn sentence(&self) -> String {
        self.iter()
            .map(|(field, message)| format!("{field} {message}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// `Ok(value)` when nothing was recorded.
    pub fn into_result<T>(self, value: T) -> Result<T, FieldErrors> {
        if self.is_empty() { Ok(value) } else { Err(self) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_named_in_one_sentence() {
        let mut errors = FieldErrors::single("name", "must not be empty");
        errors.add("owner", "no user has this email");
        errors.add("name", "is ignored: the first message per field is kept");
        assert_eq!(
            errors.sentence(),
            "name must not be empty; owner no user has this email"
        );
        assert!(FieldErrors::new().into_result(1).is_ok());
        assert!(errors.into_result(1).is_err());
    }
}
