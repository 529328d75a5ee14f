//! Usage over time: the series the dashboard charts (24 hours by the hour, 7 or 30 days by the
//! day), the overview across all keys, the export for billing, and the retention job that keeps
//! hours 35 days and days 400. Reads only what the usage flush wrote: the gate is not involved.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use crate::clock::Now;
use crate::db::models::{
    ApiKey, Counted, DayRow, Delivery, KeyOrder, KeySearch, KeyStatusFilter, Signal, UsageFilter, UsageRow,
    UsageTotals,
};
use crate::db::{self, DbConnection, DbError, DbPool, KeyId};
use crate::keys::service::{self, KeyError, KeyRecord};
use crate::policy::{self, Actor, ReadError, Refusal};

/// How long each table keeps its rows.
pub const HOURS_KEPT_DAYS: i64 = 35;
pub const DAYS_KEPT_DAYS: i64 = 400;

/// A chart's span: the last 24 hours by the hour, or the last 7 or 30 days by the day (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Span {
    #[default]
    Day,
    Week,
    Month,
}

impl Span {
    pub const ALL: [Span; 3] = [Span::Day, Span::Week, Span::Month];

    pub fn parse(text: &str) -> Option<Span> {
        Span::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Span::Day => "24h",
            Span::Week => "7d",
            Span::Month => "30d",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Span::Day => "24 hours",
            Span::Week => "7 days",
            Span::Month => "30 days",
        }
    }

    /// Hourly (from the hours table) or daily.
    pub fn hourly(self) -> bool {
        self == Span::Day
    }

    fn buckets(self) -> i64 {
        match self {
            Span::Day => 24,
            Span::Week => 7,
            Span::Month => 30,
        }
    }

    fn step(self) -> Duration {
        if self.hourly() {
            Duration::hours(1)
        } else {
            Duration::days(1)
        }
    }

    /// The start of the first bucket: the current hour (or day) is the last.
    pub fn start(self, now: NaiveDateTime) -> NaiveDateTime {
        let current = if self.hourly() { hour_of(now) } else { day_of(now) };
        current - self.step() * (self.buckets() - 1) as i32
    }
}

/// The start of the clock hour containing `at`.
pub fn hour_of(at: NaiveDateTime) -> NaiveDateTime {
    at.date().and_hms_opt(at.hour(), 0, 0).unwrap_or(at)
}

/// The start of the UTC day containing `at`.
pub fn day_of(at: NaiveDateTime) -> NaiveDateTime {
    at.date().and_time(NaiveTime::MIN)
}

/// One bucket of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub start: NaiveDateTime,
    pub allowed: i64,
    pub rejected: i64,
}

/// The span's buckets, oldest first, zero where nothing was counted.
fn filled(span: Span, now: NaiveDateTime, stored: &[(NaiveDateTime, i64, i64)]) -> Vec<Point> {
    let first = span.start(now);
    let counted: HashMap<NaiveDateTime, (i64, i64)> = stored.iter().map(|&(at, a, r)| (at, (a, r))).collect();
    (0..span.buckets())
        .map(|i| {
            let start = first + span.step() * i as i32;
            let (allowed, rejected) = counted.get(&start).copied().unwrap_or_default();
            Point {
                start,
                allowed,
                rejected,
            }
        })
        .collect()
}

/// The series of one key (or of all keys, `None`) over `span`, read on `conn`.
pub fn series(
    conn: &mut DbConnection,
    key: Option<KeyId>,
    span: Span,
    now: Now,
) -> Result<Vec<Point>, DbError> {
    let since = span.start(now.naive());
    let stored = if span.hourly() {
        UsageRow::per_period(conn, key, since)?
    } else {
        DayRow::per_period(conn, key, since)?
    };
    Ok(filled(span, now.naive(), &stored))
}

/// Usage of one key: a span's buckets (oldest first, zero-filled) and its totals over the
/// days kept.
#[derive(Debug, Clone)]
pub struct KeyUsage {
    pub totals: UsageTotals,
    pub history: Vec<Point>,
}

/// A key's usage over `span`, for whoever may see the key (others: not found).
pub async fn key_usage(
    pool: &DbPool,
    actor: Actor,
    id: KeyId,
    span: Span,
    now: Now,
) -> Result<(KeyRecord, KeyUsage), KeyError> {
    let record = service::get(pool, actor, id).await?;
    let usage = db::run(pool, move |conn| {
        let totals = UsageRow::totals(conn, id)?;
        let history = series(conn, Some(id), span, now)?;
        Ok::<_, DbError>(KeyUsage { totals, history })
    })
    .await?;
    Ok((record, usage))
}

/// A key's traffic over a span, for the overview's top lists.
#[derive(Debug, Clone)]
pub struct KeyTraffic {
    pub id: KeyId,
    pub name: String,
    pub prefix: String,
    pub owner: String,
    pub allowed: i64,
    pub rejected: i64,
}

/// The dashboard's home: all keys over a span.
#[derive(Debug, Clone)]
pub struct Overview {
    pub span: Span,
    pub series: Vec<Point>,
    pub top_traffic: Vec<KeyTraffic>,
    pub top_refused: Vec<KeyTraffic>,
    /// Keys that work now (active, unexpired), and keys that made a request in the span.
    pub active_keys: usize,
    pub used_keys: usize,
    /// Allowed and refused in the current and the previous clock hour.
    pub recent: (i64, i64),
}

impl Overview {
    /// Refused requests per 100 in the recent hours (`None`: no requests).
    pub fn refusal_rate(&self) -> Option<f64> {
        let (allowed, rejected) = self.recent;
        let all = allowed + rejected;
        (all > 0).then(|| rejected as f64 * 100.0 / all as f64)
    }
}

/// How many keys each top list shows.
pub const TOP: usize = 10;

/// The overview (admins only).
pub async fn overview(pool: &DbPool, actor: Actor, span: Span, now: Now) -> Result<Overview, ReadError> {
    policy::require_admin(actor, "see the overview of all keys")?;
    let overview = db::run(pool, move |conn| {
        let series = series(conn, None, span, now)?;
        let since = span.start(now.naive());
        let per_key = if span.hourly() {
            UsageRow::per_key(conn, since)?
        } else {
            DayRow::per_key(conn, since)?
        };
        let recent_since = hour_of(now.naive()) - Duration::hours(1);
        let recent = UsageRow::per_period(conn, None, recent_since)?
            .iter()
            .fold((0, 0), |(a, r), &(_, allowed, rejected)| {
                (a + allowed, r + rejected)
            });
        // Counted in SQL (the status rule's SQL form), not by loading every key.
        let active = KeySearch {
            owner: None,
            text: None,
            status: Some(KeyStatusFilter::Active),
            order: KeyOrder::Newest,
            page: 0,
            per_page: 1,
        };
        let active_keys = ApiKey::search(conn, &active, now.naive())?.1 as usize;
        let used_keys = per_key.len();
        let mut by_traffic = per_key.clone();
        by_traffic.sort_by_key(|&(id, allowed, rejected)| (std::cmp::Reverse(allowed + rejected), id));
        by_traffic.truncate(TOP);
        let mut by_refusals: Vec<_> = per_key.into_iter().filter(|k| k.2 > 0).collect();
        by_refusals.sort_by_key(|&(id, _, rejected)| (std::cmp::Reverse(rejected), id));
        by_refusals.truncate(TOP);
        // Names for the (at most 20) keys shown.
        let ids: Vec<KeyId> = by_traffic.iter().chain(&by_refusals).map(|k| k.0).collect();
        let keys = ApiKey::with_owners(conn, &ids)?;
        let names: HashMap<KeyId, &(ApiKey, String)> = keys.iter().map(|k| (k.0.id, k)).collect();
        let shown = |list: Vec<(KeyId, i64, i64)>| -> Vec<KeyTraffic> {
            list.into_iter()
                .filter_map(|(id, allowed, rejected)| {
                    names.get(&id).map(|(key, owner)| KeyTraffic {
                        id,
                        name: key.name.clone(),
                        prefix: key.prefix.clone(),
                        owner: owner.clone(),
                        allowed,
                        rejected,
                    })
                })
                .collect()
        };
        let (by_traffic, by_refusals) = (shown(by_traffic), shown(by_refusals));
        Ok::<_, DbError>(Overview {
            span,
            series,
            top_traffic: by_traffic,
            top_refused: by_refusals,
            active_keys,
            used_keys,
            recent,
        })
    })
    .await?;
    Ok(overview)
}

/// The granularity of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Hour,
    Day,
    Month,
}

impl Granularity {
    pub fn parse(text: &str) -> Option<Granularity> {
        match text {
            "hour" => Some(Granularity::Hour),
            "day" => Some(Granularity::Day),
            "month" => Some(Granularity::Month),
            _ => None,
        }
    }
}

/// An export: which rows, at which granularity. Users export only their own keys.
#[derive(Debug, Clone, Copy)]
pub struct Export {
    pub filter: UsageFilter,
    pub granularity: Granularity,
    /// Rows per page read: memory stays bounded however long the period.
    pub page_rows: i64,
}

impl Export {
    pub fn new(filter: UsageFilter, granularity: Granularity) -> Export {
        Export {
            filter,
            granularity,
            page_rows: 2_000,
        }
    }

    /// Narrows the export to what `actor` may see: a user's own keys only (naming another
    /// owner is refused; naming another's key finds nothing, as a key id that is not theirs
    /// is "not found" everywhere).
    pub fn for_actor(mut self, actor: Actor) -> Result<Export, Refusal> {
        if !actor.is_admin {
            match self.filter.owner {
                Some(owner) if owner != actor.user_id => {
                    return Err(Refusal("Only admins may export other users' usage.".into()));
                }
                _ => self.filter.owner = Some(actor.user_id),
            }
        }
        Ok(self)
    }

    /// The next page of rows after `cursor` (none: from the start), and the cursor after it
    /// (`None`: that was the last page). Months are summed from days: a page ends at a key
    /// boundary or holds whole months, because rows come in (key, day) order and a month is
    /// only emitted once the next month or key begins (or the table ends).
    pub async fn page(
        &self,
        pool: &DbPool,
        cursor: Option<(KeyId, NaiveDateTime)>,
    ) -> Result<(Vec<Counted>, Option<(KeyId, NaiveDateTime)>), DbError> {
        let (mut filter, granularity, limit) = (self.filter, self.granularity, self.page_rows.max(32));
        if granularity == Granularity::Month {
            // Months whose start is in [from, to), whole: the days from the first such month
            // to the first month starting at or after `to`.
            filter.from = month_ceiling(filter.from);
            filter.to = month_ceiling(filter.to);
        }
        db::run(pool, move |conn| {
            let rows = match granularity {
                Granularity::Hour => UsageRow::page(conn, &filter, cursor, limit)?,
                Granularity::Day | Granularity::Month => DayRow::page(conn, &filter, cursor, limit)?,
            };
            let full = rows.len() as i64 == limit;
            if granularity != Granularity::Month {
                let next = if full {
                    rows.last().map(|r| (r.0, r.1))
                } else {
                    None
                };
                return Ok((rows, next));
            }
            let (months, next) = months_of(&rows, full);
            Ok((months, next))
        })
        .await
    }
}

/// The first month start at or after `at`.
fn month_ceiling(at: NaiveDateTime) -> NaiveDateTime {
    let start = NaiveDate::from_ymd_opt(at.year(), at.month(), 1)
        .unwrap_or(at.date())
        .and_time(NaiveTime::MIN);
    if start == at {
        start
    } else {
        start
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(NaiveDateTime::MAX)
    }
}

/// Sums days into months. With more rows to come (`full`), the last (key, month) may be
/// incomplete: it is held back and the cursor points before it, so the next page starts with
/// its first day.
fn months_of(days: &[Counted], full: bool) -> (Vec<Counted>, Option<(KeyId, NaiveDateTime)>) {
    let month_of = |at: NaiveDateTime| {
        NaiveDate::from_ymd_opt(at.year(), at.month(), 1)
            .unwrap_or(at.date())
            .and_time(NaiveTime::MIN)
    };
    let mut months: Vec<Counted> = Vec::new();
    // The last day of each group, to resume after.
    let mut ends: Vec<(KeyId, NaiveDateTime)> = Vec::new();
    for &(key, day, allowed, rejected) in days {
        let month = month_of(day);
        match months.last_mut() {
            Some(last) if last.0 == key && last.1 == month => {
                last.2 += allowed;
                last.3 += rejected;
                if let Some(end) = ends.last_mut() {
                    *end = (key, day);
                }
            }
            _ => {
                months.push((key, month, allowed, rejected));
                ends.push((key, day));
            }
        }
    }
    if !full {
        return (months, None);
    }
    if months.len() <= 1 {
        // One (key, month) fills a whole page: impossible with at most 31 days a month and
        // pages of at least 32 rows; emit it rather than loop.
        let next = ends.last().copied();
        return (months, next);
    }
    months.pop();
    ends.pop();
    let next = ends.last().copied();
    (months, next)
}

/// Deletes what retention no longer keeps: hours after 35 days, days after 400, and audit
/// entries after `audit_days` when it is set. Idempotent: any instance may run it any time.
pub async fn prune(
    pool: &DbPool,
    audit_days: Option<u32>,
    now: Now,
) -> Result<(usize, usize, usize), DbError> {
    let at = now.naive();
    let (hours, days) = db::run(pool, move |conn| {
        let hours = UsageRow::prune(conn, hour_of(at) - Duration::days(HOURS_KEPT_DAYS))?;
        let days = DayRow::prune(conn, day_of(at) - Duration::days(DAYS_KEPT_DAYS))?;
        // Finished webhook deliveries after 30 days; once-per-period conditions after 40.
        Delivery::prune(conn, at - Duration::days(30))?;
        Signal::prune(conn, at - crate::events::SIGNALS_KEPT)?;
        Ok::<_, DbError>((hours, days))
    })
    .await?;
    let audit = match audit_days {
        Some(n) => crate::audit::prune(pool, n, now).await?,
        None => 0,
    };
    Ok((hours, days, audit))
}

/// Runs [`prune`] now and every hour.
pub fn spawn_retention(pool: DbPool, audit_days: Option<u32>) {
    let pool = Arc::new(pool);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(StdDuration::from_secs(3_600));
        loop {
            tick.tick().await;
            match prune(&pool, audit_days, Now::read()).await {
                Ok((0, 0, 0)) => {}
                Ok((hours, days, audit)) => log::info!(
                    "retention: removed {hours} hourly and {days} daily usage rows, {audit} audit entries"
                ),
                Err(e) => log::warn!("retention could not run, will retry in an hour: {e}"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").expect("a time")
    }

    #[test]
    fn spans_end_with_the_current_bucket() {
        let now = at("2026-11-29 23:41:07");
        assert_eq!(Span::Day.start(now), at("2026-11-29 00:00:00"));
        assert_eq!(Span::Week.start(now), at("2026-11-23 00:00:00"));
        assert_eq!(Span::Month.start(now), at("2026-10-31 00:00:00"));
        let points = filled(Span::Week, now, &[(at("2026-11-25 00:00:00"), 3, 1)]);
        assert_eq!(points.len(), 7);
        assert_eq!((points[2].allowed, points[2].rejected), (3, 1));
        assert_eq!(points[6].start, at("2026-11-29 00:00:00"));
    }

    #[test]
    fn months_hold_back_the_last_group_while_more_may_come() {
        let k = KeyId(1);
        let days = [
            (k, at("2026-10-30 00:00:00"), 1, 0),
            (k, at("2026-11-01 00:00:00"), 2, 1),
            (k, at("2026-11-02 00:00:00"), 3, 0),
        ];
        let (months, next) = months_of(&days, false);
        assert_eq!(
            months,
            [
                (k, at("2026-10-01 00:00:00"), 1, 0),
                (k, at("2026-11-01 00:00:00"), 5, 1)
            ]
        );
        assert_eq!(next, None);
        let (months, next) = months_of(&days, true);
        assert_eq!(months, [(k, at("2026-10-01 00:00:00"), 1, 0)]);
        assert_eq!(next, Some((k, at("2026-10-30 00:00:00"))));
    }
}
