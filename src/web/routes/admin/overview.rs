//! `GET /admin/` — the dashboard's home. Admins see the overview of every key: requests over
//! time, the busiest and the most refused keys, how many keys work and were used, and the
//! current refusal rate. Users go to their keys.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;

use crate::analytics::{self, KeyTraffic, Overview};
use crate::clock::Now;
use crate::routes::admin::chart::Chart;
use crate::routes::admin::keys::{SpanQuery, thousands};
use crate::routes::admin::{AdminError, Layout, Member, redirect, render};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "admin/overview.html")]
struct OverviewPage {
    layout: Layout,
    chart: Chart,
    overview: Overview,
    total_allowed: String,
    total_rejected: String,
    refusal_rate: String,
}

impl OverviewPage {
    fn count(&self, n: &i64) -> String {
        thousands(n.unsigned_abs())
    }

    /// A row's share of the busiest key's traffic, for its bar (0–100).
    fn share(&self, key: &KeyTraffic, list: &[KeyTraffic], refused: bool) -> u32 {
        let of = |k: &KeyTraffic| {
            if refused {
                k.rejected
            } else {
                k.allowed + k.rejected
            }
        };
        let max = list.iter().map(of).max().unwrap_or(0);
        if max == 0 { 0 } else { (of(key) * 100 / max) as u32 }
    }
}

pub async fn index(
    state: web::Data<AppState>,
    member: Member,
    query: web::Query<SpanQuery>,
    now: Now,
) -> Result<HttpResponse, AdminError> {
    if !member.is_admin() {
        return Ok(redirect("/admin/keys"));
    }
    let span = query.span();
    let overview = analytics::overview(&state.pool, member.actor(), span, now).await?;
    let (allowed, rejected) = overview
        .series
        .iter()
        .fold((0, 0), |(a, r), p| (a + p.allowed, r + p.rejected));
    let page = OverviewPage {
        layout: member.layout("Overview", "overview"),
        chart: Chart::of(&overview.series, span),
        total_allowed: thousands(allowed.unsigned_abs()),
        total_rejected: thousands(rejected.unsigned_abs()),
        refusal_rate: overview
            .refusal_rate()
            .map_or_else(|| "no requests".to_owned(), |rate| format!("{rate:.1} %")),
        overview,
    };
    render(&page, StatusCode::OK)
}
