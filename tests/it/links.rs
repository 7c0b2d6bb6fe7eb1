//! Every link the product generates resolves for its recipient: each inbox notice's link,
//! opened as the user it was written to, ends on a page (no 404, no dead end), with the
//! navigation kept on the "not found" page.

use std::collections::BTreeSet;

use serde_json::json;

use crate::common::{Session, TestApp};

/// GET `uri` as `s`, following redirects inside the site; the final status and location.
async fn open(app: &TestApp, s: &Session, uri: &str) -> (u16, String, String) {
    let mut at = uri.to_string();
    for _ in 0..5 {
        let r = app.get(s, &at).await;
        match r.headers.get("location").and_then(|v| v.to_str().ok()) {
            Some(next) if r.status.is_redirection() && next.starts_with('/') => {
                at = next.to_string();
            }
            _ => return (r.status.as_u16(), at, r.text()),
        }
    }
    panic!("redirect loop from {uri}");
}

#[tokio::test]
async fn every_generated_link_opens_for_its_recipient() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let committee = app.login("committee").await;
    let (home, room) = app.home_of("resident").await;

    // Notices of every kind: a report filed and dispatched (dispatchers, the unit, the
    // reporter), an SOS (the grid worker and committee), a celebration congratulated.
    let created = app
        .post(
            &resident,
            "/api/v1/reports",
            json!({ "category": "repair_common", "description": "3楼楼道灯不亮，晚上很危险", "place_id": room, "public": true }),
        )
        .await
        .expect(201);
    let report = created["report"]["id"].as_str().unwrap().to_string();
    for action in ["accept", "dispatch"] {
        app.post(
            &committee,
            &format!("/api/v1/reports/{report}/actions"),
            json!({ "action": action }),
        )
        .await
        .ok();
    }
    app.post(&resident, "/api/v1/me/sos", json!({}))
        .await
        .expect(201);
    let c = app
        .post(
            &resident,
            "/api/v1/celebrations",
            json!({"kind": "birth", "title": "孙子满月"}),
        )
        .await
        .expect(201);
    let neighbour = app.neighbour_of(&home, "neighbour").await;
    app.post(
        &neighbour,
        &format!(
            "/api/v1/celebrations/{}/congratulations",
            c["id"].as_str().unwrap()
        ),
        json!({}),
    )
    .await
    .ok();

    let rows = sqlx::query(
        "SELECT DISTINCT u.login, n.link, n.kind FROM notifications n JOIN users u ON u.id = n.user_id WHERE n.link IS NOT NULL ORDER BY u.login, n.link",
    )
    .fetch_all(&app.store.db.read)
    .await
    .unwrap();
    let mut kinds = BTreeSet::new();
    let mut opened = 0;
    for r in &rows {
        let login: String = sqlx::Row::get(r, 0);
        let link: String = sqlx::Row::get(r, 1);
        let kind: String = sqlx::Row::get(r, 2);
        let s = app.login(&login).await;
        let (status, at, body) = open(&app, &s, &link).await;
        assert_eq!(
            status, 200,
            "{kind}: {link} as {login} ended on {at}: {body:.300}"
        );
        kinds.insert(kind.split('.').next().unwrap_or("").to_string());
        opened += 1;
    }
    for k in ["report", "alarm", "celebration"] {
        assert!(kinds.contains(k), "no {k} notice was generated: {kinds:?}");
    }
    assert!(opened >= 5, "only {opened} links");

    // The "not found" page keeps the navigation of a signed-in visitor.
    let r = app.get(&committee, "/no/such/page").await;
    assert_eq!(r.status.as_u16(), 404);
    assert!(
        r.text().contains("href=\"/staff\""),
        "navigation lost on 404"
    );
    app.close().await;
}
