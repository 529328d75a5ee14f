//! Scale-out and Heroku: three instances on a real Redis Cluster, Redis over TLS with a
//! self-signed certificate, PostgreSQL over TLS, and the Procfile's commands run as Heroku
//! would run them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Auth, Backend, TestApp, TestDb, dashboard_session, dashboard_status,
    log_out, pg_connect, test_database_url, test_redis, unavailable, unique_suffix,
};

/// redis-server processes of a test's own, in a scratch directory; all stopped when dropped.
struct Servers {
    dir: PathBuf,
    children: Vec<Child>,
}

impl Servers {
    fn new() -> Servers {
        let dir = std::env::temp_dir().join(format!("keygate-redis-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Servers {
            dir,
            children: Vec::new(),
        }
    }

    fn spawn(&mut self, args: &[&str]) -> Option<()> {
        match Command::new("redis-server")
            .args(args)
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => {
                self.children.push(child);
                Some(())
            }
            Err(e) => {
                unavailable("redis-server", &e.to_string(), "apt-get install -y redis-server");
                None
            }
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port that is free, and whose cluster-bus port (+10000) is free too.
fn cluster_port() -> u16 {
    loop {
        let candidate = 20_000 + (rand_u16() % 9_000);
        if std::net::TcpListener::bind(("127.0.0.1", candidate)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", candidate + 10_000)).is_ok()
        {
            return candidate;
        }
    }
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7);
    (nanos ^ std::process::id().rotate_left(7)) as u16
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < Duration::from_secs(15), "{what} within 15 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn redis_query(url: &str, cmd: &mut redis::Cmd) -> redis::RedisResult<String> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_millis(500))?;
    cmd.query(&mut conn)
}

/// A 3-node Redis Cluster on loopback, made with `redis-cli --cluster create`.
fn start_cluster(servers: &mut Servers) -> Option<String> {
    let ports: Vec<u16> = (0..3).map(|_| cluster_port()).collect();
    for port in &ports {
        let (port, conf) = (port.to_string(), format!("nodes-{port}.conf"));
        servers.spawn(&[
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &conf,
            "--save",
            "",
            "--appendonly",
            "no",
        ])?;
    }
    for port in &ports {
        wait_for("redis-server", || {
            redis_query(&format!("redis://127.0.0.1:{port}"), &mut redis::cmd("PING")).is_ok()
        });
    }
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&nodes)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output();
    match created {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        ),
        Err(e) => {
            unavailable("redis-cli", &e.to_string(), "apt-get install -y redis-tools");
            return None;
        }
    }
    for port in &ports {
        wait_for("cluster_state:ok", || {
            redis_query(
                &format!("redis://127.0.0.1:{port}"),
                redis::cmd("CLUSTER").arg("INFO"),
            )
            .is_ok_and(|info| info.contains("cluster_state:ok"))
        });
    }
    Some(format!("redis+cluster://{}", nodes.join(",")))
}

const SECRET: &str = "a-shared-secret-key-of-at-least-sixty-four-bytes-for-every-instance!!";

#[actix_web::test]
async fn three_instances_on_a_redis_cluster_share_one_limit_revocations_and_sessions() {
    let mut servers = Servers::new();
    let Some(cluster) =
        tokio::task::spawn_blocking(move || start_cluster(&mut servers).map(|url| (url, servers)))
            .await
            .expect("join")
    else {
        return;
    };
    let (url, _servers) = cluster;
    let prefix = format!("cluster-{}", unique_suffix());
    let a = TestApp::on(Backend::Postgres)
        .redis(&url, &prefix)
        .secret_key(SECRET);
    let Some(a) = a.spawn().await else {
        return;
    };
    let (b, c) = (a.another_instance().await, a.another_instance().await);
    for app in [&a, &b, &c] {
        let health = app.get("/healthz", &Auth::None).await;
        assert_eq!(health.body["counters"], "redis", "{}", health.text);
    }

    let admin = a.admin().await;
    let limited = a
        .create_key(&admin, json!({"name": "shared", "rate_limit_per_minute": 30}))
        .await;
    let limited = Auth::Header("Api-Key", limited["key"].as_str().expect("key").to_owned());
    crate::gate::clear_of_minute_boundary(10.0).await;
    let racing = (0..150).map(|i| {
        let app = [&a, &b, &c][i % 3];
        let key = limited.clone();
        async move { app.get("/api/whoami", &key).await.status.as_u16() }
    });
    let statuses = join_all(racing).await;
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    println!(
        "Redis Cluster, 3 instances, limit 30, 150 racing requests: {ok} × 200, {} × 429",
        statuses.iter().filter(|&&s| s == 429).count()
    );
    assert_eq!(ok, 30);

    let revoked = a.create_key(&admin, json!({"name": "revoked"})).await;
    let key = Auth::Header("Api-Key", revoked["key"].as_str().expect("key").to_owned());
    for app in [&b, &c] {
        assert_eq!(app.get("/api/whoami", &key).await.status, 200, "cached");
    }
    let at = Instant::now();
    assert_eq!(
        a.delete(&format!("/api/api-keys/{}/", revoked["id"]), &admin.auth())
            .await
            .status,
        204
    );
    for app in [&b, &c] {
        while app.get("/api/whoami", &key).await.status != 401 {
            assert!(
                at.elapsed() < Duration::from_secs(1),
                "revocation within a second on every instance"
            );
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
    println!(
        "revocation seen by all instances {:?} after it was made",
        at.elapsed()
    );

    let cookie = dashboard_session(&a).await;
    assert_eq!(
        dashboard_status(&b, &cookie).await,
        200,
        "the session lives in the cluster, so b knows it"
    );
    log_out(&c, &cookie).await;
    assert_eq!(
        dashboard_status(&a, &cookie).await,
        303,
        "logging out on c ends the session on a"
    );
}

fn self_signed(dir: &std::path::Path) -> Option<(String, String)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match made {
        Ok(status) if status.success() => Some((cert.display().to_string(), key.display().to_string())),
        other => {
            unavailable("openssl", &format!("{other:?}"), "apt-get install -y openssl");
            None
        }
    }
}

#[actix_web::test]
async fn rediss_with_a_self_signed_certificate_works_when_the_url_says_insecure() {
    let mut servers = Servers::new();
    let Some((cert, key)) = self_signed(&servers.dir) else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port()
        .to_string();
    let args = [
        "--port",
        "0",
        "--tls-port",
        &port,
        "--bind",
        "127.0.0.1",
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &cert,
        "--tls-auth-clients",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
    ];
    if servers.spawn(&args).is_none() {
        return;
    }
    let url = format!("rediss://127.0.0.1:{port}/#insecure");
    let probe = url.clone();
    tokio::task::spawn_blocking(move || {
        wait_for("TLS redis-server", || {
            redis_query(&probe, &mut redis::cmd("PING")).is_ok()
        })
    })
    .await
    .expect("join");

    let app = TestApp::on(Backend::Sqlite).redis(&url, "tls").secret_key(SECRET);
    let Some(app) = app.spawn().await else {
        return;
    };
    assert_eq!(app.get("/healthz", &Auth::None).await.body["counters"], "redis");
    let admin = app.admin().await;
    let created = app
        .create_key(&admin, json!({"name": "over tls", "rate_limit_per_minute": 3}))
        .await;
    let key = Auth::Header("Api-Key", created["key"].as_str().expect("key").to_owned());
    crate::gate::clear_of_minute_boundary(3.0).await;
    let mut passed = 0;
    for _ in 0..6 {
        passed += usize::from(app.get("/api/whoami", &key).await.status == 200);
    }
    assert_eq!(passed, 3, "counted in Redis over TLS");
    let keys: Vec<String> = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
        .and_then(|mut c| redis::cmd("KEYS").arg("tls:*").query(&mut c))
        .expect("keys over TLS");
    assert!(keys.iter().any(|k| k.starts_with("tls:rc:")), "{keys:?}");
    let cookie = dashboard_session(&app).await;
    assert_eq!(dashboard_status(&app, &cookie).await, 200);
    let keys: Vec<String> = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
        .and_then(|mut c| redis::cmd("KEYS").arg("tls:session:*").query(&mut c))
        .expect("keys over TLS");
    assert_eq!(keys.len(), 1, "the session is kept in Redis: {keys:?}");

    // Without `#insecure` the certificate is verified, fails, and the instance runs degraded.
    let strict = url.trim_end_matches("#insecure").to_owned();
    let Some(app) = TestApp::on(Backend::Sqlite).redis(&strict, "tls").spawn().await else {
        return;
    };
    let health = app.get("/healthz", &Auth::None).await;
    assert_eq!(
        (health.body["counters"].as_str(), health.body["redis"].as_str()),
        (Some("memory"), Some("unavailable"))
    );
}

#[actix_web::test]
async fn postgres_with_sslmode_require_connects_over_tls() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let name = db.url.rsplit('/').next().expect("name").to_owned();
    let url = format!("{}?sslmode=require", db.url);
    let app = TestApp::on_database(db)
        .database_url(&url)
        .spawn()
        .await
        .expect("a server on the test's database");
    let admin = app.admin().await;
    app.create_key(&admin, json!({"name": "tls"})).await;
    let mut conn = pg_connect(&test_database_url()).expect("admin");
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut count = |ssl: bool| -> i64 {
        let sql = format!(
            "SELECT count(*) AS n FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid WHERE a.datname = '{name}' AND s.ssl = {ssl}"
        );
        diesel::RunQueryDsl::get_result::<Count>(diesel::sql_query(sql), &mut conn)
            .expect("pg_stat_ssl")
            .n
    };
    let (tls, plain) = (count(true), count(false));
    println!("sslmode=require: {tls} connection(s) over TLS, {plain} without");
    assert!(tls >= 1 && plain == 0);
}

#[actix_web::test]
async fn the_procfile_release_and_web_commands_run_a_working_service() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let Some(redis) = test_redis() else { return };
    let procfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Procfile")).expect("Procfile");
    let command = |kind: &str| -> Vec<String> {
        let line = procfile
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{kind}: ")))
            .expect("a Procfile line");
        line.replace("./target/release/keygate", env!("CARGO_BIN_EXE_keygate"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let dir = std::env::temp_dir().join(format!("keygate-heroku-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).expect("dir");
    let env = [
        ("PORT", port.to_string()),
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", redis.url.clone()),
        ("REDIS_PREFIX", redis.prefix.clone()),
        ("SECRET_KEY", SECRET.to_owned()),
        ("ADMIN_EMAIL", ADMIN_EMAIL.to_owned()),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
        ("TRUSTED_PROXY_HOPS", "1".to_owned()),
        ("METRICS_TOKEN", "scrape-me".to_owned()),
        ("DYNO", "web.1".to_owned()),
    ];
    let run = |argv: &[String], log: &PathBuf| {
        let log = std::fs::File::create(log).expect("log");
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(&dir);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log);
        cmd
    };
    let release = run(&command("release"), &dir.join("release.log"))
        .status()
        .expect("release");
    assert!(
        release.success(),
        "release phase: {}",
        std::fs::read_to_string(dir.join("release.log")).unwrap_or_default()
    );

    let started = Instant::now();
    let mut web = run(&command("web"), &dir.join("web.log")).spawn().expect("web");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "web did not bind");
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    let bound = started.elapsed();
    let app = crate::helpers::Process::logged_in(&format!("http://127.0.0.1:{port}")).await;
    let created = app.create_key(json!({"name": "heroku"})).await;
    let key = created["key"].as_str().expect("key").to_owned();
    let client = awc::Client::default();
    let response = client
        .get(format!("{}/api/whoami", app.base))
        .insert_header(("Api-Key", key.as_str()))
        .insert_header(("X-Forwarded-For", "198.51.100.4, 203.0.113.9"))
        .send()
        .await
        .expect("whoami");
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("ratelimit"));
    let mut metrics = client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), 401, "METRICS_TOKEN guards /metrics");
    metrics = client
        .get(format!("{}/metrics", app.base))
        .insert_header(("Authorization", "Bearer scrape-me"))
        .send()
        .await
        .expect("metrics");
    let text = String::from_utf8_lossy(&metrics.body().await.expect("body")).into_owned();
    for line in [
        "keygate_requests_total{tier=\"api_key\",outcome=\"allowed\"} 1",
        "keygate_store_redis_up 1",
        "keygate_key_cache_lookups_total{result=\"miss\"} 1",
        "keygate_store_latency_seconds_count",
        "keygate_usage_flush_lag_seconds",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
    crate::helpers::sigterm(&web);
    assert!(web.wait().expect("exit").success());
    let log = std::fs::read_to_string(dir.join("web.log")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    println!("Procfile web bound 0.0.0.0:{port} {bound:?} after start");
    assert!(
        bound < Duration::from_secs(1),
        "binds within a second ({bound:?})"
    );
    let line = log
        .lines()
        .find(|l| l.contains("GET /api/whoami"))
        .expect("a request log line");
    assert!(
        line.contains(&format!("key={}", created["id"])) && line.contains(" 200 ") && line.contains("ms"),
        "{line}"
    );
    assert!(
        line.contains("] 127.0.0.1 \"GET /api/whoami HTTP/1.1\" 200 "),
        "the TCP peer is logged: {line}"
    );
    assert!(
        !line.contains("198.51.100.4"),
        "never an address the client wrote: {line}"
    );
    assert!(!log.contains(&key), "the key is never logged");

    // SQLite on a dyno earns a loud warning.
    let sqlite = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .arg("migrate")
        .env_clear()
        .env("DYNO", "web.1")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/warn.db", std::env::temp_dir().display()),
        )
        .output()
        .expect("migrate");
    let stderr = String::from_utf8_lossy(&sqlite.stderr);
    assert!(stderr.contains("Heroku dyno web.1 with SQLite"), "{stderr}");
}
