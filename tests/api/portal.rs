//! Getting a dashboard account (`SIGNUP`), over plain HTTP: closed by default, open behind a
//! per-address limit, and by invitation with a link that works exactly once however many use
//! it at the same moment. (The portal itself is driven in Chromium in `browser.rs`.)

use futures_util::future::join_all;

use crate::helpers::{
    ADMIN_EMAIL, Auth, Backend, TestApp, csrf_token_in, dashboard_form, dashboard_session, session_cookie,
};

/// Opens `/admin/signup[?token=…]` as a new visitor and posts the form: the POST's status and
/// its `Location`.
pub(crate) async fn sign_up(
    app: &TestApp,
    token: Option<&str>,
    email: &str,
    password: &str,
    from: &str,
) -> (u16, Option<String>) {
    let client = awc::Client::builder().disable_redirects().finish();
    let query = token.map(|t| format!("?token={t}")).unwrap_or_default();
    let mut page = client
        .get(format!("{}/admin/signup{query}", app.address))
        .insert_header(("X-Forwarded-For", from))
        .send()
        .await
        .expect("the sign-up page");
    if page.status() != 200 {
        return (page.status().as_u16(), None);
    }
    let cookie = session_cookie(&page).expect("a session cookie");
    let html = String::from_utf8_lossy(&page.body().await.expect("body")).into_owned();
    let csrf = csrf_token_in(&html);
    let mut form = vec![
        ("csrf_token", csrf.as_str()),
        ("email", email),
        ("password", password),
    ];
    if let Some(token) = token {
        form.push(("token", token));
    }
    let response = client
        .post(format!("{}/admin/signup", app.address))
        .insert_header(("Cookie", cookie))
        .insert_header(("X-Forwarded-For", from))
        .send_form(&form)
        .await
        .expect("posted");
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (response.status().as_u16(), location)
}

#[actix_web::test]
async fn sign_up_is_closed_by_default() {
    let Some(app) = crate::helpers::spawn_app(Backend::Sqlite).await else {
        return;
    };
    assert_eq!(
        sign_up(&app, None, "x@example.com", "long-enough-1", "198.51.100.1")
            .await
            .0,
        404
    );
    assert_eq!(
        sign_up(
            &app,
            Some("abc"),
            "x@example.com",
            "long-enough-1",
            "198.51.100.1"
        )
        .await
        .0,
        404
    );
    app.login("x@example.com", "long-enough-1")
        .await
        .assert_error(401, "invalid_credentials");
}

#[actix_web::test]
async fn open_sign_up_makes_users_and_limits_each_address() {
    let Some(app) = TestApp::on(Backend::Sqlite)
        .signup("open")
        .trusted_proxy_hops(1)
        .spawn()
        .await
    else {
        return;
    };
    let (status, location) = sign_up(&app, None, "New@Example.com", "long-enough-1", "198.51.100.1").await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/admin/keys")),
        "signed up and logged in"
    );
    let token = app.login("new@example.com", "long-enough-1").await;
    assert_eq!(token.status, 200, "a user, who may use the API too");
    let me = app
        .get(
            "/api/users/",
            &Auth::Bearer(token.body["access_token"].as_str().expect("t").into()),
        )
        .await;
    me.assert_error(403, "forbidden");
    // Bad input is refused and creates nothing.
    assert_eq!(
        sign_up(&app, None, "short@example.com", "short", "198.51.100.1")
            .await
            .0,
        400
    );
    assert_eq!(
        sign_up(&app, None, "new@example.com", "long-enough-1", "198.51.100.1")
            .await
            .0,
        409
    );
    // Five sign-ups an hour per address (the three above count); others are unaffected.
    let mut statuses = Vec::new();
    for i in 0..4 {
        statuses.push(
            sign_up(
                &app,
                None,
                &format!("u{i}@example.com"),
                "long-enough-1",
                "198.51.100.1",
            )
            .await
            .0,
        );
    }
    assert_eq!(statuses, [303, 303, 429, 429], "five per address and hour");
    assert_eq!(
        sign_up(&app, None, "other@example.com", "long-enough-1", "203.0.113.9")
            .await
            .0,
        303
    );
    // Eight people signing up with one email at once: one account, the rest 409, never a 500.
    let addresses: Vec<String> = (0..8).map(|i| format!("192.0.2.{i}")).collect();
    let races = addresses
        .iter()
        .map(|from| sign_up(&app, None, "same@example.com", "long-enough-1", from));
    let mut statuses: Vec<u16> = join_all(races).await.into_iter().map(|(s, _)| s).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [303, 409, 409, 409, 409, 409, 409, 409]);
}

#[actix_web::test]
async fn an_invitation_link_works_once_however_many_race() {
    let Some(app) = TestApp::on(Backend::Sqlite).signup("invite").spawn().await else {
        return;
    };
    let cookie = dashboard_session(&app).await;
    let (status, _, _) = dashboard_form(
        &app,
        &cookie,
        "/admin/users/invite",
        &[("email", "racer@example.com")],
    )
    .await;
    assert_eq!(status, 200, "the page with the link");
    // The link is on that page: fetch it again through the form to read it.
    let client = awc::Client::builder().disable_redirects().finish();
    let mut page = client
        .get(format!("{}/admin/users", app.address))
        .insert_header(("Cookie", cookie.as_str()))
        .send()
        .await
        .expect("users page");
    // With cookie sessions the CSRF token arrives in a renewed cookie.
    let cookie = session_cookie(&page).unwrap_or(cookie);
    let html = String::from_utf8_lossy(&page.body().await.expect("body")).into_owned();
    let csrf = csrf_token_in(&html);
    let mut invited = client
        .post(format!("{}/admin/users/invite", app.address))
        .insert_header(("Cookie", cookie.as_str()))
        .send_form(&[("csrf_token", csrf.as_str()), ("email", "racer2@example.com")])
        .await
        .expect("invite");
    assert_eq!(
        invited
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let html = String::from_utf8_lossy(&invited.body().await.expect("body")).into_owned();
    let token = html
        .split("signup?token=")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("a link")
        .to_owned();
    assert_eq!(token.len(), 64);
    // Eight people open the link and submit at once: one account.
    let addresses: Vec<String> = (0..8).map(|i| format!("10.0.0.{i}")).collect();
    let races = addresses
        .iter()
        .map(|from| sign_up(&app, Some(&token), "", "long-enough-1", from));
    let statuses: Vec<u16> = join_all(races).await.into_iter().map(|(s, _)| s).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 303).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| [303, 403].contains(s)), "{statuses:?}");
    assert_eq!(app.login("racer2@example.com", "long-enough-1").await.status, 200);
    assert_eq!(
        sign_up(&app, Some(&token), "", "long-enough-1", "10.0.0.99")
            .await
            .0,
        403,
        "used up"
    );
    assert_eq!(
        sign_up(
            &app,
            Some("0".repeat(64).as_str()),
            "",
            "long-enough-1",
            "10.0.0.98"
        )
        .await
        .0,
        403,
        "unknown"
    );
    // Only admins invite; and no invitation for an existing user.
    let users = app.get("/api/users/", &app.admin().await.auth()).await.body;
    assert_eq!(
        users.as_array().expect("users").len(),
        2,
        "the admin and one racer: {users}"
    );
    let (again, _, _) = dashboard_form(&app, &cookie, "/admin/users/invite", &[("email", ADMIN_EMAIL)]).await;
    assert_eq!(again, 303, "refused with a flash, back to the users page");
}
