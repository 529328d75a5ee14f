//! Credits: a balance of uses that every allowed request spends its cost from, refilled (set
//! back to an amount) every day, or every month on a day of the month, in UTC.
//!
//! A refill is tied to a *period*: a number that grows by one at each refill moment. A store
//! keeps with each balance the period it belongs to, and sets the balance to the refill amount
//! when it first sees a later period. Two instances seeing the new period apply the refill once:
//! the second finds the period already moved. The period is computed here, from the request's
//! time, and handed to the store, so both stores (and the Redis script) refill identically.

use super::rate::calendar;

const DAY_MS: u64 = 86_400_000;

/// How often credits are refilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interval {
    Day,
    /// Monthly, on this day of the month (1–28: every month has it).
    Month {
        day: u8,
    },
}

/// Set the balance back to `amount` every `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Refill {
    pub amount: u32,
    pub interval: Interval,
}

impl Refill {
    pub const MAX_AMOUNT: u32 = i32::MAX as u32;

    /// From the parts a caller sends (`amount`, `interval`, `day_of_month`), checked.
    pub fn parse(amount: i64, interval: &str, day_of_month: Option<i64>) -> Result<Refill, String> {
        let amount = u32::try_from(amount)
            .ok()
            .filter(|a| (1..=Self::MAX_AMOUNT).contains(a))
            .ok_or("refill.amount must be a whole number from 1 to 2147483647")?;
        let interval = match (interval, day_of_month) {
            ("day", None) => Interval::Day,
            ("day", Some(_)) => return Err("refill.day_of_month is for a monthly refill".into()),
            ("month", day) => {
                let day = day.unwrap_or(1);
                if !(1..=28).contains(&day) {
                    return Err("refill.day_of_month must be from 1 to 28".into());
                }
                Interval::Month { day: day as u8 }
            }
            _ => return Err("refill.interval must be \"day\" or \"month\"".into()),
        };
        Ok(Refill { amount, interval })
    }

    /// As stored: (amount, interval, day). Rows written by hand that make no sense are no refill.
    pub fn of_columns(amount: Option<i32>, interval: Option<&str>, day: Option<i32>) -> Option<Refill> {
        let day = match interval? {
            "day" => None,
            _ => Some(i64::from(day.unwrap_or(1))),
        };
        Refill::parse(i64::from(amount?), interval?, day).ok()
    }

    pub fn columns(self) -> (i32, &'static str, Option<i32>) {
        match self.interval {
            Interval::Day => (self.amount as i32, "day", None),
            Interval::Month { day } => (self.amount as i32, "month", Some(i32::from(day))),
        }
    }

    /// The period containing `now_ms`: days since 1970, or months since January 1970 counted
    /// from their refill day (before the day, the period is the previous month's).
    pub fn period(self, now_ms: u64) -> u64 {
        match self.interval {
            Interval::Day => now_ms / DAY_MS,
            Interval::Month { day } => {
                let (month, span) = calendar::month(now_ms);
                let day_of_month = (now_ms - span.start_ms) / DAY_MS + 1;
                if day_of_month < u64::from(day) {
                    month.saturating_sub(1)
                } else {
                    month
                }
            }
        }
    }

    /// When the refill after `now_ms` comes (Unix ms).
    pub fn next_at_ms(self, now_ms: u64) -> u64 {
        match self.interval {
            Interval::Day => (now_ms / DAY_MS + 1) * DAY_MS,
            Interval::Month { day } => {
                calendar::month_start(self.period(now_ms) + 1) + (u64::from(day) - 1) * DAY_MS
            }
        }
    }

    /// The interval's nominal length in seconds (`RateLimit-Policy`'s `w`).
    pub fn seconds(self) -> u64 {
        match self.interval {
            Interval::Day => 86_400,
            Interval::Month { .. } => 30 * 86_400,
        }
    }
}

/// A holder's credits as a store keeps them (and as the database checkpoints them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CreditState {
    pub remaining: u64,
    /// The refill period the balance belongs to (0 without a refill).
    pub period: u64,
    /// Grows with every change.
    pub seq: u64,
    /// The refill terms the period was counted under ([`Credits::tag`]): a request that brings
    /// other terms (read before an admin changed them) never refills — a day's number and a
    /// month's are not comparable.
    pub terms: u64,
}

/// The credit terms a request is held to: that the holder has a balance, and its refill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credits {
    pub refill: Option<Refill>,
}

impl Credits {
    /// The period a store must bring a balance to at `now_ms` (0 without a refill).
    pub fn period(self, now_ms: u64) -> u64 {
        self.refill.map_or(0, |r| r.period(now_ms))
    }

    /// The refill terms as one number (0: none), kept with a balance; below 2⁵³, so a Redis
    /// double holds it exactly.
    pub fn tag(self) -> u64 {
        let Some(refill) = self.refill else { return 0 };
        let interval = match refill.interval {
            Interval::Day => 1,
            Interval::Month { day } => 1 + u64::from(day),
        };
        u64::from(refill.amount) * 32 + interval
    }

    /// `state` brought to `period`: refilled when the period has moved on under these terms.
    pub fn refilled(self, state: CreditState, period: u64) -> CreditState {
        match self.refill {
            Some(refill) if period > state.period && state.terms == self.tag() => CreditState {
                remaining: u64::from(refill.amount),
                period,
                seq: state.seq + 1,
                terms: state.terms,
            },
            _ => state,
        }
    }
}

/// What an admin does to a balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjustment {
    Add(u64),
    Set(u64),
    /// New refill terms: the balance stays, and belongs to the new terms' current period (the
    /// periods of a daily and a monthly refill are not comparable).
    Rebase,
}

impl Adjustment {
    /// The largest balance: what the databases' `BIGINT` holds, and a Redis double exactly.
    pub const MAX: u64 = 1 << 53;

    /// `state` changed, at `period` (the terms' current one), refilled first unless rebased.
    pub fn apply(self, terms: Credits, state: CreditState, period: u64) -> CreditState {
        let state = match self {
            Adjustment::Rebase => CreditState {
                period,
                terms: terms.tag(),
                ..state
            },
            _ => terms.refilled(state, period),
        };
        let remaining = match self {
            Adjustment::Add(n) => state.remaining.saturating_add(n).min(Self::MAX),
            Adjustment::Set(n) => n.min(Self::MAX),
            Adjustment::Rebase => state.remaining,
        };
        CreditState {
            remaining,
            seq: state.seq + 1,
            ..state
        }
    }
}

/// What an admin's change or a checkpoint does to a balance in a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditOp {
    Read,
    /// The change, and the balance to start from if the store holds none.
    Change(Adjustment, CreditState),
    Forget,
}

/// A holder's credits after a decision, for headers, verify and 403/429 answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    pub remaining: u64,
    pub refill: Option<Refill>,
    /// When the next refill comes (Unix ms), if there is one.
    pub next_refill_ms: Option<u64>,
}

impl Balance {
    pub fn of(credits: Credits, remaining: u64, now_ms: u64) -> Balance {
        Balance {
            remaining,
            refill: credits.refill,
            next_refill_ms: credits.refill.map(|r| r.next_at_ms(now_ms)),
        }
    }

    pub fn admits(&self, cost: u64) -> bool {
        self.remaining >= cost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(date: &str) -> u64 {
        chrono::DateTime::parse_from_rfc3339(date)
            .expect("date")
            .timestamp_millis() as u64
    }

    #[test]
    fn a_monthly_refill_comes_on_its_day() {
        let on_15th = Refill {
            amount: 10_000,
            interval: Interval::Month { day: 15 },
        };
        let before = on_15th.period(ms("2026-11-14T23:59:59Z"));
        let after = on_15th.period(ms("2026-11-15T00:00:00Z"));
        assert_eq!(after, before + 1);
        assert_eq!(
            on_15th.next_at_ms(ms("2026-11-14T10:00:00Z")),
            ms("2026-11-15T00:00:00Z")
        );
        assert_eq!(
            on_15th.next_at_ms(ms("2026-11-15T00:00:00Z")),
            ms("2026-12-15T00:00:00Z")
        );
        assert_eq!(
            on_15th.next_at_ms(ms("2026-12-31T12:00:00Z")),
            ms("2027-01-15T00:00:00Z")
        );
        let on_1st = Refill {
            amount: 5,
            interval: Interval::Month { day: 1 },
        };
        assert_eq!(
            on_1st.period(ms("2026-02-01T00:00:00Z")),
            on_1st.period(ms("2026-01-31T23:59:59Z")) + 1,
            "Jan 31 → Feb 1"
        );
        assert_eq!(
            on_1st.period(ms("2026-03-01T00:00:00Z")),
            on_1st.period(ms("2026-02-28T23:59:59Z")) + 1,
            "Feb 28 → Mar 1"
        );
        let daily = Refill {
            amount: 5,
            interval: Interval::Day,
        };
        assert_eq!(
            daily.next_at_ms(ms("2026-02-28T13:00:00Z")),
            ms("2026-03-01T00:00:00Z")
        );
    }

    #[test]
    fn a_refill_applies_once_per_period_and_sets_the_amount() {
        let credits = Credits {
            refill: Some(Refill {
                amount: 100,
                interval: Interval::Day,
            }),
        };
        let spent = CreditState {
            remaining: 3,
            period: 7,
            seq: 40,
            terms: credits.tag(),
        };
        assert_eq!(credits.refilled(spent, 7), spent);
        let refilled = credits.refilled(spent, 8);
        assert_eq!((refilled.remaining, refilled.period, refilled.seq), (100, 8, 41));
        assert_eq!(
            credits.refilled(refilled, 8),
            refilled,
            "a second instance: no change"
        );
        assert_eq!(
            credits.refilled(refilled, 7),
            refilled,
            "a late clock never goes back"
        );
        let monthly = Credits {
            refill: Some(Refill {
                amount: 100,
                interval: Interval::Month { day: 1 },
            }),
        };
        assert_eq!(
            monthly.refilled(spent, 1_000_000),
            spent,
            "other terms (a request read before they changed) never refill"
        );
        let rebased = Adjustment::Rebase.apply(monthly, spent, 683);
        assert_eq!(
            (rebased.period, rebased.terms, rebased.remaining),
            (683, monthly.tag(), 3)
        );
        assert_eq!(
            monthly.refilled(rebased, 684).remaining,
            100,
            "the new terms refill"
        );
    }

    #[test]
    fn refills_are_parsed_strictly() {
        assert!(Refill::parse(10, "month", Some(28)).is_ok());
        assert_eq!(
            Refill::parse(10, "month", None).map(|r| r.interval),
            Ok(Interval::Month { day: 1 })
        );
        for (amount, interval, day) in [
            (0, "day", None),
            (-1, "day", None),
            (2_147_483_648, "day", None),
            (1, "week", None),
            (1, "month", Some(29)),
            (1, "month", Some(0)),
            (1, "day", Some(3)),
        ] {
            assert!(
                Refill::parse(amount, interval, day).is_err(),
                "{amount} {interval} {day:?}"
            );
        }
    }
}
