//! A key's life after its creation form: the page that shows a new (or rolled) secret once,
//! rolling the secret, and switching the key off and on (confirmed first).

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::view::utc;
use crate::clock::Now;
use crate::db::KeyId;
use crate::keys::service::{self, KeyChange, KeyPatch};
use crate::routes::admin::{AdminError, Confirmation, Form, Layout, Member, Switch, redirect, render};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct CreatedQuery {
    n: Option<String>,
    /// Shown after a roll rather than a creation.
    rolled: Option<u8>,
}

#[derive(Template)]
#[template(path = "admin/key_created.html")]
struct CreatedPage {
    layout: Layout,
    id: KeyId,
    name: String,
    key: Option<String>,
    rolled: bool,
    /// After a roll with a grace period: until when the old secret works (UTC).
    previous_until: Option<String>,
}

/// Shows the new key once: the handoff record is deleted as it is read, and the page is never
/// cached, so reloading or going back shows only a notice.
pub async fn created(
    state: web::Data<AppState>,
    member: Member,
    id: web::Path<KeyId>,
    query: web::Query<CreatedQuery>,
    now: Now,
) -> Result<HttpResponse, AdminError> {
    let record = service::get(&state.pool, member.actor(), *id).await?;
    let key = match &query.n {
        Some(nonce) => state.handoff.take(nonce, record.key.id, member.user.id).await,
        None => None,
    };
    let rolled = query.rolled.is_some();
    let previous_until = record.key.replaced_secret_until(now.naive()).map(utc);
    let page = CreatedPage {
        layout: member.layout(if rolled { "New secret" } else { "Key created" }, "keys"),
        id: record.key.id,
        name: record.key.name,
        key,
        rolled,
        previous_until,
    };
    let mut response = render(&page, StatusCode::OK)?;
    response
        .headers_mut()
        .insert(header::PRAGMA, header::HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// `POST /admin/keys/{id}/roll`: a new secret, shown once on the next page; the old one works
/// for the chosen grace period.
pub async fn roll(
    state: web::Data<AppState>,
    member: Member,
    id: web::Path<KeyId>,
    form: Form,
    now: Now,
) -> Result<HttpResponse, AdminError> {
    member.check_csrf(&form)?;
    let grace = match crate::routes::admin::field(&form, "grace_seconds").parse::<i64>() {
        Ok(seconds) if (0..=service::MAX_GRACE.num_seconds()).contains(&seconds) => {
            chrono::Duration::seconds(seconds)
        }
        _ => {
            return Err(AdminError::BadRequest(
                "Choose how long the old secret keeps working.".into(),
            ));
        }
    };
    let (record, issued) = service::roll(&state.pool, &state.keys, member.actor(), *id, grace, now).await?;
    let nonce = state
        .handoff
        .put(record.key.id, member.user.id, issued.expose())
        .await
        .map_err(AdminError::internal)?;
    Ok(redirect(&format!(
        "/admin/keys/{}/created?n={nonce}&rolled=1",
        record.key.id
    )))
}

/// `POST /admin/keys/{id}/activate|deactivate`, confirmed first.
pub async fn switch(
    state: web::Data<AppState>,
    member: Member,
    path: web::Path<(KeyId, Switch)>,
    form: Form,
    now: Now,
) -> Result<HttpResponse, AdminError> {
    member.check_csrf(&form)?;
    let (id, switch) = path.into_inner();
    let record = service::get(&state.pool, member.actor(), id).await?;
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
    if let Some(page) = confirmation.ask(&member, &form) {
        return page;
    }
    let patch = KeyPatch {
        name: None,
        change: KeyChange {
            is_active: Some(switch.active()),
            ..KeyChange::default()
        },
    };
    service::update(
        &state.pool,
        &state.keys,
        member.actor(),
        state.key_defaults,
        id,
        patch,
        now,
    )
    .await?;
    member.flash("success", confirmation.done());
    Ok(redirect(&format!("/admin/keys/{id}")))
}
