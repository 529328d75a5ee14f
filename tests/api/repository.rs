//! Row types and their queries, on SQLite and PostgreSQL alike.

use chrono::Duration;
use diesel::result::{DatabaseErrorKind, Error};
use keygate::db::DbConnection;
use keygate::db::models::{
    ApiKey, ApiKeyChanges, KeyFilter, NewApiKey, NewCredits, NewUser, UsageRow, UsageTotals, User,
    UserChanges,
};

use crate::helpers::on_both_databases;

on_both_databases!(
    users_are_inserted_found_counted_and_unique_by_email,
    keys_are_inserted_found_by_hash_listed_updated_and_deactivated,
    key_hashes_are_unique,
    usage_rows_add_up_per_key_and_hour,
    usage_rows_are_added_in_batches,
    timestamps_round_trip_exactly,
    the_status_filter_follows_the_one_status_rule,
);

fn user(conn: &mut DbConnection, email: &str) -> User {
    let now = keygate::clock::Now::read().naive();
    User::insert(
        conn,
        &NewUser {
            email,
            password_hash: "$argon2id$x",
            is_admin: false,
            is_active: true,
            created_at: now,
            updated_at: now,
        },
    )
    .expect("insert user")
}

fn key(conn: &mut DbConnection, owner: &User, name: &str, hash: &str) -> ApiKey {
    let now = keygate::clock::Now::read().naive();
    ApiKey::insert(
        conn,
        &NewApiKey {
            user_id: owner.id,
            name,
            prefix: "kg_abcdef",
            key_hash: hash,
            rate_limit_per_minute: Some(60),
            rate_limit_per_hour: None,
            rate_limit_per_day: Some(10_000),
            rate_limit_per_month: None,
            expires_at: None,
            is_active: true,
            created_at: now,
            updated_at: now,
            last_used_at: None,
            meta: None,
            scopes: "",
            ip_allowlist: "",
            credits: NewCredits::default(),
        },
    )
    .expect("insert key")
}

fn users_are_inserted_found_counted_and_unique_by_email(conn: &mut DbConnection) {
    assert_eq!(User::count(conn).expect("count"), 0);
    let ada = user(conn, "ada@example.com");
    assert!(ada.id.0 > 0);
    assert_eq!(
        User::find_by_email(conn, "ada@example.com")
            .expect("find")
            .map(|u| u.id),
        Some(ada.id)
    );
    assert_eq!(
        User::find(conn, ada.id).expect("find").map(|u| u.email),
        Some("ada@example.com".into())
    );
    assert!(
        User::find(conn, keygate::db::UserId(ada.id.0 + 100))
            .expect("find")
            .is_none()
    );
    let now = keygate::clock::Now::read().naive();
    let duplicate = User::insert(
        conn,
        &NewUser {
            email: "ada@example.com",
            password_hash: "h",
            is_admin: true,
            is_active: true,
            created_at: now,
            updated_at: now,
        },
    );
    assert!(
        matches!(
            duplicate,
            Err(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _))
        ),
        "{duplicate:?}"
    );
    let changes = UserChanges {
        is_active: Some(false),
        updated_at: Some(now),
        ..UserChanges::default()
    };
    let off = User::update(conn, ada.id, &changes, true)
        .expect("update")
        .expect("found");
    assert!(!off.is_active);
    assert_eq!(
        off.auth_epoch,
        ada.auth_epoch + 1,
        "ending sessions moves the epoch"
    );
    let renamed = User::update(
        conn,
        ada.id,
        &UserChanges {
            updated_at: Some(now),
            ..UserChanges::default()
        },
        false,
    )
    .expect("update")
    .expect("found");
    assert_eq!(renamed.auth_epoch, off.auth_epoch, "other changes leave it");
    assert_eq!(User::count(conn).expect("count"), 1);
}

fn keys_are_inserted_found_by_hash_listed_updated_and_deactivated(conn: &mut DbConnection) {
    let ada = user(conn, "ada@example.com");
    let bob = user(conn, "bob@example.com");
    let first = key(conn, &ada, "first", "hash-1");
    let second = key(conn, &ada, "second", "hash-2");
    let bobs = key(conn, &bob, "bob's", "hash-3");
    assert_eq!(first.rate_limit_per_minute, Some(60));
    assert_eq!(first.rate_limit_per_hour, None);

    assert_eq!(
        ApiKey::find_by_hash(conn, "hash-2")
            .expect("find")
            .map(|(k, owner)| (k.id, owner.email)),
        Some((second.id, "ada@example.com".to_owned()))
    );
    assert!(ApiKey::find_by_hash(conn, "nope").expect("find").is_none());
    let (found, owner) = ApiKey::find_with_owner(conn, bobs.id)
        .expect("find")
        .expect("exists");
    assert_eq!(
        (found.name.as_str(), owner.as_str()),
        ("bob's", "bob@example.com")
    );

    let ids = |rows: Vec<(ApiKey, String)>| rows.into_iter().map(|(k, _)| k.id).collect::<Vec<_>>();
    assert_eq!(
        ids(ApiKey::list(conn, KeyFilter::default()).expect("list")),
        [bobs.id, second.id, first.id]
    );
    let adas = KeyFilter {
        owner: Some(ada.id),
        active: None,
    };
    assert_eq!(
        ids(ApiKey::list(conn, adas).expect("list")),
        [second.id, first.id]
    );

    let changes = ApiKeyChanges {
        name: Some("renamed".into()),
        rate_limit_per_minute: Some(None),
        rate_limit_per_hour: Some(Some(500)),
        is_active: Some(false),
        updated_at: Some(keygate::clock::Now::read().naive()),
        ..ApiKeyChanges::default()
    };
    let updated = ApiKey::update(conn, first.id, &changes)
        .expect("update")
        .expect("exists");
    assert_eq!(updated.name, "renamed");
    assert_eq!(updated.rate_limit_per_minute, None);
    assert_eq!(updated.rate_limit_per_hour, Some(500));
    assert_eq!(updated.rate_limit_per_day, Some(10_000), "untouched columns stay");
    assert!(!updated.is_active);
    assert!(
        ApiKey::update(conn, keygate::db::KeyId(999_999), &changes)
            .expect("update")
            .is_none()
    );

    let active = KeyFilter {
        owner: Some(ada.id),
        active: Some(true),
    };
    assert_eq!(ids(ApiKey::list(conn, active).expect("list")), [second.id]);
    let inactive = KeyFilter {
        owner: None,
        active: Some(false),
    };
    assert_eq!(ids(ApiKey::list(conn, inactive).expect("list")), [first.id]);
}

fn key_hashes_are_unique(conn: &mut DbConnection) {
    let ada = user(conn, "ada@example.com");
    key(conn, &ada, "one", "same-hash");
    let now = keygate::clock::Now::read().naive();
    let again = ApiKey::insert(
        conn,
        &NewApiKey {
            user_id: ada.id,
            name: "two",
            prefix: "kg_x",
            key_hash: "same-hash",
            rate_limit_per_minute: None,
            rate_limit_per_hour: None,
            rate_limit_per_day: None,
            rate_limit_per_month: None,
            expires_at: None,
            is_active: true,
            created_at: now,
            updated_at: now,
            last_used_at: None,
            meta: None,
            scopes: "",
            ip_allowlist: "",
            credits: NewCredits::default(),
        },
    );
    assert!(
        matches!(
            again,
            Err(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _))
        ),
        "{again:?}"
    );
}

fn usage_rows_add_up_per_key_and_hour(conn: &mut DbConnection) {
    let ada = user(conn, "ada@example.com");
    let k = key(conn, &ada, "metered", "h");
    let other = key(conn, &ada, "other", "h2");
    let hour = keygate::analytics::hour_of(keygate::clock::Now::read().naive());
    let row = |id, hour, allowed, rejected| UsageRow {
        api_key_id: id,
        hour,
        allowed,
        rejected,
    };
    row(k.id, hour, 10, 1).add(conn).expect("add");
    row(k.id, hour, 5, 2).add(conn).expect("add to the same hour");
    row(k.id, hour - Duration::hours(2), 7, 0).add(conn).expect("add");
    row(other.id, hour, 1000, 0).add(conn).expect("add");

    let since = UsageRow::per_period(conn, Some(k.id), hour - Duration::hours(1)).expect("since");
    assert_eq!(since, [(hour, 15, 3)]);
    assert_eq!(
        UsageRow::totals(conn, k.id).expect("totals"),
        UsageTotals {
            allowed: 22,
            rejected: 3
        }
    );
    assert_eq!(
        UsageRow::totals(conn, keygate::db::KeyId(424_242)).expect("totals"),
        UsageTotals::default()
    );
}

/// A flush writes its rows in a few statements (1,000 rows each on PostgreSQL): a batch that
/// spans statements, and meets rows already stored, adds up like rows added one by one.
fn usage_rows_are_added_in_batches(conn: &mut DbConnection) {
    let ada = user(conn, "ada@example.com");
    let keys: Vec<ApiKey> = (0..3)
        .map(|i| key(conn, &ada, &format!("k{i}"), &format!("h{i}")))
        .collect();
    let start = keygate::analytics::hour_of(keygate::clock::Now::read().naive()) - Duration::hours(400);
    let hour = |h: i64| start + Duration::hours(h);
    UsageRow {
        api_key_id: keys[1].id,
        hour: hour(7),
        allowed: 100,
        rejected: 10,
    }
    .add(conn)
    .expect("add");
    let batch: Vec<UsageRow> = keys
        .iter()
        .flat_map(|k| {
            (0..400).map(move |h| UsageRow {
                api_key_id: k.id,
                hour: hour(h),
                allowed: h + 1,
                rejected: h % 3,
            })
        })
        .collect();
    let statements = UsageRow::add_all(conn, &batch).expect("add_all");
    // PostgreSQL: 1,000 rows a statement; SQLite (in process): one a row. The days the hours
    // fall in are added with them: one more statement on PostgreSQL, one a day on SQLite.
    let days = 3
        * (0..400)
            .map(|h| hour(h).date())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
    let expected = match conn {
        DbConnection::Postgresql(_) => 2 + 1,
        DbConnection::Sqlite(_) => 1_200 + days,
    };
    assert_eq!(statements, expected);
    for (i, k) in keys.iter().enumerate() {
        let rows = UsageRow::per_period(conn, Some(k.id), start).expect("since");
        assert_eq!(rows.len(), 400, "key {i}");
        let extra = if i == 1 { (100, 10) } else { (0, 0) };
        assert_eq!(rows[7].1, 8 + extra.0, "key {i}");
        assert_eq!(rows[7].2, 1 + extra.1, "key {i}");
        let totals = UsageRow::totals(conn, k.id).expect("totals");
        assert_eq!(totals.allowed, (1..=400).sum::<i64>() + extra.0);
        assert_eq!(totals.rejected, (0..400).map(|h| h % 3).sum::<i64>() + extra.1);
    }
}

fn timestamps_round_trip_exactly(conn: &mut DbConnection) {
    let ada = user(conn, "ada@example.com");
    let k = key(conn, &ada, "t", "h");
    let expiry = keygate::clock::Now::read().naive() + Duration::days(30);
    let changes = ApiKeyChanges {
        expires_at: Some(Some(expiry)),
        ..ApiKeyChanges::default()
    };
    ApiKey::update(conn, k.id, &changes).expect("update");
    assert_eq!(
        ApiKey::find(conn, k.id).expect("find").and_then(|k| k.expires_at),
        Some(expiry)
    );
    assert_eq!(
        ApiKey::find(conn, k.id).expect("find").map(|k| k.created_at),
        Some(k.created_at)
    );
}

/// The SQL status filter agrees with `KeyStatus::at`, the rule the gate and the views use, at
/// the boundary second too.
fn the_status_filter_follows_the_one_status_rule(conn: &mut DbConnection) {
    use keygate::db::models::{KeySearch, KeyStatusFilter};
    use keygate::keys::KeyStatus;
    let ada = user(conn, "ada@example.com");
    let now = keygate::clock::Now::read().naive();
    let at = |seconds: i64| Some(Some(now + chrono::Duration::seconds(seconds)));
    let cases = [
        ("live", None, true),
        ("off", None, false),
        ("past", at(-60), true),
        ("now", at(0), true),
        ("soon", at(60), true),
        ("off-and-past", at(-60), false),
    ];
    for (i, (name, expires_at, active)) in cases.iter().enumerate() {
        let k = key(conn, &ada, name, &format!("status-{i}"));
        let changes = ApiKeyChanges {
            expires_at: *expires_at,
            is_active: Some(*active),
            ..ApiKeyChanges::default()
        };
        ApiKey::update(conn, k.id, &changes)
            .expect("update")
            .expect("found");
    }
    for (filter, status) in [
        (KeyStatusFilter::Active, KeyStatus::Active),
        (KeyStatusFilter::Inactive, KeyStatus::Inactive),
        (KeyStatusFilter::Expired, KeyStatus::Expired),
    ] {
        let search = KeySearch {
            status: Some(filter),
            per_page: 100,
            ..KeySearch::default()
        };
        let (rows, total) = ApiKey::search(conn, &search, now).expect("search");
        let all = ApiKey::list(conn, Default::default()).expect("list");
        let expected: Vec<&str> = all
            .iter()
            .filter(|(k, _)| KeyStatus::of(k, now) == status)
            .map(|(k, _)| k.name.as_str())
            .collect();
        let mut found: Vec<&str> = rows.iter().map(|(k, _)| k.name.as_str()).collect();
        found.sort_unstable();
        let mut expected = expected;
        expected.sort_unstable();
        assert_eq!(found, expected, "{filter:?}");
        assert_eq!(total as usize, expected.len());
    }
}

mod key_cache {
    use std::time::Duration;

    use keygate::db::models::{ApiKey, ApiKeyChanges};
    use keygate::keys::cache::KeyCache;
    use keygate::keys::secret::{IssuedKey, PresentedKey};

    use crate::helpers::{Backend, TestDb};

    /// An active key is re-read in the background before it expires: a request never waits on
    /// the database for it, yet a change made behind the cache's back (no event) shows within
    /// the refresh interval.
    async fn cached_keys_are_refreshed_ahead_without_a_miss(backend: Backend) {
        let Some(db) = TestDb::new(backend) else { return };
        let mut conn = db.connect();
        let owner = super::user(&mut conn, "ada@example.com");
        let issued = IssuedKey::generate();
        let plaintext = issued.expose();
        let key = super::key(&mut conn, &owner, "before", issued.hash().as_str());
        let pool = keygate::db::pool(&db.url, 2).expect("pool");
        let cache = KeyCache::new(None).with_refresh_after(Duration::ZERO);
        let presented = PresentedKey::parse(plaintext).expect("a key");
        let name = |info: Option<std::sync::Arc<keygate::keys::cache::KeyInfo>>| info.map(|i| i.name.clone());

        assert_eq!(
            name(cache.lookup(&pool, &presented).await.expect("lookup")),
            Some("before".into())
        );
        assert_eq!(
            cache.hits_and_misses(),
            (0, 1),
            "the first sight reads the database"
        );
        let changes = ApiKeyChanges {
            name: Some("after".into()),
            ..ApiKeyChanges::default()
        };
        ApiKey::update(&mut conn, key.id, &changes).expect("rename behind the cache's back");
        // Answered from the cache (no miss), and the re-read starts.
        assert_eq!(
            name(cache.lookup(&pool, &presented).await.expect("lookup")),
            Some("before".into())
        );
        let mut seen = None;
        for _ in 0..40 {
            // Past this thread's own one-second copy.
            tokio::time::sleep(Duration::from_millis(100)).await;
            seen = name(cache.lookup(&pool, &presented).await.expect("lookup"));
            if seen.as_deref() == Some("after") {
                break;
            }
        }
        assert_eq!(seen.as_deref(), Some("after"), "the re-read replaced the copy");
        assert_eq!(cache.hits_and_misses().1, 1, "no request missed");
    }

    #[actix_web::test]
    async fn sqlite_cached_keys_are_refreshed_ahead_without_a_miss() {
        cached_keys_are_refreshed_ahead_without_a_miss(Backend::Sqlite).await;
    }

    #[actix_web::test]
    async fn postgres_cached_keys_are_refreshed_ahead_without_a_miss() {
        cached_keys_are_refreshed_ahead_without_a_miss(Backend::Postgres).await;
    }
}

/// On SQLite, a transaction that reads and then writes while other connections write must wait
/// for the lock, not fail with "database is locked" (a deferred transaction's snapshot cannot
/// be upgraded once another writer committed): `db::write` takes the lock first. Two writers
/// interleave 150 read-then-write transactions each; none fails.
#[test]
fn read_then_write_transactions_wait_for_sqlite_s_lock() {
    use diesel::prelude::*;
    use keygate::db::schema::revoked_sessions;
    let Some(db) = crate::helpers::TestDb::new(crate::helpers::Backend::Sqlite) else {
        return;
    };
    db.connect();
    let writers: Vec<_> = (0..2)
        .map(|n| {
            let url = db.url.clone();
            std::thread::spawn(move || {
                let mut conn = keygate::db::establish(&url).expect("connect");
                let mut failures = 0;
                for i in 0..150 {
                    let done = keygate::db::write(&mut conn, |conn| {
                        let seen: i64 = revoked_sessions::table.count().get_result(conn)?;
                        std::thread::sleep(std::time::Duration::from_micros(300));
                        diesel::insert_into(revoked_sessions::table)
                            .values((
                                revoked_sessions::session_id.eq(format!("w{n}-{i}-{seen}")),
                                revoked_sessions::expires_at.eq(chrono::Utc::now().naive_utc()),
                            ))
                            .execute(conn)
                    });
                    failures += usize::from(done.is_err());
                }
                failures
            })
        })
        .collect();
    let failures: usize = writers.into_iter().map(|w| w.join().expect("thread")).sum();
    assert_eq!(failures, 0, "read-then-write transactions failed");
}
