//! `GET /admin/audit` (admins): the audit log with the API's filters, a page at a time.

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use askama::Template;

use crate::audit::{self, Entry};
use crate::routes::admin::{Admin, AdminError, Layout, render};
use crate::routes::api::audit::filter;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    layout: Layout,
    entries: Vec<Row>,
    /// The filters as given, to fill the form and the next page's link.
    query: HashMap<String, String>,
    /// The link to the next page, when there is one.
    next: Option<String>,
    error: Option<String>,
}

impl AuditPage {
    fn given(&self, name: &str) -> &str {
        self.query.get(name).map_or("", String::as_str)
    }
}

struct Row {
    entry: Entry,
    who: String,
    target: String,
    changes: Vec<(String, String, String)>,
}

impl Row {
    fn of(entry: Entry) -> Row {
        let who = entry.who();
        let target = entry.target_label(' ');
        let shown = |v: Option<&serde_json::Value>| match v {
            None | Some(serde_json::Value::Null) => "—".to_owned(),
            Some(serde_json::Value::String(s)) if s.is_empty() => "\"\"".to_owned(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        let after = entry.after.as_object().cloned().unwrap_or_default();
        // A creation lists what was set, not every empty field.
        let created = entry.before.is_null();
        let changes = after
            .iter()
            .filter(|(_, value)| !(created && (value.is_null() || *value == &serde_json::json!([]))))
            .map(|(name, value)| (name.clone(), shown(entry.before.get(name)), shown(Some(value))))
            .collect();
        Row {
            entry,
            who,
            target,
            changes,
        }
    }
}

pub async fn list(
    state: web::Data<AppState>,
    admin: Admin,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, AdminError> {
    let mut query = query.into_inner();
    // The filter form sends its empty fields: on the page they mean "any".
    query.retain(|_, value| !value.is_empty());
    let (entries, next, error) = match filter(query.clone()) {
        Ok((filter, limit)) => {
            let (entries, next) = audit::page(&state.pool, admin.actor(), filter, limit).await?;
            (entries, next, None)
        }
        Err(errors) => (Vec::new(), None, Some(errors.sentence())),
    };
    let next = next.map(|cursor| {
        let mut query = query.clone();
        query.insert("cursor".into(), cursor.to_string());
        let mut pairs: Vec<_> = query.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        pairs.sort();
        let encoded: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        format!("/admin/audit?{}", encoded.join("&"))
    });
    let page = AuditPage {
        layout: admin.layout("Audit log", "audit"),
        entries: entries.into_iter().map(Row::of).collect(),
        query,
        next,
        error,
    };
    render(&page, actix_web::http::StatusCode::OK)
}

/// Percent-encodes a query component (everything but unreserved characters).
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
