//! A latency histogram with fixed buckets, counted per thread (`Striped`) so observing costs no
//! shared cache line; the limiter observes its store's latency, `/metrics` renders it.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::striped::Striped;

/// Upper bounds (seconds) of the store-latency histogram.
pub const LATENCY_BUCKETS: [f64; 9] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25];

/// A latency histogram with fixed buckets.
#[derive(Default)]
pub struct Latency(Striped<LatencyCells>);

#[derive(Default)]
struct LatencyCells {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    micros: AtomicU64,
}

impl Latency {
    pub fn observe(&self, took: Duration) {
        let cells = self.0.mine();
        let seconds = took.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&le| seconds <= le) {
            cells.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        cells.count.fetch_add(1, Ordering::Relaxed);
        cells.micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// The histogram in Prometheus text format, as `name`.
    pub fn render(&self, out: &mut String, name: &str) {
        let mut cumulative = 0;
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.0.sum(|c| &c.buckets[i]);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let count = self.0.sum(|c| &c.count);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.0.sum(|c| &c.micros) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}
