//! Usage for billing and the dashboard's overview: the export's sums equal the requests sent
//! through the gate, to the request, over two instances; users export only their own keys; the
//! retention job keeps hours 35 days and days 400; the overview and the key page chart them.

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_EMAIL, Auth, TestApp, dashboard_session, on_both_backends};

on_both_backends!(
    export_sums_equal_the_requests_sent_over_two_instances,
    users_export_only_their_own_keys_and_bad_parameters_get_400,
    retention_keeps_hours_35_days_days_400_and_audit_as_configured,
    the_overview_charts_all_keys_for_admins_only,
    a_long_export_streams_page_by_page_and_loses_no_row,
);

fn key_auth(created: &Value) -> Auth {
    Auth::Header("Api-Key", created["key"].as_str().expect("a key").to_owned())
}

/// Sums of `allowed` and `rejected` per key id in a JSON export.
fn sums(rows: &Value) -> std::collections::BTreeMap<i64, (i64, i64)> {
    let mut sums = std::collections::BTreeMap::new();
    for row in rows["rows"].as_array().expect("rows") {
        let entry = sums
            .entry(row["key_id"].as_i64().expect("key_id"))
            .or_insert((0, 0));
        entry.0 += row["allowed"].as_i64().expect("allowed");
        entry.1 += row["rejected"].as_i64().expect("rejected");
    }
    sums
}

async fn export_sums_equal_the_requests_sent_over_two_instances(a: TestApp) {
    let b = a.another_instance().await;
    let admin = a.admin().await;
    let limited = a
        .create_key(&admin, json!({"name": "limited", "rate_limit_per_minute": 30}))
        .await;
    let open = a
        .create_key(
            &admin,
            json!({"name": "open", "rate_limit_per_minute": null,
        "rate_limit_per_hour": null, "rate_limit_per_day": null}),
        )
        .await;
    let (limited_id, open_id) = (
        limited["id"].as_i64().expect("id"),
        open["id"].as_i64().expect("id"),
    );
    // 70 racing requests on the limited key and 45 on the open one, alternating instances.
    let requests = (0..115).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        let key = if i < 70 {
            key_auth(&limited)
        } else {
            key_auth(&open)
        };
        async move { (i < 70, app.get("/api/whoami", &key).await.status.as_u16()) }
    });
    let statuses = join_all(requests).await;
    let count = |limited: bool, status: u16| {
        statuses
            .iter()
            .filter(|&&(l, s)| l == limited && s == status)
            .count() as i64
    };
    let sent_limited = (count(true, 200), count(true, 429));
    let sent_open = (count(false, 200), count(false, 429));
    assert_eq!(sent_limited.0 + sent_limited.1, 70, "{statuses:?}");
    assert_eq!(sent_open, (45, 0));
    assert!(sent_limited.1 > 0, "some refused: {sent_limited:?}");
    // Both instances write what they counted.
    a.state.usage.flush().await.expect("flush a");
    b.state.usage.flush().await.expect("flush b");

    let expected = std::collections::BTreeMap::from([(limited_id, sent_limited), (open_id, sent_open)]);
    for granularity in ["hour", "day", "month"] {
        let json = a
            .get(&format!("/api/usage?granularity={granularity}"), &admin.auth())
            .await;
        assert_eq!(json.status, 200, "{}", json.text);
        assert_eq!(sums(&json.body), expected, "{granularity}: {}", json.text);
        assert_eq!(json.header("content-type"), Some("application/json"));
        for row in json.body["rows"].as_array().expect("rows") {
            let start = row["period_start"].as_str().expect("start");
            match granularity {
                "hour" => assert!(start.ends_with(":00:00Z"), "{start}"),
                "day" => assert!(start.ends_with("T00:00:00Z"), "{start}"),
                _ => assert!(start.ends_with("-01T00:00:00Z"), "{start}"),
            }
        }
    }
    // CSV, by parameter and by Accept, adds up the same.
    let csv = a
        .get("/api/usage?format=csv&granularity=day", &admin.auth())
        .await;
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let mut lines = csv.text.lines();
    assert_eq!(lines.next(), Some("key_id,period_start,allowed,rejected"));
    let mut from_csv = std::collections::BTreeMap::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let entry = from_csv
            .entry(cells[0].parse::<i64>().expect("id"))
            .or_insert((0, 0));
        entry.0 += cells[2].parse::<i64>().expect("allowed");
        entry.1 += cells[3].parse::<i64>().expect("rejected");
    }
    assert_eq!(from_csv, expected);
    let client = awc::Client::default();
    let mut accepted = client
        .get(format!("{}/api/usage?key_id={limited_id}", a.address))
        .insert_header(("Authorization", format!("Bearer {}", admin.token)))
        .insert_header(("Accept", "text/csv"))
        .send()
        .await
        .expect("usage");
    let body = String::from_utf8(accepted.body().await.expect("body").to_vec()).expect("utf-8");
    assert!(
        body.starts_with("key_id,period_start,allowed,rejected\n"),
        "{body}"
    );
    assert_eq!(body.lines().count(), 2, "one day of one key: {body}");
    // One key, one owner: the filters narrow the same rows.
    let one = a
        .get(
            &format!("/api/usage?key_id={open_id}&granularity=month"),
            &admin.auth(),
        )
        .await;
    assert_eq!(
        sums(&one.body),
        std::collections::BTreeMap::from([(open_id, sent_open)])
    );
    let by_owner = a
        .get(&format!("/api/usage?owner={ADMIN_EMAIL}"), &admin.auth())
        .await;
    assert_eq!(sums(&by_owner.body), expected);
    let before = a
        .get(
            "/api/usage?to=2000-01-01T00:00:00Z&from=1999-01-01T00:00:00Z",
            &admin.auth(),
        )
        .await;
    assert_eq!(before.body, json!({"rows": []}));
}

async fn users_export_only_their_own_keys_and_bad_parameters_get_400(app: TestApp) {
    let admin = app.admin().await;
    let ada = app.user("ada@example.com").await;
    let theirs = app.create_key(&ada, json!({"name": "ada's"})).await;
    let admins = app.create_key(&admin, json!({"name": "admin's"})).await;
    for key in [&theirs, &admins] {
        for _ in 0..3 {
            assert_eq!(app.get("/api/whoami", &key_auth(key)).await.status, 200);
        }
    }
    app.state.usage.flush().await.expect("flush");
    let mine = app.get("/api/usage", &ada.auth()).await;
    assert_eq!(
        sums(&mine.body),
        std::collections::BTreeMap::from([(theirs["id"].as_i64().expect("id"), (3, 0))])
    );
    let other_key = app
        .get(&format!("/api/usage?key_id={}", admins["id"]), &ada.auth())
        .await;
    assert_eq!(
        other_key.body,
        json!({"rows": []}),
        "another's key is not found, as everywhere"
    );
    app.get(&format!("/api/usage?owner={ADMIN_EMAIL}"), &ada.auth())
        .await
        .assert_error(403, "forbidden");
    app.get("/api/usage?owner=nobody@example.com", &ada.auth())
        .await
        .assert_error(403, "forbidden");
    let own = app.get("/api/usage?owner=ada@example.com", &ada.auth()).await;
    assert_eq!(own.status, 200);
    // An owner no account has, or an empty period: no rows (what the schema allows is answered).
    for nothing in [
        "owner=nobody@example.com",
        "from=2026-12-01T00:00:00Z&to=2026-11-01T00:00:00Z",
        "from=2999-01-01T00:00:00Z",
        "to=9999-12-31T23:59:59-01:00&from=9999-12-31T00:00:00Z",
    ] {
        let reply = app.get(&format!("/api/usage?{nothing}"), &admin.auth()).await;
        assert_eq!(
            (reply.status.as_u16(), &reply.body),
            (200, &json!({"rows": []})),
            "{nothing}"
        );
    }
    let csv = app
        .get("/api/usage?format=csv&owner=nobody@example.com", &admin.auth())
        .await;
    assert_eq!(csv.text, "key_id,period_start,allowed,rejected\n");
    for bad in [
        "granularity=week",
        "key_id=-1",
        "owner=not-an-email",
        "format=xml",
        "from=last-week",
    ] {
        app.get(&format!("/api/usage?{bad}"), &admin.auth())
            .await
            .assert_error(400, "validation_error");
    }
    app.get("/api/usage", &key_auth(&theirs))
        .await
        .assert_error(401, "authentication_required");
}

async fn retention_keeps_hours_35_days_days_400_and_audit_as_configured(app: TestApp) {
    use keygate::db::KeyId;
    use keygate::db::models::{AuditRow, DayRow, NewAuditRow, UsageRow};
    let admin = app.admin().await;
    let key = app.create_key(&admin, json!({"name": "old"})).await;
    let id = KeyId(key["id"].as_i64().expect("id"));
    let now = keygate::clock::Now::read();
    let hour = keygate::analytics::hour_of(now.naive());
    let day = keygate::analytics::day_of(now.naive());
    {
        let mut conn = app.pool.get().expect("connection");
        let hours = [
            hour - chrono::Duration::days(36),
            hour - chrono::Duration::days(34),
        ];
        let hours: Vec<UsageRow> = hours
            .iter()
            .map(|&hour| UsageRow {
                api_key_id: id,
                hour,
                allowed: 1,
                rejected: 0,
            })
            .collect();
        UsageRow::add_all(&mut conn, &hours).expect("hours");
        let days = [
            day - chrono::Duration::days(401),
            day - chrono::Duration::days(399),
        ];
        let days: Vec<DayRow> = days
            .iter()
            .map(|&day| DayRow {
                api_key_id: id,
                day,
                allowed: 1,
                rejected: 0,
            })
            .collect();
        DayRow::add_all(&mut conn, &days).expect("days");
        AuditRow::insert(
            &mut conn,
            &NewAuditRow {
                at: now.naive() - chrono::Duration::days(31),
                actor_id: None,
                actor_email: None,
                via: "cli",
                ip: None,
                action: "key.updated",
                target_type: "key",
                target_id: Some(id.0),
                before_fields: None,
                after_fields: None,
            },
        )
        .expect("an old entry");
    }
    // Without AUDIT_RETENTION_DAYS audit entries stay; usage is pruned by its own rules.
    let (hours, days, audit) = keygate::analytics::prune(&app.pool, None, now)
        .await
        .expect("prune");
    assert_eq!((hours, days, audit), (1, 1, 0));
    let (hours, days, audit) = keygate::analytics::prune(&app.pool, Some(30), now)
        .await
        .expect("prune");
    assert_eq!((hours, days, audit), (0, 0, 1), "only the 31-day-old entry goes");
    let left = app.get("/api/audit-log?limit=200", &admin.auth()).await;
    let actions: Vec<&str> = left.body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        ["key.created", "user.created"],
        "the recent entries are kept"
    );
    let hourly = app
        .get(
            &format!(
                "/api/usage?granularity=hour&from={}",
                stamp(hour - chrono::Duration::days(40))
            ),
            &admin.auth(),
        )
        .await;
    assert_eq!(
        hourly.body["rows"].as_array().map(Vec::len),
        Some(1),
        "{}",
        hourly.text
    );
    let daily = app
        .get(
            &format!(
                "/api/usage?granularity=day&from={}",
                stamp(day - chrono::Duration::days(500))
            ),
            &admin.auth(),
        )
        .await;
    // The day 399 days ago, and the two days the hours were added to; not the 401-day-old one.
    let kept: Vec<&str> = daily.body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["period_start"].as_str().expect("start"))
        .collect();
    let oldest = stamp(day - chrono::Duration::days(399));
    assert_eq!(kept.len(), 3, "{}", daily.text);
    assert_eq!(kept[0], oldest, "{}", daily.text);
}

fn stamp(at: chrono::NaiveDateTime) -> String {
    at.and_utc().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

async fn the_overview_charts_all_keys_for_admins_only(app: TestApp) {
    let admin = app.admin().await;
    let busy = app
        .create_key(&admin, json!({"name": "busiest-key", "rate_limit_per_minute": 4}))
        .await;
    let quiet = app.create_key(&admin, json!({"name": "quiet-key"})).await;
    for _ in 0..6 {
        app.get("/api/whoami", &key_auth(&busy)).await;
    }
    // Expired and switched off: neither counts as active.
    app.create_key(
        &admin,
        json!({"name": "expired-key", "expires_at": "2020-01-01T00:00:00Z"}),
    )
    .await;
    let off = app.create_key(&admin, json!({"name": "off-key"})).await;
    let gone = app
        .delete(&format!("/api/api-keys/{}/", off["id"]), &admin.auth())
        .await;
    assert_eq!(gone.status, 204);
    app.get("/api/whoami", &key_auth(&quiet)).await;
    app.state.usage.flush().await.expect("flush");
    let cookie = dashboard_session(&app).await;
    let client = awc::Client::builder().disable_redirects().finish();
    for span in ["", "?span=24h", "?span=7d", "?span=30d", "?span=nonsense"] {
        let mut page = client
            .get(format!("{}/admin/{span}", app.address))
            .insert_header(("Cookie", cookie.as_str()))
            .send()
            .await
            .expect("overview");
        assert_eq!(page.status(), 200, "{span}");
        let html = String::from_utf8_lossy(&page.body().await.expect("body")).into_owned();
        let busiest = html.find("busiest-key").expect("the busy key is listed");
        let quietest = html.find("quiet-key").expect("the quiet key is listed");
        assert!(busiest < quietest, "busiest first");
        assert!(html.contains("id=\"active-keys\">2<"), "two keys work now");
        assert!(html.contains("<svg class=\"chart\""), "a server-drawn chart");
        assert_eq!(
            html.matches("<script").count(),
            html.matches("<script src=\"/static/").count(),
            "no inline or external script"
        );
        // 4 allowed and 2 refused on one key, 1 on the other: 2 of 7 refused.
        assert!(html.contains("28.6 %"), "the refusal rate: {html}");
        let bars = html.matches("<g class=\"bar\">").count();
        let expected = match span {
            "?span=7d" => 7,
            "?span=30d" => 30,
            _ => 24,
        };
        assert_eq!(bars, expected, "{span}");
    }
    let mut key_page = client
        .get(format!("{}/admin/keys/{}?span=30d", app.address, busy["id"]))
        .insert_header(("Cookie", cookie.as_str()))
        .send()
        .await
        .expect("key page");
    let html = String::from_utf8_lossy(&key_page.body().await.expect("body")).into_owned();
    assert_eq!(html.matches("<g class=\"bar\">").count(), 30);
    assert!(
        html.contains("4 allowed, 2 rejected"),
        "today's bar says what it counts"
    );

    // A user's home is their keys.
    let ada = app.user("ada@example.com").await;
    let _ = ada;
    let user_cookie =
        crate::helpers::dashboard_session_as(&app, "ada@example.com", crate::helpers::PASSWORD).await;
    let home = client
        .get(format!("{}/admin/", app.address))
        .insert_header(("Cookie", user_cookie.as_str()))
        .send()
        .await
        .expect("home");
    assert_eq!(home.status(), 303);
    assert_eq!(
        home.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("/admin/keys")
    );
}

async fn a_long_export_streams_page_by_page_and_loses_no_row(app: TestApp) {
    use keygate::analytics::{Export, Granularity};
    use keygate::db::KeyId;
    use keygate::db::models::{DayRow, UsageFilter, UsageRow};
    use std::collections::BTreeMap;
    let admin = app.admin().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(KeyId(
            app.create_key(&admin, json!({"name": format!("k{n}")})).await["id"]
                .as_i64()
                .expect("id"),
        ));
    }
    let now = keygate::clock::Now::read();
    let first_hour = keygate::analytics::hour_of(now.naive()) - chrono::Duration::hours(799);
    let first_day = keygate::analytics::day_of(now.naive()) - chrono::Duration::days(99);
    let (mut hours, mut days) = (Vec::new(), Vec::new());
    for (k, &id) in ids.iter().enumerate() {
        for h in 0..800 {
            let n = (k as i64 + 1) * 1_000 + h;
            hours.push(UsageRow {
                api_key_id: id,
                hour: first_hour + chrono::Duration::hours(h),
                allowed: n,
                rejected: h % 3,
            });
        }
        for d in 0..100 {
            days.push(DayRow {
                api_key_id: id,
                day: first_day + chrono::Duration::days(d),
                allowed: d + 1,
                rejected: k as i64,
            });
        }
    }
    {
        let mut conn = app.pool.get().expect("connection");
        UsageRow::add_all(&mut conn, &hours).expect("hours");
        DayRow::add_all(&mut conn, &days).expect("days");
    }
    // Over HTTP: 4,000 hourly rows, two pages of 2,000 and the end, one JSON document.
    let from = stamp(first_hour);
    let reply = app
        .get(&format!("/api/usage?granularity=hour&from={from}"), &admin.auth())
        .await;
    assert_eq!(reply.status, 200);
    let rows = reply.body["rows"].as_array().expect("valid JSON across pages");
    assert_eq!(rows.len(), 4_000);
    let expected_hours: BTreeMap<i64, (i64, i64)> = ids
        .iter()
        .map(|id| {
            let mine = hours.iter().filter(|r| r.api_key_id == *id);
            (
                id.0,
                mine.fold((0, 0), |(a, r), row| (a + row.allowed, r + row.rejected)),
            )
        })
        .collect();
    assert_eq!(sums(&reply.body), expected_hours);
    let csv = app
        .get(
            &format!("/api/usage?granularity=hour&from={from}&format=csv"),
            &admin.auth(),
        )
        .await;
    assert_eq!(csv.text.lines().count(), 4_001);

    // In the domain, with pages of 32 rows: days and months across page boundaries.
    // From the first month's start, to the end of this month: whole months either way.
    let month_of = |at: chrono::NaiveDateTime| {
        use chrono::Datelike;
        chrono::NaiveDate::from_ymd_opt(at.year(), at.month(), 1)
            .expect("a month")
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
    };
    let filter = UsageFilter {
        from: month_of(first_day),
        to: month_of(now.naive()) + chrono::Duration::days(32),
        key: None,
        owner: None,
    };
    for granularity in [Granularity::Day, Granularity::Month] {
        let export = Export {
            page_rows: 32,
            ..Export::new(filter, granularity)
        };
        let (mut all, mut cursor, mut pages) = (Vec::new(), None, 0);
        loop {
            let (rows, next) = export.page(&app.pool, cursor).await.expect("page");
            all.extend(rows);
            pages += 1;
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert!(pages > 3, "{granularity:?}: {pages} pages");
        let mut keys_periods: Vec<_> = all.iter().map(|r| (r.0, r.1)).collect();
        keys_periods.dedup();
        assert_eq!(
            keys_periods.len(),
            all.len(),
            "{granularity:?}: no (key, period) twice"
        );
        let mut by_key: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for (key, _, allowed, rejected) in &all {
            let e = by_key.entry(key.0).or_default();
            e.0 += allowed;
            e.1 += rejected;
        }
        for (k, id) in ids.iter().enumerate() {
            let k = k as i64;
            // The days written alone (1 + … + 100 allowed, k refused a day), and the days the
            // hours were added to with them.
            let (hours_allowed, hours_rejected) = expected_hours[&id.0];
            assert_eq!(
                by_key[&id.0],
                (5_050 + hours_allowed, 100 * k + hours_rejected),
                "{granularity:?} key {id:?}"
            );
        }
        if granularity == Granularity::Month {
            assert!(
                all.iter()
                    .all(|r| r.1.format("%d %H:%M:%S").to_string() == "01 00:00:00")
            );
        }
    }
}
