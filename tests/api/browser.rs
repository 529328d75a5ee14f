//! The dashboard in real headless Chromium, driven through chromedriver (Debian packages
//! `chromium` and `chromium-driver`). Screenshots land in target/screenshots/.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, Auth, Backend, PASSWORD, TestApp, spawn_app, unavailable};

/// A chromedriver of the test's own and a fresh Chromium profile; both end with the test.
struct Browser {
    client: Client,
    driver: Child,
    profile: std::path::PathBuf,
}

impl Browser {
    async fn start() -> Option<Browser> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let driver = match Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                unavailable(
                    "chromedriver",
                    &e.to_string(),
                    "apt-get install -y chromium chromium-driver",
                );
                return None;
            }
        };
        let profile = std::env::temp_dir().join(format!("keygate-chromium-{port}"));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                         "--disable-dev-shm-usage", "--window-size=1280,960",
                         format!("--user-data-dir={}", profile.display())],
            }),
        );
        let started = Instant::now();
        loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => {
                    return Some(Browser {
                        client,
                        driver,
                        profile,
                    });
                }
                Err(e) if started.elapsed() > Duration::from_secs(20) => {
                    panic!("Chromium did not start: {e}")
                }
                Err(_) => actix_web::rt::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    async fn fill(&self, css: &str, text: &str) {
        let input = self.find(css).await;
        input.clear().await.expect("clear");
        input.send_keys(text).await.expect("type");
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .expect(css)
    }

    /// Clicks something that loads a new page (a submit button, a link) and waits until the old
    /// page is gone, so the next look is at the new one.
    async fn click(&self, css: &str) {
        let old = self.find("html").await;
        self.find(css).await.click().await.expect("click");
        let started = Instant::now();
        while old.tag_name().await.is_ok() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no new page after clicking {css}"
            );
            actix_web::rt::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Runs a script that submits a form, and waits for the page it loads.
    async fn submit_by_script(&self, script: &str, args: Vec<Value>) {
        let old = self.find("html").await;
        self.client.execute(script, args).await.expect("script");
        let started = Instant::now();
        while old.tag_name().await.is_ok() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the script loaded no new page"
            );
            actix_web::rt::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Clicks something that stays on the page (a checkbox).
    async fn tick(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("text")
    }

    async fn source(&self) -> String {
        self.client.source().await.expect("page source")
    }

    async fn path(&self) -> String {
        self.client.current_url().await.expect("url").path().to_owned()
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    async fn log_in(&self, app: &TestApp, email: &str, password: &str) {
        self.goto(&format!("{}/admin/login", app.address)).await;
        self.fill("#email", email).await;
        self.fill("#password", password).await;
        self.click("button[type=submit]").await;
    }

    async fn end(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

async fn api_status(app: &TestApp, key: &str) -> (u16, Value) {
    let reply = app
        .get("/api/whoami", &Auth::Header("Api-Key", key.to_owned()))
        .await;
    (reply.status.as_u16(), reply.body)
}

#[actix_web::test]
async fn an_admin_creates_uses_limits_and_deactivates_a_key_in_the_browser() {
    let Some(app) = TestApp::on(Backend::Sqlite).usage_flush_ms(200).spawn().await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let base = &app.address;

    browser.goto(&format!("{base}/admin/keys")).await;
    assert_eq!(
        browser.path().await,
        "/admin/login",
        "the dashboard needs a login"
    );
    browser.log_in(&app, ADMIN_EMAIL, "not-the-password").await;
    assert!(
        browser
            .text(".flash-error")
            .await
            .contains("email or password is wrong")
    );
    browser.log_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(browser.path().await, "/admin/keys");

    // A few neighbours, so the list has something to show.
    let ada = app.unlimited_user("ada@example.com").await;
    for (name, limits) in [
        ("billing-service", json!({"rate_limit_per_minute": 600})),
        ("mobile app (iOS)", json!({})),
        (
            "nightly export",
            json!({"rate_limit_per_minute": null, "rate_limit_per_day": 500}),
        ),
    ] {
        app.create_key(&ada, crate::helpers::merged(json!({"name": name}), limits))
            .await;
    }

    browser.goto(&format!("{base}/admin/keys/new")).await;
    assert_eq!(
        browser
            .find("#rate_limit_per_minute")
            .await
            .prop("value")
            .await
            .expect("value")
            .as_deref(),
        Some("60"),
        "limits are prefilled from KEY_RATE_LIMIT"
    );
    browser.fill("#name", "partner integration").await;
    browser.click("form.stack button[type=submit]").await;
    assert!(
        browser.path().await.ends_with("/created"),
        "{}",
        browser.path().await
    );
    let key = browser.text("#new-key").await;
    crate::helpers::assert_key_format(&key);
    browser.screenshot("key_created").await;
    let detail = browser.path().await.trim_end_matches("/created").to_owned();

    browser.client.refresh().await.expect("reload");
    assert!(browser.text("h1").await.contains("already shown"));
    assert!(
        !browser.source().await.contains(&key),
        "reloading never shows the key again"
    );
    browser.client.back().await.expect("back");
    assert!(
        !browser.source().await.contains(&key),
        "going back never shows the key again"
    );

    browser.goto(&format!("{base}{detail}")).await;
    assert_eq!(browser.text("#last-used").await, "never");
    // This call and the refused one below must fall in one clock minute (a sliding window
    // weighs the previous minute's single call down to 0 just after the boundary).
    crate::gate::clear_of_minute_boundary(8.0).await;
    assert_eq!(api_status(&app, &key).await.0, 200);
    actix_web::rt::time::sleep(Duration::from_millis(600)).await;
    browser.goto(&format!("{base}{detail}")).await;
    assert_eq!(
        browser.text("#last-used").await,
        "just now",
        "last used follows the API call"
    );

    browser.fill("#rate_limit_per_minute", "1").await;
    browser.click("form.stack button[type=submit]").await;
    assert!(browser.text(".flash-success").await.contains("saved"));
    let (status, body) = api_status(&app, &key).await;
    assert_eq!(status, 429, "the second call in the minute: {body}");
    assert_eq!(body["limit"], 1);

    actix_web::rt::time::sleep(Duration::from_millis(600)).await;
    browser.goto(&format!("{base}{detail}")).await;
    let chart = browser.source().await;
    assert!(
        chart.contains("1 allowed, 1 rejected"),
        "the chart shows this hour's traffic"
    );
    browser.client.set_window_size(1280, 1480).await.expect("resize");
    browser.screenshot("key_detail").await;
    browser.client.set_window_size(1280, 960).await.expect("resize");

    browser.click(".page-head .button-danger").await;
    assert!(
        browser.text("h1").await.starts_with("Deactivate the key"),
        "a confirmation step"
    );
    browser.click("form.actions button[type=submit]").await;
    assert!(browser.text(".flash-success").await.contains("deactivated"));
    let (status, body) = api_status(&app, &key).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("api_key_inactive")));

    browser.goto(&format!("{base}/admin/keys")).await;
    assert!(browser.source().await.contains("partner integration"));
    browser.screenshot("keys").await;
    browser.goto(&format!("{base}/admin/keys?q=BILLING")).await;
    let rows = browser
        .client
        .find_all(Locator::Css("table.keys tbody tr"))
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1, "search ignores case");
    browser.goto(&format!("{base}/admin/keys?status=inactive")).await;
    assert!(browser.source().await.contains("partner integration"));
    assert!(!browser.source().await.contains("billing-service"));

    browser.goto(&format!("{base}/admin/users")).await;
    browser.fill("#email", "ops@example.com").await;
    browser.fill("#password", "long-enough-pw").await;
    browser.tick("input[name=is_admin]").await;
    browser.click("form.stack button[type=submit]").await;
    assert!(
        browser
            .text(".flash-success")
            .await
            .contains("Created ops@example.com (admin)")
    );
    browser.screenshot("users").await;
    assert_eq!(
        app.login("ops@example.com", "long-enough-pw").await.status,
        200,
        "the new user can log in"
    );
    let deactivate = browser
        .client
        .find_all(Locator::Css("td.actions-cell button"))
        .await
        .expect("buttons");
    assert_eq!(deactivate.len(), 2, "everyone but yourself");
    browser.goto(&format!("{base}/admin/users")).await;
    let row_forms = browser
        .client
        .find_all(Locator::Css("td.actions-cell form"))
        .await
        .expect("forms");
    let mut target = None;
    for form in row_forms {
        if form
            .attr("action")
            .await
            .expect("action")
            .is_some_and(|a| a.ends_with("/deactivate"))
        {
            let row = form
                .find(Locator::XPath("./ancestor::tr"))
                .await
                .expect("row")
                .text()
                .await
                .expect("text");
            if row.contains("ada@example.com") {
                target = Some(form);
            }
        }
    }
    let old = browser.find("html").await;
    target
        .expect("ada's row")
        .find(Locator::Css("button"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    while old.tag_name().await.is_ok() {
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(browser.text("h1").await.contains("Deactivate ada@example.com"));
    browser.click("form.actions button[type=submit]").await;
    assert!(
        browser
            .text(".flash-success")
            .await
            .contains("Deactivated ada@example.com")
    );
    app.login("ada@example.com", PASSWORD)
        .await
        .assert_error(401, "invalid_credentials");
    app.get("/api/api-keys/", &ada.auth())
        .await
        .assert_error(401, "invalid_token");
    browser.end().await;
}

#[actix_web::test]
async fn repeated_failed_logins_are_throttled_with_a_time_to_wait() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    // 10 attempts an hour per email and address (see users::throttle).
    for _ in 0..10 {
        browser.log_in(&app, ADMIN_EMAIL, "wrong-password!").await;
        assert!(browser.text(".flash-error").await.contains("wrong"));
    }
    browser.log_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let message = browser.text(".flash-error").await;
    assert!(
        message.starts_with("Too many login attempts. Try again in"),
        "{message}"
    );
    assert!(message.contains("minutes"), "{message}");
    assert_eq!(
        browser.path().await,
        "/admin/login",
        "even the right password waits"
    );
    browser.end().await;
}

#[actix_web::test]
async fn a_form_posted_without_its_csrf_token_changes_nothing() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let admin = app.admin().await;
    let key = app.create_key(&admin, json!({"name": "untouched"})).await;
    browser.log_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    browser
        .goto(&format!("{}/admin/keys/{}", app.address, key["id"]))
        .await;
    browser.fill("#name", "tampered").await;
    browser
        .client
        .execute(
            "document.querySelectorAll('form.stack input[name=csrf_token]').forEach(e => e.remove());",
            vec![],
        )
        .await
        .expect("remove the token");
    browser.click("form.stack button[type=submit]").await;
    assert!(
        browser.text("h1").await.contains("Forbidden"),
        "{}",
        browser.source().await
    );
    let reply = app
        .get(&format!("/api/api-keys/{}/", key["id"]), &admin.auth())
        .await;
    assert_eq!(reply.body["name"], "untouched");
    // A forged form from elsewhere, carrying the session cookie but no token, fares no better.
    browser
        .goto(&format!("{}/admin/keys/{}", app.address, key["id"]))
        .await;
    browser
        .submit_by_script(
            "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];\
             f.innerHTML = '<input name=confirm value=yes>'; document.body.append(f); f.submit();",
            vec![json!(format!("/admin/keys/{}/deactivate", key["id"]))],
        )
        .await;
    assert!(browser.text("h1").await.contains("Forbidden"));
    assert_eq!(
        app.get(&format!("/api/api-keys/{}/", key["id"]), &admin.auth())
            .await
            .body["is_active"],
        true
    );
    browser.end().await;
}

#[actix_web::test]
async fn a_key_named_like_a_script_is_shown_as_text() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let admin = app.admin().await;
    let key = app
        .create_key(&admin, json!({"name": "<script>alert(1)</script>"}))
        .await;
    browser.log_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    for path in ["/admin/keys".to_owned(), format!("/admin/keys/{}", key["id"])] {
        browser.goto(&format!("{}{path}", app.address)).await;
        assert!(
            browser.client.get_alert_text().await.is_err(),
            "no script ran on {path}"
        );
        let shown = browser.text("main").await;
        assert!(
            shown.contains("<script>alert(1)</script>"),
            "the name is shown literally on {path}"
        );
        assert!(
            browser.source().await.contains("&lt;script&gt;")
                || browser.source().await.contains("&#60;script&#62;")
        );
    }
    browser.end().await;
}

#[actix_web::test]
async fn a_user_reaches_their_portal_but_never_the_admin_pages() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    for path in ["/admin/keys", "/admin/users", "/admin/keys/new"] {
        browser.goto(&format!("{}{path}", app.address)).await;
        assert_eq!(browser.path().await, "/admin/login", "{path} needs a login");
    }
    app.user("ada@example.com").await;
    browser.log_in(&app, "ada@example.com", PASSWORD).await;
    assert_eq!(browser.path().await, "/admin/keys", "any active user logs in");
    for path in ["/admin/users", "/admin/users/"] {
        browser.goto(&format!("{}{path}", app.address)).await;
        assert_eq!(browser.text(".error-status").await, "403", "{path}");
    }
    browser.goto(&format!("{}/admin/nowhere", app.address)).await;
    assert_eq!(browser.path().await, "/admin/nowhere");
    assert!(
        browser.text("h1").await.contains("Not Found"),
        "404 is a page in the layout"
    );
    browser.end().await;
}

/// A page of the upstream's, served through the gateway on keygate's own origin (what an
/// upstream XSS would be): it frames the dashboard, and `/echo` shows the cookies it received.
async fn hostile_upstream() -> u16 {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    let server = HttpServer::new(|| {
        App::new()
            .route(
                "/framer",
                web::get().to(|| async {
                    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(
                        r#"<!doctype html><title>framer</title><iframe id="f" src="/admin/keys"></iframe>"#,
                    )
                }),
            )
            .default_service(web::to(|req: HttpRequest| async move {
                let cookie = req
                    .headers()
                    .get("cookie")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_owned();
                HttpResponse::Ok()
                    .content_type("text/plain; charset=utf-8")
                    .body(format!("cookies: {cookie}"))
            }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind");
    let port = server.addrs()[0].port();
    actix_web::rt::spawn(server.run());
    port
}

/// Findings 5 and 8 of the trust review, in the browser: a page of the upstream's on the same
/// origin neither receives the dashboard's cookie nor can frame the dashboard.
#[actix_web::test]
async fn an_upstream_page_gets_neither_the_dashboard_cookie_nor_a_frame_of_it() {
    let port = hostile_upstream().await;
    let upstream = format!("http://127.0.0.1:{port}");
    let Some(app) = TestApp::on(Backend::Sqlite).upstream(&upstream).spawn().await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.log_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(browser.path().await, "/admin/keys", "logged in");

    browser.goto(&format!("{}/echo", app.address)).await;
    let page = browser.source().await;
    assert!(page.contains("cookies:"), "the upstream answered: {page}");
    assert!(
        !page.contains("keygate_session"),
        "the dashboard cookie reached the upstream: {page}"
    );

    browser.goto(&format!("{}/framer", app.address)).await;
    browser.find("#f").await;
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let framed = browser
        .client
        .execute(
            "const f = document.getElementById('f'); \
             try { return !!(f.contentDocument && f.contentDocument.querySelector('table, form')); } \
             catch (e) { return false; }",
            vec![],
        )
        .await
        .expect("script");
    browser.screenshot("trust-framing").await;
    assert_eq!(
        framed,
        Value::Bool(false),
        "the dashboard rendered inside the upstream's frame"
    );
    browser.end().await;
}

/// The ceiling and the password change, in the dashboard: an admin caps a user's keys, and
/// changing one's own password ends the session and every token.
#[actix_web::test]
async fn an_admin_sets_a_ceiling_and_changes_their_password_in_the_browser() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let ada = app.user("ada@example.com").await;
    let admin = app.admin().await;
    browser.log_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    browser.goto(&format!("{}/admin/users", app.address)).await;
    let form = format!("form[action='/admin/users/{}/ceiling']", ada.id);
    browser
        .fill(&format!("{form} input[name=max_rate_limit_per_minute]"), "5")
        .await;
    browser
        .fill(&format!("{form} input[name=max_rate_limit_per_hour]"), "")
        .await;
    browser
        .fill(&format!("{form} input[name=max_rate_limit_per_day]"), "100")
        .await;
    browser.click(&format!("{form} button[type=submit]")).await;
    assert!(browser.text(".flash-success").await.contains("ada@example.com"));
    let shown = app
        .get(&format!("/api/users/{}/", ada.id), &admin.auth())
        .await
        .body;
    assert_eq!(shown["max_rate_limit_per_minute"], 5);
    assert_eq!(shown["max_rate_limit_per_hour"], Value::Null);
    assert_eq!(shown["max_rate_limit_per_day"], 100);
    app.post(
        "/api/api-keys/",
        &ada.auth(),
        json!({"name": "x", "rate_limit_per_minute": 6, "rate_limit_per_day": 100}),
    )
    .await
    .assert_error(403, "forbidden");

    browser.goto(&format!("{}/admin/account", app.address)).await;
    browser.fill("#current_password", "not-my-password").await;
    browser.fill("#new_password", "a-brand-new-password").await;
    browser.click("button[type=submit].button-primary").await;
    assert!(
        browser
            .text(".flash-error")
            .await
            .contains("current password is wrong")
    );
    browser.fill("#current_password", ADMIN_PASSWORD).await;
    browser.fill("#new_password", "a-brand-new-password").await;
    browser.click("button[type=submit].button-primary").await;
    assert_eq!(browser.path().await, "/admin/login", "logged out by the change");
    assert!(browser.source().await.contains("password was changed"));
    app.get("/api/api-keys/", &admin.auth())
        .await
        .assert_error(401, "invalid_token");
    browser.log_in(&app, ADMIN_EMAIL, "a-brand-new-password").await;
    assert_eq!(browser.path().await, "/admin/keys");
    browser.end().await;
}

/// axe-core's browser build, installed by `.ci/run` (`npm ci --prefix tests/browser`).
fn axe_source() -> Option<String> {
    let path = std::env::var("AXE_CORE_JS").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/node_modules/axe-core/axe.min.js"
        )
        .to_owned()
    });
    match std::fs::read_to_string(&path) {
        Ok(source) => Some(source),
        Err(e) => {
            unavailable(
                "axe-core",
                &format!("{path}: {e}"),
                "npm ci --prefix tests/browser",
            );
            None
        }
    }
}

impl Browser {
    /// axe-core's serious and critical violations on the current page, one line each.
    async fn accessibility_problems(&self, axe: &str) -> Vec<String> {
        self.client.execute(axe, vec![]).await.expect("inject axe-core");
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {resultTypes: ['violations']}).then(r => done(
                   r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.map(n => n.target.join(' ')).join(', '))));",
                vec![],
            )
            .await
            .expect("axe.run");
        serde_json::from_value(found).expect("a list of problems")
    }

    /// Whether the page is wider than the window (it would scroll sideways).
    /// One page as it stands: its serious/critical axe findings, whether it is wider than the
    /// window, and a screenshot `<name>-<width>.png`.
    async fn audit(&self, axe: &str, name: &str, width: u32) -> (String, Vec<String>, bool) {
        let found = self.accessibility_problems(axe).await;
        let overflows = self.overflows().await;
        self.screenshot(&format!("{name}-{width}")).await;
        (name.to_owned(), found, overflows)
    }

    async fn overflows(&self) -> bool {
        let wider = self
            .client
            .execute(
                "return document.documentElement.scrollWidth > window.innerWidth + 1;",
                vec![],
            )
            .await
            .expect("measure");
        wider == Value::Bool(true)
    }
}

/// Every dashboard page, as an admin sees it: no serious or critical axe-core violations, and
/// nothing wider than a 375 px phone; screenshots at 375 and 1280 px.
#[actix_web::test]
async fn every_page_is_accessible_and_fits_a_phone() {
    let Some(axe) = axe_source() else {
        return;
    };
    let Some(app) = TestApp::on(Backend::Sqlite).signup("invite").spawn().await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let ada = app.unlimited_user("ada@example.com").await;
    let used = app
        .create_key(
            &ada,
            json!({"name": "mobile app (iOS)", "rate_limit_per_minute": 600}),
        )
        .await;
    let key = used["key"].as_str().expect("key").to_owned();
    for _ in 0..3 {
        api_status(&app, &key).await;
    }
    // A second key with refusals, so the overview has two bars and both top lists.
    let tight = app
        .create_key(&ada, json!({"name": "nightly sync", "rate_limit_per_minute": 2}))
        .await;
    for _ in 0..5 {
        api_status(&app, tight["key"].as_str().expect("key")).await;
    }
    app.state.usage.flush().await.expect("usage written");
    let admin = app.admin().await;
    let hook = app
        .post(
            "/api/webhooks",
            &admin.auth(),
            json!({"url": "https://hooks.example.com/keygate", "events": ["key.created", "quota.threshold"]}),
        )
        .await;
    assert_eq!(hook.status, 201, "{}", hook.text);
    // An event for it, so its page lists a delivery (the name does not resolve here: pending).
    app.create_key(&admin, json!({"name": "announced"})).await;
    let mut problems = Vec::new();
    for width in [1280, 375] {
        browser.client.set_window_size(width, 900).await.expect("resize");
        browser.goto(&format!("{}/admin/login", app.address)).await;
        let mut pages = vec![browser.audit(&axe, "login", width).await];
        browser.log_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
        // The created-key page, reached as an admin reaches it.
        browser.goto(&format!("{}/admin/keys/new", app.address)).await;
        browser.fill("#name", &format!("created at {width}")).await;
        browser.click("form.stack button[type=submit]").await;
        pages.push(browser.audit(&axe, "key_created", width).await);
        for (name, path) in [
            ("overview", "/admin/".to_owned()),
            ("overview_30d", "/admin/?span=30d".to_owned()),
            ("audit", "/admin/audit".to_owned()),
            ("webhooks", "/admin/webhooks".to_owned()),
            ("webhook", format!("/admin/webhooks/{}", hook.body["id"])),
            ("keys", "/admin/keys".to_owned()),
            ("key_new", "/admin/keys/new".to_owned()),
            ("key_detail", format!("/admin/keys/{}", used["id"])),
            ("users", "/admin/users".to_owned()),
            ("account", "/admin/account".to_owned()),
            ("not_found", "/admin/nothing-here".to_owned()),
        ] {
            browser.goto(&format!("{}{path}", app.address)).await;
            pages.push(browser.audit(&axe, name, width).await);
        }
        // The confirmation page of a deactivation.
        browser
            .goto(&format!("{}/admin/keys/{}", app.address, used["id"]))
            .await;
        browser
            .click("form[action$='/deactivate'] button[type=submit]")
            .await;
        pages.push(browser.audit(&axe, "confirm", width).await);
        // An invitation, its one-time link page, and the sign-up page it opens.
        browser.goto(&format!("{}/admin/users", app.address)).await;
        browser
            .fill("#invite_email", &format!("invited-{width}@example.com"))
            .await;
        browser
            .click("form[action='/admin/users/invite'] button[type=submit]")
            .await;
        let link = browser.text("#invitation-link").await;
        pages.push(browser.audit(&axe, "invited", width).await);
        browser.click("form.account button[type=submit]").await;
        browser.goto(&link).await;
        pages.push(browser.audit(&axe, "signup", width).await);
        // The portal: the same pages as a user sees them.
        browser.log_in(&app, "ada@example.com", PASSWORD).await;
        for (name, path) in [
            ("portal_keys", "/admin/keys".to_owned()),
            ("portal_key_new", "/admin/keys/new".to_owned()),
            ("portal_key_detail", format!("/admin/keys/{}", used["id"])),
            ("portal_account", "/admin/account".to_owned()),
            ("portal_forbidden", "/admin/users".to_owned()),
        ] {
            browser.goto(&format!("{}{path}", app.address)).await;
            pages.push(browser.audit(&axe, name, width).await);
        }
        for (name, found, overflows) in pages {
            for problem in found {
                problems.push(format!("{name} at {width} px: {problem}"));
            }
            if overflows && width == 375 {
                problems.push(format!("{name} at {width} px scrolls sideways"));
            }
        }
        // Log out (from a page with the layout's logout form) for the next width's login page.
        browser.goto(&format!("{}/admin/keys", app.address)).await;
        browser.click("form.account button[type=submit]").await;
    }
    browser.end().await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A key's contract in the dashboard: scopes, an allowlist and metadata set on the form (a bad
/// value named next to its field), then a roll with a grace period — the new secret shown once,
/// the old one working until the time the page names — and a roll that stops the old one.
#[actix_web::test]
async fn an_admin_sets_a_keys_contract_and_rolls_it_in_the_browser() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let base = &app.address;
    browser.log_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    browser.goto(&format!("{base}/admin/keys/new")).await;
    browser.fill("#name", "orders service").await;
    browser.fill("#scopes", "orders:read reports:*").await;
    browser.fill("#ip_allowlist", "127.0.0.1\n10.0.0.0/8").await;
    browser.fill("#meta", "{\"plan\": \"pro\"").await;
    browser.click("form.stack button[type=submit]").await;
    assert!(
        browser
            .text(".field-error")
            .await
            .contains("Metadata is not JSON"),
        "{}",
        browser.source().await
    );
    assert_eq!(
        browser
            .find("#scopes")
            .await
            .prop("value")
            .await
            .expect("value")
            .as_deref(),
        Some("orders:read reports:*"),
        "what was typed stays"
    );
    browser.fill("#meta", "{\"plan\": \"pro\"}").await;
    browser.click("form.stack button[type=submit]").await;
    let first = browser.text("#new-key").await;
    let detail = browser.path().await.trim_end_matches("/created").to_owned();
    let (status, whoami) = api_status(&app, &first).await;
    assert_eq!(status, 200);
    assert_eq!(whoami["key"]["scopes"], json!(["orders:read", "reports:*"]));

    browser.goto(&format!("{base}{detail}")).await;
    let source = browser.source().await;
    assert!(source.contains("orders:read reports:*"), "the scopes are shown");
    assert!(source.contains("10.0.0.0/8"), "the allowlist is shown");
    let meta = browser
        .find("#meta")
        .await
        .prop("value")
        .await
        .expect("value")
        .unwrap_or_default();
    assert!(
        meta.contains("\"plan\": \"pro\""),
        "the metadata is shown: {meta}"
    );
    // The whole page, down to the Roll and Edit sections with the contract's fields.
    browser
        .client
        .set_window_size(1280, 2200)
        .await
        .expect("a tall window");
    browser.screenshot("key_contract").await;
    browser
        .client
        .set_window_size(1280, 960)
        .await
        .expect("the usual window");

    // Roll with the default grace (24 hours): both secrets work.
    browser.click("form[action$=\"/roll\"] button[type=submit]").await;
    assert_eq!(browser.text("h1").await, "New secret");
    let until = browser.text("#previous-until").await;
    let second = browser.text("#new-key").await;
    assert_ne!(first, second);
    browser.screenshot("key_rolled").await;
    assert_eq!(
        api_status(&app, &first).await.0,
        200,
        "the old secret works during the grace"
    );
    assert_eq!(api_status(&app, &second).await.0, 200);
    browser.goto(&format!("{base}{detail}")).await;
    assert!(
        browser.text("#previous-secret").await.contains(&until),
        "the detail page shows the overlap"
    );
    browser.screenshot("key_overlap").await;
    let keys = app.get("/api/api-keys", &app.admin().await.auth()).await.body;
    assert!(keys[0]["previous_secret_expires_at"].is_string());

    // Roll again, stopping the old secret now.
    browser
        .find("#grace_seconds option[value=\"0\"]")
        .await
        .click()
        .await
        .expect("choose no grace");
    browser.click("form[action$=\"/roll\"] button[type=submit]").await;
    assert!(
        browser
            .source()
            .await
            .contains("The old secret has stopped working")
    );
    let third = browser.text("#new-key").await;
    assert_eq!(api_status(&app, &second).await.0, 401, "stopped at once");
    assert_eq!(api_status(&app, &third).await.0, 200);
    assert_eq!(api_status(&app, &first).await.0, 401, "the first is long gone");
    browser.end().await;
}

/// The developer portal: an invited user signs up through the link (which then works no more),
/// creates a key within their ceiling, uses it, watches the usage move, rolls it and
/// deactivates it; another user's key and the admin pages stay out of reach, and no form —
/// tampered ones included — lets them past their ceiling or give themselves scopes.
#[actix_web::test]
async fn an_invited_user_manages_their_own_keys_in_the_portal() {
    let Some(app) = TestApp::on(Backend::Sqlite).signup("invite").spawn().await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let base = &app.address;
    let admin = app.admin().await;
    let others = app.create_key(&admin, json!({"name": "the admin's own"})).await;

    browser.log_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    browser.goto(&format!("{base}/admin/users")).await;
    browser.fill("#invite_email", "Dev@Example.com").await;
    browser
        .click("form[action='/admin/users/invite'] button[type=submit]")
        .await;
    let link = browser.text("#invitation-link").await;
    assert!(link.starts_with(&format!("{base}/admin/signup?token=")), "{link}");
    browser.click("form.account button[type=submit]").await;

    // The link: choose a password, and be logged in.
    browser.goto(&link).await;
    assert_eq!(browser.text("#invited-email").await, "dev@example.com");
    browser.fill("#password", "dev-password-1").await;
    browser.click("form.stack button[type=submit]").await;
    assert_eq!(browser.path().await, "/admin/keys");
    assert!(browser.text(".flash-success").await.contains("Welcome"));
    assert!(
        !browser.source().await.contains("the admin's own"),
        "only their own keys"
    );
    assert!(
        !browser.source().await.contains("href=\"/admin/users\""),
        "no Users link for a user"
    );
    browser.screenshot("portal_welcome").await;
    // The link worked once.
    browser.goto(&link).await;
    assert!(browser.source().await.contains("has been used or has expired"));

    // A key, within the ceiling (KEY_RATE_LIMIT by default), prefilled at it.
    browser.goto(&format!("{base}/admin/keys/new")).await;
    assert_eq!(
        browser
            .find("#rate_limit_per_minute")
            .await
            .prop("value")
            .await
            .expect("value")
            .as_deref(),
        Some("60")
    );
    assert!(browser.source().await.contains("may be at most 60/minute"));
    browser.fill("#name", "my app").await;
    browser.click("form.stack button[type=submit]").await;
    let key = browser.text("#new-key").await;
    crate::helpers::assert_key_format(&key);
    let detail = browser.path().await.trim_end_matches("/created").to_owned();
    for _ in 0..2 {
        assert_eq!(api_status(&app, &key).await.0, 200);
    }
    browser.goto(&format!("{base}{detail}")).await;
    assert!(browser.source().await.contains("2 of 60"), "the usage moved");
    browser.screenshot("portal_key_detail").await;

    // Roll (24 hours' grace by default): both secrets work.
    browser.click("form[action$=\"/roll\"] button[type=submit]").await;
    let rolled = browser.text("#new-key").await;
    assert_eq!(api_status(&app, &rolled).await.0, 200);
    assert_eq!(api_status(&app, &key).await.0, 200);

    // Deactivate, confirmed: the key stops.
    browser.goto(&format!("{base}{detail}")).await;
    browser
        .click("form[action$='/deactivate'] button[type=submit]")
        .await;
    browser.click("form.actions button[type=submit]").await;
    assert_eq!(api_status(&app, &rolled).await.0, 401);

    // Out of reach: another user's key, the admin pages.
    browser.goto(&format!("{base}/admin/keys/{}", others["id"])).await;
    assert_eq!(
        browser.text(".error-status").await,
        "404",
        "{}",
        browser.source().await
    );
    browser.goto(&format!("{base}/admin/users")).await;
    assert_eq!(
        browser.text(".error-status").await,
        "403",
        "{}",
        browser.source().await
    );

    // The ceiling holds on every form, tampered ones included.
    browser.goto(&format!("{base}/admin/keys/new")).await;
    browser.fill("#name", "too fast").await;
    browser.fill("#rate_limit_per_minute", "61").await;
    browser.click("form.stack button[type=submit]").await;
    assert_refused(&browser, "a limit above the ceiling").await;
    browser.goto(&format!("{base}/admin/keys/new")).await;
    browser.fill("#name", "no limit").await;
    browser.fill("#rate_limit_per_day", "").await;
    browser.click("form.stack button[type=submit]").await;
    assert_refused(&browser, "no limit where the ceiling has one").await;
    for (field, value) in [("owner", ADMIN_EMAIL), ("scopes", "admin:all")] {
        browser.goto(&format!("{base}/admin/keys/new")).await;
        browser.fill("#name", "tampered").await;
        browser
            .submit_by_script(
                "const f = document.querySelector('form.stack'); const i = document.createElement('input'); \
                 i.type = 'hidden'; i.name = arguments[0]; i.value = arguments[1]; \
                 f.querySelectorAll('[name=' + arguments[0] + ']').forEach(e => e.remove()); f.appendChild(i); f.submit();",
                vec![json!(field), json!(value)],
            )
            .await;
        assert_refused(
            &browser,
            if field == "owner" {
                "a tampered owner"
            } else {
                "tampered scopes"
            },
        )
        .await;
    }
    // And on the edit form: raising a limit above the ceiling.
    browser.goto(&format!("{base}{detail}")).await;
    browser.fill("#rate_limit_per_minute", "1000").await;
    browser.click("form.stack button[type=submit]").await;
    assert_refused(&browser, "a raised limit").await;
    let keys = app.get("/api/api-keys", &admin.auth()).await.body;
    assert_eq!(
        keys.as_array().expect("keys").len(),
        2,
        "nothing else was created: {keys}"
    );
    browser.end().await;
}

/// The page is the 403 of a refused form, and says why.
async fn assert_refused(browser: &Browser, what: &str) {
    let status = browser.text(".error-status").await;
    assert_eq!(status, "403", "{what}: {}", browser.source().await);
}

/// Credits on the key page: an admin sets a balance with a monthly refill, sees what is left
/// and when the next refill comes, tops it up and makes it unlimited again; the owner sees the
/// balance but no form.
#[actix_web::test]
async fn an_admin_sets_and_tops_up_credits_in_the_browser() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let base = &app.address;
    let admin = app.admin().await;
    let created = app
        .create_key(&admin, json!({"name": "billing", "rate_limit_per_minute": null}))
        .await;
    let (id, key) = (
        created["id"].as_i64().expect("id"),
        created["key"].as_str().expect("key").to_owned(),
    );
    browser.log_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    browser.goto(&format!("{base}/admin/keys/{id}")).await;
    assert!(browser.text("#credits-left").await.contains("Unlimited"));
    browser.fill("#credits-remaining", "5").await;
    browser
        .find("#refill-interval option[value=\"month\"]")
        .await
        .click()
        .await
        .expect("monthly");
    browser.fill("#refill-amount", "10000").await;
    browser.fill("#refill-day", "15").await;
    browser
        .click("form[action$=\"/credits\"].stack button[type=submit]")
        .await;
    assert_eq!(browser.text("#credits-left").await, "5");
    assert!(
        browser.text("#next-refill").await.contains("-15 00:00"),
        "{}",
        browser.text("#next-refill").await
    );
    for _ in 0..2 {
        assert_eq!(api_status(&app, &key).await.0, 200);
    }
    browser.goto(&format!("{base}/admin/keys/{id}")).await;
    assert_eq!(browser.text("#credits-left").await, "3", "the live balance");
    browser.fill("#credits-amount", "10").await;
    browser
        .click("form[action$=\"/credits\"].inline-form button[type=submit]")
        .await;
    assert_eq!(browser.text("#credits-left").await, "13");
    browser
        .client
        .set_window_size(1280, 2400)
        .await
        .expect("a taller window");
    browser.screenshot("key_credits").await;
    // A bad amount is refused and changes nothing.
    browser.fill("#credits-amount", "-4").await;
    browser.submit_by_script(
        "document.querySelector('#credits-amount').removeAttribute('pattern'); document.querySelector('form.inline-form[action$=\"/credits\"]').submit()",
        vec![],
    ).await;
    assert!(browser.source().await.contains("must be a whole number"));
    assert_eq!(
        app.get(&format!("/api/api-keys/{id}/"), &admin.auth()).await.body["remaining"],
        13
    );
    browser.goto(&format!("{base}/admin/keys/{id}")).await;
    browser.fill("#credits-remaining", "").await;
    browser
        .find("#refill-interval option[value=\"none\"]")
        .await
        .click()
        .await
        .expect("no refill");
    browser
        .click("form[action$=\"/credits\"].stack button[type=submit]")
        .await;
    assert!(browser.text("#credits-left").await.contains("Unlimited"));
    browser.end().await;
}
