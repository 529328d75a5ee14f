//! Dashboard pages for webhooks (admins): the endpoints and a form to add one (its secret shown
//! once, on the page the form answers with), and each endpoint's page: switch it off or on,
//! delete it, see its recent deliveries and send one again.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;

use crate::clock::Now;
use crate::db::models::{Delivery, Webhook};
use crate::events::EVENTS;
use crate::routes::admin::{Admin, AdminError, Confirmation, Form, Layout, Switch, field, redirect, render};
use crate::state::AppState;
use crate::webhooks::{self, EndpointUrl, WebhookError, WebhookPatch};

impl From<WebhookError> for AdminError {
    fn from(e: WebhookError) -> AdminError {
        match e {
            WebhookError::NotFound => AdminError::NotFound,
            WebhookError::Invalid(fields) => AdminError::BadRequest(fields.sentence()),
            WebhookError::Forbidden(refusal) => AdminError::Refused(refusal.0),
            WebhookError::Db(e) => e.into(),
        }
    }
}

#[derive(Template)]
#[template(path = "admin/webhooks.html")]
struct WebhooksPage {
    layout: Layout,
    hooks: Vec<Webhook>,
    events: &'static [&'static str],
    url: String,
    error: Option<String>,
    /// Just made: the endpoint and its secret, shown this once.
    created: Option<(i64, String)>,
}

#[derive(Template)]
#[template(path = "admin/webhook.html")]
struct WebhookPage {
    layout: Layout,
    hook: Webhook,
    deliveries: Vec<Delivery>,
}

impl WebhookPage {
    fn when(&self, at: &chrono::NaiveDateTime) -> String {
        at.format("%Y-%m-%d %H:%M:%S").to_string()
    }
}

async fn list_page(
    state: &AppState,
    admin: &Admin,
    (url, error, created): (String, Option<String>, Option<(i64, String)>),
) -> Result<WebhooksPage, AdminError> {
    Ok(WebhooksPage {
        layout: admin.layout("Webhooks", "webhooks"),
        hooks: webhooks::list(&state.pool, admin.actor()).await?,
        events: &EVENTS,
        url,
        error,
        created,
    })
}

pub async fn list(state: web::Data<AppState>, admin: Admin) -> Result<HttpResponse, AdminError> {
    render(
        &list_page(&state, &admin, (String::new(), None, None)).await?,
        StatusCode::OK,
    )
}

/// The events ticked on a form.
fn ticked(form: &Form) -> Vec<String> {
    EVENTS
        .iter()
        .filter(|e| form.contains_key(&format!("event:{e}")))
        .map(|e| (*e).to_owned())
        .collect()
}

pub async fn create(
    state: web::Data<AppState>,
    admin: Admin,
    form: Form,
    now: Now,
) -> Result<HttpResponse, AdminError> {
    admin.check_csrf(&form)?;
    let url = field(&form, "url").trim().to_owned();
    let parsed = EndpointUrl::parse(&url)
        .map_err(|e| format!("The URL {e}."))
        .and_then(|u| {
            Ok((
                u,
                webhooks::parse_events(&ticked(&form)).map_err(|e| format!("Events: {e}."))?,
            ))
        });
    let made = match parsed {
        Ok(fields) => webhooks::create(
            &state.pool,
            admin.actor(),
            fields,
            state.deliverer.allow_private,
            now,
        )
        .await
        .map_err(|e| match e {
            WebhookError::Invalid(fields) => Ok(fields.sentence()),
            other => Err(other),
        }),
        Err(message) => Err(Ok(message)),
    };
    match made {
        // The secret is on this answer only (no-store, like every dashboard page).
        Ok((hook, secret)) => render(
            &list_page(&state, &admin, (String::new(), None, Some((hook.id, secret)))).await?,
            StatusCode::CREATED,
        ),
        Err(Ok(message)) => render(
            &list_page(&state, &admin, (url, Some(message), None)).await?,
            StatusCode::BAD_REQUEST,
        ),
        Err(Err(e)) => Err(e.into()),
    }
}

pub async fn detail(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<i64>,
) -> Result<HttpResponse, AdminError> {
    let (hook, deliveries) = webhooks::get(&state.pool, admin.actor(), *id).await?;
    let page = WebhookPage {
        layout: admin.layout(format!("Webhook {}", hook.id), "webhooks"),
        hook,
        deliveries,
    };
    render(&page, StatusCode::OK)
}

/// `POST /admin/webhooks/{id}/{enable|disable|delete}`, confirmed first.
pub async fn switch(
    state: web::Data<AppState>,
    admin: Admin,
    path: web::Path<(i64, String)>,
    form: Form,
    now: Now,
) -> Result<HttpResponse, AdminError> {
    admin.check_csrf(&form)?;
    let (id, action) = path.into_inner();
    let (hook, _) = webhooks::get(&state.pool, admin.actor(), id).await?;
    if action == "delete" {
        if form.get("confirm").map(String::as_str) != Some("yes") {
            return Err(AdminError::BadRequest(
                "Confirm the deletion on the webhook's page.".into(),
            ));
        }
        webhooks::delete(&state.pool, admin.actor(), id, now).await?;
        admin.flash("success", format!("Deleted the webhook to {}.", hook.url));
        return Ok(redirect("/admin/webhooks"));
    }
    let switch = match action.as_str() {
        "activate" => Switch::Activate,
        "deactivate" => Switch::Deactivate,
        _ => return Err(AdminError::NotFound),
    };
    let confirmation = Confirmation {
        switch,
        noun: "webhook",
        subject: format!("the webhook to {}", hook.url),
        consequence: if switch.active() {
            "Events are sent to it again from now on."
        } else {
            "No events are sent to it until it is switched on again; events meanwhile are not kept for it."
        },
        section: "webhooks",
        base: format!("/admin/webhooks/{id}"),
        cancel: format!("/admin/webhooks/{id}"),
    };
    if let Some(page) = confirmation.ask(&admin, &form) {
        return page;
    }
    let patch = WebhookPatch {
        enabled: Some(switch.active()),
        ..WebhookPatch::default()
    };
    webhooks::update(
        &state.pool,
        admin.actor(),
        id,
        patch,
        state.deliverer.allow_private,
        now,
    )
    .await?;
    admin.flash("success", format!("{}d the webhook.", switch.title()));
    Ok(redirect(&format!("/admin/webhooks/{id}")))
}

/// `POST /admin/webhooks/{id}/deliveries/{delivery}/resend`: the same event, sent again.
pub async fn resend(
    state: web::Data<AppState>,
    admin: Admin,
    path: web::Path<(i64, i64)>,
    form: Form,
    now: Now,
) -> Result<HttpResponse, AdminError> {
    admin.check_csrf(&form)?;
    let (id, delivery) = path.into_inner();
    webhooks::resend(&state.pool, admin.actor(), id, delivery, now).await?;
    admin.flash("success", "The event will be sent again within a second.");
    Ok(redirect(&format!("/admin/webhooks/{id}")))
}
