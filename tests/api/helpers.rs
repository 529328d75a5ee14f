//! Test support: a database per test (a SQLite file, or a PostgreSQL database created for the
//! test and dropped after it), a real server on port 0, and one method per endpoint.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::{Method, StatusCode, header::HeaderMap};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use keygate::config::Settings;
use keygate::db::{self, DbConnection, DbPool};
use keygate::startup::Application;
use keygate::state::AppState;
use serde_json::Value;

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password-123";
pub const PASSWORD: &str = "user-password-123";

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// With `CI` or `KEYGATE_REQUIRE_SERVICES` set, a missing service fails the test.
pub fn services_required() -> bool {
    ["CI", "KEYGATE_REQUIRE_SERVICES"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty() && s != "0" && s != "false"))
}

/// Skips (with a notice on the terminal, past the test harness's capture) or fails.
pub fn unavailable(service: &str, detail: &str, how: &str) {
    let message = format!("{service} is unreachable ({detail}); start it with: {how}");
    if services_required() {
        panic!("{message}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED (set KEYGATE_REQUIRE_SERVICES=1 to fail instead): {message}"
    );
}

/// Unique within this test run: for database names, Redis prefixes and emails.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A database of one test's own, removed when dropped.
pub struct TestDb {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    File(PathBuf),
    Postgres { admin_url: String, name: String },
}

pub fn test_redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The test Redis and a key prefix of this test's own, or `None` (skipped) when unreachable.
pub fn test_redis() -> Option<RedisEnv> {
    let url = test_redis_url();
    let reachable = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    match reachable {
        Ok(_) => Some(RedisEnv {
            url,
            prefix: format!("keygate-test-{}", unique_suffix()),
        }),
        Err(e) => {
            unavailable(
                "Redis",
                &format!("{url}: {e}"),
                "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no",
            );
            None
        }
    }
}

#[derive(Debug, Clone)]
pub struct RedisEnv {
    pub url: String,
    pub prefix: String,
}

/// A plain PostgreSQL connection for test bookkeeping (creating and dropping databases,
/// reading server statistics). Like keygate's own, it initialises OpenSSL first, without its
/// exit-time cleanup (see db::init_tls).
pub fn pg_connect(url: &str) -> diesel::ConnectionResult<PgConnection> {
    keygate::db::init_tls();
    PgConnection::establish(url)
}

pub fn test_database_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

impl TestDb {
    pub fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("keygate-test-{}.db", unique_suffix()));
                Some(TestDb {
                    url: format!("sqlite://{}", path.display()),
                    cleanup: Cleanup::File(path),
                })
            }
            Backend::Postgres => {
                let admin_url = test_database_url();
                let mut admin = match pg_connect(&admin_url) {
                    Ok(conn) => conn,
                    Err(e) => {
                        unavailable(
                            "PostgreSQL",
                            &format!("{admin_url}: {e}"),
                            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
                        );
                        return None;
                    }
                };
                let name = format!("keygate_test_{}", unique_suffix());
                admin
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .expect("CREATE DATABASE");
                let (base, query) = admin_url
                    .split_once('?')
                    .map_or((admin_url.as_str(), ""), |(b, q)| (b, q));
                let (server, _) = base.rsplit_once('/').expect("TEST_DATABASE_URL names a database");
                let url = if query.is_empty() {
                    format!("{server}/{name}")
                } else {
                    format!("{server}/{name}?{query}")
                };
                Some(TestDb {
                    url,
                    cleanup: Cleanup::Postgres { admin_url, name },
                })
            }
        }
    }

    /// A migrated connection to this database.
    pub fn connect(&self) -> DbConnection {
        let mut conn = db::establish(&self.url).expect("connect to the test database");
        db::migrate(&mut conn).expect("migrate the test database");
        conn
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::Postgres { admin_url, name } => {
                if let Ok(mut admin) = pg_connect(admin_url) {
                    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                }
            }
        }
    }
}

/// Generates one test per backend for each named `async fn(TestApp)`.
macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(#[actix_web::test]
            async fn $test() {
                if let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await {
                    super::$test(app).await
                }
            })+
        }
        mod postgres {
            $(#[actix_web::test]
            async fn $test() {
                if let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await {
                    super::$test(app).await
                }
            })+
        }
    };
}
pub(crate) use on_both_backends;

/// Generates one test per backend for each named `fn(&mut DbConnection)`.
macro_rules! on_both_databases {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $test() {
                if let Some(db) = crate::helpers::TestDb::new(crate::helpers::Backend::Sqlite) {
                    super::$test(&mut db.connect())
                }
            })+
        }
        mod postgres {
            $(#[test]
            fn $test() {
                if let Some(db) = crate::helpers::TestDb::new(crate::helpers::Backend::Postgres) {
                    super::$test(&mut db.connect())
                }
            })+
        }
    };
}
pub(crate) use on_both_databases;

pub struct TestApp {
    pub address: String,
    pub pool: DbPool,
    pub state: actix_web::web::Data<AppState>,
    pub db: Arc<TestDb>,
    pub redis: Option<RedisEnv>,
    vars: Vec<(String, String)>,
    client: awc::Client,
}

/// How a request authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    Bearer(String),
    /// Raw header name and value, for API keys and hostile input.
    Header(&'static str, String),
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a JSON error with this status and code, and a human message.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(self.body["error"], code, "body: {}", self.text);
        assert!(
            self.body["message"].as_str().is_some_and(|m| m.len() > 5),
            "body: {}",
            self.text
        );
    }
}

/// A logged-in user.
pub struct Persona {
    pub id: keygate::db::UserId,
    pub token: String,
}

impl Persona {
    pub fn auth(&self) -> Auth {
        Auth::Bearer(self.token.clone())
    }
}

pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, &[]).await
}

/// A server on its own database: SQLite with in-process counters, or PostgreSQL with Redis.
pub async fn spawn_app_with(backend: Backend, vars: &[(&str, &str)]) -> Option<TestApp> {
    let db = TestDb::new(backend)?;
    let redis = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(test_redis()?),
    };
    let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Some(spawn_instance(Arc::new(db), redis, vars).await)
}

/// A server on a database the test made (e.g. to reach it through a proxy it controls).
pub async fn spawn_on(db: TestDb, vars: &[(&str, &str)]) -> TestApp {
    let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    spawn_instance(Arc::new(db), None, vars).await
}

async fn spawn_instance(db: Arc<TestDb>, redis: Option<RedisEnv>, vars: Vec<(String, String)>) -> TestApp {
    let mut env: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), db.url.clone()),
        ("DATABASE_POOL_SIZE".into(), "4".into()),
        ("BIND_ADDR".into(), "127.0.0.1".into()),
        ("PORT".into(), "0".into()),
        ("WEB_CONCURRENCY".into(), "2".into()),
        ("ADMIN_EMAIL".into(), ADMIN_EMAIL.into()),
        ("ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
        // A loaded test machine can be slower than production's 50 ms; exactness tests must
        // not fall back to local counters by accident.
        ("REDIS_TIMEOUT_MS".into(), "2000".into()),
    ];
    if let Some(redis) = &redis {
        env.push(("REDIS_URL".into(), redis.url.clone()));
        env.push(("REDIS_PREFIX".into(), redis.prefix.clone()));
    }
    env.extend(vars.iter().cloned());
    let settings =
        Settings::from_lookup(|name| env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
            .expect("test settings are valid");
    let app = Application::build(settings)
        .await
        .expect("the application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let pool = app.pool().clone();
    let state = app.state();
    actix_web::rt::spawn(app.run_until_stopped());
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    TestApp {
        address,
        pool,
        state,
        db,
        redis,
        vars,
        client,
    }
}

impl TestApp {
    /// A second server on the same database and Redis prefix (another "dyno").
    pub async fn another_instance(&self) -> TestApp {
        spawn_instance(self.db.clone(), self.redis.clone(), self.vars.clone()).await
    }

    pub async fn request(&self, method: Method, path: &str, auth: &Auth, body: Option<Vec<u8>>) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.address));
        match auth {
            Auth::None => {}
            Auth::Bearer(token) => {
                request = request.insert_header(("Authorization", format!("Bearer {token}")))
            }
            Auth::Header(name, value) => request = request.insert_header((*name, value.as_str())),
        }
        let mut response = match body {
            Some(bytes) => {
                request
                    .insert_header(("Content-Type", "application/json"))
                    .send_body(bytes)
                    .await
            }
            None => request.send().await,
        }
        .expect("the server answers");
        let bytes = response
            .body()
            .limit(16 * 1024 * 1024)
            .await
            .expect("a readable body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str, auth: &Auth) -> Reply {
        self.request(Method::GET, path, auth, None).await
    }

    pub async fn post(&self, path: &str, auth: &Auth, body: Value) -> Reply {
        self.request(Method::POST, path, auth, Some(body.to_string().into_bytes()))
            .await
    }

    pub async fn patch(&self, path: &str, auth: &Auth, body: Value) -> Reply {
        self.request(Method::PATCH, path, auth, Some(body.to_string().into_bytes()))
            .await
    }

    pub async fn delete(&self, path: &str, auth: &Auth) -> Reply {
        self.request(Method::DELETE, path, auth, None).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/api/auth/token",
            &Auth::None,
            serde_json::json!({"email": email, "password": password}),
        )
        .await
    }

    /// Creates a user through the domain and logs in through HTTP.
    pub async fn user(&self, email: &str) -> Persona {
        let user = keygate::users::create(&self.pool, email, PASSWORD, false, keygate::clock::Now::read())
            .await
            .expect("create user");
        self.persona(user.id, email, PASSWORD).await
    }

    /// A user whose ceiling an admin removed: they may set any limits (or none) on their keys.
    pub async fn unlimited_user(&self, email: &str) -> Persona {
        let persona = self.user(email).await;
        let patch = keygate::users::UserPatch {
            ceiling: Some(keygate::limits::Limits::default()),
            ..keygate::users::UserPatch::default()
        };
        keygate::users::update(
            &self.pool,
            &self.state.keys,
            persona.id,
            patch,
            keygate::clock::Now::read(),
        )
        .await
        .expect("ceiling removed");
        persona
    }

    pub async fn admin(&self) -> Persona {
        let user = keygate::users::authenticate(&self.pool, ADMIN_EMAIL, ADMIN_PASSWORD)
            .await
            .expect("admin exists");
        self.persona(user.id, ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    async fn persona(&self, id: keygate::db::UserId, email: &str, password: &str) -> Persona {
        let reply = self.login(email, password).await;
        assert_eq!(reply.status, StatusCode::OK, "login: {}", reply.text);
        let token = reply.body["access_token"].as_str().expect("a token").to_owned();
        Persona { id, token }
    }

    /// Creates a key through the API; returns its JSON (with the one-time `key`).
    pub async fn create_key(&self, owner: &Persona, body: Value) -> Value {
        let reply = self.post("/api/api-keys/", &owner.auth(), body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "create key: {}", reply.text);
        reply.body
    }
}

/// Sends SIGTERM to a keygate the test started, as a platform stops a process.
pub fn sigterm(child: &std::process::Child) {
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(sent.expect("run kill").success(), "SIGTERM delivered");
}

/// The CSRF token of the first form in a dashboard page.
pub fn csrf_token_in(html: &str) -> String {
    html.split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a CSRF token")
        .to_owned()
}

/// A well-formed key (valid checksum) that no database holds.
pub fn unknown_key() -> Auth {
    Auth::Header(
        "Api-Key",
        keygate::keys::secret::IssuedKey::generate().expose().to_owned(),
    )
}

impl TestApp {
    /// Drops this app's PostgreSQL database under it (`WITH (FORCE)` ends its connections).
    pub fn drop_database(&self) {
        let name = self
            .db
            .url
            .rsplit('/')
            .next()
            .expect("a database name")
            .to_owned();
        let mut admin = pg_connect(&test_database_url()).expect("admin connection");
        admin
            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .expect("drop the app's database");
    }
}

/// A keygate the test started as a process: logged in as the admin once it answers.
pub struct Process {
    pub base: String,
    pub token: String,
    client: awc::Client,
}

impl Process {
    /// Waits (up to 20 s) until the server at `base` lets the admin log in.
    pub async fn logged_in(base: &str) -> Process {
        let client = awc::Client::builder().timeout(Duration::from_secs(15)).finish();
        let started = std::time::Instant::now();
        loop {
            let login = client
                .post(format!("{base}/api/auth/token"))
                .send_json(&serde_json::json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
                .await;
            if let Ok(mut response) = login {
                let body: Value = response.json().await.expect("token json");
                let token = body["access_token"].as_str().expect("a token").to_owned();
                return Process {
                    base: base.to_owned(),
                    token,
                    client,
                };
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "keygate at {base} did not start"
            );
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates a key with the admin's token; returns its JSON (with the one-time `key`).
    pub async fn create_key(&self, body: Value) -> Value {
        let mut response = self
            .client
            .post(format!("{}/api/api-keys/", self.base))
            .insert_header(("Authorization", format!("Bearer {}", self.token)))
            .send_json(&body)
            .await
            .expect("create a key");
        response.json().await.expect("key json")
    }
}

/// `base` with the fields of `extra` added (both JSON objects).
pub fn merged(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
    base
}

/// Asserts the documented key format: `kg_` + 36 base62 characters.
#[track_caller]
pub fn assert_key_format(key: &str) {
    assert_eq!(key.len(), 39, "{key}");
    assert!(key.starts_with("kg_"), "{key}");
    assert!(key[3..].bytes().all(|b| b.is_ascii_alphanumeric()), "{key}");
}

/// Logs in to the dashboard with a plain HTTP client; returns the session cookie.
pub async fn dashboard_session(app: &TestApp) -> String {
    let (status, cookie) = dashboard_login(app, ADMIN_EMAIL, ADMIN_PASSWORD, None).await;
    assert_eq!(status, 303, "logged in");
    cookie.expect("a renewed session cookie")
}

/// Logs in through the dashboard's form, as if from `client_ip` when given (the app must trust
/// one proxy hop); returns the status of the login POST (303 on success) and its cookie.
async fn dashboard_login(
    app: &TestApp,
    email: &str,
    password: &str,
    client_ip: Option<&str>,
) -> (u16, Option<String>) {
    let client = awc::Client::builder().disable_redirects().finish();
    let forwarded = |request: awc::ClientRequest| match client_ip {
        Some(ip) => request.insert_header(("X-Forwarded-For", ip)),
        None => request,
    };
    let mut page = forwarded(client.get(format!("{}/admin/login", app.address)))
        .send()
        .await
        .expect("login page");
    let cookie = session_cookie(&page).expect("a session cookie");
    let html = String::from_utf8_lossy(&page.body().await.expect("body")).into_owned();
    let csrf = csrf_token_in(&html);
    let response = forwarded(client.post(format!("{}/admin/login", app.address)))
        .insert_header(("Cookie", cookie))
        .send_form(&[
            ("csrf_token", csrf.as_str()),
            ("email", email),
            ("password", password),
        ])
        .await
        .expect("log in");
    (response.status().as_u16(), session_cookie(&response))
}

pub fn session_cookie<B>(response: &awc::ClientResponse<B>) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("keygate_session="))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
}

/// The status of the keys page for this session cookie (200, or 303 to the login page).
pub async fn dashboard_status(app: &TestApp, cookie: &str) -> u16 {
    let client = awc::Client::builder().disable_redirects().finish();
    let response = client
        .get(format!("{}/admin/keys", app.address))
        .insert_header(("Cookie", cookie))
        .send()
        .await;
    response.expect("answer").status().as_u16()
}

pub async fn log_out(app: &TestApp, cookie: &str) {
    let (status, _, _) = dashboard_form(app, cookie, "/admin/logout", &[]).await;
    assert_eq!(status, 303);
}

/// Posts a dashboard form with this session's CSRF token (read from the keys page); returns the
/// status, the `Location` and the session cookie to go on with.
pub async fn dashboard_form(
    app: &TestApp,
    cookie: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, Option<String>, Option<String>) {
    let client = awc::Client::builder().disable_redirects().finish();
    let mut page = client
        .get(format!("{}/admin/keys", app.address))
        .insert_header(("Cookie", cookie))
        .send()
        .await
        .expect("page");
    // With cookie sessions the CSRF token arrives in a renewed cookie.
    let cookie = session_cookie(&page).unwrap_or_else(|| cookie.to_owned());
    let html = String::from_utf8_lossy(&page.body().await.expect("body")).into_owned();
    let csrf = csrf_token_in(&html);
    let mut form: Vec<(&str, &str)> = vec![("csrf_token", csrf.as_str())];
    form.extend_from_slice(fields);
    let response = client
        .post(format!("{}{path}", app.address))
        .insert_header(("Cookie", cookie.as_str()))
        .send_form(&form)
        .await
        .expect("form posted");
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let cookie = session_cookie(&response).unwrap_or(cookie);
    (response.status().as_u16(), location, Some(cookie))
}

/// Logs in to the dashboard as if from `client_ip` (the app must trust one proxy hop); returns
/// the status of the login POST (303 on success).
pub async fn dashboard_login_from(app: &TestApp, email: &str, password: &str, client_ip: &str) -> u16 {
    dashboard_login(app, email, password, Some(client_ip)).await.0
}

/// Sends one request exactly as written, like `curl --path-as-is` (no normalising, repeated
/// headers kept); returns the status and the whole response as text.
pub async fn raw_request(app: &TestApp, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if matches!(method, "POST" | "PUT" | "PATCH") {
        request.push_str("Content-Length: 0\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    assert!(read.is_ok(), "{method} {path}: no answer within 10 s");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}
