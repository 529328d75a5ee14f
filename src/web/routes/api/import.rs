//! `POST /api/api-keys/import` (admins): keys from another system, as a JSON array or JSON lines
//! (`Content-Type: application/x-ndjson`), each an object with `key` (plaintext) or
//! `key_sha256`, `owner` (an email), `name`, limits, `expires_at`, `is_active`, `created_at`,
//! `last_used_at`, `meta`, `scopes`, `ip_allowlist` and an optional display `prefix`. Answers
//! what it did line by line. The CLI's `keygate keys import FILE` reads the same objects (and
//! CSV) through [`parse_line`].

use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use crate::clock::Now;
use crate::contract::Contract;
use crate::error::ApiError;
use crate::keys::KeyName;
use crate::keys::import::{self, ImportedKey};
use crate::keys::secret::{KEY_PREFIX, KeyHash, MalformedKey, PresentedKey};
use crate::limits::Limits;
use crate::routes::api::body::Fields;
use crate::routes::api::keys::{limits_or, parse_contract};
use crate::routes::api::principal::Principal;
use crate::state::AppState;

/// The objects of an import, numbered by line (or by place in an array, from 1), or why a line
/// is not one.
pub type Objects = Vec<(usize, Result<Map<String, Value>, String>)>;

/// Largest import body: 100,000 keys of a few hundred bytes.
pub const MAX_IMPORT_BYTES: usize = 64 * 1024 * 1024;

pub async fn import(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Principal,
    mut payload: web::Payload,
    now: Now,
) -> Result<HttpResponse, ApiError> {
    crate::policy::require_admin(who.actor(), "import keys").map_err(|r| ApiError::Forbidden(r.0))?;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::InvalidJson(e.to_string()))?;
        if body.len() + chunk.len() > MAX_IMPORT_BYTES {
            return Err(ApiError::PayloadTooLarge(MAX_IMPORT_BYTES));
        }
        body.extend_from_slice(&chunk);
    }
    let text =
        std::str::from_utf8(&body).map_err(|_| ApiError::InvalidJson("the body is not UTF-8".into()))?;
    let ndjson = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/x-ndjson"));
    let objects = if ndjson {
        json_lines(text)
    } else {
        json_array(text)?
    };
    let lines = objects
        .into_iter()
        .map(|(line, object)| (line, object.and_then(|o| parse_line(o, state.key_defaults))))
        .collect();
    let report = import::import(&state.pool, &state.keys, who.actor(), lines, now).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// The objects of a JSON array, numbered from 1.
fn json_array(text: &str) -> Result<Objects, ApiError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let Value::Array(items) = value else {
        return Err(ApiError::InvalidJson(
            "expected a JSON array of keys (or JSON lines with Content-Type: application/x-ndjson)".into(),
        ));
    };
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, item)| (i + 1, object(item)))
        .collect())
}

/// The objects of JSON lines, numbered by line; blank lines are skipped.
pub fn json_lines(text: &str) -> Objects {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let parsed = serde_json::from_str::<Value>(line).map_err(|e| format!("not JSON: {e}"));
            (i + 1, parsed.and_then(object))
        })
        .collect()
}

fn object(value: Value) -> Result<Map<String, Value>, String> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err("expected a JSON object".into()),
    }
}

/// What lists may show of an imported plaintext without weakening it: a `prefix.` that the old
/// system meant to be public (Django REST Framework API Key's form), else the first 4
/// characters of a key long enough to spare them, else nothing.
fn shown_prefix(key: &str) -> String {
    match key.split_once('.') {
        Some((prefix, rest)) if prefix.len() <= 16 && rest.len() >= 16 => prefix.to_owned(),
        _ if key.len() >= 24 => key.chars().take(4).collect(),
        _ => String::new(),
    }
}

/// One key of an import. Absent limits take the defaults (`KEY_RATE_LIMIT`), `null` is none;
/// the display prefix is given, or what [`shown_prefix`] allows.
pub fn parse_line(object: Map<String, Value>, defaults: Limits) -> Result<ImportedKey, String> {
    let mut f = Fields::of(object);
    let (plaintext, hash) = secret(&mut f);
    let owner = f.required("owner", |s| {
        crate::users::Email::parse(s).map(|e| e.as_str().to_owned())
    });
    let name = f.required("name", KeyName::parse);
    let prefix = f.text("prefix", |s| Ok(s.chars().take(16).collect::<String>()));
    let limits = limits_or(&mut f, defaults);
    let expires_at = f.timestamp("expires_at").flatten();
    let is_active = f.boolean("is_active").unwrap_or(true);
    let created_at = f.timestamp("created_at").flatten();
    let last_used_at = f.timestamp("last_used_at").flatten();
    let (meta, scopes, ip_allowlist) = parse_contract(&mut f);
    f.finish_fields().map_err(|e| e.sentence())?;
    let (Some(hash), Some(owner), Some(name)) = (hash, owner, name) else {
        return Err("key, owner and name are required".into());
    };
    Ok(ImportedKey {
        hash,
        prefix: prefix.unwrap_or_else(|| plaintext.as_deref().map(shown_prefix).unwrap_or_default()),
        owner,
        name,
        limits,
        expires_at,
        is_active,
        created_at,
        last_used_at,
        contract: Contract {
            meta: meta.flatten(),
            scopes: scopes.unwrap_or_default(),
            ip_allowlist: ip_allowlist.unwrap_or_default(),
        },
    })
}

/// The key as the line gives it: a plaintext (what the gate will accept: keygate's own format
/// checked in full, anything else as it is) or the SHA-256 another system kept; one of them.
fn secret(f: &mut Fields) -> (Option<String>, Option<KeyHash>) {
    let plaintext = f.text("key", |s| match PresentedKey::parse(s) {
        Ok(_) => Ok(s.trim().to_owned()),
        Err(MalformedKey::TooLong) => Err("must be at most 255 characters".to_owned()),
        Err(_) if s.trim().starts_with(KEY_PREFIX) => Err(format!(
            "starts with {KEY_PREFIX} but is not a keygate key (the gate refuses those unread); was it cut short?"
        )),
        Err(_) => Err("must be visible ASCII characters, no spaces".to_owned()),
    });
    let sha = f.text("key_sha256", |s| {
        KeyHash::from_hex(s).ok_or_else(|| "must be 64 hex digits".into())
    });
    let hash = match (&plaintext, sha) {
        (Some(key), None) => Some(KeyHash::of_plaintext(key)),
        (None, Some(hash)) => Some(hash),
        (Some(_), Some(_)) => {
            f.error("key", "give key or key_sha256, not both");
            None
        }
        (None, None) => {
            f.error("key", "key (plaintext) or key_sha256 is required");
            None
        }
    };
    (plaintext, hash)
}
