//! Residents follow their own reports live: the SSE stream (`GET /events`) of the reporter
//! carries `report.<action>` (and the generic `report` frame the pages listen for) when staff
//! move the report, while a resident of another household in the same community hears nothing
//! about it; once staff publish it, that neighbour hears its next change. The pages carry the
//! live regions and still render without JavaScript.

use std::time::Duration;

use serde_json::json;

use crate::common::{Session, TestApp};

async fn one(app: &TestApp, sql: &str, bind: &str) -> String {
    let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(bind.to_string())
        .fetch_one(&app.store.db.read)
        .await
        .unwrap();
    sqlx::Row::get::<String, _>(&row, 0)
}

async fn open_stream(app: &TestApp, s: &Session) -> axum::body::Body {
    use tower::ServiceExt;
    let req = axum::http::Request::get("/events")
        .header("cookie", s.cookie.clone())
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body()
}

/// Reads SSE frames until `want` appears or `wait` passes; returns everything read.
async fn read_until(body: &mut axum::body::Body, want: &str, wait: Duration) -> String {
    use http_body_util::BodyExt;
    let deadline = tokio::time::Instant::now() + wait;
    let mut all = String::new();
    while !all.contains(want) {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(b) = frame.into_data() {
                    all.push_str(&String::from_utf8_lossy(&b));
                }
            }
            _ => break,
        }
    }
    all
}

#[tokio::test]
async fn residents_hear_their_own_reports_change_and_nobody_else_does() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let committee = app.login("committee").await;
    let (hh, room) = app.home_of("resident").await;
    let neighbour = app.neighbour_of(&hh, "live-neighbour").await;

    let created = app
        .post(
            &resident,
            "/api/v1/reports",
            json!({ "category": "repair_common", "description": "楼道灯坏了，实时更新测试", "place_id": room, "public": true }),
        )
        .await
        .expect(201);
    let id = created["report"]["id"].as_str().unwrap().to_string();

    let mut mine = open_stream(&app, &resident).await;
    let mut theirs = open_stream(&app, &neighbour).await;

    // Staff accept: the reporter hears it, under its kind and as the generic `report` frame.
    app.post(
        &committee,
        &format!("/api/v1/reports/{id}/actions"),
        json!({ "action": "accept", "public_note": "已受理" }),
    )
    .await
    .ok();
    let seen = read_until(&mut mine, "event: report\n", Duration::from_secs(5)).await;
    assert!(
        seen.contains("event: report.accept") && seen.contains(&id),
        "{seen:?}"
    );
    assert!(seen.contains("event: report\n"), "{seen:?}");
    // The neighbour (same community, another household, not published yet) hears nothing.
    let heard = read_until(&mut theirs, "report", Duration::from_millis(400)).await;
    assert!(!heard.contains("report"), "neighbour was told: {heard:?}");

    // Published after moderation, the report is the neighbour's to see: its next change reaches
    // them too.
    app.post(
        &committee,
        &format!("/api/v1/reports/{id}/actions"),
        json!({ "action": "moderate", "public": true }),
    )
    .await
    .ok();
    app.post(
        &committee,
        &format!("/api/v1/reports/{id}/actions"),
        json!({ "action": "dispatch" }),
    )
    .await
    .ok();
    let heard = read_until(&mut theirs, "report.dispatch", Duration::from_secs(5)).await;
    assert!(heard.contains(&id), "{heard:?}");

    // A resident of another community hears nothing of any of it.
    let c3 = app.place_id("community", "新村社区").await;
    let c3_path = app.place_path(&c3).await;
    let hh3 = one(
        &app,
        "SELECT id FROM households WHERE path >= $1 ORDER BY path LIMIT 1",
        &c3_path,
    )
    .await;
    assert!(
        one(&app, "SELECT path FROM households WHERE id = $1", &hh3)
            .await
            .starts_with(&c3_path)
    );
    let admin = app.login("admin").await;
    app.post(
        &admin,
        "/api/v1/users",
        json!({
            "login": "far-resident",
            "display_name": "远方居民",
            "password": crate::common::PASSWORD,
            "bindings": [{ "role": "resident", "household_id": hh3 }],
        }),
    )
    .await
    .expect(201);
    let far = app.login("far-resident").await;
    let mut far_stream = open_stream(&app, &far).await;
    app.post(
        &committee,
        &format!("/api/v1/reports/{id}/actions"),
        json!({ "action": "return", "reason": "测试" }),
    )
    .await;
    let heard = read_until(&mut far_stream, "report", Duration::from_millis(400)).await;
    assert!(
        !heard.contains("report"),
        "another community was told: {heard:?}"
    );

    // The pages carry the live regions (progressive enhancement: plain HTML without JS).
    let list = app.get(&resident, "/me/reports").await;
    assert_eq!(list.status.as_u16(), 200);
    let html = list.text();
    assert!(
        html.contains("id=\"my-reports\" data-live-events=\"report\""),
        "{html}"
    );
    assert!(!html.contains("<script>"), "no inline script");
    let detail = app.get(&resident, &format!("/me/reports/{id}")).await;
    let html = detail.text();
    assert!(html.contains(&format!("data-live-id=\"{id}\"")), "{html}");
    assert!(html.contains("已受理"));
    app.close().await;
}

/// A property company's staff hear about the reports their company handles, not about every
/// report of the communities it serves: a complaint about the company is silent for them until
/// the committee dispatches it there.
#[tokio::test]
async fn unit_staff_hear_only_their_units_reports() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let committee = app.login("committee").await;
    let property = app.login("property").await;
    let (_, room) = app.home_of("resident").await;
    let mut company = open_stream(&app, &property).await;
    let mut desk = open_stream(&app, &committee).await;

    let id = app
        .post(
            &resident,
            "/api/v1/reports",
            json!({ "category": "complaint_property", "description": "物业维修拖延，实时测试", "place_id": room }),
        )
        .await
        .expect(201)["report"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let act = |action: &'static str| {
        let (app, committee, id) = (&app, &committee, id.clone());
        async move {
            app.post(
                committee,
                &format!("/api/v1/reports/{id}/actions"),
                json!({ "action": action }),
            )
            .await
            .ok();
        }
    };
    act("accept").await;
    // The committee hears the filing and the acceptance; the company nothing.
    let seen = read_until(&mut desk, "report.accept", Duration::from_secs(5)).await;
    assert!(
        seen.contains("report.submitted") && seen.contains(&id),
        "{seen:?}"
    );
    let heard = read_until(&mut company, "report", Duration::from_millis(400)).await;
    assert!(!heard.contains("report"), "the company was told: {heard:?}");
    // Dispatched as the catalogue says — to the committee — the company still hears nothing.
    act("dispatch").await;
    let heard = read_until(&mut company, "report", Duration::from_millis(400)).await;
    assert!(!heard.contains("report"), "the company was told: {heard:?}");
    // Sent to the company on purpose (a dispatcher's decision): from now on it is theirs.
    act("sign").await;
    let company_id: String = sqlx::Row::get(
        &sqlx::query("SELECT id FROM orgs WHERE kind = 'property_company' ORDER BY name LIMIT 1")
            .fetch_one(&app.store.db.read)
            .await
            .unwrap(),
        0,
    );
    app.post(
        &committee,
        &format!("/api/v1/reports/{id}/actions"),
        json!({ "action": "transfer", "unit_id": company_id }),
    )
    .await
    .ok();
    let heard = read_until(&mut company, "report.transfer", Duration::from_secs(5)).await;
    assert!(heard.contains(&id), "{heard:?}");
    app.close().await;
}
