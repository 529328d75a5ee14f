//! Dashboard pages for keys: list (search, filter, sort, pages), create (the key shown once),
//! detail (usage bars, 24-hour chart, edit form), deactivate and activate (confirmed).

mod form;
mod lifecycle;
mod view;

pub use form::KeyForm;
use form::{ListQuery, PER_PAGE};
pub use lifecycle::{created, roll, switch};
use view::utc;
pub use view::{KeyRow, UsageBar, thousands};

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;

use crate::analytics::Span;
use crate::clock::Now;
use crate::db::KeyId;
use crate::db::models::{ApiKey, User};
use crate::db::{self, DbError};
use crate::keys::service::{self, KeyChange, KeyPatch, KeyRecord, NewKey};
use crate::ledger::{self, CreditChange};
use crate::limits::Limits;
use crate::limits::credits::{Adjustment, Interval, Refill};
use crate::routes::admin::AdminError;
use crate::routes::admin::chart::Chart;
use crate::routes::admin::{Form, Layout, Member, redirect, render};
use crate::state::AppState;
use crate::users;

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

pub async fn list(
    state: web::Data<AppState>,
    member: Member,
    query: web::Query<ListQuery>,
    now: Now,
) -> Result<HttpResponse, AdminError> {
    let query = query.into_inner();
    let page = query.page.unwrap_or(1).clamp(1, 1_000_000);
    let mut search = query.search(page);
    // A user's list is their own keys; an admin's, everyone's.
    search.owner = (!member.is_admin()).then_some(member.user.id);
    let (rows, total) = db::run(&state.pool, move |conn| {
        ApiKey::search(conn, &search, now.naive()).map_err(DbError::Query)
    })
    .await?;
    let page_view = KeysPage {
        layout: member.layout("Keys", "keys"),
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
#[derive(Template)]
#[template(path = "admin/key_new.html")]
struct NewKeyPage {
    layout: Layout,
    form: KeyForm,
    owners: Vec<String>,
    /// What a user may set at most (their ceiling), in words.
    ceiling: String,
}

/// Whom a key may be created for: any active user for an admin, only themselves for a user.
async fn owners(state: &AppState, member: &Member) -> Result<Vec<String>, AdminError> {
    if !member.is_admin() {
        return Ok(vec![member.user.email.clone()]);
    }
    let users = db::run(&state.pool, |conn| User::list(conn).map_err(DbError::Query)).await?;
    Ok(users
        .into_iter()
        .filter(|u| u.is_active)
        .map(|u| u.email)
        .collect())
}

/// `60/minute, 1,000/hour, no limit per day`.
pub fn ceiling_text(ceiling: &Limits) -> String {
    ceiling
        .in_use()
        .iter()
        .map(|(window, limit)| match limit {
            Some(n) => format!("{}/{}", thousands(u64::from(*n)), window.name()),
            None => format!("no limit per {}", window.name()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The new-key page with `form` (prefilled, or as typed with its errors).
async fn new_key_page(
    state: &AppState,
    member: &Member,
    form: KeyForm,
    status: StatusCode,
) -> Result<HttpResponse, AdminError> {
    let page = NewKeyPage {
        layout: member.layout("New key", "keys"),
        form,
        owners: owners(state, member).await?,
        ceiling: ceiling_text(&users::ceiling(&member.user, &state.key_defaults)),
    };
    render(&page, status)
}

pub async fn new(state: web::Data<AppState>, member: Member) -> Result<HttpResponse, AdminError> {
    // A user's form starts at their ceiling: the most they may set.
    let defaults = if member.is_admin() {
        state.key_defaults
    } else {
        users::ceiling(&member.user, &state.key_defaults)
    };
    let mut form = KeyForm::defaults(defaults);
    form.owner = member.user.email.clone();
    new_key_page(&state, &member, form, StatusCode::OK).await
}

pub async fn create(
    state: web::Data<AppState>,
    member: Member,
    form: Form,
    now: Now,
) -> Result<HttpResponse, AdminError> {
    member.check_csrf(&form)?;
    let mut key_form = KeyForm::read(&form);
    let Some(parsed) = key_form.parse() else {
        return new_key_page(&state, &member, key_form, StatusCode::BAD_REQUEST).await;
    };
    let owner = Some(key_form.owner.clone()).filter(|o| !o.is_empty());
    let new = NewKey {
        name: parsed.name,
        owner,
        limits: parsed.limits,
        expires_at: parsed.expires_at,
        contract: parsed.contract,
        credits: CreditChange::default(),
    };
    let (record, issued) =
        match service::create(&state.pool, member.actor(), state.key_defaults, new, now).await {
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
                return new_key_page(&state, &member, key_form, StatusCode::BAD_REQUEST).await;
            }
            Err(e) => return Err(e.into()),
        };
    // The secret waits (≤ 60 s, one read) server-side for the page that shows it; never in the
    // session.
    let nonce = state
        .handoff
        .put(record.key.id, member.user.id, issued.expose())
        .await
        .map_err(AdminError::internal)?;
    Ok(redirect(&format!(
        "/admin/keys/{}/created?n={nonce}",
        record.key.id
    )))
}

#[derive(Template)]
#[template(path = "admin/key_detail.html")]
struct DetailPage {
    layout: Layout,
    key: KeyRow,
    created: String,
    expires: String,
    /// While a rolled-away secret still works: until when (UTC).
    previous_until: Option<String>,
    last_used_at: String,
    is_active: bool,
    form: KeyForm,
    bars: Vec<UsageBar>,
    chart: Chart,
    allowed: i64,
    rejected: i64,
    /// `None`: unlimited.
    credits: Option<CreditsCard>,
    /// Whether the viewer may change credits (admins).
    may_change_credits: bool,
    refill_form: RefillForm,
}

/// A key's balance, as the key page shows it.
struct CreditsCard {
    remaining: String,
    /// The same, without separators, for the form.
    raw: String,
    next_refill: Option<String>,
    refill: String,
}

async fn detail_page(
    state: &AppState,
    member: &Member,
    record: &KeyRecord,
    (form, span): (KeyForm, Span),
    now: Now,
) -> Result<DetailPage, AdminError> {
    let (_, usage) =
        crate::analytics::key_usage(&state.pool, member.actor(), record.key.id, span, now).await?;
    let owner = crate::users::find(&state.pool, record.key.user_id).await?;
    let current = state.ledger.peek_key(&record.key, &owner, now).await.ok();
    let bars = current
        .as_ref()
        .map(|d| d.counts.iter().map(UsageBar::of).collect())
        .unwrap_or_default();
    let refill = ledger::key_terms(&record.key).and_then(|t| t.refill);
    let credits = CreditsCard::of(&record.key, current.as_ref(), now);
    Ok(DetailPage {
        layout: member.layout(record.key.name.clone(), "keys"),
        key: KeyRow::of(&record.key, &record.owner_email, now),
        created: utc(record.key.created_at),
        expires: record.key.expires_at.map_or_else(|| "never".to_owned(), utc),
        previous_until: record.key.replaced_secret_until(now.naive()).map(utc),
        last_used_at: record.key.last_used_at.map_or_else(|| "never".to_owned(), utc),
        is_active: record.key.is_active,
        form,
        bars,
        chart: Chart::of(&usage.history, span),
        allowed: usage.totals.allowed,
        rejected: usage.totals.rejected,
        credits,
        may_change_credits: member.actor().is_admin,
        refill_form: RefillForm::of(refill),
    })
}

impl CreditsCard {
    /// The live balance from `current` (the store's), else the checkpoint; `None` without
    /// credits.
    fn of(key: &ApiKey, current: Option<&crate::limits::Decision>, now: Now) -> Option<CreditsCard> {
        let refill = ledger::key_terms(key)?.refill;
        let live = current.and_then(|d| d.quota.as_ref()).and_then(|q| q.credits);
        let remaining = live
            .map(|b| b.remaining)
            .or(key.remaining.map(|n| n.max(0) as u64))
            .unwrap_or(0);
        Some(CreditsCard {
            remaining: thousands(remaining),
            raw: remaining.to_string(),
            next_refill: refill
                .map(|r| r.next_at_ms(now.unix_ms()))
                .and_then(|ms| chrono::DateTime::from_timestamp_millis(ms as i64))
                .map(|at| utc(at.naive_utc())),
            refill: refill.map_or_else(|| "never".to_owned(), refill_text),
        })
    }
}

fn refill_text(refill: Refill) -> String {
    match refill.interval {
        Interval::Day => format!("to {} every day (UTC)", thousands(u64::from(refill.amount))),
        Interval::Month { day } => format!(
            "to {} every month on day {day} (UTC)",
            thousands(u64::from(refill.amount))
        ),
    }
}

/// The refill fields of the credits form, as shown.
struct RefillForm {
    interval: &'static str,
    amount: String,
    day: String,
}

impl RefillForm {
    fn of(refill: Option<Refill>) -> RefillForm {
        match refill {
            None => RefillForm {
                interval: "none",
                amount: String::new(),
                day: "1".into(),
            },
            Some(r) => RefillForm {
                interval: match r.interval {
                    Interval::Day => "day",
                    Interval::Month { .. } => "month",
                },
                amount: r.amount.to_string(),
                day: match r.interval {
                    Interval::Month { day } => day.to_string(),
                    Interval::Day => "1".into(),
                },
            },
        }
    }
}

/// `POST /admin/keys/{id}/credits` (admins): set the balance (empty: unlimited) and the
/// refill, or add to the balance.
pub async fn credits(
    state: web::Data<AppState>,
    member: Member,
    id: web::Path<KeyId>,
    form: Form,
    now: Now,
) -> Result<HttpResponse, AdminError> {
    member.check_csrf(&form)?;
    let change = credit_change(&form).map_err(AdminError::BadRequest)?;
    service::change_credits(
        &state.pool,
        &state.keys,
        &state.ledger,
        member.actor(),
        *id,
        change.into(),
        now,
    )
    .await?;
    member.flash("success", "Credits saved.");
    Ok(redirect(&format!("/admin/keys/{id}")))
}

/// The credits form: `action` `add` (with `amount`) or `set` (with `remaining`, empty for
/// unlimited, and the refill fields).
fn credit_change(form: &std::collections::HashMap<String, String>) -> Result<CreditChange, String> {
    let number = |name: &str, what: &str| -> Result<u64, String> {
        crate::routes::admin::field(form, name)
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= Adjustment::MAX)
            .ok_or_else(|| format!("{what} must be a whole number from 0 to {}.", Adjustment::MAX))
    };
    match crate::routes::admin::field(form, "action") {
        "add" => Ok(CreditChange {
            add: Some(number("amount", "The credits to add")?),
            ..CreditChange::default()
        }),
        "set" => {
            let remaining = match crate::routes::admin::field(form, "remaining").trim() {
                "" => None,
                _ => Some(number("remaining", "The balance")?),
            };
            let refill = match crate::routes::admin::field(form, "refill_interval") {
                "none" | "" => None,
                interval => {
                    let amount = crate::routes::admin::field(form, "refill_amount")
                        .trim()
                        .parse::<i64>();
                    let day = crate::routes::admin::field(form, "refill_day")
                        .trim()
                        .parse::<i64>()
                        .ok();
                    let day = if interval == "month" {
                        day.or(Some(1))
                    } else {
                        None
                    };
                    Some(Refill::parse(amount.unwrap_or(0), interval, day)?)
                }
            };
            if remaining.is_none() && refill.is_some() {
                return Err("A refill needs a balance: give the credits left too.".into());
            }
            Ok(CreditChange {
                remaining: Some(remaining),
                refill: Some(refill),
                add: None,
            })
        }
        _ => Err("Choose to add credits or to set the balance.".into()),
    }
}

/// `?span=24h|7d|30d`: the chart's period (anything else: 24 hours).
#[derive(serde::Deserialize)]
pub struct SpanQuery {
    span: Option<String>,
}

impl SpanQuery {
    pub fn span(&self) -> Span {
        self.span.as_deref().and_then(Span::parse).unwrap_or_default()
    }
}

pub async fn detail(
    state: web::Data<AppState>,
    member: Member,
    id: web::Path<KeyId>,
    query: web::Query<SpanQuery>,
    now: Now,
) -> Result<HttpResponse, AdminError> {
    let record = service::get(&state.pool, member.actor(), *id).await?;
    let form = KeyForm::of(&record.key);
    render(
        &detail_page(&state, &member, &record, (form, query.span()), now).await?,
        StatusCode::OK,
    )
}

pub async fn update(
    state: web::Data<AppState>,
    member: Member,
    id: web::Path<KeyId>,
    form: Form,
    now: Now,
) -> Result<HttpResponse, AdminError> {
    member.check_csrf(&form)?;
    let record = service::get(&state.pool, member.actor(), *id).await?;
    let mut key_form = KeyForm::read(&form);
    let Some(parsed) = key_form.parse() else {
        let page = detail_page(&state, &member, &record, (key_form, Span::Day), now).await?;
        return render(&page, StatusCode::BAD_REQUEST);
    };
    let (limits, contract) = (parsed.limits, parsed.contract);
    let patch = KeyPatch {
        name: Some(parsed.name),
        change: KeyChange {
            per_minute: Some(limits.per_minute),
            per_hour: Some(limits.per_hour),
            per_day: Some(limits.per_day),
            per_month: Some(limits.per_month),
            expires_at: Some(parsed.expires_at),
            is_active: None,
            meta: Some(contract.meta),
            scopes: Some(contract.scopes),
            ip_allowlist: Some(contract.ip_allowlist),
        },
    };
    service::update(
        &state.pool,
        &state.keys,
        member.actor(),
        state.key_defaults,
        *id,
        patch,
        now,
    )
    .await?;
    member.flash("success", "Key saved.");
    Ok(redirect(&format!("/admin/keys/{id}")))
}
