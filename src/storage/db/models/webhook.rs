use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::{webhook_deliveries, webhook_signals, webhooks};

/// A webhook endpoint. `secret` signs deliveries: it never leaves keygate after creation.
#[derive(Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = webhooks, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct Webhook {
    pub id: i64,
    pub url: String,
    pub events: String,
    pub secret: String,
    pub enabled: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Whether it takes `event` now.
    pub fn wants(&self, event: &str) -> bool {
        self.enabled && self.events.split_whitespace().any(|e| e == event)
    }
}

#[derive(Insertable)]
#[diesel(table_name = webhooks)]
pub struct NewWebhook<'a> {
    pub url: &'a str,
    pub events: &'a str,
    pub secret: &'a str,
    pub enabled: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = webhooks)]
pub struct WebhookChanges {
    pub url: Option<String>,
    pub events: Option<String>,
    pub enabled: Option<bool>,
    pub updated_at: Option<NaiveDateTime>,
}

impl Webhook {
    pub fn insert(conn: &mut DbConnection, new: &NewWebhook<'_>) -> QueryResult<Webhook> {
        diesel::insert_into(webhooks::table).values(new).get_result(conn)
    }

    pub fn list(conn: &mut DbConnection) -> QueryResult<Vec<Webhook>> {
        webhooks::table
            .select(Webhook::as_select())
            .order(webhooks::id.asc())
            .load(conn)
    }

    pub fn find(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Webhook>> {
        webhooks::table
            .find(id)
            .select(Webhook::as_select())
            .first(conn)
            .optional()
    }

    pub fn update(
        conn: &mut DbConnection,
        id: i64,
        changes: &WebhookChanges,
    ) -> QueryResult<Option<Webhook>> {
        diesel::update(webhooks::table.find(id))
            .set(changes)
            .get_result(conn)
            .optional()
    }

    /// Deletes the endpoint and (cascading) its deliveries; whether it existed.
    pub fn delete(conn: &mut DbConnection, id: i64) -> QueryResult<bool> {
        Ok(diesel::delete(webhooks::table.find(id)).execute(conn)? == 1)
    }
}

/// A delivery no instance holds at `$now` (never claimed, or its claim ran out).
macro_rules! idle {
    ($now:expr) => {
        webhook_deliveries::locked_until
            .is_null()
            .or(webhook_deliveries::locked_until.lt($now))
    };
}

/// One event for one endpoint: the outbox row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: i64,
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    pub created_at: NaiveDateTime,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub locked_until: Option<NaiveDateTime>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub last_latency_ms: Option<i32>,
    pub delivered_at: Option<NaiveDateTime>,
}

#[derive(Insertable)]
#[diesel(table_name = webhook_deliveries)]
pub struct NewDelivery<'a> {
    pub webhook_id: i64,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub payload: &'a str,
    pub created_at: NaiveDateTime,
    pub status: &'a str,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub status: Option<i32>,
    pub error: Option<String>,
    pub latency_ms: i32,
    /// Delivered, or when to try again (`None` with no delivery: given up).
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered(NaiveDateTime),
    Retry(NaiveDateTime),
    GiveUp,
}

impl Delivery {
    pub fn insert(conn: &mut DbConnection, new: &NewDelivery<'_>) -> QueryResult<()> {
        diesel::insert_into(webhook_deliveries::table)
            .values(new)
            .execute(conn)
            .map(drop)
    }

    /// Ids of pending deliveries that are due and not being delivered, oldest first.
    pub fn due(conn: &mut DbConnection, now: NaiveDateTime, limit: i64) -> QueryResult<Vec<i64>> {
        // A switched-off endpoint's deliveries wait (and give up after their 24 hours).
        let enabled = webhooks::table
            .filter(webhooks::enabled.eq(true))
            .select(webhooks::id);
        webhook_deliveries::table
            .filter(webhook_deliveries::webhook_id.eq_any(enabled))
            .filter(webhook_deliveries::status.eq("pending"))
            .filter(webhook_deliveries::next_attempt_at.le(now))
            .filter(idle!(now))
            .order(webhook_deliveries::id.asc())
            .select(webhook_deliveries::id)
            .limit(limit)
            .load(conn)
    }

    /// Claims delivery `id` until `until`, unless another instance holds it: one conditional
    /// UPDATE, so of two instances racing for a row exactly one gets it.
    pub fn claim(
        conn: &mut DbConnection,
        id: i64,
        now: NaiveDateTime,
        until: NaiveDateTime,
    ) -> QueryResult<Option<Delivery>> {
        let claimed = diesel::update(
            webhook_deliveries::table
                .filter(webhook_deliveries::id.eq(id))
                .filter(webhook_deliveries::status.eq("pending"))
                .filter(webhook_deliveries::next_attempt_at.le(now))
                .filter(idle!(now)),
        )
        .set(webhook_deliveries::locked_until.eq(Some(until)))
        .execute(conn)?;
        if claimed == 0 {
            return Ok(None);
        }
        webhook_deliveries::table
            .find(id)
            .select(Delivery::as_select())
            .first(conn)
            .optional()
    }

    /// Records an attempt and releases the claim — only while the claim is still this one's
    /// (`claimed_until`): an attempt that outlived its claim changes nothing (another instance
    /// has the delivery now). Whether it was recorded.
    pub fn finish(
        conn: &mut DbConnection,
        id: i64,
        claimed_until: NaiveDateTime,
        attempt: &Attempt,
    ) -> QueryResult<bool> {
        use webhook_deliveries as d;
        let (status, next, delivered) = match attempt.outcome {
            Outcome::Delivered(at) => ("delivered", None, Some(at)),
            Outcome::Retry(at) => ("pending", Some(at), None),
            Outcome::GiveUp => ("failed", None, None),
        };
        let target = d::table
            .filter(d::id.eq(id))
            .filter(d::locked_until.eq(Some(claimed_until)));
        let common = (
            d::status.eq(status),
            d::attempts.eq(d::attempts + 1),
            d::locked_until.eq(None::<NaiveDateTime>),
            d::last_status.eq(attempt.status),
            d::last_error.eq(attempt.error.as_deref()),
            d::last_latency_ms.eq(Some(attempt.latency_ms)),
            d::delivered_at.eq(delivered),
        );
        let changed = match next {
            Some(at) => diesel::update(target)
                .set((common, d::next_attempt_at.eq(at)))
                .execute(conn)?,
            None => diesel::update(target).set(common).execute(conn)?,
        };
        Ok(changed == 1)
    }

    /// The most recent deliveries of an endpoint, newest first.
    pub fn recent(conn: &mut DbConnection, webhook_id: i64, limit: i64) -> QueryResult<Vec<Delivery>> {
        webhook_deliveries::table
            .filter(webhook_deliveries::webhook_id.eq(webhook_id))
            .order(webhook_deliveries::id.desc())
            .limit(limit)
            .select(Delivery::as_select())
            .load(conn)
    }

    pub fn find(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Delivery>> {
        webhook_deliveries::table
            .find(id)
            .select(Delivery::as_select())
            .first(conn)
            .optional()
    }

    /// Sends a delivery again (same event id): pending, due now, its attempts and 24 hours
    /// started over. Not while an instance is sending it (false).
    pub fn resend(conn: &mut DbConnection, id: i64, now: NaiveDateTime) -> QueryResult<bool> {
        use webhook_deliveries as d;
        let changed = diesel::update(d::table.filter(d::id.eq(id)).filter(idle!(now)))
            .set((
                d::status.eq("pending"),
                d::attempts.eq(0),
                d::next_attempt_at.eq(now),
                d::created_at.eq(now),
            ))
            .execute(conn)?;
        Ok(changed == 1)
    }

    /// Deletes finished deliveries older than `cutoff` (retention).
    pub fn prune(conn: &mut DbConnection, cutoff: NaiveDateTime) -> QueryResult<usize> {
        diesel::delete(
            webhook_deliveries::table
                .filter(webhook_deliveries::status.ne("pending"))
                .filter(webhook_deliveries::created_at.lt(cutoff)),
        )
        .execute(conn)
    }
}

/// A once-per-period condition.
pub struct Signal;

impl Signal {
    /// Records `key`: true the first time (this caller emits the event), false when any
    /// instance recorded it before. A savepoint keeps a duplicate from aborting the caller's
    /// transaction on PostgreSQL.
    pub fn first(conn: &mut DbConnection, key: &str, now: NaiveDateTime) -> QueryResult<bool> {
        let inserted = conn.transaction(|conn| {
            diesel::insert_into(webhook_signals::table)
                .values((
                    webhook_signals::dedup_key.eq(key),
                    webhook_signals::created_at.eq(now),
                ))
                .execute(conn)
        });
        match inserted {
            Ok(_) => Ok(true),
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn prune(conn: &mut DbConnection, cutoff: NaiveDateTime) -> QueryResult<usize> {
        diesel::delete(webhook_signals::table.filter(webhook_signals::created_at.lt(cutoff))).execute(conn)
    }
}
