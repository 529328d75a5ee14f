//! The dashboard's pages: the layout, rendering, redirects, error pages, form fields, and the
//! confirmation page every state change goes through.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::http::header::{self};
use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::NaiveDateTime;
use serde::Deserialize;

use crate::routes::admin::AdminError;

use super::session::{self, Flash, Member};

impl Member {
    /// The layout of a page for this user (takes the flash messages waiting for them).
    pub fn layout(&self, title: impl Into<String>, section: &'static str) -> Layout {
        Layout {
            title: title.into(),
            section,
            email: Some(self.user.email.clone()),
            is_admin: self.user.is_admin,
            csrf: session::csrf_token(&self.session),
            flashes: session::take_flashes(&self.session),
        }
    }
}

impl Layout {
    /// A page for someone not logged in (login, sign-up, an error), with the session's CSRF
    /// token for its form (or none).
    pub fn anonymous(title: &str, section: &'static str, csrf: String) -> Layout {
        Layout {
            title: title.to_owned(),
            section,
            email: None,
            is_admin: false,
            csrf,
            flashes: Vec::new(),
        }
    }
}

/// What every page's layout shows.
pub struct Layout {
    pub title: String,
    /// The navigation entry to highlight.
    pub section: &'static str,
    /// The logged-in user's email; `None` on the login and error pages.
    pub email: Option<String>,
    /// Whether they are an admin: the navigation shows Users only to admins.
    pub is_admin: bool,
    pub csrf: String,
    pub flashes: Vec<Flash>,
}

#[derive(Template)]
#[template(path = "admin/error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    status: u16,
    reason: &'a str,
    message: &'a str,
}

/// The HTML error page, in the dashboard's layout.
pub fn error_page(status: StatusCode, message: &str) -> HttpResponse {
    let page = ErrorPage {
        layout: Layout::anonymous(status.canonical_reason().unwrap_or("Error"), "", String::new()),
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("Error"),
        message,
    };
    match page.render() {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(html),
        Err(e) => {
            log::error!("rendering the error page failed: {e}");
            HttpResponse::build(status)
                .content_type("text/plain; charset=utf-8")
                .body(message.to_owned())
        }
    }
}

/// Renders a page as a 200 (or `status`) HTML response.
pub fn render(page: &impl Template, status: StatusCode) -> Result<HttpResponse, AdminError> {
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(page.render()?))
}

pub fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

pub type Form = web::Form<HashMap<String, String>>;

/// A form field, trimmed; empty when absent.
pub fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> &'a str {
    form.get(name).map_or("", |v| v.trim())
}

/// "3 min ago", for last-used columns.
pub fn ago(then: Option<NaiveDateTime>, now: NaiveDateTime) -> String {
    let Some(then) = then else { return "never".into() };
    let seconds = (now - then).num_seconds().max(0);
    match seconds {
        0..=59 => "just now".into(),
        60..=3_599 => format!("{} min ago", seconds / 60),
        3_600..=86_399 => format!("{} h ago", seconds / 3_600),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

/// Activate or deactivate, as the last path segment says (`/admin/keys/7/deactivate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    Activate,
    Deactivate,
}

impl Switch {
    pub fn active(self) -> bool {
        self == Switch::Activate
    }

    fn verb(self) -> &'static str {
        if self.active() { "activate" } else { "deactivate" }
    }

    pub fn title(self) -> &'static str {
        if self.active() { "Activate" } else { "Deactivate" }
    }
}

#[derive(Template)]
#[template(path = "admin/confirm.html")]
struct ConfirmPage {
    layout: Layout,
    question: String,
    consequence: String,
    action: String,
    button: String,
    danger: bool,
    cancel: String,
}

/// A state change that is confirmed on a page of its own before it is made.
pub struct Confirmation<'a> {
    pub switch: Switch,
    /// "key" or "user".
    pub noun: &'static str,
    pub section: &'static str,
    /// What is switched, as the question names it.
    pub subject: String,
    pub consequence: &'a str,
    /// The page of the thing: the form posts to `<base>/<verb>`; Cancel leads to `cancel`.
    pub base: String,
    pub cancel: String,
}

impl Confirmation<'_> {
    /// The confirmation page, unless the form says `confirm=yes`.
    pub fn ask(
        &self,
        admin: &Member,
        form: &HashMap<String, String>,
    ) -> Option<Result<HttpResponse, AdminError>> {
        if form.get("confirm").map(String::as_str) == Some("yes") {
            return None;
        }
        let (title, noun) = (self.switch.title(), self.noun);
        let page = ConfirmPage {
            layout: admin.layout(format!("{title} {noun}"), self.section),
            question: format!("{title} {}?", self.subject),
            consequence: self.consequence.to_owned(),
            action: format!("{}/{}", self.base, self.switch.verb()),
            button: format!("{title} {noun}"),
            danger: !self.switch.active(),
            cancel: self.cancel.clone(),
        };
        Some(render(&page, StatusCode::OK))
    }

    /// The flash message once done: "Key deactivated."
    pub fn done(&self) -> String {
        let mut noun = self.noun.chars();
        let noun = noun
            .next()
            .map_or_else(String::new, |c| c.to_uppercase().chain(noun).collect());
        format!("{noun} {}d.", self.switch.verb())
    }
}
