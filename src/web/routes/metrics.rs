//! `GET /metrics`: Prometheus text format. Each part counts its own events (the gate by tier
//! and outcome, the limiter its store latency and failures, the key cache its hits, usage its
//! flush lag); this module only renders them. Protected by `METRICS_TOKEN` when set.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::ApiError;
use crate::metrics::{Outcome, Tier};
use crate::state::AppState;

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if let Some(token) = &state.metrics_token {
        let given = crate::credentials::bearer(req.headers()).unwrap_or_default();
        if !crate::credentials::constant_time_eq(given, token.as_bytes()) {
            return Err(ApiError::AuthenticationRequired(
                "Send Authorization: Bearer <METRICS_TOKEN>.",
            ));
        }
    }
    let mut out = String::with_capacity(4096);
    requests(&mut out, &state);
    store(&mut out, &state);
    key_cache(&mut out, &state);
    usage(&mut out, &state);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out))
}

/// A metric with one sample and no labels.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

fn requests(out: &mut String, state: &AppState) {
    let name = "keygate_requests_total";
    family(
        out,
        name,
        "counter",
        "Requests the gate decided, by caller tier and outcome.",
    );
    for tier in Tier::ALL {
        for outcome in Outcome::ALL {
            let n = state.requests.get(tier, outcome);
            let (tier, outcome) = (tier.name(), outcome.name());
            let _ = writeln!(out, "{name}{{tier=\"{tier}\",outcome=\"{outcome}\"}} {n}");
        }
    }
}

fn store(out: &mut String, state: &AppState) {
    let limiter = state.limiter.stats();
    let latency = "keygate_store_latency_seconds";
    family(out, latency, "histogram", "Time of one counter-store decision.");
    limiter.latency.render(out, latency);
    single(
        out,
        "keygate_store_failures_total",
        "counter",
        "Redis errors and timeouts on the counter path.",
        limiter.failures.load(Ordering::Relaxed),
    );
    single(
        out,
        "keygate_store_local_refusals_total",
        "counter",
        "Requests of callers Redis had refused, refused again here without a Redis call.",
        limiter.local_refusals.load(Ordering::Relaxed),
    );
    single(
        out,
        "keygate_store_redis_up",
        "gauge",
        "1 while decisions are made in Redis (0: failure mode, or no Redis).",
        u8::from(state.limiter.state() == crate::limits::CounterState::Redis),
    );
}

fn key_cache(out: &mut String, state: &AppState) {
    let (hits, misses) = state.keys.hits_and_misses();
    let name = "keygate_key_cache_lookups_total";
    family(
        out,
        name,
        "counter",
        "API-key lookups, by whether the cache answered.",
    );
    let _ = writeln!(out, "{name}{{result=\"hit\"}} {hits}");
    let _ = writeln!(out, "{name}{{result=\"miss\"}} {misses}");
    let ratio = if hits + misses == 0 {
        0.0
    } else {
        hits as f64 / (hits + misses) as f64
    };
    single(
        out,
        "keygate_key_cache_hit_ratio",
        "gauge",
        "Share of key lookups the cache answered.",
        format!("{ratio:.4}"),
    );
}

fn usage(out: &mut String, state: &AppState) {
    let usage = &state.usage;
    single(
        out,
        "keygate_usage_flush_lag_seconds",
        "gauge",
        "Seconds since buffered usage was last written (or since start).",
        format!("{:.3}", usage.flush_lag().as_secs_f64()),
    );
    single(
        out,
        "keygate_usage_pending_keys",
        "gauge",
        "Keys whose usage is not yet written.",
        usage.pending(),
    );
    single(
        out,
        "keygate_usage_dropped_total",
        "counter",
        "Requests whose usage was dropped because the buffer was full.",
        usage.dropped(),
    );
    single(
        out,
        "keygate_usage_statements_total",
        "counter",
        "SQL statements written for usage, in batches.",
        usage.statements(),
    );
}
