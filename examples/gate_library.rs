//! keygate's gate in front of your own actix-web routes, over keygate's database and Redis.
//!
//! ```sh
//! DATABASE_URL=postgres://… REDIS_URL=redis://… PORT=9000 cargo run --example gate_library
//! curl -H "Api-Key: kg_…" localhost:9000/hello
//! ```
//! Keys, limits and revocations are shared with every keygate instance on the same database and
//! Redis; manage them with keygate's API, dashboard or CLI.

use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use keygate::config::Settings;
use keygate::gate::{Caller, Identity, gate};
use keygate::startup::{gate_state, prepare};

/// Your handler: the gate has already identified and counted the caller.
async fn hello(caller: web::ReqData<Caller>) -> String {
    match &caller.identity {
        Identity::Key(key) => format!("hello, key “{}” (id {})\n", key.name, key.id),
        Identity::User(id) => format!("hello, user {id}\n"),
        Identity::Anonymous => "hello, stranger\n".to_owned(),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let settings = Settings::from_env().map_err(std::io::Error::other)?;
    let (pool, _) = prepare(&settings).await.map_err(std::io::Error::other)?;
    let state = gate_state(&settings, pool).await;
    let address = (settings.bind_addr, settings.port);
    HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            // Every route of this app now needs to pass keygate's limits.
            .wrap(from_fn(gate))
            .route("/hello", web::get().to(hello))
    })
    .bind(address)?
    .run()
    .await
}
