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
