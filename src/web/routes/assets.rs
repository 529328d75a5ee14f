//! `/static/…`: the dashboard's stylesheet and script, compiled into the binary so a deploy is
//! one file. Served locally; the dashboard loads nothing from elsewhere.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use crate::routes::admin::AdminError;

const FILES: &[(&str, &str, &str)] = &[
    (
        "admin.css",
        "text/css; charset=utf-8",
        include_str!("../../../static/admin.css"),
    ),
    (
        "admin.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../static/admin.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../../static/favicon.svg"),
    ),
];

/// One resource per file, at its exact path (`/static/admin.css`): any other path under
/// `/static/` is not keygate's and goes through the gate like every other.
pub fn register(cfg: &mut web::ServiceConfig) {
    for &(name, content_type, body) in FILES {
        let file = web::resource(format!("/static/{name}"))
            .route(web::get().to(move || async move {
                HttpResponse::Ok()
                    .content_type(content_type)
                    .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
                    .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    .body(body)
            }))
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(AdminError::MethodNotAllowed(crate::routes::allow(&["GET"])))
            }))
            .wrap(crate::routes::head_as_get_middleware());
        cfg.service(file);
    }
}
