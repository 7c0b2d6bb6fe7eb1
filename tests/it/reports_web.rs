//! The reports web pages: a resident files through the form (CSRF enforced), sees it in "my
//! reports" while another resident does not; staff see it in their queue and accept it through
//! the action form (an illegal action is a localized 409 that changes nothing); the dashboard is
//! for staff with the statistics right only.

use serde_json::json;

use crate::common::{Resp, Session, TestApp, post_form};

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).expect("hidden input") + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

async fn count_reports(app: &TestApp) -> i64 {
    let row = sqlx::query("SELECT COUNT(*) FROM reports")
        .fetch_one(&app.store.db.read)
        .await
        .unwrap();
    sqlx::Row::get::<i64, _>(&row, 0)
}

async fn one(app: &TestApp, sql: &str, bind: &str) -> String {
    let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(bind.to_string())
        .fetch_one(&app.store.db.read)
        .await
        .unwrap();
    sqlx::Row::get::<String, _>(&row, 0)
}

fn tiny_jpeg() -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8];
    v.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x0B, 8, 0, 1, 0, 1, 1, 1, 0x11, 0]);
    v.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 0x3F, 0]);
    v.extend_from_slice(&[0x12, 0x34, 0xFF, 0x00, 0x56, 0xFF, 0xD9]);
    v
}

async fn post_photo(app: &TestApp, s: &Session, uri: &str, csrf: &str, photo: &[u8]) -> Resp {
    let b = "----linliboundary";
    let mut body = Vec::new();
    if !csrf.is_empty() {
        body.extend_from_slice(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"_csrf\"\r\n\r\n{csrf}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{b}\r\nContent-Disposition: form-data; name=\"back\"\r\n\r\nme\r\n").as_bytes(),
    );
    body.extend_from_slice(
        format!("--{b}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(photo);
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    let ct = format!("multipart/form-data; boundary={b}");
    app.call("POST", uri, Some(s), Some((ct.as_str(), body)), &[])
        .await
}

#[tokio::test]
async fn reports_pages_for_residents_staff_and_the_dashboard() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let committee = app.login("committee").await;
    let committee3 = app.login("committee3").await;
    let (hh, room) = app.home_of("resident").await;
    // A second resident in another household.
    let other_hh = one(
        &app,
        "SELECT id FROM households WHERE id <> $1 ORDER BY id LIMIT 1",
        &hh,
    )
    .await;
    let admin = app.login("admin").await;
    app.post(
        &admin,
        "/api/v1/users",
        json!({
            "login": "other",
            "display_name": "其他居民",
            "password": crate::common::PASSWORD,
            "bindings": [{ "role": "resident", "household_id": other_hh }],
        }),
    )
    .await
    .expect(201);
    let other = app.login("other").await;

    // The form: home is the default place.
    let page = app.get(&resident, "/me/reports/new").await;
    assert_eq!(page.status.as_u16(), 200);
    let html = page.text();
    assert!(html.contains("我要报事"), "{html}");
    assert!(html.contains(&format!("value=\"{room}\" selected")));
    let once = hidden(&html, "_once");
    let fields = [
        ("_once", once.as_str()),
        ("category", "repair_common"),
        ("description", "5楼楼道灯坏了，晚上看不见"),
        ("place_id", room.as_str()),
        ("public", "1"),
    ];
    // Without the CSRF token: refused, nothing created.
    let before = count_reports(&app).await;
    let no_csrf = post_form(&app, &resident, "/me/reports/new", &fields).await;
    assert_eq!(no_csrf.status.as_u16(), 403);
    assert_eq!(count_reports(&app).await, before);
    // An empty description comes back beside the field.
    let mut with = vec![("_csrf", resident.csrf.as_str())];
    with.extend(fields.iter().map(|(k, v)| {
        if *k == "description" {
            (*k, "")
        } else {
            (*k, *v)
        }
    }));
    let bad = post_form(&app, &resident, "/me/reports/new", &with).await;
    assert_eq!(bad.status.as_u16(), 400, "{}", bad.text());
    assert!(bad.text().contains("field-error"));
    assert_eq!(count_reports(&app).await, before);
    let mut with = vec![("_csrf", resident.csrf.as_str())];
    with.extend(fields.iter().copied());
    let ok = post_form(&app, &resident, "/me/reports/new", &with).await;
    assert_eq!(ok.status.as_u16(), 303, "{}", ok.text());
    let loc = ok.headers["location"].to_str().unwrap().to_string();
    let id = loc.trim_start_matches("/me/reports/").to_string();
    assert_eq!(count_reports(&app).await, before + 1);
    // A double tap creates nothing more.
    let again = post_form(&app, &resident, "/me/reports/new", &with).await;
    assert_eq!(again.headers["location"].to_str().unwrap(), loc);
    assert_eq!(count_reports(&app).await, before + 1);

    // My reports and the detail page with the timeline.
    let mine = app.get(&resident, "/me/reports").await;
    assert_eq!(mine.status.as_u16(), 200);
    assert!(mine.text().contains(&loc));
    assert!(mine.text().contains("待受理"));
    let detail = app.get(&resident, &loc).await;
    assert_eq!(detail.status.as_u16(), 200);
    assert!(detail.text().contains("5楼楼道灯坏了"));
    // Another resident sees neither the report in their list nor its page.
    let theirs = app.get(&other, "/me/reports").await;
    assert_eq!(theirs.status.as_u16(), 200);
    assert!(!theirs.text().contains(&id));
    assert_eq!(app.get(&other, &loc).await.status.as_u16(), 404);
    // Residents have no staff queue.
    assert_eq!(
        app.get(&resident, "/staff/reports").await.status.as_u16(),
        403
    );

    // Staff queue: the community's committee sees it, another community's does not.
    let q = app.get(&committee, "/staff/reports").await;
    assert_eq!(q.status.as_u16(), 200);
    assert!(q.text().contains(&format!("/staff/reports/{id}")));
    assert!(q.text().contains("data-live=\"report.submitted\""));
    let q3 = app.get(&committee3, "/staff/reports").await;
    assert_eq!(q3.status.as_u16(), 200);
    assert!(!q3.text().contains(&id));
    let filtered = app
        .get(
            &committee,
            "/staff/reports?status=closed&category=&overdue=",
        )
        .await;
    assert!(!filtered.text().contains(&id));
    let staff_page = app.get(&committee, &format!("/staff/reports/{id}")).await;
    assert_eq!(staff_page.status.as_u16(), 200);
    assert!(staff_page.text().contains("id=\"act-accept\""));

    // Acting: without CSRF refused; an illegal action is the localized 409; accept works.
    let act = format!("/staff/reports/{id}/act");
    let no_csrf = post_form(&app, &committee, &act, &[("action", "accept")]).await;
    assert_eq!(no_csrf.status.as_u16(), 403);
    let status = |v: serde_json::Value| v["report"]["status"].as_str().unwrap().to_string();
    let now = app
        .get(&committee, &format!("/api/v1/reports/{id}"))
        .await
        .ok();
    assert_eq!(status(now), "submitted");
    let illegal = post_form(
        &app,
        &committee,
        &act,
        &[("_csrf", &committee.csrf), ("action", "sign")],
    )
    .await;
    assert_eq!(illegal.status.as_u16(), 409);
    assert!(illegal.text().contains("id=\"report-flash\""));
    let accepted = post_form(
        &app,
        &committee,
        &act,
        &[
            ("_csrf", &committee.csrf),
            ("action", "accept"),
            ("public_note", "已受理，马上处理"),
            ("internal_note", "内部：联系物业电工"),
        ],
    )
    .await;
    assert_eq!(accepted.status.as_u16(), 303, "{}", accepted.text());
    let now = app
        .get(&committee, &format!("/api/v1/reports/{id}"))
        .await
        .ok();
    assert_eq!(status(now), "accepted");
    // The staff timeline shows the internal note; the resident's only the public one.
    let staff_page = app.get(&committee, &format!("/staff/reports/{id}")).await;
    assert!(staff_page.text().contains("内部：联系物业电工"));
    let detail = app.get(&resident, &loc).await.text();
    assert!(detail.contains("已受理，马上处理"));
    assert!(!detail.contains("内部：联系物业电工"));
    // Another community's committee cannot act on it.
    let foreign = post_form(
        &app,
        &committee3,
        &act,
        &[("_csrf", &committee3.csrf), ("action", "dispatch")],
    )
    .await;
    assert_eq!(foreign.status.as_u16(), 404);

    // Photos from the detail page: CSRF checked, bad images refused beside the form.
    let photos = format!("/reports/{id}/photos");
    let no_csrf = post_photo(&app, &resident, &photos, "", &tiny_jpeg()).await;
    assert_eq!(no_csrf.status.as_u16(), 403);
    let bad = post_photo(&app, &resident, &photos, &resident.csrf, b"not an image").await;
    assert_eq!(bad.status.as_u16(), 400, "{}", bad.text());
    assert!(bad.text().contains("id=\"report-flash\""));
    let up = post_photo(&app, &resident, &photos, &resident.csrf, &tiny_jpeg()).await;
    assert_eq!(up.status.as_u16(), 303, "{}", up.text());
    let detail = app.get(&resident, &loc).await.text();
    assert!(detail.contains(&format!("<img src=\"/api/v1/reports/{id}/photos/")));

    // The similar-reports list before filing offers "me too" (CSRF checked).
    let similar = app
        .get(
            &resident,
            &format!("/me/reports/new?category=repair_common&place_id={room}"),
        )
        .await;
    assert_eq!(similar.status.as_u16(), 200);
    let html = similar.text();
    assert!(html.contains(&format!("/me/reports/{id}/me-too")), "{html}");
    let me_too = format!("/me/reports/{id}/me-too");
    let no_csrf = post_form(&app, &resident, &me_too, &[]).await;
    assert_eq!(no_csrf.status.as_u16(), 403);

    // Through to the return visit, then the resident rates on the page.
    let step = |action: &'static str, extra: serde_json::Value| {
        let mut body = json!({ "action": action });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let property = app.login("property").await;
    for (who, body) in [
        (&committee, step("dispatch", json!({}))),
        (&property, step("sign", json!({}))),
        (
            &property,
            step(
                "reply",
                json!({ "outcome": "solved", "public_note": "已更换灯泡" }),
            ),
        ),
        (&committee, step("review_pass", json!({}))),
    ] {
        app.post(who, &format!("/api/v1/reports/{id}/actions"), body)
            .await
            .ok();
    }
    let detail = app.get(&resident, &loc).await.text();
    assert!(
        detail.contains(&format!("/me/reports/{id}/rate")),
        "{detail}"
    );
    let rate = format!("/me/reports/{id}/rate");
    let no_csrf = post_form(
        &app,
        &resident,
        &rate,
        &[("rating", "5"), ("solved", "yes")],
    )
    .await;
    assert_eq!(no_csrf.status.as_u16(), 403);
    let rated = post_form(
        &app,
        &resident,
        &rate,
        &[
            ("_csrf", &resident.csrf),
            ("rating", "5"),
            ("solved", "yes"),
            ("version", &hidden(&detail, "version")),
        ],
    )
    .await;
    assert_eq!(rated.status.as_u16(), 303, "{}", rated.text());
    let now = app
        .get(&resident, &format!("/api/v1/reports/{id}"))
        .await
        .ok();
    assert_eq!(now["report"]["rating"], 5);
    assert_eq!(now["report"]["status"], "closed");

    // The dashboard.
    let dash = app
        .get(&committee, "/staff/reports/stats?by=category")
        .await;
    assert_eq!(dash.status.as_u16(), 200);
    let html = dash.text();
    assert!(html.contains("<svg") && html.contains("id=\"report-stats\""));
    assert!(html.contains("/api/v1/reports/stats/export?by=category&amp;format=csv"));
    assert_eq!(
        app.get(&resident, "/staff/reports/stats")
            .await
            .status
            .as_u16(),
        403
    );
    app.close().await;
}

/// The rating (回访) is about the reply the resident read. When the report went round again
/// while their page was open — reopened, replied differently, reviewed — a rating from that
/// page is a 409 that changes nothing, and the page shows the new reply to rate.
#[tokio::test]
async fn a_rating_binds_to_the_reply_the_resident_was_shown() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let committee = app.login("committee").await;
    let property = app.login("property").await;
    let (_, room) = app.home_of("resident").await;
    let id = app
        .post(
            &resident,
            "/api/v1/reports",
            json!({ "category": "repair_common", "description": "单元门关不上", "place_id": room }),
        )
        .await
        .expect(201)["report"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let act = |who: &Session, action: &str, extra: serde_json::Value| {
        let mut body = json!({ "action": action });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let uri = format!("/api/v1/reports/{id}/actions");
        let (app, who) = (&app, who.clone());
        async move { app.post(&who, &uri, body).await.ok() }
    };
    act(&committee, "accept", json!({})).await;
    act(&committee, "dispatch", json!({})).await;
    act(&property, "sign", json!({})).await;
    act(
        &property,
        "reply",
        json!({ "outcome": "solved", "public_note": "已调整闭门器" }),
    )
    .await;
    act(&committee, "review_pass", json!({})).await;
    let page = format!("/me/reports/{id}");
    let first = app.get(&resident, &page).await.text();
    assert!(first.contains("已调整闭门器"));
    let shown_version = app
        .get(&resident, &format!("/api/v1/reports/{id}"))
        .await
        .ok()["report"]["version"]
        .to_string();

    // Round again while the page is open: a different reply is now the one to rate.
    act(&committee, "reopen", json!({})).await;
    act(
        &property,
        "reply",
        json!({ "outcome": "unsolvable", "public_note": "门框变形，需更换整扇门" }),
    )
    .await;
    act(&committee, "review_pass", json!({})).await;
    let before = app
        .get(&committee, &format!("/api/v1/reports/{id}"))
        .await
        .ok();
    assert_eq!(before["report"]["status"], "awaiting_visit");

    let rate = format!("/me/reports/{id}/rate");
    let stale = post_form(
        &app,
        &resident,
        &rate,
        &[
            ("_csrf", &resident.csrf),
            ("rating", "5"),
            ("solved", "yes"),
            ("version", &shown_version),
        ],
    )
    .await;
    assert_eq!(stale.status.as_u16(), 409, "{}", stale.text());
    assert_eq!(
        hidden(&first, "version"),
        shown_version,
        "the page posts it"
    );
    let again = stale.text();
    assert!(
        again.contains("id=\"report-flash\"") && again.contains("门框变形"),
        "{again}"
    );
    let after = app
        .get(&committee, &format!("/api/v1/reports/{id}"))
        .await
        .ok();
    assert_eq!(after["report"], before["report"], "nothing changed");
    // A rating form that names no version is not one this page sends.
    let unbound = post_form(
        &app,
        &resident,
        &rate,
        &[
            ("_csrf", &resident.csrf),
            ("rating", "5"),
            ("solved", "yes"),
        ],
    )
    .await;
    assert_eq!(unbound.status.as_u16(), 400, "{}", unbound.text());

    let rated = post_form(
        &app,
        &resident,
        &rate,
        &[
            ("_csrf", &resident.csrf),
            ("rating", "2"),
            ("solved", "no"),
            ("version", &hidden(&again, "version")),
        ],
    )
    .await;
    assert_eq!(rated.status.as_u16(), 303, "{}", rated.text());
    let done = app
        .get(&committee, &format!("/api/v1/reports/{id}"))
        .await
        .ok();
    assert_eq!(done["report"]["rating"], 2);
    assert_eq!(done["report"]["status"], "closed");
    app.close().await;
}

/// A work order says where and who: the address, and for staff the reporter's name, masked
/// phone and household (a technician must know where to go and whom to call).
#[tokio::test]
async fn a_work_order_shows_where_and_who() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let committee = app.login("committee").await;
    let (_, room) = app.home_of("resident").await;
    let created = app
        .post(
            &resident,
            "/api/v1/reports",
            serde_json::json!({ "category": "repair_common", "description": "厨房下水道堵了", "place_id": room }),
        )
        .await
        .expect(201);
    let id = created["report"]["id"].as_str().unwrap().to_string();
    let html = app
        .get(&committee, &format!("/staff/reports/{id}"))
        .await
        .text();
    assert!(
        html.contains("id=\"report-where\"") && html.contains("幸福里社区"),
        "{html:.200}"
    );
    assert!(html.contains("id=\"report-reporter\"") && html.contains("****"));
    let api = app
        .get(&committee, &format!("/api/v1/reports/{id}"))
        .await
        .ok();
    assert!(
        api["reporter"]["phone_masked"]
            .as_str()
            .unwrap()
            .contains("****")
    );
    // The resident's own view: where, but no reporter block about themselves to others.
    let mine = app
        .get(&resident, &format!("/api/v1/reports/{id}"))
        .await
        .ok();
    assert!(mine["reporter"].is_null() && !mine["address"].as_str().unwrap().is_empty());
    app.close().await;
}
