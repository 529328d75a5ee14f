//! `/static/…`: the dashboard's stylesheet and script, compiled into the binary so a deploy is
//! one file. Served locally; the dashboard loads nothing from elsewhere.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use crate::error::AdminError;

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

pub async fn file(name: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let (_, content_type, body) = FILES
        .iter()
        .find(|(n, _, _)| *n == name.as_str())
        .ok_or(AdminError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type(*content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(*body))
}
