//! The counter-store contract for asks (credits, plans), on the in-process store and Redis
//! alike, with time as an input.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures_util::future::join_all;
use keygate::db::{KeyId, UserId};
use keygate::limits::credits::{Adjustment, CreditOp, CreditState, Credits, Interval, Refill};
use keygate::limits::memory::MemoryStore;
use keygate::limits::{Ask, Bucket, Charged, Decision, Limit, Meter, Policy, Seeds, Window};

use crate::limits::{Store, on_both_stores, utc};

/// The start of a day.
const T0: u64 = 1_900_000_000_000 - 1_900_000_000_000 % 86_400_000;

/// Ids no other test uses (Redis tests share a server, under prefixes of their own).
fn fresh_id() -> i64 {
    static NEXT: AtomicI64 = AtomicI64::new(1_000_000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn policy(windows: &[(Window, Option<Limit>)]) -> Policy {
    Policy::new(windows.to_vec())
}

fn unlimited_key_windows() -> Policy {
    policy(&[(Window::Minute, None), (Window::Hour, None), (Window::Day, None)])
}

/// A key of `owner` with these credits, under a plan with these windows and credits.
fn ask(
    owner: UserId,
    key: i64,
    credits: Option<Credits>,
    plan: Option<(Policy, Option<Credits>)>,
) -> Arc<Ask> {
    let key = Meter {
        bucket: Bucket::Key(KeyId(key)),
        policy: unlimited_key_windows(),
        credits,
    };
    let plan = plan.map(|(policy, credits)| Meter {
        bucket: Bucket::Plan(owner),
        policy,
        credits,
    });
    Arc::new(Ask::new(owner, key, plan))
}

const NO_REFILL: Credits = Credits { refill: None };

fn balance(n: u64) -> CreditState {
    CreditState {
        remaining: n,
        ..CreditState::default()
    }
}

fn decided(charged: Charged) -> Decision {
    match charged {
        Charged::Decided(decision) => decision,
        Charged::Unseeded => panic!("the store asked for a seed it was given"),
    }
}

/// Two instances of `store`: two Redis stores on one prefix of their own, or the one
/// in-process store twice.
async fn instances(store: Store) -> [Arc<Store>; 2] {
    match store {
        Store::Redis(_) => {
            let env = crate::helpers::test_redis().expect("Redis");
            let a = Store::redis_at(&env.url, &env.prefix).await;
            let b = Store::redis_at(&env.url, &env.prefix).await;
            [Arc::new(a), Arc::new(b)]
        }
        memory => {
            let shared = Arc::new(memory);
            [shared.clone(), shared]
        }
    }
}

/// Fires every (ask, cost) at once, alternating instances (the in-process store from blocking
/// threads, so its locks are contended for real); (index, allowed, cost) of each.
async fn race(
    stores: &[Arc<Store>; 2],
    asks: Vec<(Arc<Ask>, u32)>,
    seeds: Seeds,
    now: u64,
) -> Vec<(usize, bool, u32)> {
    let runs = asks.into_iter().enumerate().map(|(i, (ask, cost))| {
        let store = stores[i % 2].clone();
        async move {
            let allowed = match &*store {
                Store::Memory(_) => tokio::task::spawn_blocking(move || match &*store {
                    Store::Memory(memory) => decided(memory.charge(&ask, &seeds, cost, now)).allowed,
                    Store::Redis(_) => unreachable!(),
                })
                .await
                .expect("no panic"),
                Store::Redis(_) => decided(store.charge(&ask, seeds, cost, now).await).allowed,
            };
            (i, allowed, cost)
        }
    });
    join_all(runs).await
}

/// A plan's balance of 1,000 and 500 racing requests of cost 3 over three keys on two
/// instances: exactly 333 pass, and 1 credit is left.
async fn credits_never_go_below_zero_and_exactly_remaining_over_cost_pass(store: Store) {
    let owner = UserId(fresh_id());
    let keys: Vec<i64> = (0..3).map(|_| fresh_id()).collect();
    let plan = || Some((Policy::default(), Some(NO_REFILL)));
    let asks = (0..500)
        .map(|i| (ask(owner, keys[i % 3], None, plan()), 3))
        .collect();
    let seeds = Seeds {
        key: None,
        plan: Some(balance(1_000)),
    };
    let stores = instances(store).await;
    let results = race(&stores, asks, seeds, T0).await;
    let passed = results.iter().filter(|(_, allowed, _)| *allowed).count();
    assert_eq!(passed, 333, "exactly 1000 / 3");
    let left = decided(
        stores[1]
            .charge(&ask(owner, keys[0], None, plan()), seeds, 0, T0)
            .await,
    );
    let quota = left.quota.expect("a quota");
    assert_eq!(quota.plan_credits.map(|b| b.remaining), Some(1));
}

on_both_stores!(
    credits_never_go_below_zero_and_exactly_remaining_over_cost_pass,
    mixed_costs_spend_exactly_what_passed,
    plan_windows_are_exact_across_keys,
    refused_requests_leave_every_counter_as_it_was,
    a_refill_comes_once_per_period_on_its_day,
    a_store_without_a_balance_asks_for_a_seed_and_uses_it_once,
    new_refill_terms_refill_on_their_own_periods_and_old_ones_never,
);

/// 500 racing requests of costs 1–3 over three keys with credits of their own (100 each) under
/// a plan of 600: what passed is exactly what was spent, and a refused request could not have
/// been paid for by what was left.
async fn mixed_costs_spend_exactly_what_passed(store: Store) {
    let owner = UserId(fresh_id());
    let keys: Vec<i64> = (0..3).map(|_| fresh_id()).collect();
    let plan = || Some((Policy::default(), Some(NO_REFILL)));
    let asks: Vec<(Arc<Ask>, u32)> = (0..500)
        .map(|i| {
            (
                ask(owner, keys[i % 3], Some(NO_REFILL), plan()),
                (i % 3) as u32 + 1,
            )
        })
        .collect();
    // One seed serves every key's first use: each key starts at 100.
    let seeds = Seeds {
        key: Some(balance(100)),
        plan: Some(balance(250)),
    };
    let stores = instances(store).await;
    let results = race(&stores, asks, seeds, T0).await;
    let reader = stores[1].clone();
    let spent: u64 = results.iter().filter(|r| r.1).map(|r| u64::from(r.2)).sum();
    let left = |key: i64| {
        let ask = ask(owner, key, Some(NO_REFILL), plan());
        let reader = reader.clone();
        async move {
            decided(reader.charge(&ask, seeds, 0, T0).await)
                .quota
                .expect("quota")
        }
    };
    let plan_left = left(keys[0]).await.plan_credits.expect("plan").remaining;
    assert_eq!(
        spent + plan_left,
        250,
        "the plan's balance is exactly what was not spent"
    );
    let mut key_spent = 0;
    for (n, key) in keys.iter().enumerate() {
        let key_left = left(*key).await.credits.expect("key").remaining;
        let on_key: u64 = results
            .iter()
            .filter(|r| r.1 && r.0 % 3 == n)
            .map(|r| u64::from(r.2))
            .sum();
        assert_eq!(on_key + key_left, 100, "key {n}: spent plus left");
        key_spent += on_key;
        for refused in results.iter().filter(|r| !r.1 && r.0 % 3 == n) {
            assert!(
                u64::from(refused.2) > key_left.min(plan_left),
                "a request of cost {} was refused with {key_left} (key) and {plan_left} (plan) left",
                refused.2
            );
        }
    }
    assert_eq!(key_spent, spent);
}

/// A plan of 100 a minute over three keys: exactly 100 of 300 racing requests pass, and the
/// keys' own counts add up to 100.
async fn plan_windows_are_exact_across_keys(store: Store) {
    let owner = UserId(fresh_id());
    let keys: Vec<i64> = (0..3).map(|_| fresh_id()).collect();
    let plan = || Some((policy(&[(Window::Minute, Limit::new(100))]), None));
    let asks = (0..300)
        .map(|i| (ask(owner, keys[i % 3], None, plan()), 1))
        .collect();
    let stores = instances(store).await;
    let results = race(&stores, asks, Seeds::default(), T0 + 5_000).await;
    assert_eq!(results.iter().filter(|r| r.1).count(), 100);
    for n in 0..3 {
        let passed = results.iter().filter(|r| r.1 && r.0 % 3 == n).count();
        assert!(passed > 0, "every key had some through");
    }
}

/// A key with 5 credits under a plan of 100 a minute and 50 credits: the 6th request is
/// refused by the key's credits and leaves the plan's count and credits as they were.
async fn refused_requests_leave_every_counter_as_it_was(store: Store) {
    let owner = UserId(fresh_id());
    let key = fresh_id();
    let a = ask(
        owner,
        key,
        Some(NO_REFILL),
        Some((policy(&[(Window::Minute, Limit::new(100))]), Some(NO_REFILL))),
    );
    let seeds = Seeds {
        key: Some(balance(5)),
        plan: Some(balance(50)),
    };
    for _ in 0..5 {
        assert!(decided(store.charge(&a, seeds, 1, T0).await).allowed);
    }
    let before = decided(store.charge(&a, seeds, 0, T0).await);
    let refused = decided(store.charge(&a, seeds, 1, T0).await);
    assert!(!refused.allowed);
    let after = decided(store.charge(&a, seeds, 0, T0).await);
    assert_eq!(before, after, "nothing moved");
    let quota = after.quota.expect("quota");
    assert_eq!(quota.plan.expect("plan windows")[0].curr, 5);
    assert_eq!(quota.plan_credits.map(|b| b.remaining), Some(45));
    assert_eq!(quota.credits.map(|b| b.remaining), Some(0));
    assert_eq!(after.counts[0].curr, 5, "the key's own minute");
}

/// A monthly refill on the 15th: spent to 0 on the 14th, refilled to the amount at midnight on
/// the 15th (once, however many requests see the new period), and not before.
async fn a_refill_comes_once_per_period_on_its_day(store: Store) {
    let refill = Refill {
        amount: 10,
        interval: Interval::Month { day: 15 },
    };
    let credits = Credits { refill: Some(refill) };
    let a = ask(UserId(fresh_id()), fresh_id(), Some(credits), None);
    let the_14th = utc(2027, 3, 14, 23, 59, 0);
    let seeds = Seeds {
        key: Some(CreditState {
            remaining: 3,
            period: refill.period(the_14th),
            ..CreditState::default()
        }),
        plan: None,
    };
    for _ in 0..3 {
        assert!(decided(store.charge(&a, seeds, 1, the_14th).await).allowed);
    }
    assert!(!decided(store.charge(&a, seeds, 1, the_14th + 59_999).await).allowed);
    let refused = decided(store.charge(&a, seeds, 1, the_14th + 59_999).await);
    let wait = refused.refused_by().and_then(|r| r.wait_ms());
    assert_eq!(wait, Some(1), "the refill is a millisecond away");
    let the_15th = utc(2027, 3, 15, 0, 0, 0);
    let first = decided(store.charge(&a, seeds, 4, the_15th).await);
    assert!(first.allowed);
    assert_eq!(first.quota.expect("quota").credits.map(|b| b.remaining), Some(6));
    let again = decided(store.charge(&a, seeds, 0, the_15th + 1).await);
    assert_eq!(
        again
            .quota
            .expect("quota")
            .credits
            .map(|b| (b.remaining, b.next_refill_ms)),
        Some((6, Some(utc(2027, 4, 15, 0, 0, 0)))),
        "refilled once"
    );
}

/// Without a balance and without a seed, the store counts nothing and asks; with a seed it
/// uses it, and a second seed (another instance's, read earlier) is ignored.
async fn a_store_without_a_balance_asks_for_a_seed_and_uses_it_once(store: Store) {
    let a = ask(
        UserId(fresh_id()),
        fresh_id(),
        Some(NO_REFILL),
        Some((policy(&[(Window::Minute, Limit::new(10))]), None)),
    );
    assert_eq!(store.charge(&a, Seeds::default(), 1, T0).await, Charged::Unseeded);
    let seeded = |n| Seeds {
        key: Some(balance(n)),
        plan: None,
    };
    let first = decided(store.charge(&a, seeded(7), 1, T0).await);
    assert_eq!(first.quota.expect("quota").credits.map(|b| b.remaining), Some(6));
    let second = decided(store.charge(&a, seeded(100), 1, T0).await);
    assert_eq!(second.quota.expect("quota").credits.map(|b| b.remaining), Some(5));
    assert_eq!(second.counts[0].curr, 2, "the unseeded request counted nowhere");
}

/// Both stores decide a replayed sequence of asks identically, with time as input, across
/// Jan 31 → Feb 1 and Feb 28 → Mar 1: month windows, a monthly refill on the 1st, a daily one.
#[actix_web::test]
async fn both_stores_decide_asks_identically_across_month_ends_and_refills() {
    let Some(redis) = Store::redis().await else { return };
    let memory = Store::Memory(MemoryStore::new(1000));
    let monthly = Credits {
        refill: Some(Refill {
            amount: 40,
            interval: Interval::Month { day: 1 },
        }),
    };
    let daily = Credits {
        refill: Some(Refill {
            amount: 25,
            interval: Interval::Day,
        }),
    };
    for start in [utc(2027, 1, 31, 18, 0, 0), utc(2027, 2, 28, 18, 0, 0)] {
        let owner = UserId(fresh_id());
        let plan_windows = policy(&[(Window::Hour, Limit::new(30)), (Window::Month, Limit::new(200))]);
        let asks = [
            ask(
                owner,
                fresh_id(),
                Some(monthly),
                Some((plan_windows.clone(), Some(daily))),
            ),
            ask(owner, fresh_id(), None, Some((plan_windows.clone(), Some(daily)))),
        ];
        let seeds = Seeds {
            key: Some(CreditState {
                remaining: 40,
                period: monthly.period(start),
                ..CreditState::default()
            }),
            plan: Some(CreditState {
                remaining: 25,
                period: daily.period(start),
                ..CreditState::default()
            }),
        };
        let mut now = start;
        for step in 0..400u64 {
            now += (step * 7_919 * 13) % 1_500_000 + 1;
            let a = &asks[(step % 2) as usize];
            let cost = (step % 3) as u32;
            let (m, r) = (
                memory.charge(a, seeds, cost, now).await,
                redis.charge(a, seeds, cost, now).await,
            );
            assert_eq!(m, r, "step {step} at {now}");
        }
        assert!(now > start + 86_400_000, "crossed into the next month");
    }
}

/// A daily refill changed to a monthly one (the admin's rebase): a request still carrying the
/// daily terms (read before the change) spends but never refills, however many days pass; the
/// monthly terms refill at the next month's start.
async fn new_refill_terms_refill_on_their_own_periods_and_old_ones_never(store: Store) {
    let daily = Credits {
        refill: Some(Refill {
            amount: 50,
            interval: Interval::Day,
        }),
    };
    let monthly = Credits {
        refill: Some(Refill {
            amount: 1_000,
            interval: Interval::Month { day: 1 },
        }),
    };
    let (owner, key) = (UserId(fresh_id()), fresh_id());
    let t0 = utc(2027, 5, 10, 12, 0, 0);
    let seeds = Seeds {
        key: Some(CreditState {
            remaining: 3,
            period: daily.period(t0),
            seq: 0,
            terms: 0,
        }),
        plan: None,
    };
    let old = ask(owner, key, Some(daily), None);
    assert!(decided(store.charge(&old, seeds, 1, t0).await).allowed);
    let seed = CreditState::default();
    let rebased = store
        .credits(
            owner,
            Bucket::Key(KeyId(key)),
            CreditOp::Change(Adjustment::Rebase, seed),
            monthly,
            t0,
        )
        .await
        .expect("a balance");
    assert_eq!((rebased.remaining, rebased.period), (2, monthly.period(t0)));
    let later = decided(store.charge(&old, seeds, 1, t0 + 3 * 86_400_000).await);
    let left = later.quota.expect("quota").credits.map(|b| b.remaining);
    assert_eq!(left, Some(1), "stale daily terms spent, and did not refill");
    let new = ask(owner, key, Some(monthly), None);
    let june = decided(store.charge(&new, seeds, 1, utc(2027, 6, 1, 0, 0, 1)).await);
    assert_eq!(june.quota.expect("quota").credits.map(|b| b.remaining), Some(999));
}
