//! The reports web pages: a resident files through the form (CSRF enforced), sees it in "my
//! reports" while another resident does not; staff see it in their queue and accept it through
//! the action form (an illegal action is a localized 409 that changes nothing); the dashboard is
//! for staff with the statistics right only.

use serde_json::json;

use crate::common::{Doc, Resp, Session, TestApp, post_form};

/// The resident's filing form, the rating form and a report page's flash notice.
const NEW_FORM: &str = "main form#report-new[action='/me/reports/new']";
const RATE_FORM: &str = "main form[action$='/rate']";
const FLASH: &str = "main #report-flash[role=status]";

/// The report's description, as its page shows it.
fn description(doc: &Doc) -> String {
    doc.text("main #report-live > section.card > p")
}

/// The notes of the timeline, in order.
fn timeline(doc: &Doc) -> Vec<String> {
    doc.texts("main #report-timeline ol.timeline > li")
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
    let doc = page.doc();
    assert_eq!(doc.text("main h1"), "我要报事");
    assert_eq!(
        doc.attr(
            &format!("{NEW_FORM} select[name=place_id] option[selected]"),
            "value"
        ),
        room,
        "home is the default place"
    );
    let once = doc.hidden(NEW_FORM, "_once");
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
    let doc = bad.doc();
    assert!(
        doc.field_error("description").is_some(),
        "{}",
        doc.main_html()
    );
    doc.assert_inside("#description-error.field-error", NEW_FORM);
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
    let doc = mine.doc();
    let card = doc
        .select(&format!("main #my-reports a[href='{loc}']"))
        .into_iter()
        .next()
        .expect("my report is listed with a link to its page");
    assert!(Doc::within(card, "main"));
    assert_eq!(doc.texts("main #my-reports .tag"), ["待受理"]);
    let detail = app.get(&resident, &loc).await;
    assert_eq!(detail.status.as_u16(), 200);
    assert_eq!(description(&detail.doc()), "5楼楼道灯坏了，晚上看不见");
    // Another resident sees neither the report in their list nor its page.
    let theirs = app.get(&other, "/me/reports").await;
    assert_eq!(theirs.status.as_u16(), 200);
    assert!(
        theirs
            .doc()
            .attrs("main a[href]", "href")
            .iter()
            .all(|h| !h.contains(&id))
    );
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
    let doc = q.doc();
    doc.one(&format!(
        "main section#report-queue[data-live='report.submitted'] table a[href='/staff/reports/{id}']"
    ));
    let q3 = app.get(&committee3, "/staff/reports").await;
    assert_eq!(q3.status.as_u16(), 200);
    assert!(!q3.doc().has(&format!("a[href='/staff/reports/{id}']")));
    assert!(!q3.text().contains(&id));
    let filtered = app
        .get(
            &committee,
            "/staff/reports?status=closed&category=&overdue=",
        )
        .await;
    assert!(
        !filtered
            .doc()
            .has(&format!("a[href='/staff/reports/{id}']"))
    );
    assert!(!filtered.text().contains(&id));
    let staff_page = app.get(&committee, &format!("/staff/reports/{id}")).await;
    assert_eq!(staff_page.status.as_u16(), 200);
    staff_page.doc().assert_inside(
        "button#act-accept[type=submit]",
        &format!("main form.act-form[action='/staff/reports/{id}/act']"),
    );

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
    assert!(!illegal.doc().text(FLASH).is_empty());
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
    let doc = staff_page.doc();
    assert!(
        doc.texts("main ol.timeline .internal-note")
            .iter()
            .any(|n| n.contains("内部：联系物业电工")),
        "{:?}",
        timeline(&doc)
    );
    let detail = app.get(&resident, &loc).await;
    let doc = detail.doc();
    assert!(
        timeline(&doc)
            .iter()
            .any(|e| e.contains("已受理，马上处理")),
        "{:?}",
        timeline(&doc)
    );
    assert!(!doc.has(".internal-note"));
    assert!(!detail.text().contains("内部：联系物业电工"));
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
    assert!(!bad.doc().text(FLASH).is_empty());
    let up = post_photo(&app, &resident, &photos, &resident.csrf, &tiny_jpeg()).await;
    assert_eq!(up.status.as_u16(), 303, "{}", up.text());
    let doc = app.get(&resident, &loc).await.doc();
    let photos = doc.attrs("main section.report-photos img[alt]", "src");
    assert_eq!(photos.len(), 1, "{}", doc.main_html());
    assert!(photos[0].starts_with(&format!("/api/v1/reports/{id}/photos/")));

    // The similar-reports list before filing offers "me too" (CSRF checked).
    let similar = app
        .get(
            &resident,
            &format!("/me/reports/new?category=repair_common&place_id={room}"),
        )
        .await;
    assert_eq!(similar.status.as_u16(), 200);
    let doc = similar.doc();
    doc.one(&format!(
        "main form[method=post][action='/me/reports/{id}/me-too'] button[type=submit]"
    ));
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
    let detail = app.get(&resident, &loc).await.doc();
    assert_eq!(
        detail.attr(RATE_FORM, "action"),
        format!("/me/reports/{id}/rate"),
        "{}",
        detail.main_html()
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
            ("version", &detail.hidden(RATE_FORM, "version")),
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
    let doc = dash.doc();
    assert!(doc.inside("figure svg[role=img]", "main"));
    doc.assert_inside("table#report-stats", "main");
    assert!(
        doc.attrs("main a[download]", "href")
            .contains(&"/api/v1/reports/stats/export?by=category&format=csv".to_string()),
        "{:?}",
        doc.attrs("main a", "href")
    );
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
    let first = app.get(&resident, &page).await.doc();
    assert!(
        timeline(&first).iter().any(|e| e.contains("已调整闭门器")),
        "{:?}",
        timeline(&first)
    );
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
        first.hidden(RATE_FORM, "version"),
        shown_version,
        "the page posts it"
    );
    let again = stale.doc();
    assert!(!again.text(FLASH).is_empty());
    assert!(
        timeline(&again).iter().any(|e| e.contains("门框变形")),
        "{:?}",
        timeline(&again)
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
            ("version", &again.hidden(RATE_FORM, "version")),
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
