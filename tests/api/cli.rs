//! The `keygate` binary's commands, run as an operator would run them.

use std::process::{Command, Output, Stdio};

use crate::helpers::{Backend, TestDb, assert_key_format};

struct Cli {
    db: TestDb,
    dir: std::path::PathBuf,
}

impl Cli {
    fn new() -> Cli {
        let db = TestDb::new(Backend::Sqlite).expect("sqlite needs no server");
        let dir = std::env::temp_dir();
        Cli { db, dir }
    }

    fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keygate"));
        command
            .args(args)
            .env_clear()
            .current_dir(&self.dir)
            .env("DATABASE_URL", &self.db.url)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        for (k, v) in extra {
            command.env(k, v);
        }
        command.output().expect("run keygate")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn an_operator_creates_a_user_and_manages_keys_from_the_shell() {
    let cli = Cli::new();
    let migrate = cli.run(&["migrate"], &[]);
    assert!(migrate.status.success(), "{}", text(&migrate.stderr));
    assert!(
        text(&migrate.stdout).contains("applied 8 migration"),
        "{}",
        text(&migrate.stdout)
    );

    let user = cli.run(
        &["users", "create", "--email", "Ops@Example.com"],
        &[("KEYGATE_PASSWORD", "long-enough-pw")],
    );
    assert!(user.status.success(), "{}", text(&user.stderr));
    assert!(text(&user.stdout).contains("created user ops@example.com"));
    let short = cli.run(
        &["users", "create", "--email", "x@example.com"],
        &[("KEYGATE_PASSWORD", "short")],
    );
    assert!(!short.status.success());
    assert!(
        text(&short.stderr).contains("password"),
        "{}",
        text(&short.stderr)
    );

    // Users: ceiling, listing, deactivation, password reset.
    let ceiling = cli.run(
        &[
            "users",
            "set-ceiling",
            "ops@example.com",
            "--per-minute",
            "30",
            "--per-hour",
            "none",
            "--per-day",
            "5000",
        ],
        &[],
    );
    assert!(ceiling.status.success(), "{}", text(&ceiling.stderr));
    let bad = cli.run(
        &[
            "users",
            "set-ceiling",
            "ops@example.com",
            "--per-minute",
            "0",
            "--per-hour",
            "none",
            "--per-day",
            "none",
        ],
        &[],
    );
    assert!(!bad.status.success());
    let listed = cli.run(&["users", "list"], &[]);
    let listing = text(&listed.stdout);
    let row = listing
        .lines()
        .find(|l| l.contains("ops@example.com"))
        .unwrap_or_else(|| panic!("ops is listed: {listing}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&columns[2..], ["no", "yes", "30", "none", "5000"], "{row}");
    let off = cli.run(&["users", "deactivate", "ops@example.com"], &[]);
    assert!(off.status.success(), "{}", text(&off.stderr));
    let listed = text(&cli.run(&["users", "list"], &[]).stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.contains("ops@example.com") && l.contains(" no ")),
        "{listed}"
    );
    let on = cli.run(&["users", "activate", "ops@example.com"], &[]);
    assert!(on.status.success(), "{}", text(&on.stderr));
    let reset = cli.run(
        &["users", "set-password", "ops@example.com"],
        &[("KEYGATE_PASSWORD", "a-new-password-2")],
    );
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    let unknown = cli.run(&["users", "deactivate", "nobody@example.com"], &[]);
    assert!(!unknown.status.success());

    let created = cli.run(
        &[
            "keys",
            "create",
            "--owner",
            "ops@example.com",
            "--name",
            "nightly",
            "--per-minute",
            "5",
            "--expires-in-days",
            "30",
        ],
        &[],
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let key = text(&created.stdout).trim().to_owned();
    assert_key_format(&key);

    let list = cli.run(&["keys", "list"], &[]);
    let listing = text(&list.stdout);
    assert!(
        listing.contains(&key[..9]) && listing.contains("nightly") && listing.contains("active"),
        "{listing}"
    );
    assert!(listing.contains("5/1000/10000"), "{listing}");
    assert!(!listing.contains(&key), "the list never shows the key");

    let id = listing
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect("an id column")
        .to_owned();
    let off = cli.run(&["keys", "deactivate", &id], &[]);
    assert!(off.status.success(), "{}", text(&off.stderr));
    assert!(text(&cli.run(&["keys", "list"], &[]).stdout).contains("inactive"));
    let missing = cli.run(&["keys", "deactivate", "424242"], &[]);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("no key has this id"));

    let nobody = cli.run(
        &["keys", "create", "--owner", "nobody@example.com", "--name", "x"],
        &[],
    );
    assert!(!nobody.status.success());
    assert!(
        text(&nobody.stderr).contains("no user has this email"),
        "{}",
        text(&nobody.stderr)
    );

    // Every change above is in the audit log, made by the command line (no user, no address),
    // and none holds a secret.
    let audit = cli.run(&["audit", "--json", "--limit", "200"], &[]);
    assert!(audit.status.success(), "{}", text(&audit.stderr));
    let entries: Vec<serde_json::Value> = text(&audit.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let mut actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    actions.reverse();
    assert_eq!(
        actions,
        [
            // The first admin, made by `migrate`.
            "user.created",
            "user.created",
            "user.updated",
            "user.deactivated",
            "user.activated",
            "user.password_changed",
            "key.created",
            "key.deactivated",
        ],
        "{}",
        text(&audit.stdout)
    );
    for entry in &entries {
        assert_eq!(
            (&entry["via"], &entry["actor"], &entry["ip"]),
            (&"cli".into(), &serde_json::Value::Null, &serde_json::Value::Null)
        );
    }
    assert!(!text(&audit.stdout).contains(&key) && !text(&audit.stdout).contains("a-new-password-2"));
    let of_key = cli.run(&["audit", "--target", &format!("key:{id}")], &[]);
    let lines = text(&of_key.stdout);
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(
        lines
            .lines()
            .all(|l| l.contains(&format!("key:{id}")) && l.contains(" cli ")),
        "{lines}"
    );
    let bad = cli.run(&["audit", "--limit", "0"], &[]);
    assert!(
        !bad.status.success() && text(&bad.stderr).contains("limit"),
        "{}",
        text(&bad.stderr)
    );

    // Usage for billing: a month's rows, as the API exports them.
    let now = keygate::clock::Now::read().naive();
    let key_id = keygate::db::KeyId(id.parse().expect("an id"));
    {
        use keygate::db::models::UsageRow;
        let mut conn = keygate::db::establish(&cli.db.url).expect("the CLI's database");
        let hour = keygate::analytics::hour_of(now);
        let long_ago = hour - chrono::Duration::days(40);
        let rows = [
            UsageRow {
                api_key_id: key_id,
                hour,
                allowed: 40,
                rejected: 2,
            },
            UsageRow {
                api_key_id: key_id,
                hour: long_ago,
                allowed: 7,
                rejected: 0,
            },
        ];
        UsageRow::add_all(&mut conn, &rows).expect("usage");
    }
    let month = now.format("%Y-%m").to_string();
    let export = cli.run(&["usage", "export", "--month", &month, "--format", "csv"], &[]);
    assert!(export.status.success(), "{}", text(&export.stderr));
    let expected = format!("key_id,period_start,allowed,rejected\n{id},{month}-01T00:00:00Z,40,2\n");
    assert_eq!(text(&export.stdout), expected, "only this month, summed");
    let daily = cli.run(
        &[
            "usage",
            "export",
            "--month",
            &month,
            "--granularity",
            "day",
            "--format",
            "json",
        ],
        &[],
    );
    let line: serde_json::Value = serde_json::from_str(text(&daily.stdout).trim()).expect("one JSON line");
    assert_eq!(
        (line["allowed"].as_i64(), line["rejected"].as_i64()),
        (Some(40), Some(2))
    );
    let bad = cli.run(&["usage", "export", "--month", "2026-13"], &[]);
    assert!(
        !bad.status.success() && text(&bad.stderr).contains("--month"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn a_bad_setting_stops_start_up_naming_the_variable_without_a_panic() {
    let cli = Cli::new();
    for (var, value) in [
        ("PORT", "eighty"),
        ("KEY_RATE_LIMIT", "10/fortnight"),
        ("SECRET_KEY", "short"),
        ("LOG_FORMAT", "xml"),
    ] {
        let output = cli.run(&["migrate"], &[(var, value)]);
        assert_eq!(output.status.code(), Some(2), "{var}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(&format!("configuration error: {var}: ")),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// `keygate` with no configuration at all, in an empty directory: SQLite file, port 8080.
#[actix_web::test]
async fn with_no_configuration_it_serves_on_8080_and_says_how_to_log_in() {
    let dir = std::env::temp_dir().join(format!("keygate-fresh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log_path = dir.join("log.txt");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_keygate"));
    command
        .env_clear()
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup"))
        .stderr(log);
    let port = if std::net::TcpListener::bind("0.0.0.0:8080").is_ok() {
        8080
    } else {
        // Something else holds 8080 on this machine; the default is still what is tested
        // everywhere it is free.
        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = free.local_addr().expect("addr").port();
        command.env("PORT", port.to_string());
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"NOTICE: port 8080 is busy; testing on another\n",
        );
        port
    };
    let mut child = command.spawn().expect("start keygate");

    let client = awc::Client::default();
    let mut health = None;
    for _ in 0..100 {
        if let Ok(mut response) = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            health = Some((response.status().as_u16(), response.body().await.expect("body")));
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    crate::helpers::sigterm(&child);
    let status = child.wait().expect("keygate exits");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);

    let (code, body) = health.unwrap_or_else(|| panic!("no answer on port {port}; log:\n{log}"));
    assert_eq!(code, 200);
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["counters"], "memory");
    assert!(
        log.contains("created admin user admin@localhost with password"),
        "{log}"
    );
    assert!(log.contains(&format!("http://localhost:{port}")), "{log}");
    assert!(
        log.contains("/api/auth/token"),
        "the log says how to log in: {log}"
    );
    assert!(
        log.contains(&format!("http://localhost:{port}/admin/")),
        "and where the dashboard is: {log}"
    );
    assert!(
        status.success(),
        "SIGTERM ends keygate cleanly: {status:?}\n{log}"
    );
}

/// Key contracts from the shell: scopes, an allowlist and metadata on create, a roll with a
/// grace period, and an import from CSV (with its bad lines named) that is safe to run twice.
#[test]
fn an_operator_rolls_and_imports_keys_from_the_shell() {
    let cli = Cli::new();
    let user = cli.run(
        &["users", "create", "--email", "ops@example.com"],
        &[("KEYGATE_PASSWORD", "long-enough-pw")],
    );
    assert!(user.status.success(), "{}", text(&user.stderr));
    let created = cli.run(
        &[
            "keys",
            "create",
            "--owner",
            "ops@example.com",
            "--name",
            "scoped",
            "--scope",
            "orders:read",
            "--scope",
            "reports:*",
            "--allow-ip",
            "10.0.0.0/8",
            "--meta",
            "{\"plan\":\"pro\"}",
        ],
        &[],
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let first = text(&created.stdout).trim().to_owned();
    assert_key_format(&first);
    let bad = cli.run(
        &[
            "keys",
            "create",
            "--owner",
            "ops@example.com",
            "--name",
            "x",
            "--scope",
            "not a scope",
        ],
        &[],
    );
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("--scope"), "{}", text(&bad.stderr));

    let rolled = cli.run(&["keys", "roll", "1", "--grace", "24h"], &[]);
    assert!(rolled.status.success(), "{}", text(&rolled.stderr));
    let second = text(&rolled.stdout).trim().to_owned();
    assert_key_format(&second);
    assert_ne!(first, second);
    assert!(
        text(&rolled.stderr).contains("old secret works until"),
        "{}",
        text(&rolled.stderr)
    );
    for grace in ["8d", "-1h", "soon"] {
        let refused = cli.run(&["keys", "roll", "1", "--grace", grace], &[]);
        assert!(!refused.status.success(), "--grace {grace}");
    }

    let file = cli
        .dir
        .join(format!("keygate-import-{}.csv", crate::helpers::unique_suffix()));
    std::fs::write(
        &file,
        "key,owner,name,rate_limit_per_minute,is_active,scopes,created_at\n\
         legacy.one,ops@example.com,one,5,true,orders:read,2024-05-01 10:00:00+00\n\
         legacy.two,ops@example.com,two,,f,,\n\
         legacy.three,nobody@example.com,three,,,,\n\
         legacy.four,ops@example.com,four,zero,,,\n",
    )
    .expect("write the CSV");
    let path = file.to_str().expect("a path").to_owned();
    let imported = cli.run(&["keys", "import", &path], &[]);
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    assert!(
        text(&imported.stdout).contains("imported 2, unchanged 0, refused 2"),
        "{}",
        text(&imported.stdout)
    );
    let errors = text(&imported.stderr);
    assert!(
        errors.contains("line 4:") && errors.contains("line 5:"),
        "{errors}"
    );
    let again = cli.run(&["keys", "import", &path], &[]);
    assert!(
        text(&again.stdout).contains("imported 0, unchanged 2, refused 2"),
        "{}",
        text(&again.stdout)
    );
    let listed = text(&cli.run(&["keys", "list"], &[]).stdout);
    assert!(listed.contains(" one") && listed.contains(" two"), "{listed}");
    assert!(
        listed
            .lines()
            .any(|l| l.contains(" two") && l.contains("inactive")),
        "{listed}"
    );
    let _ = std::fs::remove_file(&file);
}

/// `keys credits`: set, top up and free a key's credits in Redis and the database; without
/// `REDIS_URL` the shell cannot reach a running keygate's balances and says so.
#[test]
fn an_operator_sets_and_tops_up_credits_from_the_shell() {
    let Some(redis) = crate::helpers::test_redis() else {
        return;
    };
    let cli = Cli::new();
    assert!(cli.run(&["migrate"], &[]).status.success());
    let user = cli.run(
        &["users", "create", "--email", "billing@example.com"],
        &[("KEYGATE_PASSWORD", "long-enough-pw")],
    );
    assert!(user.status.success(), "{}", text(&user.stderr));
    let created = cli.run(
        &[
            "keys",
            "create",
            "--owner",
            "billing@example.com",
            "--name",
            "paid",
        ],
        &[],
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let id = text(&created.stderr)
        .split_whitespace()
        .nth(2)
        .expect("created key <id>")
        .to_owned();
    let env = [
        ("REDIS_URL", redis.url.as_str()),
        ("REDIS_PREFIX", redis.prefix.as_str()),
    ];
    let without = cli.run(&["keys", "credits", &id, "--set", "5"], &[]);
    assert!(!without.status.success());
    assert!(
        text(&without.stderr).contains("REDIS_URL"),
        "{}",
        text(&without.stderr)
    );
    let set = cli.run(&["keys", "credits", &id, "--set", "5"], &env);
    assert!(set.status.success(), "{}", text(&set.stderr));
    assert!(text(&set.stdout).contains(": 5 credits"), "{}", text(&set.stdout));
    let added = cli.run(&["keys", "credits", &id, "--add", "3"], &env);
    assert!(
        text(&added.stdout).contains(": 8 credits"),
        "{}",
        text(&added.stdout)
    );
    let both = cli.run(&["keys", "credits", &id, "--add", "3", "--set", "1"], &env);
    assert!(!both.status.success(), "one change at a time");
    let freed = cli.run(&["keys", "credits", &id, "--unlimited"], &env);
    assert!(
        text(&freed.stdout).contains(": unlimited credits"),
        "{}",
        text(&freed.stdout)
    );
    let nothing = cli.run(&["keys", "credits", &id, "--add", "1"], &env);
    assert!(!nothing.status.success());
    assert!(
        text(&nothing.stderr).contains("no credit balance"),
        "{}",
        text(&nothing.stderr)
    );
}

/// `LOG_FORMAT=json`: every line on stderr is one JSON object, events and request lines alike;
/// a request line carries its fields (and the key's id, never the key).
#[actix_web::test]
async fn with_log_format_json_every_line_is_a_json_object() {
    let dir = std::env::temp_dir().join(format!("keygate-json-log-{}", crate::helpers::unique_suffix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log_path = dir.join("log.txt");
    let log = std::fs::File::create(&log_path).expect("log file");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("addr")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .env_clear()
        .current_dir(&dir)
        .env("PORT", port.to_string())
        .env("BIND_ADDR", "127.0.0.1")
        .env("LOG_FORMAT", "json")
        .env("ADMIN_EMAIL", crate::helpers::ADMIN_EMAIL)
        .env("ADMIN_PASSWORD", crate::helpers::ADMIN_PASSWORD)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup"))
        .stderr(log)
        .spawn()
        .expect("start keygate");
    let base = format!("http://127.0.0.1:{port}");
    let server = crate::helpers::Process::logged_in(&base).await;
    let created = server.create_key(serde_json::json!({"name": "logged"})).await;
    let key = created["key"].as_str().expect("key").to_owned();
    let answer = awc::Client::default()
        .get(format!("{base}/api/whoami?x=%22quoted%22"))
        .insert_header(("Api-Key", key.as_str()))
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status(), 200);
    crate::helpers::sigterm(&child);
    assert!(child.wait().expect("exit").success());
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["ts"].is_string() && l["level"].is_string())
    );
    let request = lines
        .iter()
        .find(|l| l["path"] == "/api/whoami")
        .unwrap_or_else(|| panic!("a request line: {log}"));
    assert_eq!(request["status"], 200);
    assert_eq!(request["method"], "GET");
    assert_eq!(request["caller"], format!("key={}", created["id"]));
    assert!(!log.contains(&key), "never the key");
    assert!(
        lines
            .iter()
            .any(|l| l["message"].as_str().is_some_and(|m| m.contains("stopped"))),
        "{log}"
    );
}
