//! keygate as a separate process, as a platform runs it.

use std::time::Duration;

use serde_json::Value;

use super::{ADMIN_EMAIL, ADMIN_PASSWORD};

/// Sends SIGTERM to a keygate the test started, as a platform stops a process.
pub fn sigterm(child: &std::process::Child) {
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(sent.expect("run kill").success(), "SIGTERM delivered");
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

/// Starts `keygate serve` on a free loopback port against `db_url`, with the test admin and
/// `extra` settings; quiet. Returns the child and its base URL.
pub fn serve(db_url: &str, extra: &[(&str, &str)]) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_keygate"));
    command
        .arg("serve")
        .env_clear()
        .current_dir(std::env::temp_dir())
        .env("DATABASE_URL", db_url)
        .env("PORT", port.to_string())
        .env("BIND_ADDR", "127.0.0.1")
        .env("ADMIN_EMAIL", ADMIN_EMAIL)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (name, value) in extra {
        command.env(name, value);
    }
    let child = command.spawn().expect("start keygate");
    (child, format!("http://127.0.0.1:{port}"))
}
