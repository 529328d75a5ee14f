//! The key form (new key, key detail): as typed, parsed into domain values, and re-rendered
//! with its errors.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use serde::Deserialize;

use crate::contract::{Contract, IpAllowlist, Meta, Scopes};
use crate::db::models::{ApiKey, KeyOrder, KeySearch, KeyStatusFilter};
use crate::keys::KeyName;
use crate::limits::{Limit, Limits};
use crate::routes::admin::field;
use crate::validation::FieldErrors;

#[derive(Default)]
pub struct KeyForm {
    pub name: String,
    pub owner: String,
    pub per_minute: String,
    pub per_hour: String,
    pub per_day: String,
    pub per_month: String,
    pub expires_at: String,
    /// Scopes, separated by spaces or commas.
    pub scopes: String,
    /// Addresses and CIDR blocks, separated by spaces, commas or lines.
    pub ip_allowlist: String,
    /// A JSON object, or empty.
    pub meta: String,
    pub errors: HashMap<String, String>,
}

/// The key form, parsed.
pub struct ParsedKeyForm {
    pub name: KeyName,
    pub limits: Limits,
    pub expires_at: Option<NaiveDateTime>,
    pub contract: Contract,
}

fn items(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
}

impl KeyForm {
    pub fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }

    pub(super) fn of(key: &ApiKey) -> KeyForm {
        let text = |limit: Option<i32>| limit.map(|n| n.to_string()).unwrap_or_default();
        KeyForm {
            name: key.name.clone(),
            owner: String::new(),
            per_minute: text(key.rate_limit_per_minute),
            per_hour: text(key.rate_limit_per_hour),
            per_day: text(key.rate_limit_per_day),
            per_month: text(key.rate_limit_per_month),
            expires_at: key
                .expires_at
                .map(|at| at.format("%Y-%m-%dT%H:%M").to_string())
                .unwrap_or_default(),
            scopes: key.scopes.clone(),
            ip_allowlist: IpAllowlist::of_column(&key.ip_allowlist).to_strings().join("\n"),
            meta: Meta::of_column(key.meta.as_deref())
                .map(|m| serde_json::to_string_pretty(&m.to_value()).unwrap_or_default())
                .unwrap_or_default(),
            errors: HashMap::new(),
        }
    }

    pub(super) fn defaults(limits: Limits) -> KeyForm {
        let text = |limit: Option<Limit>| limit.map(|n| n.to_string()).unwrap_or_default();
        KeyForm {
            per_minute: text(limits.per_minute),
            per_hour: text(limits.per_hour),
            per_day: text(limits.per_day),
            per_month: text(limits.per_month),
            ..KeyForm::default()
        }
    }

    pub(super) fn read(form: &HashMap<String, String>) -> KeyForm {
        KeyForm {
            name: field(form, "name").to_owned(),
            owner: field(form, "owner").to_owned(),
            per_minute: field(form, "rate_limit_per_minute").to_owned(),
            per_hour: field(form, "rate_limit_per_hour").to_owned(),
            per_day: field(form, "rate_limit_per_day").to_owned(),
            per_month: field(form, "rate_limit_per_month").to_owned(),
            expires_at: field(form, "expires_at").to_owned(),
            scopes: field(form, "scopes").to_owned(),
            ip_allowlist: field(form, "ip_allowlist").to_owned(),
            meta: field(form, "meta").to_owned(),
            errors: HashMap::new(),
        }
    }

    /// Parses the form: an empty limit means no limit; the expiry is a `datetime-local` in UTC.
    pub(super) fn parse(&mut self) -> Option<ParsedKeyForm> {
        let mut errors = FieldErrors::new();
        let name = KeyName::parse(&self.name).map_err(|e| errors.add("name", e)).ok();
        let mut limit = |field: &str, text: &str| -> Option<Limit> {
            if text.is_empty() {
                return None;
            }
            match text
                .parse::<i64>()
                .map_err(|_| "must be a whole number".to_owned())
                .and_then(Limit::parse)
            {
                Ok(n) => Some(n),
                Err(e) => {
                    errors.add(field, e);
                    None
                }
            }
        };
        let limits = Limits {
            per_minute: limit("rate_limit_per_minute", &self.per_minute),
            per_hour: limit("rate_limit_per_hour", &self.per_hour),
            per_day: limit("rate_limit_per_day", &self.per_day),
            per_month: limit("rate_limit_per_month", &self.per_month),
        };
        let expires_at = match self.expires_at.as_str() {
            "" => None,
            text => match NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
                .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
            {
                Ok(at) => Some(at),
                Err(_) => {
                    errors.add("expires_at", "must be a date and time such as 2027-01-31T12:00");
                    None
                }
            },
        };
        let contract = self.contract(&mut errors);
        self.errors = errors.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        match (name, errors.is_empty()) {
            (Some(name), true) => Some(ParsedKeyForm {
                name,
                limits,
                expires_at,
                contract,
            }),
            _ => None,
        }
    }

    fn contract(&self, errors: &mut FieldErrors) -> Contract {
        let meta = match self.meta.trim() {
            "" => None,
            text => serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| format!("is not JSON: {e}"))
                .and_then(|v| Meta::parse(&v))
                .map_err(|e| errors.add("meta", e))
                .ok(),
        };
        Contract {
            meta,
            scopes: Scopes::parse(items(&self.scopes))
                .map_err(|e| errors.add("scopes", e))
                .unwrap_or_default(),
            ip_allowlist: IpAllowlist::parse(items(&self.ip_allowlist))
                .map_err(|e| errors.add("ip_allowlist", e))
                .unwrap_or_default(),
        }
    }
}

/// Keys per page of the list.
pub const PER_PAGE: i64 = 20;

/// The key list's query string: search text, status filter, order, page.
#[derive(Deserialize)]
pub struct ListQuery {
    pub q: Option<String>,
    pub status: Option<String>,
    pub sort: Option<String>,
    pub page: Option<i64>,
}

impl ListQuery {
    /// The search the query asks for (`page` is one-based and in range); unknown filter and
    /// sort values mean none and newest first.
    pub(super) fn search(&self, page: i64) -> KeySearch {
        let status = match self.status.as_deref() {
            Some("active") => Some(KeyStatusFilter::Active),
            Some("inactive") => Some(KeyStatusFilter::Inactive),
            Some("expired") => Some(KeyStatusFilter::Expired),
            _ => None,
        };
        let order = match self.sort.as_deref() {
            Some("last_used") => KeyOrder::LastUsed,
            Some("name") => KeyOrder::Name,
            _ => KeyOrder::Newest,
        };
        let text = self
            .q
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(|q| q.chars().take(100).collect());
        KeySearch {
            owner: None,
            text,
            status,
            order,
            page: page - 1,
            per_page: PER_PAGE,
        }
    }
}
