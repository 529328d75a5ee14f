//! `POST /api/keys/verify`: for services that check keys themselves (as with Unkey). The caller
//! is an admin (bearer token) or a service holding an API key with the scope `keygate:verify`
//! (so a service needs no admin account, as Unkey's root keys). It asks whether a key is good —
//! active, used from an allowed address (`ip`, when given), holding the `scopes` it needs — and
//! counts `cost` requests against its limits (0: only checks). Not counted by the gate itself:
//! the caller is a service, not a consumer.

use std::net::IpAddr;

use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::clock::Now;
use crate::contract::{Scope, Scopes};
use crate::credentials::{self, Credential};
use crate::error::ApiError;
use crate::keys::KeyStatus;
use crate::keys::cache::KeyInfo;
use crate::keys::secret::PresentedKey;
use crate::limits::{Bucket, Refusal};
use crate::routes::api::body::{Fields, JsonObject};
use crate::routes::api::principal::Principal;
use crate::rules::MAX_COST;
use crate::state::AppState;

/// The scope that lets a key call this endpoint.
pub const VERIFY_SCOPE: &str = "keygate:verify";

/// What a caller asks.
struct Question {
    key: String,
    scopes: Vec<Scope>,
    cost: u32,
    ip: Option<IpAddr>,
}

pub async fn verify(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: JsonObject,
    now: Now,
) -> Result<HttpResponse, ApiError> {
    may_verify(&req, &state, now).await?;
    let question = question(body)?;
    let info = match PresentedKey::parse(&question.key) {
        Ok(presented) => state.keys.lookup(&state.pool, &presented).await?,
        Err(_) => None,
    };
    let Some(info) = info else {
        return Ok(HttpResponse::Ok().json(json!({
            "valid": false, "code": "NOT_FOUND", "key_id": null, "owner": null, "name": null,
            "meta": null, "scopes": [], "expires_at": null,
            "limits": null, "remaining": null, "reset": null, "ratelimit": null,
        })));
    };
    let mut missing = Vec::new();
    let verdict = match info.status_at(now) {
        KeyStatus::Expired => Verdict::of("EXPIRED"),
        KeyStatus::Inactive => Verdict::of("INACTIVE"),
        KeyStatus::Active if question.ip.is_some() && !info.ip_allowlist.allows(question.ip) => {
            Verdict::of("IP_NOT_ALLOWED")
        }
        KeyStatus::Active => {
            missing = info.scopes.missing(&question.scopes);
            if missing.is_empty() {
                windows(&state, &info, question.cost, now).await?
            } else {
                Verdict::of("INSUFFICIENT_SCOPES")
            }
        }
    };
    Ok(HttpResponse::Ok().json(answer(&info, &verdict, &missing)))
}

/// An admin's bearer token, or an API key holding `keygate:verify` (active, and used from an
/// address its allowlist allows).
async fn may_verify(req: &HttpRequest, state: &AppState, now: Now) -> Result<(), ApiError> {
    let Credential::ApiKey(presented) = credentials::of(req.headers()) else {
        let who = Principal::extract(req).await?;
        return crate::policy::require_admin(who.actor(), "verify keys")
            .map_err(|r| ApiError::Forbidden(r.0));
    };
    let info = crate::gate::active_key(state, &presented, now).await?;
    if !info.ip_allowlist.allows(crate::gate::client_ip(state, req)) {
        return Err(ApiError::IpNotAllowed);
    }
    let needed = Scope::parse(VERIFY_SCOPE).map_err(|e| ApiError::internal(std::io::Error::other(e)))?;
    if info.scopes.grants(&needed) {
        Ok(())
    } else {
        Err(ApiError::InsufficientScope(vec![VERIFY_SCOPE.to_owned()]))
    }
}

fn question(body: JsonObject) -> Result<Question, ApiError> {
    let mut f = Fields::new(body);
    let key = f.required("key", |s| Ok(s.to_owned()));
    let scopes = f
        .json_non_null("scopes", |v| {
            let scopes = Scopes::from_json(v)?;
            match scopes.iter().find(|s| s.as_str().ends_with('*')) {
                Some(s) => Err(format!("\"{s}\": name the scopes needed, not a wildcard")),
                None => Ok(scopes.iter().cloned().collect::<Vec<_>>()),
            }
        })
        .unwrap_or_default();
    let cost = f.integer("cost", |n| {
        u32::try_from(n)
            .ok()
            .filter(|c| *c <= MAX_COST)
            .ok_or_else(|| format!("must be a whole number from 0 to {MAX_COST}"))
    });
    // Before `cost` existed: `"consume": false` only checked.
    let consume = f.boolean("consume");
    let ip = f.text("ip", |s| {
        s.trim()
            .parse::<IpAddr>()
            .map_err(|_| "must be an IPv4 or IPv6 address".into())
    });
    f.finish()?;
    let cost = match (cost.flatten(), consume) {
        (Some(cost), _) => cost,
        (None, Some(false)) => 0,
        (None, _) => 1,
    };
    Ok(Question {
        key: key.ok_or_else(|| ApiError::InvalidJson("key is missing".into()))?,
        scopes,
        cost,
        ip,
    })
}

fn answer(info: &KeyInfo, verdict: &Verdict, missing: &[&Scope]) -> Value {
    let limits: serde_json::Map<String, Value> = info
        .policy
        .windows()
        .iter()
        .map(|(w, l)| (w.name().to_owned(), json!(l)))
        .collect();
    let expires_at = info
        .expires_at
        .and_then(|at| chrono::DateTime::from_timestamp(at, 0))
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let mut answer = json!({
        "valid": verdict.code == "VALID",
        "code": verdict.code,
        "key_id": info.id,
        "owner": info.owner_email,
        "name": info.name,
        "meta": info.meta.as_ref().map(|m| m.to_value()),
        "scopes": info.scopes,
        "expires_at": expires_at,
        "limits": limits,
        "remaining": verdict.credits,
        "reset": verdict.reset,
        "ratelimit": verdict.ratelimit,
    });
    if !missing.is_empty() {
        answer["missing_scopes"] = json!(missing.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    }
    answer
}

/// An active key's verdict: its code, the credits left (`null`: unlimited), and the binding
/// window's room and wait.
struct Verdict {
    code: &'static str,
    credits: Value,
    reset: Value,
    ratelimit: Value,
}

impl Verdict {
    fn of(code: &'static str) -> Verdict {
        Verdict {
            code,
            credits: Value::Null,
            reset: Value::Null,
            ratelimit: Value::Null,
        }
    }
}

/// Counts `cost` requests against an active key (0: none) — its windows, and with credits or
/// a plan, everything the gate would check — and reports its room: `USAGE_EXCEEDED` when a
/// balance cannot pay, `RATE_LIMITED` when a window is full.
async fn windows(state: &AppState, info: &KeyInfo, cost: u32, now: Now) -> Result<Verdict, ApiError> {
    let decision = match &info.ask {
        Some(ask) => state.ledger.charge(ask, cost, now).await?,
        None => state
            .limiter
            .hit(Bucket::Key(info.id), &info.policy, cost, now)
            .await
            .map_err(|_| ApiError::RateLimiterUnavailable)?,
    };
    if cost > 0 {
        state.usage.record(info.id, decision.allowed, now);
    }
    let quota = decision.quota.as_deref();
    let balances = quota
        .into_iter()
        .flat_map(|q| [q.credits, q.plan_credits])
        .flatten();
    let credits = balances.map(|b| b.remaining).min();
    let windows = decision.counts.iter().chain(
        quota
            .and_then(|q| q.plan.as_ref())
            .into_iter()
            .flat_map(|p| p.iter()),
    );
    let full = windows.clone().any(|c| c.remaining() == Some(0));
    let code = match (decision.allowed, decision.refused_by()) {
        (false, Some(Refusal::Credits { .. })) => "USAGE_EXCEEDED",
        (false, _) => "RATE_LIMITED",
        (true, _) if cost == 0 && credits == Some(0) => "USAGE_EXCEEDED",
        (true, _) if cost == 0 && full => "RATE_LIMITED",
        (true, _) => "VALID",
    };
    let mut verdict = Verdict::of(code);
    verdict.credits = json!(credits);
    let binding = windows
        .filter(|c| c.limit.is_some())
        .min_by_key(|c| c.remaining());
    if let Some(window) = binding {
        let wait = if code == "RATE_LIMITED" {
            window.retry_after_ms()
        } else {
            window.reset_ms()
        };
        verdict.reset = json!(wait.div_ceil(1000));
        verdict.ratelimit = json!({
            "limit": window.limit, "remaining": window.remaining(), "reset": wait.div_ceil(1000),
        });
    }
    Ok(verdict)
}
