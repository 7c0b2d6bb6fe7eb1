//! Health, readiness, metrics, OpenAPI, errors, security headers.

use crate::common::TestApp;

#[tokio::test]
async fn health_ready_metrics_and_docs() {
    let app = TestApp::empty().await;
    let r = app.call("GET", "/healthz", None, None, &[]).await;
    assert_eq!(r.status, 200);
    let r = app.call("GET", "/readyz", None, None, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ready");
    app.call("GET", "/api/v1/nowhere", None, None, &[]).await;
    let r = app.call("GET", "/metrics", None, None, &[]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("linli_http_requests_total"),
        "{}",
        r.text()
    );
    let r = app.call("GET", "/api/docs/", None, None, &[]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("swagger"),
        "docs page served from the binary"
    );
    app.close().await;
}

/// A working-day calendar without the current or the next year is said loudly: `/readyz` lists
/// it under `warnings` (still 200), `/metrics` counts it, staff report pages show a banner; once
/// an administrator adds the years, all of them are quiet.
#[tokio::test]
async fn a_missing_calendar_year_is_reported_by_readyz_metrics_and_staff_pages() {
    let app = TestApp::demo().await;
    let admin = app.login("admin").await;
    let committee = app.login("committee").await;
    let resident = app.login("resident").await;
    let year = app.store.clock.zone().year(app.store.now_ms());
    // Linli ships 2026 only (2027's arrangement is not published yet).
    let missing: Vec<i32> = [year, year + 1]
        .into_iter()
        .filter(|y| *y != 2026)
        .collect();
    assert!(!missing.is_empty());

    let r = app.call("GET", "/readyz", None, None, &[]).await;
    assert_eq!(r.status, 200, "warnings do not make the instance unready");
    let v = r.json();
    assert_eq!(v["status"], "ready");
    let years: Vec<i64> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            assert_eq!(w["code"], "calendar_missing_year");
            w["year"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(
        years,
        missing.iter().map(|y| i64::from(*y)).collect::<Vec<_>>()
    );
    let m = app.call("GET", "/metrics", None, None, &[]).await.text();
    assert!(
        m.contains(&format!(
            "linli_work_calendar_missing_years {}",
            missing.len()
        )),
        "{m}"
    );
    let queue = app.get(&committee, "/staff/reports").await.text();
    assert!(queue.contains("id=\"calendar-warning\""), "{queue}");
    assert!(queue.contains(&missing[0].to_string()));
    assert!(queue.contains("工作日日历缺少"));
    let mine = app.get(&resident, "/me/reports").await.text();
    assert!(
        !mine.contains("calendar-warning"),
        "residents are not bothered"
    );

    for y in &missing {
        app.post(
            &admin,
            "/api/v1/work-calendar",
            serde_json::json!({ "year": y, "source": "test arrangement" }),
        )
        .await
        .ok();
    }
    let v = app.call("GET", "/readyz", None, None, &[]).await.json();
    assert_eq!(v["warnings"], serde_json::json!([]));
    let m = app.call("GET", "/metrics", None, None, &[]).await.text();
    assert!(m.contains("linli_work_calendar_missing_years 0"), "{m}");
    let queue = app.get(&committee, "/staff/reports").await.text();
    assert!(!queue.contains("calendar-warning"));
    app.close().await;
}

#[tokio::test]
async fn errors_are_localized_json_with_security_headers() {
    let app = TestApp::empty().await;
    let r = app.call("GET", "/api/v1/persons", None, None, &[]).await;
    assert_eq!(r.status, 401);
    let v = r.json();
    assert_eq!(v["code"], "unauthorized");
    assert_eq!(v["message"], "请先登录。");
    assert!(
        r.headers
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(r.headers.get("x-content-type-options").unwrap(), "nosniff");
    let r = app
        .call(
            "GET",
            "/api/v1/persons",
            None,
            None,
            &[("accept-language", "en-US,en;q=0.9")],
        )
        .await;
    assert_eq!(r.json()["message"], "Please sign in first.");
    let r = app
        .call(
            "GET",
            "/api/v1/unknown",
            None,
            None,
            &[("accept-language", "en")],
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "not_found");
    // Malformed JSON is a localized 400, not axum's plain text.
    let r = app
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(("application/json", b"{not json".to_vec())),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "bad_request");
    app.close().await;
}

/// The OpenAPI document is generated from the handlers; its routes are snapshotted so an API
/// change is a visible diff (update tests/it/snapshots/openapi_routes.txt on purpose).
#[tokio::test]
async fn openapi_routes_snapshot() {
    let (_, spec) = linli_server::api_parts();
    let v = serde_json::to_value(&spec).unwrap();
    assert_eq!(v["openapi"], "3.1.0");
    let mut routes = Vec::new();
    for (path, item) in v["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    routes.sort();
    let actual = routes.join("\n") + "\n";
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/snapshots/openapi_routes.txt"
    );
    if std::env::var("LINLI_UPDATE_SNAPSHOTS").is_ok() {
        std::fs::write(file, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(file).unwrap_or_default();
    assert_eq!(
        actual, expected,
        "OpenAPI routes changed; rerun with LINLI_UPDATE_SNAPSHOTS=1 if intended"
    );
    // Every operation documents its error body.
    for (path, item) in v["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} has no responses"
            );
        }
    }
}

/// The suite really runs on the backend CI asked for.
#[tokio::test]
async fn runs_on_the_requested_backend() {
    let app = TestApp::empty().await;
    let want_pg = std::env::var("LINLI_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty());
    assert_eq!(
        app.store.backend() == linli_store::Backend::Postgres,
        want_pg
    );
    app.close().await;
}
