//! The dashboard as a plain HTTP client sees it: login, session cookies, forms with their CSRF
//! token. (The browser tests drive real Chromium instead.)

use super::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp};

/// The CSRF token of the first form in a dashboard page.
pub fn csrf_token_in(html: &str) -> String {
    html.split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a CSRF token")
        .to_owned()
}

/// Logs in to the dashboard with a plain HTTP client; returns the session cookie.
pub async fn dashboard_session(app: &TestApp) -> String {
    dashboard_session_as(app, ADMIN_EMAIL, ADMIN_PASSWORD).await
}

/// [`dashboard_session`] for another account.
pub async fn dashboard_session_as(app: &TestApp, email: &str, password: &str) -> String {
    let (status, cookie) = dashboard_login(app, email, password, None).await;
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
