//! `/static/…`: the dashboard's stylesheet and script, compiled into the binary so a deploy is
//! one file. Served locally; the dashboard loads nothing from elsewhere.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

const FILES: &[(&str, &str, &str)] = &[
    (
        "admin.css",
        "text/css; charset=utf-8",
        include_str!("../../static/admin.css"),
    ),
    (
        "admin.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/admin.js"),
    ),
];

/// One resource per file, at its exact path (`/static/admin.css`): any other path under
/// `/static/` is not keygate's and goes through the gate like every other.
pub fn register(cfg: &mut web::ServiceConfig) {
    for &(name, content_type, body) in FILES {
        cfg.service(
            web::resource(format!("/static/{name}")).route(web::get().to(move || async move {
                HttpResponse::Ok()
                    .content_type(content_type)
                    .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
                    .body(body)
            })),
        );
    }
}
