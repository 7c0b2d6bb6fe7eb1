//! 家有喜事: a household shares, neighbours of the same community congratulate once, staff of
//! the community may hide; nobody outside the community sees it.

use serde_json::json;

use crate::common::{TestApp, post_form};

#[tokio::test]
async fn neighbours_congratulate_and_other_communities_never_see() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let committee = app.login("committee").await;
    let committee3 = app.login("committee3").await;
    let (home, _) = app.home_of("resident").await;
    let neighbour = app.neighbour_of(&home, "neighbour").await;

    // Bad input: a clear error, nothing stored.
    let before = app.get(&resident, "/api/v1/celebrations").await.ok();
    let r = app
        .post(
            &resident,
            "/api/v1/celebrations",
            json!({"kind": "party", "title": "x"}),
        )
        .await
        .expect(400);
    assert_eq!(r["code"], "validation.bad_value");
    app.post(
        &resident,
        "/api/v1/celebrations",
        json!({"kind": "birth", "title": "  "}),
    )
    .await
    .expect(400);
    assert_eq!(
        app.get(&resident, "/api/v1/celebrations").await.ok(),
        before
    );

    let c = app
        .post(
            &resident,
            "/api/v1/celebrations",
            json!({"kind": "wedding", "title": "小女出嫁", "message": "欢迎邻居来喝喜酒"}),
        )
        .await
        .expect(201);
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["own"], true);
    // Neighbours know the building, never the room.
    assert!(!c["place"].as_str().unwrap().contains("室"), "{c}");

    // The neighbour sees it and congratulates once; twice counts once; the sharer is told.
    let n = app
        .get(&neighbour, &format!("/api/v1/celebrations/{id}"))
        .await
        .ok();
    assert_eq!(
        (n["own"].clone(), n["congratulations"].clone()),
        (json!(false), json!(0))
    );
    let uri = format!("/api/v1/celebrations/{id}/congratulations");
    assert_eq!(
        app.post(&neighbour, &uri, json!({})).await.ok()["congratulations"],
        1
    );
    assert_eq!(
        app.post(&neighbour, &uri, json!({})).await.ok()["congratulations"],
        1
    );
    app.post(&resident, &uri, json!({})).await.expect(409);
    let inbox = app.get(&resident, "/api/v1/inbox").await.ok();
    assert!(inbox.to_string().contains("小女出嫁"), "{inbox}");

    // Another community's staff: not found, not listed; the household record shows it to its own.
    app.get(&committee3, &format!("/api/v1/celebrations/{id}"))
        .await
        .expect(404);
    let list3 = app.get(&committee3, "/api/v1/celebrations").await.ok();
    assert!(!list3.to_string().contains(&id));
    app.post(
        &committee3,
        &format!("/api/v1/celebrations/{id}/hide"),
        json!({}),
    )
    .await
    .expect(404);
    let record = app
        .get(&resident, &format!("/api/v1/households/{home}/linked"))
        .await
        .ok();
    assert_eq!(record["celebrations"][0]["id"], id.as_str());

    // The committee hides it: the neighbour no longer sees it, the committee still does.
    let hidden = app
        .post(
            &committee,
            &format!("/api/v1/celebrations/{id}/hide"),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(hidden["hidden"], true);
    app.get(&neighbour, &format!("/api/v1/celebrations/{id}"))
        .await
        .expect(404);
    app.post(&neighbour, &uri, json!({})).await.expect(404);
    assert!(
        app.get(&committee, "/api/v1/celebrations")
            .await
            .ok()
            .to_string()
            .contains(&id)
    );
    // A resident cannot hide.
    app.post(
        &neighbour,
        &format!("/api/v1/celebrations/{id}/hide"),
        json!({}),
    )
    .await
    .expect(403);
    app.close().await;
}

#[tokio::test]
async fn residents_share_and_congratulate_on_their_page() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let (home, _) = app.home_of("resident").await;
    let neighbour = app.neighbour_of(&home, "neighbour").await;
    let page = app.get(&resident, "/me/celebrations").await;
    assert_eq!(page.status.as_u16(), 200);
    assert!(page.text().contains("id=\"celebration-share\""));
    // A missing title comes back next to its field, in words.
    let r = post_form(
        &app,
        &resident,
        "/me/celebrations",
        &[
            ("_csrf", &resident.csrf),
            ("kind", "birth"),
            ("title", ""),
            ("message", ""),
        ],
    )
    .await;
    assert_eq!(r.status.as_u16(), 400);
    assert!(r.text().contains("field-error"));
    let r = post_form(
        &app,
        &resident,
        "/me/celebrations",
        &[
            ("_csrf", &resident.csrf),
            ("kind", "birth"),
            ("title", "孙子满月"),
            ("message", ""),
        ],
    )
    .await;
    assert_eq!(r.status.as_u16(), 303);
    let list = app.get(&neighbour, "/api/v1/celebrations").await.ok();
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["title"] == "孙子满月")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post_form(
        &app,
        &neighbour,
        &format!("/me/celebrations/{id}/congratulate"),
        &[("_csrf", &neighbour.csrf)],
    )
    .await;
    assert_eq!(r.status.as_u16(), 303);
    let html = app.get(&neighbour, "/me/celebrations").await.text();
    assert!(html.contains("您已道喜"));
    // The resident's home shows the service tile.
    assert!(
        app.get(&resident, "/me")
            .await
            .text()
            .contains("href=\"/me/celebrations\"")
    );
    // Staff moderate on their page; residents cannot open it.
    let committee = app.login("committee").await;
    assert_eq!(
        app.get(&committee, "/staff/celebrations")
            .await
            .status
            .as_u16(),
        200
    );
    assert_eq!(
        app.get(&resident, "/staff/celebrations")
            .await
            .status
            .as_u16(),
        403
    );
    app.close().await;
}
