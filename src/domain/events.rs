//! Events for webhooks, written to the outbox (`webhook_deliveries`) on the connection of the
//! change that caused them, inside its transaction: an event is never lost (it commits with
//! its change) and never made twice (one row per event and endpoint; once-per-period events are
//! claimed first in `webhook_signals`). Delivery is `webhooks`'s.

use chrono::Duration;
use serde_json::{Value, json};

use crate::clock::Now;
use crate::db::models::{Delivery, NewDelivery, Signal, Webhook};
use crate::db::{DbConnection, DbError};

/// Every event an endpoint may subscribe to.
pub const EVENTS: [&str; 7] = [
    "key.created",
    "key.updated",
    "key.rolled",
    "key.deactivated",
    "key.expired",
    "quota.threshold",
    "rate_limit.exceeded",
];

/// The event an audited change announces, if any: changes of keys (a creation by import, a
/// switch back on and a change of credits are updates or creations to a receiver).
pub fn of_action(action: &str) -> Option<&'static str> {
    match action {
        "key.created" | "key.imported" => Some("key.created"),
        "key.updated" | "key.activated" | "key.credits_changed" => Some("key.updated"),
        "key.rolled" => Some("key.rolled"),
        "key.deactivated" => Some("key.deactivated"),
        _ => None,
    }
}

/// A new event id: `evt_` and 24 random hex digits.
fn event_id() -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    format!("evt_{}", hex::encode(bytes))
}

/// Writes `event` with `data` for every enabled endpoint that subscribed to it; returns the
/// event id, if any endpoint wants it.
pub fn emit(conn: &mut DbConnection, event: &str, data: Value, now: Now) -> Result<Option<String>, DbError> {
    let endpoints: Vec<Webhook> = Webhook::list(conn)?
        .into_iter()
        .filter(|w| w.wants(event))
        .collect();
    if endpoints.is_empty() {
        return Ok(None);
    }
    let id = event_id();
    let at = now.naive();
    let payload = json!({
        "id": id,
        "type": event,
        "created_at": crate::clock::rfc3339(at),
        "data": data,
    })
    .to_string();
    for endpoint in endpoints {
        Delivery::insert(
            conn,
            &NewDelivery {
                webhook_id: endpoint.id,
                event_id: &id,
                event_type: event,
                payload: &payload,
                created_at: at,
                status: "pending",
                attempts: 0,
                next_attempt_at: at,
            },
        )?;
    }
    Ok(Some(id))
}

/// Emits `event` once for the condition `key` (two instances seeing the same condition emit
/// it once): true when this call emitted it.
pub fn once(conn: &mut DbConnection, key: &str, event: &str, data: Value, now: Now) -> Result<bool, DbError> {
    crate::db::write(conn, |conn| {
        if !Signal::first(conn, key, now.naive())? {
            return Ok(false);
        }
        emit(conn, event, data, now)?;
        Ok(true)
    })
}

/// How long once-per-period conditions are remembered: longer than any period they name.
pub const SIGNALS_KEPT: Duration = Duration::days(40);

/// A once-per-period condition the gate saw, on its way to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// The condition's name: the same on every instance for the same key and period.
    pub key: String,
    pub event: &'static str,
    pub data: Value,
}

/// What the gate tells webhooks: a key's window refusing (`rate_limit.exceeded`, once per key
/// and window) and a key passing 80 % or 100 % of a day's limit or of its credits
/// (`quota.threshold`, once per key, level and period). The gate's cost when no endpoint
/// listens is one atomic load per request; when one listens, a few integer comparisons, and a
/// channel send only at a crossing (the first refusal of a window per instance, at most).
pub struct Signals {
    /// Which of the two events some enabled endpoint wants (refreshed by the delivery loop).
    wanted: [std::sync::atomic::AtomicBool; 2],
    sender: tokio::sync::mpsc::Sender<Sighting>,
    /// Per instance, the window each key last signalled a refusal for: a refusal flood sends
    /// once, not once a request.
    refused: std::sync::Mutex<std::collections::HashMap<crate::db::KeyId, (crate::limits::Window, u64)>>,
}

const EXCEEDED: usize = 0;
const THRESHOLD: usize = 1;

impl Signals {
    /// The signals, and the receiving end the writer drains.
    pub fn new() -> (Signals, tokio::sync::mpsc::Receiver<Sighting>) {
        let (sender, receiver) = tokio::sync::mpsc::channel(10_000);
        let signals = Signals {
            wanted: Default::default(),
            sender,
            refused: Default::default(),
        };
        (signals, receiver)
    }

    /// Sets which events endpoints want (from the endpoints' table).
    pub fn listen(&self, endpoints: &[Webhook]) {
        use std::sync::atomic::Ordering::Relaxed;
        for (slot, event) in [(EXCEEDED, "rate_limit.exceeded"), (THRESHOLD, "quota.threshold")] {
            self.wanted[slot].store(endpoints.iter().any(|w| w.wants(event)), Relaxed);
        }
    }

    fn wants(&self, slot: usize) -> bool {
        self.wanted[slot].load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Looks at a key's decision for a request of `cost`.
    pub fn observe(&self, key: crate::db::KeyId, decision: &crate::limits::Decision, cost: u64) {
        if decision.allowed {
            if self.wants(THRESHOLD) {
                self.thresholds(key, decision, cost);
            }
        } else if self.wants(EXCEEDED) {
            self.exceeded(key, decision);
        }
    }

    fn exceeded(&self, key: crate::db::KeyId, decision: &crate::limits::Decision) {
        // A window's refusal (the key's own or its owner's plan), not a spent balance: that is
        // quota.threshold's 100 %.
        let Some(crate::limits::Refusal::Window { count, part, .. }) = decision.refused_by() else {
            return;
        };
        let Some(limit) = count.limit else {
            return;
        };
        let part = match part {
            crate::limits::Part::Key => "key",
            crate::limits::Part::Plan => "plan",
        };
        let start_ms = decision.now_ms - count.elapsed_ms;
        {
            let mut refused = self
                .refused
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if refused.get(&key) == Some(&(count.window, start_ms)) {
                return;
            }
            if refused.len() > 100_000 {
                refused.clear();
            }
            refused.insert(key, (count.window, start_ms));
        }
        let window = count.window.name();
        self.send(Sighting {
            key: format!("rate_limit.exceeded:{}:{part}:{window}:{start_ms}", key.0),
            event: "rate_limit.exceeded",
            data: json!({"key_id": key.0, "limit_of": part, "window": window, "limit": limit.get(),
                         "window_start": millis(start_ms)}),
        });
    }

    fn thresholds(&self, key: crate::db::KeyId, decision: &crate::limits::Decision, cost: u64) {
        let day = decision
            .counts
            .iter()
            .find(|c| c.window == crate::limits::Window::Day);
        if let Some(count) = day
            && let Some(limit) = count.limit
        {
            let (limit, used) = (u64::from(limit.get()), count.curr);
            let before = used.saturating_sub(cost);
            for level in [80u64, 100] {
                if before * 100 < limit * level && used * 100 >= limit * level {
                    let start_ms = decision.now_ms - count.elapsed_ms;
                    self.send(Sighting {
                        key: format!("quota.threshold:{}:day:{level}:{start_ms}", key.0),
                        event: "quota.threshold",
                        data: json!({"key_id": key.0, "kind": "day_limit", "threshold": level,
                                     "limit": limit, "used": used, "period_start": millis(start_ms)}),
                    });
                }
            }
        }
        let credits = decision.quota.as_ref().and_then(|q| q.credits);
        if let Some(balance) = credits {
            // Of the refill's amount; a balance without a refill has only its end.
            let total = balance.refill.map(|r| u64::from(r.amount));
            let (left, before) = (balance.remaining, balance.remaining + cost);
            // A balance without a refill has no period: at most once a day (a top-up and a
            // second run-down the same day are not announced again).
            let period = balance.next_refill_ms.map_or_else(
                || format!("day{}", decision.now_ms / 86_400_000),
                |ms| ms.to_string(),
            );
            for level in [80u64, 100] {
                let crossed = match (level, total) {
                    (100, _) => before > 0 && left == 0,
                    (_, Some(total)) => {
                        let mark = total * (100 - level) / 100;
                        before > mark && left <= mark
                    }
                    _ => false,
                };
                if crossed {
                    self.send(Sighting {
                        key: format!("quota.threshold:{}:credits:{level}:{period}", key.0),
                        event: "quota.threshold",
                        data: json!({"key_id": key.0, "kind": "credits", "threshold": level,
                                     "remaining": left, "refill_amount": total,
                                     "next_refill_at": balance.next_refill_ms.map(millis)}),
                    });
                }
            }
        }
    }

    fn send(&self, sighting: Sighting) {
        // Full (the database far behind): dropped and logged rather than slowing the gate.
        if self.sender.try_send(sighting).is_err() {
            log::warn!("webhook signals are backing up; one was dropped");
        }
    }
}

fn millis(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| crate::clock::rfc3339(t.naive_utc()))
        .unwrap_or_default()
}

/// Writes what the gate saw, as it arrives, until the gate's side is gone.
pub fn spawn_writer(pool: crate::db::DbPool, mut receiver: tokio::sync::mpsc::Receiver<Sighting>) {
    tokio::spawn(async move {
        while let Some(sighting) = receiver.recv().await {
            let written = crate::db::run(&pool, move |conn| {
                once(conn, &sighting.key, sighting.event, sighting.data, Now::read())
            })
            .await;
            if let Err(e) = written {
                log::warn!("could not write a webhook event: {e}");
            }
        }
    });
}
