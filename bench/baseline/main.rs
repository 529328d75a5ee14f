//! The ceiling for the benchmark: bare actix-web serving a JSON answer like keygate's
//! `/api/whoami`, with no gate. Also the upstream for the gateway scenario.
//! `cargo run --release --example baseline` (PORT, default 9100).

use actix_web::{App, HttpResponse, HttpServer, web};

async fn whoami() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "tier": "api_key",
        "key": {"id": 1, "name": "bench", "prefix": "kg_abcdef"},
        "user": null,
        "client_ip": "127.0.0.1",
    }))
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
