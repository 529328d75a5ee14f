//! `/api/api-keys/`: the caller's keys (an admin's: everyone's).

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::analytics::Span;
use crate::clock::Now;
use crate::contract::{Contract, IpAllowlist, Meta, Scopes};
use crate::db::models::ApiKey;
use crate::db::{KeyId, UserId};
use crate::error::ApiError;
use crate::keys::secret::IssuedKey;
use crate::keys::service::{self, CreditRequest, KeyChange, KeyPatch, KeyRecord, NewKey};
use crate::keys::{KeyName, KeyStatus};
use crate::ledger::{self, CreditChange};
use crate::limits::credits::{Adjustment, CreditState, Interval, Refill};
use crate::limits::{Limit, Limits};
use crate::policy;
use crate::routes::api::body::{Fields, JsonObject, whole_number};
use crate::routes::api::principal::Principal;
use crate::state::AppState;

fn utc(at: NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}

/// A key as the API shows it: never the secret, never its hash.
#[derive(Serialize)]
pub struct KeyView<'a> {
    id: KeyId,
    name: &'a str,
    prefix: &'a str,
    owner: &'a str,
    owner_id: UserId,
    rate_limit_per_minute: Option<i32>,
    rate_limit_per_hour: Option<i32>,
    rate_limit_per_day: Option<i32>,
    rate_limit_per_month: Option<i32>,
    expires_at: Option<DateTime<Utc>>,
    is_active: bool,
    status: &'static str,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    meta: Option<Value>,
    scopes: Vec<&'a str>,
    ip_allowlist: Vec<String>,
    /// While the secret a roll replaced still works: when it stops.
    previous_secret_expires_at: Option<DateTime<Utc>>,
    /// Credits left; `None`: unlimited.
    remaining: Option<u64>,
    refill: Option<RefillView>,
    next_refill_at: Option<DateTime<Utc>>,
}

/// Refill terms as the API shows and takes them.
#[derive(Serialize)]
pub struct RefillView {
    amount: u32,
    interval: &'static str,
    day_of_month: Option<u8>,
}

impl RefillView {
    pub fn of(refill: Refill) -> RefillView {
        let (interval, day_of_month) = match refill.interval {
            Interval::Day => ("day", None),
            Interval::Month { day } => ("month", Some(day)),
        };
        RefillView {
            amount: refill.amount,
            interval,
            day_of_month,
        }
    }
}

/// When the next refill comes, for the API.
pub fn next_refill_at(refill: Option<Refill>, now: Now) -> Option<DateTime<Utc>> {
    let at = refill?.next_at_ms(now.unix_ms());
    DateTime::from_timestamp_millis(at as i64)
}

/// Credit fields of a body (admins only; checked by the policy): `remaining` (a balance, or
/// null for unlimited) and `refill` (`{amount, interval, day_of_month}`, or null for none).
pub fn parse_credits(f: &mut Fields) -> CreditChange {
    let remaining = f.integer("remaining", |n| {
        credit_amount(n).map_err(|e| format!("{e}, or null for unlimited"))
    });
    let refill = f.json("refill", parse_refill);
    CreditChange {
        remaining,
        refill,
        add: None,
    }
}

/// A number of credits: 0 to 2⁵³ (what the databases' `BIGINT` and a Redis double hold).
fn credit_amount(n: i64) -> Result<u64, String> {
    u64::try_from(n)
        .ok()
        .filter(|n| *n <= Adjustment::MAX)
        .ok_or_else(|| format!("must be a whole number from 0 to {}", Adjustment::MAX))
}

fn parse_refill(value: &Value) -> Result<Refill, String> {
    let object = value
        .as_object()
        .ok_or("must be an object {\"amount\", \"interval\", \"day_of_month\"} or null")?;
    if let Some(unknown) = object
        .keys()
        .find(|k| !["amount", "interval", "day_of_month"].contains(&k.as_str()))
    {
        return Err(format!("has an unknown field \"{unknown}\""));
    }
    let amount = object
        .get("amount")
        .and_then(whole_number)
        .ok_or("refill.amount must be a whole number")?;
    let interval = object
        .get("interval")
        .and_then(Value::as_str)
        .ok_or("refill.interval must be \"day\" or \"month\"")?;
    let day = match object.get("day_of_month") {
        None | Some(Value::Null) => None,
        Some(day) => Some(whole_number(day).ok_or("refill.day_of_month must be a whole number")?),
    };
    Refill::parse(amount, interval, day)
}

impl<'a> KeyView<'a> {
    pub fn of(record: &'a KeyRecord, at: Now) -> KeyView<'a> {
        let now = at.naive();
        let key: &ApiKey = &record.key;
        let refill = ledger::key_terms(key).and_then(|t| t.refill);
        KeyView {
            id: key.id,
            name: &key.name,
            prefix: &key.prefix,
            owner: &record.owner_email,
            owner_id: key.user_id,
            rate_limit_per_minute: key.rate_limit_per_minute,
            rate_limit_per_hour: key.rate_limit_per_hour,
            rate_limit_per_day: key.rate_limit_per_day,
            rate_limit_per_month: key.rate_limit_per_month,
            expires_at: key.expires_at.map(utc),
            is_active: key.is_active,
            status: KeyStatus::of(key, now).as_str(),
            created_at: utc(key.created_at),
            updated_at: utc(key.updated_at),
            last_used_at: key.last_used_at.map(utc),
            meta: Meta::of_column(key.meta.as_deref()).map(|m| m.to_value()),
            scopes: key.scopes.split_whitespace().collect(),
            ip_allowlist: IpAllowlist::of_column(&key.ip_allowlist).to_strings(),
            previous_secret_expires_at: key.replaced_secret_until(now).map(utc),
            remaining: key.remaining.map(|n| n.max(0) as u64),
            refill: refill.map(RefillView::of),
            next_refill_at: next_refill_at(refill, at),
        }
    }

    /// With the live balance (the counter store's) instead of the last checkpoint.
    pub fn live(mut self, balance: Option<CreditState>) -> KeyView<'a> {
        if self.remaining.is_some() {
            self.remaining = balance.map(|b| b.remaining).or(self.remaining);
        }
        self
    }
}

/// A key's live balance, for the views that show one key.
async fn balance(state: &AppState, key: &ApiKey, now: Now) -> Result<Option<CreditState>, ApiError> {
    Ok(state.ledger.key_balance(key, now).await?)
}

/// One key as the API shows it, with its live balance.
async fn shown(state: &AppState, record: &KeyRecord, now: Now) -> Result<HttpResponse, ApiError> {
    let balance = balance(state, &record.key, now).await?;
    Ok(HttpResponse::Ok().json(KeyView::of(record, now).live(balance)))
}

/// A new key's limits as a body gives them: an absent limit takes the default
/// (`KEY_RATE_LIMIT`); `null` means no limit.
pub fn limits_or(f: &mut Fields, defaults: Limits) -> Limits {
    let mut limit = |field, default| f.integer(field, Limit::parse).unwrap_or(default);
    Limits {
        per_minute: limit("rate_limit_per_minute", defaults.per_minute),
        per_hour: limit("rate_limit_per_hour", defaults.per_hour),
        per_day: limit("rate_limit_per_day", defaults.per_day),
        per_month: limit("rate_limit_per_month", defaults.per_month),
    }
}

/// A key's contract as a body gives it: each field absent, or its new value.
pub fn parse_contract(f: &mut Fields) -> (Option<Option<Meta>>, Option<Scopes>, Option<IpAllowlist>) {
    (
        f.json("meta", Meta::parse),
        f.json_non_null("scopes", Scopes::from_json),
        f.json_non_null("ip_allowlist", IpAllowlist::from_json),
    )
}

fn parse_new_key(body: JsonObject, defaults: Limits) -> Result<NewKey, ApiError> {
    let mut f = Fields::new(body);
    let name = f.required("name", KeyName::parse);
    let owner = f.text("owner", |s| Ok(s.to_owned()));
    let limits = limits_or(&mut f, defaults);
    let expires_at = f.timestamp("expires_at").flatten();
    let (meta, scopes, ip_allowlist) = parse_contract(&mut f);
    let credits = parse_credits(&mut f);
    f.finish()?;
    Ok(NewKey {
        credits,
        name: name.ok_or(ApiError::InvalidJson("name is missing".into()))?,
        owner,
        limits,
        expires_at,
        contract: Contract {
            meta: meta.flatten(),
            scopes: scopes.unwrap_or_default(),
            ip_allowlist: ip_allowlist.unwrap_or_default(),
        },
    })
}

fn parse_patch(body: JsonObject) -> Result<(KeyPatch, CreditChange), ApiError> {
    let mut f = Fields::new(body);
    let name = f.text("name", KeyName::parse);
    let (per_minute, per_hour, per_day, per_month) = (
        f.integer("rate_limit_per_minute", Limit::parse),
        f.integer("rate_limit_per_hour", Limit::parse),
        f.integer("rate_limit_per_day", Limit::parse),
        f.integer("rate_limit_per_month", Limit::parse),
    );
    let (expires_at, is_active) = (f.timestamp("expires_at"), f.boolean("is_active"));
    let (meta, scopes, ip_allowlist) = parse_contract(&mut f);
    let credits = parse_credits(&mut f);
    let patch = KeyPatch {
        name,
        change: KeyChange {
            per_minute,
            per_hour,
            per_day,
            per_month,
            expires_at,
            is_active,
            meta,
            scopes,
            ip_allowlist,
        },
    };
    f.finish()?;
    Ok((patch, credits))
}

pub async fn create(
    state: web::Data<AppState>,
    who: Principal,
    body: JsonObject,
    now: Now,
) -> Result<HttpResponse, ApiError> {
    let new = parse_new_key(body, state.key_defaults)?;
    let (record, issued) = service::create(&state.pool, who.actor(), state.key_defaults, new, now).await?;

    Ok(shown_once(&record, &issued, now))
}

/// 201 with the key and its secret, which this one answer shows (a new key, a rolled one).
fn shown_once(record: &KeyRecord, issued: &IssuedKey, now: Now) -> HttpResponse {
    #[derive(Serialize)]
    struct Created<'a> {
        #[serde(flatten)]
        view: KeyView<'a>,
        /// The full key: shown in this response only.
        key: &'a str,
    }
    HttpResponse::Created()
        .insert_header(("Location", format!("/api/api-keys/{}/", record.key.id)))
        .insert_header(("Cache-Control", "no-store"))
        .json(Created {
            view: KeyView::of(record, now),
            key: issued.expose(),
        })
}

/// `POST /api/api-keys/{id}/roll`: a new secret; the old one works `grace_seconds` more.
pub async fn roll(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<KeyId>,
    body: JsonObject,
    now: Now,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body);
    let max = service::MAX_GRACE.num_seconds();
    let grace = f
        .integer("grace_seconds", |n| {
            if (0..=max).contains(&n) {
                Ok(Duration::seconds(n))
            } else {
                Err(format!("must be from 0 to {max} seconds (7 days)"))
            }
        })
        .flatten();
    f.finish()?;
    let grace = grace.unwrap_or_else(Duration::zero);
    let (record, issued) = service::roll(&state.pool, &state.keys, who.actor(), *id, grace, now).await?;
    Ok(shown_once(&record, &issued, now))
}

#[derive(Deserialize)]
pub struct ListQuery {
    active: Option<bool>,
}

pub async fn list(
    state: web::Data<AppState>,
    who: Principal,
    query: web::Query<ListQuery>,
    now: Now,
) -> Result<HttpResponse, ApiError> {
    let records = service::list(&state.pool, who.actor(), query.active).await?;
    let views: Vec<KeyView<'_>> = records.iter().map(|r| KeyView::of(r, now)).collect();
    Ok(HttpResponse::Ok().json(views))
}

pub async fn get(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<KeyId>,
    now: Now,
) -> Result<HttpResponse, ApiError> {
    let record = service::get(&state.pool, who.actor(), *id).await?;
    shown(&state, &record, now).await
}

pub async fn update(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<KeyId>,
    body: JsonObject,
    now: Now,
) -> Result<HttpResponse, ApiError> {
    let (patch, credits) = parse_patch(body)?;
    // Refused before anything changes: credits are for admins only.
    policy::may_change_credits(who.actor(), &credits).map_err(|r| ApiError::Forbidden(r.0))?;
    let record = service::update(
        &state.pool,
        &state.keys,
        who.actor(),
        state.key_defaults,
        *id,
        patch,
        now,
    )
    .await?;
    if credits.is_empty() {
        return shown(&state, &record, now).await;
    }
    let (record, _) = service::change_credits(
        &state.pool,
        &state.keys,
        &state.ledger,
        who.actor(),
        *id,
        credits.into(),
        now,
    )
    .await?;
    shown(&state, &record, now).await
}

/// `POST /api/api-keys/{id}/credits` (admins): `{"add": N}` tops the balance up, `{"set": N}`
/// replaces it; after any refill due, atomically with the requests spending from it.
pub async fn credits(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<KeyId>,
    body: JsonObject,
    now: Now,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body);
    let add = f.integer("add", credit_amount).flatten();
    let set = f.integer("set", credit_amount).flatten();
    match (add, set) {
        (Some(_), Some(_)) => f.error("set", "give either add or set, not both"),
        (None, None) => f.error("add", "give add or set (a whole number)"),
        _ => {}
    }
    f.finish()?;
    let change = CreditChange {
        remaining: set.map(Some),
        refill: None,
        add,
    };
    let request = CreditRequest {
        change,
        idempotency: idempotency_key(&req)?,
    };
    let (record, replayed) = service::change_credits(
        &state.pool,
        &state.keys,
        &state.ledger,
        who.actor(),
        *id,
        request,
        now,
    )
    .await?;
    let mut answer = shown(&state, &record, now).await?;
    if replayed {
        answer.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("idempotent-replayed"),
            actix_web::http::header::HeaderValue::from_static("true"),
        );
    }
    Ok(answer)
}

/// `Idempotency-Key` (Stripe's convention): 1–255 visible ASCII characters, or none.
fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default();
    if text.is_empty() || text.len() > 255 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        let mut errors = crate::validation::FieldErrors::new();
        errors.add("Idempotency-Key", "must be 1 to 255 visible ASCII characters");
        return Err(ApiError::ValidationError(errors));
    }
    Ok(Some(text.to_owned()))
}

pub async fn deactivate(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<KeyId>,
    now: Now,
) -> Result<HttpResponse, ApiError> {
    service::deactivate(
        &state.pool,
        &state.keys,
        who.actor(),
        state.key_defaults,
        *id,
        now,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn stats(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<KeyId>,
    now: Now,
) -> Result<HttpResponse, ApiError> {
    let (record, usage) = crate::analytics::key_usage(&state.pool, who.actor(), *id, Span::Day, now).await?;
    // Live counts of the current windows, read from the counter store without counting.
    let owner = crate::users::find(&state.pool, record.key.user_id).await?;
    let current = state.ledger.peek_key(&record.key, &owner, now).await?;
    let credits = current.quota.as_ref().map(|q| {
        let balance = |b: Option<crate::limits::credits::Balance>| {
            b.map(|b| {
                let next = b
                    .next_refill_ms
                    .and_then(|ms| DateTime::from_timestamp_millis(ms as i64));
                json!({"remaining": b.remaining, "next_refill_at": next})
            })
        };
        json!({"key": balance(q.credits), "plan": balance(q.plan_credits)})
    });
    let current: serde_json::Map<String, serde_json::Value> = current
        .counts
        .iter()
        .map(|c| {
            let entry = json!({
                "limit": c.limit,
                "used": c.used(),
                "remaining": c.remaining(),
                "reset": c.reset_ms().div_ceil(1000),
            });
            (c.window.name().to_owned(), entry)
        })
        .collect();
    let history: Vec<_> = usage
        .history
        .iter()
        .map(|row| json!({"hour": utc(row.start), "allowed": row.allowed, "rejected": row.rejected}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "id": record.key.id,
        "last_used_at": record.key.last_used_at.map(utc),
        "current": current,
        "credits": credits,
        "totals": {"allowed": usage.totals.allowed, "rejected": usage.totals.rejected},
        "history": history,
    })))
}
