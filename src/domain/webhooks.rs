//! Webhook endpoints (admins register them) and what delivery needs from the domain: the
//! signature, the retry schedule, the destination rule against SSRF, and the outbox's claim
//! and bookkeeping. The HTTP client that sends is the web edge's (`web::deliveries`).

use std::net::IpAddr;

use chrono::{Duration, NaiveDateTime};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::audit::{self, Change, Target};
use crate::clock::Now;
use crate::db::models::{Attempt, Delivery, Outcome, Webhook, WebhookChanges};
use crate::db::{self, DbError, DbPool};
use crate::events::EVENTS;
use crate::policy::{self, Actor, Refusal};
use crate::validation::FieldErrors;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("no such webhook")]
    NotFound,
    #[error("invalid webhook fields")]
    Invalid(FieldErrors),
    #[error(transparent)]
    Forbidden(#[from] Refusal),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for WebhookError {
    fn from(e: diesel::result::Error) -> WebhookError {
        WebhookError::Db(DbError::Query(e))
    }
}

/// A checked endpoint URL: `http` or `https`, a host, no credentials, at most 2,048 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl(url::Url);

impl EndpointUrl {
    pub fn parse(text: &str) -> Result<EndpointUrl, String> {
        if text.len() > 2_048 {
            return Err("must be at most 2,048 characters".into());
        }
        let url =
            url::Url::parse(text).map_err(|_| "must be an absolute http:// or https:// URL".to_owned())?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must be an http:// or https:// URL".into());
        }
        if url.host().is_none() {
            return Err("must name a host".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry a user name or password".into());
        }
        if url.fragment().is_some() {
            return Err("must not have a #fragment".into());
        }
        Ok(EndpointUrl(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &url::Url {
        &self.0
    }
}

/// Event names, checked: at least one, each known, no repeats.
pub fn parse_events(names: &[String]) -> Result<String, String> {
    if names.is_empty() {
        return Err(format!("must name at least one of {}", EVENTS.join(", ")));
    }
    let mut kept: Vec<&str> = Vec::new();
    for name in names {
        let Some(known) = EVENTS.iter().find(|e| **e == name) else {
            return Err(format!(
                "{name:?} is not an event; events are {}",
                EVENTS.join(", ")
            ));
        };
        if !kept.contains(known) {
            kept.push(known);
        }
    }
    Ok(kept.join(" "))
}

/// Whether a destination address is private, loopback, link-local or otherwise not on the
/// public Internet: refused unless `WEBHOOK_ALLOW_PRIVATE=1` (a webhook must not reach into
/// keygate's own network: cloud metadata at 169.254.169.254, databases, admin ports).
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                // Shared address space (carrier-grade NAT), and 192.0.0.0/24.
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                // Benchmarking (198.18.0.0/15).
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let segments = v6.segments();
            // IPv4-compatible (::a.b.c.d, deprecated; also :: and ::1) and 6to4
            // (2002:a.b.c.d::): the IPv4 address they carry decides.
            if segments[..6].iter().all(|s| *s == 0) {
                return true;
            }
            if segments[0] == 0x2002 {
                let [a, b] = segments[1].to_be_bytes();
                let [c, d] = segments[2].to_be_bytes();
                if is_internal(IpAddr::from([a, b, c, d])) {
                    return true;
                }
            }
            let first = segments[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // Unique local (fc00::/7), link-local (fe80::/10), site-local (fec0::/10).
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                // Teredo (2001::/32) tunnels to an IPv4 address of its own.
                || (first == 0x2001 && segments[1] == 0)
                // NAT64 and the documentation range.
                || first == 0x64 && v6.segments()[1] == 0xff9b
                || (first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// Resolves `url`'s host and checks every address: the first acceptable one to connect to.
/// Every address must pass, so a name that also resolves inside is refused whole.
pub async fn destination(url: &url::Url, allow_private: bool) -> Result<IpAddr, String> {
    let host = url
        .host_str()
        .ok_or("no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("could not resolve {host}: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    let first = *addresses
        .first()
        .ok_or_else(|| format!("{host} has no address"))?;
    if !allow_private && let Some(inside) = addresses.iter().find(|ip| is_internal(**ip)) {
        return Err(format!(
            "{host} resolves to {inside}, a private, loopback or link-local address (set WEBHOOK_ALLOW_PRIVATE=1 to allow)"
        ));
    }
    Ok(first)
}

/// A URL naming an internal address outright is refused when it is registered; a host name is
/// resolved and checked each time a delivery is sent ([`destination`]), where a name that
/// points inside (now, or after a change of DNS) is caught.
fn literal_allowed(url: &EndpointUrl, allow_private: bool) -> Result<(), WebhookError> {
    let literal = match url.url().host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    match literal {
        Some(ip) if !allow_private && is_internal(ip) => Err(WebhookError::Invalid(FieldErrors::single(
            "url",
            format!(
                "{ip} is a private, loopback or link-local address (set WEBHOOK_ALLOW_PRIVATE=1 to allow)"
            ),
        ))),
        _ => Ok(()),
    }
}

/// `Keygate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, as
/// Stripe signs.
pub fn signature(secret: &str, unix_secs: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{unix_secs}.{body}").as_bytes());
    format!("t={unix_secs},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A new secret: `whsec_` and 32 random bytes in hex.
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    format!("whsec_{}", hex::encode(bytes))
}

/// How long an event is retried before it is given up.
pub const RETRY_FOR: Duration = Duration::hours(24);
/// How long a claim holds: the delivery's timeout (5 s) and room to record it. An instance
/// killed mid-delivery leaves a claim that expires, and another (or it, restarted) sends again.
pub const CLAIM: Duration = Duration::seconds(10);

/// When to try again after `attempts` failed tries (1 s, 2 s, 4 s, … at most an hour), or
/// `None` once the event is older than a day.
pub fn retry_at(created: NaiveDateTime, attempts: i32, now: NaiveDateTime) -> Option<NaiveDateTime> {
    let wait = Duration::seconds(1i64 << (attempts - 1).clamp(0, 12)).min(Duration::hours(1));
    let next = now + wait;
    (next <= created + RETRY_FOR).then_some(next)
}

/// The auditable fields of an endpoint: never its secret.
fn fields(hook: &Webhook) -> audit::Fields {
    audit::into_fields(json!({
        "url": hook.url,
        "events": hook.events.split_whitespace().collect::<Vec<_>>(),
        "enabled": hook.enabled,
    }))
}

/// A new endpoint (admins). The secret is returned once; a URL naming an internal address is
/// refused (a name is checked when each delivery is sent).
pub async fn create(
    pool: &DbPool,
    actor: Actor,
    (url, events): (EndpointUrl, String),
    allow_private: bool,
    now: Now,
) -> Result<(Webhook, String), WebhookError> {
    policy::require_admin(actor, "manage webhooks")?;
    literal_allowed(&url, allow_private)?;
    let secret = new_secret();
    let hook = db::run(pool, {
        let secret = secret.clone();
        move |conn| {
            db::write(conn, |conn| {
                let hook = Webhook::insert(
                    conn,
                    &crate::db::models::NewWebhook {
                        url: url.as_str(),
                        events: &events,
                        secret: &secret,
                        enabled: true,
                        created_at: now.naive(),
                        updated_at: now.naive(),
                    },
                )?;
                let change = Change::created("webhook.created", Target::Webhook(hook.id), fields(&hook));
                audit::record(conn, actor, change, now)?;
                Ok::<_, WebhookError>(hook)
            })
        }
    })
    .await?;
    Ok((hook, secret))
}

/// A change of an endpoint: `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    pub url: Option<EndpointUrl>,
    pub events: Option<String>,
    pub enabled: Option<bool>,
}

pub async fn update(
    pool: &DbPool,
    actor: Actor,
    id: i64,
    patch: WebhookPatch,
    allow_private: bool,
    now: Now,
) -> Result<Webhook, WebhookError> {
    policy::require_admin(actor, "manage webhooks")?;
    if let Some(url) = &patch.url {
        literal_allowed(url, allow_private)?;
    }
    let changes = WebhookChanges {
        url: patch.url.map(|u| u.as_str().to_owned()),
        events: patch.events,
        enabled: patch.enabled,
        updated_at: Some(now.naive()),
    };
    db::run(pool, move |conn| {
        db::write(conn, |conn| {
            let before = Webhook::find(conn, id)?.ok_or(WebhookError::NotFound)?;
            let hook = Webhook::update(conn, id, &changes)?.ok_or(WebhookError::NotFound)?;
            let change = Change::diff(
                "webhook.updated",
                Target::Webhook(id),
                fields(&before),
                fields(&hook),
            );
            audit::record(conn, actor, change, now)?;
            Ok(hook)
        })
    })
    .await
}

pub async fn delete(pool: &DbPool, actor: Actor, id: i64, now: Now) -> Result<(), WebhookError> {
    policy::require_admin(actor, "manage webhooks")?;
    db::run(pool, move |conn| {
        db::write(conn, |conn| {
            let before = Webhook::find(conn, id)?.ok_or(WebhookError::NotFound)?;
            Webhook::delete(conn, id)?;
            let change = Change {
                action: "webhook.deleted",
                target: Target::Webhook(id),
                before: Some(fields(&before)),
                after: None,
            };
            audit::record(conn, actor, change, now)?;
            Ok(())
        })
    })
    .await
}

pub async fn list(pool: &DbPool, actor: Actor) -> Result<Vec<Webhook>, WebhookError> {
    policy::require_admin(actor, "manage webhooks")?;
    db::run(pool, |conn| Ok(Webhook::list(conn)?)).await
}

/// An endpoint and its most recent deliveries (newest first).
pub async fn get(pool: &DbPool, actor: Actor, id: i64) -> Result<(Webhook, Vec<Delivery>), WebhookError> {
    policy::require_admin(actor, "manage webhooks")?;
    db::run(pool, move |conn| {
        let hook = Webhook::find(conn, id)?.ok_or(WebhookError::NotFound)?;
        let deliveries = Delivery::recent(conn, id, 50)?;
        Ok((hook, deliveries))
    })
    .await
}

/// Sends a delivery of endpoint `webhook` again, with the same event id.
pub async fn resend(
    pool: &DbPool,
    actor: Actor,
    webhook: i64,
    delivery: i64,
    now: Now,
) -> Result<(), WebhookError> {
    policy::require_admin(actor, "manage webhooks")?;
    db::run(pool, move |conn| {
        match Delivery::find(conn, delivery)? {
            Some(d) if d.webhook_id == webhook => {}
            _ => return Err(WebhookError::NotFound),
        }
        if !Delivery::resend(conn, delivery, now.naive())? {
            return Err(WebhookError::Invalid(FieldErrors::single(
                "delivery",
                "is being sent right now; try again in a few seconds",
            )));
        }
        Ok(())
    })
    .await
}

/// Claims up to `limit` due deliveries for this instance, each with its endpoint.
pub async fn claim_due(pool: &DbPool, limit: i64, now: Now) -> Result<Vec<(Delivery, Webhook)>, DbError> {
    db::run(pool, move |conn| {
        let at = now.naive();
        let mut claimed = Vec::new();
        for id in Delivery::due(conn, at, limit)? {
            if let Some(delivery) = Delivery::claim(conn, id, at, at + CLAIM)?
                && let Some(hook) = Webhook::find(conn, delivery.webhook_id)?
            {
                claimed.push((delivery, hook));
            }
        }
        Ok(claimed)
    })
    .await
}

/// Records how an attempt went, and schedules the next one when it failed.
pub async fn finish(
    pool: &DbPool,
    delivery: &Delivery,
    (status, error, latency_ms): (Option<i32>, Option<String>, i32),
    now: Now,
) -> Result<(), DbError> {
    let at = now.naive();
    let delivered = status.is_some_and(|s| (200..300).contains(&s));
    let outcome = if delivered {
        Outcome::Delivered(at)
    } else {
        match retry_at(delivery.created_at, delivery.attempts + 1, at) {
            Some(next) => Outcome::Retry(next),
            None => Outcome::GiveUp,
        }
    };
    let attempt = Attempt {
        status,
        error,
        latency_ms,
        outcome,
    };
    let (id, claimed_until) = (delivery.id, delivery.locked_until.unwrap_or(at));
    let recorded = db::run(pool, move |conn| {
        Ok::<_, DbError>(Delivery::finish(conn, id, claimed_until, &attempt)?)
    })
    .await?;
    if !recorded {
        log::warn!("webhook delivery {id} outlived its claim; another instance has it now");
    }
    Ok(())
}

/// Announces keys that expired in the last day (`key.expired`, once per key and expiry, however
/// many instances sweep), and tells the gate which events endpoints want.
/// `since` is where this instance's last sweep stopped (`None`: a day ago): each key's expiry is
/// looked at once per instance, and `once` makes it one event across instances.
pub async fn sweep(
    pool: &DbPool,
    signals: &crate::events::Signals,
    since: Option<NaiveDateTime>,
    now: Now,
) -> Result<usize, DbError> {
    let at = now.naive();
    let from = since.unwrap_or(at - Duration::days(1));
    let (expired, endpoints) = db::run(pool, move |conn| {
        let expired = crate::db::models::ApiKey::expired_between(conn, from, at)?;
        Ok::<_, DbError>((expired, Webhook::list(conn)?))
    })
    .await?;
    signals.listen(&endpoints);
    if !endpoints.iter().any(|w| w.wants("key.expired")) {
        return Ok(0);
    }
    let mut announced = 0;
    for key in expired {
        let Some(expires_at) = key.expires_at else {
            continue;
        };
        let condition = format!("key.expired:{}:{}", key.id.0, expires_at.and_utc().timestamp());
        let data = json!({"key_id": key.id.0, "name": key.name, "prefix": key.prefix,
                          "expires_at": crate::clock::rfc3339(expires_at)});
        if db::run(pool, move |conn| {
            crate::events::once(conn, &condition, "key.expired", data, now)
        })
        .await?
        {
            announced += 1;
        }
    }
    Ok(announced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_stripes() {
        // printf '1700000000.{}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            signature("whsec_test", 1_700_000_000, "{}"),
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }

    #[test]
    fn internal_destinations_are_recognised() {
        for inside in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "198.18.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "2002:7f00:1::1",
            "2001:0:4136:e378::1",
            "::",
        ] {
            assert!(is_internal(inside.parse().expect("an address")), "{inside}");
        }
        for outside in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(!is_internal(outside.parse().expect("an address")), "{outside}");
        }
    }

    #[test]
    fn retries_back_off_and_stop_after_a_day() {
        let created =
            NaiveDateTime::parse_from_str("2026-11-29 00:00:00", "%Y-%m-%d %H:%M:%S").expect("time");
        assert_eq!(
            retry_at(created, 1, created),
            Some(created + Duration::seconds(1))
        );
        assert_eq!(
            retry_at(created, 3, created),
            Some(created + Duration::seconds(4))
        );
        assert_eq!(retry_at(created, 20, created), Some(created + Duration::hours(1)));
        assert_eq!(retry_at(created, 5, created + Duration::hours(24)), None);
    }

    #[test]
    fn urls_and_events_are_checked() {
        assert!(EndpointUrl::parse("https://hooks.example.com/keygate?x=1").is_ok());
        for bad in [
            "ftp://example.com/",
            "http://user:pw@example.com/",
            "/relative",
            "https://example.com/#frag",
            "javascript:alert(1)",
        ] {
            assert!(EndpointUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_events(&["key.created".into(), "key.created".into()]),
            Ok("key.created".into())
        );
        assert!(parse_events(&[]).is_err());
        assert!(parse_events(&["key.eaten".into()]).is_err());
    }
}
