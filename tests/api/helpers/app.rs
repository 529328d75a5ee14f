//! A real keygate server on port 0 for one test, built from typed settings, and one method
//! per endpoint.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::{Method, StatusCode, header::HeaderMap};
use diesel::connection::SimpleConnection;
use keygate::config::Settings;
use keygate::db::DbPool;
use keygate::startup::Application;
use keygate::state::AppState;
use serde_json::Value;

use super::{Backend, RedisEnv, TestDb, pg_connect, test_database_url};

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password-123";
pub const PASSWORD: &str = "user-password-123";

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

/// A server with the default settings: SQLite with in-process counters, or PostgreSQL with
/// Redis. `None` (the test is skipped) when a service it needs is not running.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    TestApp::on(backend).spawn().await
}

pub(super) async fn spawn_instance(
    db: Arc<TestDb>,
    redis: Option<RedisEnv>,
    vars: Vec<(String, String)>,
) -> TestApp {
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
        self.send(method, path, auth, body.map(|b| (b, "application/json")))
            .await
    }

    /// A request with a body of another content type (JSON lines, say).
    pub async fn request_with_type(
        &self,
        method: Method,
        path: &str,
        auth: &Auth,
        body: Vec<u8>,
        content_type: &str,
    ) -> Reply {
        self.send(method, path, auth, Some((body, content_type))).await
    }

    async fn send(&self, method: Method, path: &str, auth: &Auth, body: Option<(Vec<u8>, &str)>) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.address));
        match auth {
            Auth::None => {}
            Auth::Bearer(token) => {
                request = request.insert_header(("Authorization", format!("Bearer {token}")))
            }
            Auth::Header(name, value) => request = request.insert_header((*name, value.as_str())),
        }
        let mut response = match body {
            Some((bytes, content_type)) => {
                request
                    .insert_header(("Content-Type", content_type))
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
        let user = keygate::users::create(
            &self.pool,
            keygate::policy::Actor::CLI,
            (email, PASSWORD),
            false,
            keygate::users::UserPatch::default(),
            keygate::clock::Now::read(),
        )
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
            keygate::policy::Actor::CLI,
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
