//! Web pages through the real router: sign-in form, CSRF, one-time form tokens, escaping,
//! scope on pages, localized error pages.

use crate::common::{Resp, TestApp, form};

/// The resident's correction form.
const CORRECTION_FORM: &str = "main form[action='/me/corrections']";

async fn web_login(app: &TestApp, login: &str) -> String {
    let r = app
        .call(
            "POST",
            "/login",
            None,
            Some((
                "application/x-www-form-urlencoded",
                form(&[("login", login), ("password", "linli-demo"), ("next", "/")]),
            )),
            &[],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    r.headers
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

async fn page(app: &TestApp, cookie: &str, uri: &str) -> Resp {
    app.call("GET", uri, None, None, &[("cookie", cookie)])
        .await
}

async fn post(app: &TestApp, cookie: &str, uri: &str, fields: &[(&str, &str)]) -> Resp {
    app.call(
        "POST",
        uri,
        None,
        Some(("application/x-www-form-urlencoded", form(fields))),
        &[("cookie", cookie)],
    )
    .await
}

#[tokio::test]
async fn pages_need_sign_in_and_follow_scope() {
    let app = TestApp::demo().await;
    let r = app.call("GET", "/registry", None, None, &[]).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.headers.get("location").unwrap(), "/login?next=/registry");
    let r = app
        .call(
            "POST",
            "/login",
            None,
            Some((
                "application/x-www-form-urlencoded",
                form(&[("login", "committee"), ("password", "nope")]),
            )),
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    let doc = r.doc();
    assert_eq!(
        doc.field_error("login").as_deref(),
        Some("用户名、手机号或密码错误。"),
        "{}",
        doc.main_html()
    );
    doc.assert_inside("[id='login-error'][role=alert]", "main");
    // Open redirects are refused.
    let r = app
        .call(
            "POST",
            "/login",
            None,
            Some((
                "application/x-www-form-urlencoded",
                form(&[
                    ("login", "committee"),
                    ("password", "linli-demo"),
                    ("next", "//evil.example/"),
                ]),
            )),
            &[],
        )
        .await;
    assert_eq!(r.headers.get("location").unwrap(), "/");

    let c1 = web_login(&app, "committee").await;
    let c3 = web_login(&app, "committee3").await;
    let committee = app.login("committee").await;
    let hid = app.get(&committee, "/api/v1/households?limit=1").await.ok()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = page(&app, &c1, &format!("/registry/households/{hid}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.doc().text("main h1"), "一户一表");
    let r = page(&app, &c3, &format!("/registry/households/{hid}")).await;
    assert_eq!(r.status, 404);
    let doc = r.doc();
    assert_eq!(doc.text("main h1"), "找不到页面");
    assert!(
        doc.text("main [role=alert]").contains("不存在"),
        "{}",
        doc.main_html()
    );
    let resident = web_login(&app, "resident").await;
    assert_eq!(page(&app, &resident, "/registry/persons").await.status, 403);
    assert_eq!(page(&app, &resident, "/me").await.status, 200);
    // English error page by cookie.
    let r = app
        .call(
            "GET",
            "/registry/persons",
            None,
            None,
            &[("cookie", &format!("{resident}; linli_lang=en"))],
        )
        .await;
    assert_eq!(r.doc().text("main h1"), "Not allowed", "{}", r.text());
    app.close().await;
}

#[tokio::test]
async fn forms_need_csrf_and_do_not_create_twice() {
    let app = TestApp::demo().await;
    let resident = web_login(&app, "resident").await;
    let doc = page(&app, &resident, "/me/corrections/new").await.doc();
    let csrf = doc.hidden(CORRECTION_FORM, "_csrf");
    let once = doc.hidden(CORRECTION_FORM, "_once");
    let fields = [
        ("_csrf", csrf.as_str()),
        ("_once", once.as_str()),
        ("field", "note"),
        ("new_value", "新添一口人"),
        ("person_id", ""),
    ];
    let r = post(
        &app,
        &resident,
        "/me/corrections",
        &[
            ("_once", once.as_str()),
            ("field", "note"),
            ("new_value", "x"),
        ],
    )
    .await;
    assert_eq!(r.status, 403, "no CSRF token, no change");
    let first = post(&app, &resident, "/me/corrections", &fields).await;
    assert_eq!(first.status, 303);
    let second = post(&app, &resident, "/me/corrections", &fields).await;
    assert_eq!(
        second.status, 303,
        "the double tap lands on the same result"
    );
    let committee = app.login("committee").await;
    let pending = app
        .get(&committee, "/api/v1/corrections?status=pending")
        .await
        .ok();
    assert_eq!(pending.as_array().unwrap().len(), 1, "created once");
    // A field error is shown beside the field, in the user's language.
    let doc = page(&app, &resident, "/me/corrections/new").await.doc();
    let r = post(
        &app,
        &resident,
        "/me/corrections",
        &[
            ("_csrf", &doc.hidden(CORRECTION_FORM, "_csrf")),
            ("_once", &doc.hidden(CORRECTION_FORM, "_once")),
            ("field", "moved_in"),
            ("new_value", "2024-13-01"),
        ],
    )
    .await;
    assert_eq!(r.status, 400);
    let doc = r.doc();
    let invalid = doc.select(&format!("{CORRECTION_FORM} [aria-invalid=true]"));
    assert!(!invalid.is_empty(), "{}", doc.main_html());
    for field in invalid {
        let id = field.attr("id").expect("an invalid field has an id");
        let msg = doc
            .field_error(id)
            .expect("its error is named by aria-describedby");
        assert!(!msg.is_empty());
        doc.assert_inside(&format!("[id='{id}-error'].field-error"), CORRECTION_FORM);
    }
    app.close().await;
}

#[tokio::test]
async fn user_text_is_escaped_on_pages() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let hid = app.get(&committee, "/api/v1/households?limit=1").await.ok()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let v = app
        .get(&committee, &format!("/api/v1/households/{hid}"))
        .await
        .ok();
    let evil = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    app.patch(
        &committee,
        &format!("/api/v1/households/{hid}"),
        serde_json::json!({"version": v["version"], "note": evil}),
    )
    .await
    .ok();
    let c = web_login(&app, "committee").await;
    let html = page(&app, &c, &format!("/registry/households/{hid}"))
        .await
        .text();
    assert!(!html.contains("<script>alert"), "raw script in page");
    let doc = crate::common::Doc::parse(&html);
    // The note is shown as the text typed, and made no element of the page.
    assert_eq!(doc.text_by_id("note"), evil, "escaped text present");
    assert!(!doc.has("body script"), "a script element in the body");
    assert!(!doc.has("img[onerror], [onerror]"));
    app.close().await;
}

/// Reviewers' open pages hear about new correction requests in their area, and only there.
#[tokio::test]
async fn live_events_reach_only_the_right_reviewers() {
    use axum::body::Body;
    use tower::ServiceExt;

    let app = TestApp::demo().await;
    let open = |cookie: String| {
        let router = app.router.clone();
        async move {
            let req = axum::http::Request::get("/events")
                .header("cookie", cookie)
                .body(Body::empty())
                .unwrap();
            let resp = router.oneshot(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(
                resp.headers().get("content-type").unwrap(),
                "text/event-stream"
            );
            resp.into_body()
        }
    };
    let mut mine = open(web_login(&app, "committee").await).await;
    let mut theirs = open(web_login(&app, "committee3").await).await;
    let resident = app.login("resident").await;
    let c = app
        .post(
            &resident,
            "/api/v1/me/corrections",
            serde_json::json!({"field": "note", "new_value": "请核实"}),
        )
        .await
        .expect(201);
    let id = c["id"].as_str().unwrap().to_string();
    let got = next_text(&mut mine, std::time::Duration::from_secs(5)).await;
    assert!(
        got.contains("event: correction") && got.contains(&id),
        "{got:?}"
    );
    let other = next_text(&mut theirs, std::time::Duration::from_millis(500)).await;
    assert!(
        !other.contains("correction"),
        "another community's reviewer was told: {other:?}"
    );
    app.close().await;
}

async fn next_text(body: &mut axum::body::Body, wait: std::time::Duration) -> String {
    use http_body_util::BodyExt;
    match tokio::time::timeout(wait, body.frame()).await {
        Ok(Some(Ok(frame))) => frame
            .into_data()
            .map(|b| String::from_utf8_lossy(&b).to_string())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

#[tokio::test]
async fn merchants_land_on_a_welcome_page() {
    let app = TestApp::demo().await;
    let merchant = web_login(&app, "merchant").await;
    let r = page(&app, &merchant, "/").await;
    assert_eq!(r.status, 200);
    let doc = r.doc();
    assert_eq!(doc.text("main h1"), "欢迎使用邻里");
    assert_eq!(doc.texts("main .tag"), ["商户"]);
    let resident = web_login(&app, "resident").await;
    assert_eq!(
        page(&app, &resident, "/")
            .await
            .headers
            .get("location")
            .unwrap(),
        "/me"
    );
    app.close().await;
}
