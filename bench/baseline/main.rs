//! The ceiling for the benchmark: bare actix-web serving a JSON answer like keygate's
//! `/api/whoami`, with no gate. Also the upstream for the gateway scenario.
//! `cargo run --release --example baseline` (PORT, default 9100).

use std::net::IpAddr;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde::Serialize;

#[derive(Serialize)]
struct WhoAmI<'a> {
    tier: &'static str,
    key: Option<KeyRef<'a>>,
    user: Option<()>,
    client_ip: Option<IpAddr>,
}

#[derive(Serialize)]
struct KeyRef<'a> {
    id: i64,
    name: &'a str,
    prefix: &'a str,
}

/// Serialised the way keygate's handler does it (a borrowed struct, not a `json!` value).
async fn whoami(req: HttpRequest) -> HttpResponse {
    HttpResponse::Ok().json(WhoAmI {
        tier: "api_key",
        key: Some(KeyRef {
            id: 1,
            name: "bench",
            prefix: "kg_abcdef",
        }),
        user: None,
        client_ip: req.peer_addr().map(|a| a.ip()),
    })
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(9100);
    HttpServer::new(|| App::new().default_service(web::to(whoami)))
        .bind(("127.0.0.1", port))?
        .run()
        .await
}
