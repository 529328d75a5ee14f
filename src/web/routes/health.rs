//! `GET /healthz`: liveness and whether the database answers. Never limited.

use actix_web::{HttpResponse, web};
use diesel::connection::SimpleConnection;
use serde_json::json;

use crate::db::{self, DbError};
use crate::limits::CounterState;
use crate::state::AppState;

pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let database = db::run(&state.pool, |conn| {
        conn.batch_execute("SELECT 1").map_err(DbError::Query)
    })
    .await;
    let (status, database) = match database {
        Ok(()) => (actix_web::http::StatusCode::OK, "ok"),
        Err(e) => {
            log::warn!("health check: database unreachable: {e}");
            (actix_web::http::StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
    };
    let counters = state.limiter.state();
    let mut body = json!({
        "status": if status.is_success() { "ok" } else { "degraded" },
        "database": database,
        "counters": counters.counters(),
    });
    if state.limiter.redis_configured() {
        body["redis"] = json!(if counters == CounterState::Redis {
            "ok"
        } else {
            "unavailable"
        });
    }
    HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .json(body)
}
