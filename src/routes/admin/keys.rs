//! Dashboard pages for keys: list (search, filter, sort, pages), create (the key shown once),
//! detail (usage bars, 24-hour chart, edit form), deactivate and activate (confirmed).

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::{NaiveDateTime, Timelike};
use serde::Deserialize;

use crate::db::models::{ApiKey, KeyOrder, KeySearch, KeyStatusFilter, User};
use crate::db::{self, DbError};
use crate::error::AdminError;
use crate::keys::cache::KeyInfo;
use crate::keys::service::{self, KeyPatch, KeyRecord, NewKey};
use crate::keys::{KeyName, KeyStatus, Limits, parse_limit};
use crate::limits::Bucket;
use crate::routes::admin::{Admin, Confirmation, Form, Layout, Switch, ago, field, redirect, render};
use crate::state::AppState;
use crate::validation::FieldErrors;

const PER_PAGE: i64 = 20;

fn limit_text(limit: Option<i32>) -> String {
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

fn utc(at: NaiveDateTime) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// One row of the keys table.
pub struct KeyRow {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub owner: String,
    pub limits: String,
    pub last_used: String,
    pub status: &'static str,
}

impl KeyRow {
    fn of(key: &ApiKey, owner: &str, now: NaiveDateTime) -> KeyRow {
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

#[derive(Template)]
#[template(path = "admin/keys.html")]
struct KeysPage {
    layout: Layout,
    rows: Vec<KeyRow>,
    q: String,
    status: String,
    sort: String,
    page: i64,
    pages: i64,
    total: i64,
}

#[derive(Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    status: Option<String>,
    sort: Option<String>,
    page: Option<i64>,
}

pub async fn list(
    state: web::Data<AppState>,
    admin: Admin,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AdminError> {
    let query = query.into_inner();
    let status = match query.status.as_deref() {
        Some("active") => Some(KeyStatusFilter::Active),
        Some("inactive") => Some(KeyStatusFilter::Inactive),
        Some("expired") => Some(KeyStatusFilter::Expired),
        _ => None,
    };
    let order = match query.sort.as_deref() {
        Some("last_used") => KeyOrder::LastUsed,
        Some("name") => KeyOrder::Name,
        _ => KeyOrder::Newest,
    };
    let page = query.page.unwrap_or(1).clamp(1, 1_000_000);
    let text = query
        .q
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(|q| q.chars().take(100).collect());
    let search = KeySearch {
        text,
        status,
        order,
        page: page - 1,
        per_page: PER_PAGE,
    };
    let now = db::now();
    let (rows, total) = db::run(&state.pool, move |conn| {
        ApiKey::search(conn, &search, now).map_err(DbError::Query)
    })
    .await?;
    let page_view = KeysPage {
        layout: admin.layout("Keys", "keys"),
        rows: rows
            .iter()
            .map(|(key, owner)| KeyRow::of(key, owner, now))
            .collect(),
        q: query.q.unwrap_or_default(),
        status: query.status.unwrap_or_default(),
        sort: query.sort.unwrap_or_default(),
        page,
        pages: ((total + PER_PAGE - 1) / PER_PAGE).max(1),
        total,
    };
    render(&page_view, StatusCode::OK)
}

/// The key form as typed, and its errors, for re-rendering.
#[derive(Default)]
pub struct KeyForm {
    pub name: String,
    pub owner: String,
    pub per_minute: String,
    pub per_hour: String,
    pub per_day: String,
    pub expires_at: String,
    pub errors: HashMap<String, String>,
}

impl KeyForm {
    pub fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }

    fn of(key: &ApiKey) -> KeyForm {
        let text = |limit: Option<i32>| limit.map(|n| n.to_string()).unwrap_or_default();
        KeyForm {
            name: key.name.clone(),
            owner: String::new(),
            per_minute: text(key.rate_limit_per_minute),
            per_hour: text(key.rate_limit_per_hour),
            per_day: text(key.rate_limit_per_day),
            expires_at: key
                .expires_at
                .map(|at| at.format("%Y-%m-%dT%H:%M").to_string())
                .unwrap_or_default(),
            errors: HashMap::new(),
        }
    }

    fn defaults(limits: Limits) -> KeyForm {
        let text = |limit: Option<u32>| limit.map(|n| n.to_string()).unwrap_or_default();
        KeyForm {
            per_minute: text(limits.per_minute),
            per_hour: text(limits.per_hour),
            per_day: text(limits.per_day),
            ..KeyForm::default()
        }
    }

    fn read(form: &HashMap<String, String>) -> KeyForm {
        KeyForm {
            name: field(form, "name").to_owned(),
            owner: field(form, "owner").to_owned(),
            per_minute: field(form, "rate_limit_per_minute").to_owned(),
            per_hour: field(form, "rate_limit_per_hour").to_owned(),
            per_day: field(form, "rate_limit_per_day").to_owned(),
            expires_at: field(form, "expires_at").to_owned(),
            errors: HashMap::new(),
        }
    }

    /// Parses the form: an empty limit means no limit; the expiry is a `datetime-local` in UTC.
    fn parse(&mut self) -> Option<(KeyName, Limits, Option<NaiveDateTime>)> {
        let mut errors = FieldErrors::new();
        let name = KeyName::parse(&self.name).map_err(|e| errors.add("name", e)).ok();
        let mut limit = |field: &str, text: &str| -> Option<u32> {
            if text.is_empty() {
                return None;
            }
            match text
                .parse::<i64>()
                .map_err(|_| "must be a whole number".to_owned())
                .and_then(parse_limit)
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
        self.errors = errors.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        if errors.is_empty() {
            name.map(|name| (name, limits, expires_at))
        } else {
            None
        }
    }
}

#[derive(Template)]
#[template(path = "admin/key_new.html")]
struct NewKeyPage {
    layout: Layout,
    form: KeyForm,
    owners: Vec<String>,
}

async fn owners(state: &AppState) -> Result<Vec<String>, AdminError> {
    let users = db::run(&state.pool, |conn| User::list(conn).map_err(DbError::Query)).await?;
    Ok(users
        .into_iter()
        .filter(|u| u.is_active)
        .map(|u| u.email)
        .collect())
}

pub async fn new(state: web::Data<AppState>, admin: Admin) -> Result<HttpResponse, AdminError> {
    let mut form = KeyForm::defaults(state.key_defaults);
    form.owner = admin.user.email.clone();
    let page = NewKeyPage {
        layout: admin.layout("New key", "keys"),
        form,
        owners: owners(&state).await?,
    };
    render(&page, StatusCode::OK)
}

pub async fn create(
    state: web::Data<AppState>,
    admin: Admin,
    form: Form,
) -> Result<HttpResponse, AdminError> {
    admin.check_csrf(&form)?;
    let mut key_form = KeyForm::read(&form);
    let Some((name, limits, expires_at)) = key_form.parse() else {
        let page = NewKeyPage {
            layout: admin.layout("New key", "keys"),
            form: key_form,
            owners: owners(&state).await?,
        };
        return render(&page, StatusCode::BAD_REQUEST);
    };
    let owner = Some(key_form.owner.clone()).filter(|o| !o.is_empty());
    let new = NewKey {
        name,
        owner,
        limits,
        expires_at,
    };
    let (record, issued) = match service::create(&state.pool, admin.actor(), state.key_defaults, new).await {
        Ok(created) => created,
        Err(
            e @ (service::KeyError::Invalid(_)
            | service::KeyError::UnknownOwner
            | service::KeyError::OwnerInactive),
        ) => {
            key_form.errors = match e {
                service::KeyError::Invalid(fields) => {
                    fields.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
                }
                other => HashMap::from([("owner".to_owned(), other.to_string())]),
            };
            let page = NewKeyPage {
                layout: admin.layout("New key", "keys"),
                form: key_form,
                owners: owners(&state).await?,
            };
            return render(&page, StatusCode::BAD_REQUEST);
        }
        Err(e) => return Err(e.into()),
    };
    // The secret waits (≤ 60 s, one read) server-side for the page that shows it; never in the
    // session.
    let nonce = state
        .handoff
        .put(record.key.id, admin.user.id, issued.expose())
        .await
        .map_err(AdminError::internal)?;
    Ok(redirect(&format!(
        "/admin/keys/{}/created?n={nonce}",
        record.key.id
    )))
}

#[derive(Deserialize)]
pub struct CreatedQuery {
    n: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/key_created.html")]
struct CreatedPage {
    layout: Layout,
    id: i64,
    name: String,
    key: Option<String>,
}

/// Shows the new key once: the handoff record is deleted as it is read, and the page is never
/// cached, so reloading or going back shows only a notice.
pub async fn created(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<i64>,
    query: web::Query<CreatedQuery>,
) -> Result<HttpResponse, AdminError> {
    let record = service::get(&state.pool, admin.actor(), *id).await?;
    let key = match &query.n {
        Some(nonce) => state.handoff.take(nonce, record.key.id, admin.user.id).await,
        None => None,
    };
    let page = CreatedPage {
        layout: admin.layout("Key created", "keys"),
        id: record.key.id,
        name: record.key.name,
        key,
    };
    let mut response = render(&page, StatusCode::OK)?;
    response
        .headers_mut()
        .insert(header::PRAGMA, header::HeaderValue::from_static("no-cache"));
    Ok(response)
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
    fn of(history: &[crate::db::models::UsageRow]) -> Chart {
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

fn duration_text(seconds: u64) -> String {
    match seconds {
        0..=90 => format!("{seconds} s"),
        91..=5_400 => format!("{} min", seconds.div_ceil(60)),
        _ => format!("{} h", seconds.div_ceil(3_600)),
    }
}

#[derive(Template)]
#[template(path = "admin/key_detail.html")]
struct DetailPage {
    layout: Layout,
    key: KeyRow,
    created: String,
    expires: String,
    last_used_at: String,
    is_active: bool,
    form: KeyForm,
    bars: Vec<UsageBar>,
    chart: Chart,
    allowed: i64,
    rejected: i64,
}

async fn detail_page(
    state: &AppState,
    admin: &Admin,
    record: &KeyRecord,
    form: KeyForm,
) -> Result<DetailPage, AdminError> {
    let now = db::now();
    let (_, usage) = service::usage(&state.pool, admin.actor(), record.key.id, now).await?;
    let policy = KeyInfo::policy_of(&record.key);
    let bars = match state.limiter.peek(Bucket::Key(record.key.id), &policy).await {
        Ok(decision) => decision
            .counts
            .iter()
            .map(|c| {
                let used = c.used();
                let percent = c.limit.map_or(0, |l| (used * 100 / u64::from(l.max(1))).min(100));
                UsageBar {
                    window: c.window.name(),
                    used: thousands(used),
                    limit: c
                        .limit
                        .map_or_else(|| "no limit".to_owned(), |l| thousands(u64::from(l))),
                    percent,
                    level: match percent {
                        0..=74 => "ok",
                        75..=99 => "warn",
                        _ => "full",
                    },
                    resets_in: duration_text(c.reset_ms().div_ceil(1000)),
                }
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    Ok(DetailPage {
        layout: admin.layout(record.key.name.clone(), "keys"),
        key: KeyRow::of(&record.key, &record.owner_email, now),
        created: utc(record.key.created_at),
        expires: record.key.expires_at.map_or_else(|| "never".to_owned(), utc),
        last_used_at: record.key.last_used_at.map_or_else(|| "never".to_owned(), utc),
        is_active: record.key.is_active,
        form,
        bars,
        chart: Chart::of(&usage.history),
        allowed: usage.totals.allowed,
        rejected: usage.totals.rejected,
    })
}

pub async fn detail(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<i64>,
) -> Result<HttpResponse, AdminError> {
    let record = service::get(&state.pool, admin.actor(), *id).await?;
    let form = KeyForm::of(&record.key);
    render(&detail_page(&state, &admin, &record, form).await?, StatusCode::OK)
}

pub async fn update(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<i64>,
    form: Form,
) -> Result<HttpResponse, AdminError> {
    admin.check_csrf(&form)?;
    let record = service::get(&state.pool, admin.actor(), *id).await?;
    let mut key_form = KeyForm::read(&form);
    let Some((name, limits, expires_at)) = key_form.parse() else {
        let page = detail_page(&state, &admin, &record, key_form).await?;
        return render(&page, StatusCode::BAD_REQUEST);
    };
    let patch = KeyPatch {
        name: Some(name),
        per_minute: Some(limits.per_minute),
        per_hour: Some(limits.per_hour),
        per_day: Some(limits.per_day),
        expires_at: Some(expires_at),
        is_active: None,
    };
    service::update(
        &state.pool,
        &state.keys,
        admin.actor(),
        state.key_defaults,
        *id,
        patch,
    )
    .await?;
    admin.flash("success", "Key saved.");
    Ok(redirect(&format!("/admin/keys/{id}")))
}

/// `POST /admin/keys/{id}/activate|deactivate`, confirmed first.
pub async fn switch(
    state: web::Data<AppState>,
    admin: Admin,
    path: web::Path<(i64, Switch)>,
    form: Form,
) -> Result<HttpResponse, AdminError> {
    admin.check_csrf(&form)?;
    let (id, switch) = path.into_inner();
    let record = service::get(&state.pool, admin.actor(), id).await?;
    let confirmation = Confirmation {
        switch,
        noun: "key",
        section: "keys",
        subject: format!("the key “{}” ({}…)", record.key.name, record.key.prefix),
        consequence: if switch.active() {
            "Requests with this key will be accepted again."
        } else {
            "Requests with this key will be refused on every instance within a second. You can reactivate it later."
        },
        base: format!("/admin/keys/{id}"),
        cancel: format!("/admin/keys/{id}"),
    };
    if let Some(page) = confirmation.ask(&admin, &form) {
        return page;
    }
    let patch = KeyPatch {
        is_active: Some(switch.active()),
        ..KeyPatch::default()
    };
    service::update(
        &state.pool,
        &state.keys,
        admin.actor(),
        state.key_defaults,
        id,
        patch,
    )
    .await?;
    admin.flash("success", confirmation.done());
    Ok(redirect(&format!("/admin/keys/{id}")))
}
