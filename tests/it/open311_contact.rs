//! Open311 POST contact fields and locating by point. Contact details are stored sealed (phone
//! encrypted + blind index + mask, e-mail encrypted + mask), shown masked to staff (API and
//! page), never to Open311 readers nor residents; a phone of a registered resident links the
//! report to them (their household). A bare `lat`/`long` is placed in the community whose map
//! area contains it; a point in no community, or in one outside the key's area, is a 400 error
//! list that creates nothing. Map areas are set through `PUT /api/v1/places/{id}/geo`, scoped.

use serde_json::{Value, json};

use crate::common::{Resp, Session, TestApp, demo_resident};

fn encode(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

async fn post_form(app: &TestApp, pairs: &[(&str, &str)]) -> Resp {
    app.call(
        "POST",
        "/open311/v2/requests.json",
        None,
        Some((
            "application/x-www-form-urlencoded",
            encode(pairs).into_bytes(),
        )),
        &[],
    )
    .await
}

async fn api_token(app: &TestApp, s: &Session, actions: &[&str], place_id: &str) -> String {
    app.post(
        s,
        "/api/v1/auth/tokens",
        json!({"name": "Open311 client", "actions": actions, "place_id": place_id, "expires_in_days": 30}),
    )
    .await
    .expect(201)["token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn report_count(app: &TestApp) -> i64 {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM reports")
        .fetch_one(&app.store.db.read)
        .await
        .unwrap();
    sqlx::Row::get::<i64, _>(&row, "n")
}

#[track_caller]
fn error_description(r: Resp) -> String {
    assert_eq!(r.status.as_u16(), 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v[0]["code"], 400);
    v[0]["description"].as_str().unwrap().to_string()
}

fn created_id(r: Resp) -> String {
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    r.json()[0]["service_request_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn contact_fields_are_sealed_masked_for_staff_hidden_from_others_and_linked_by_phone() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let resident = app.login("resident").await;
    let community = app.place_id("community", "幸福里社区").await;
    let key = api_token(&app, &committee, &["report_create"], &community).await;
    let (_, _, phone) = demo_resident();

    // Bad phone or e-mail: the spec's error list, nothing created.
    let before = report_count(&app).await;
    for (field, value) in [("phone", "12345"), ("email", "not-an-address")] {
        let d = error_description(
            post_form(
                &app,
                &[
                    ("api_key", key.as_str()),
                    ("service_code", "repair_common"),
                    ("address_id", community.as_str()),
                    ("description", "路灯不亮"),
                    (field, value),
                ],
            )
            .await,
        );
        assert!(
            d.contains(if field == "phone" {
                "手机号"
            } else {
                "邮箱"
            }),
            "{d}"
        );
    }
    assert_eq!(report_count(&app).await, before);

    // The resident's registered phone, written the way people type it.
    let typed = format!("+86 {} {} {}", &phone[..3], &phone[3..7], &phone[7..]);
    let id = created_id(
        post_form(
            &app,
            &[
                ("api_key", key.as_str()),
                ("service_code", "repair_common"),
                ("address_id", community.as_str()),
                ("description", "3栋门口路灯不亮"),
                ("first_name", "小明"),
                ("last_name", "王"),
                ("email", "wang.xm@example.org"),
                ("phone", typed.as_str()),
                ("device_id", "dev-42"),
                ("account_id", "acct-7"),
            ],
        )
        .await,
    );

    // At rest: encrypted, blind-indexed like persons' phones, masked.
    let row = sqlx::query(
        "SELECT phone_enc, phone_bidx, phone_masked, email_enc, email_masked, user_id FROM report_contacts WHERE report_id = $1",
    )
    .bind(id.clone())
    .fetch_one(&app.store.db.read)
    .await
    .unwrap();
    let get = |c: &str| sqlx::Row::get::<Option<String>, _>(&row, c);
    let enc = get("phone_enc").unwrap();
    assert!(
        !enc.contains(&phone[3..]),
        "the phone is not stored in clear"
    );
    assert_eq!(app.store.cipher.decrypt(&enc).unwrap(), phone);
    assert_eq!(
        get("phone_bidx").unwrap(),
        app.store.cipher.blind_index("phone", &phone)
    );
    assert_eq!(
        get("phone_masked").unwrap(),
        linli_core::phone::mask(&phone)
    );
    let email_enc = get("email_enc").unwrap();
    assert!(!email_enc.contains("wang.xm"));
    assert_eq!(
        app.store.cipher.decrypt(&email_enc).unwrap(),
        "wang.xm@example.org"
    );
    let resident_id = resident.user["id"].as_str().unwrap();
    assert_eq!(get("user_id").as_deref(), Some(resident_id));

    // Staff see the masks (never the numbers) in the API and on the page.
    let v = app
        .get(&committee, &format!("/api/v1/reports/{id}"))
        .await
        .ok();
    let c = &v["contact"];
    assert_eq!(c["phone"], linli_core::phone::mask(&phone).as_str());
    assert_eq!(c["email"], "w***@example.org");
    assert_eq!(c["first_name"], "小明");
    assert_eq!(c["last_name"], "王");
    assert_eq!(c["device_id"], "dev-42");
    assert_eq!(c["account_id"], "acct-7");
    assert_eq!(c["user_id"], resident_id);
    assert!(!v.to_string().contains(&phone));
    let page = app
        .get(&committee, &format!("/staff/reports/{id}"))
        .await
        .text();
    assert!(page.contains("id=\"report-contact\""), "{page}");
    assert!(page.contains(&linli_core::phone::mask(&phone)));
    assert!(page.contains("王小明"));
    assert!(!page.contains(&phone));

    // Linked: the report is the resident's household's, in their "my reports"; they do not
    // see the contact block.
    let mine = app.get(&resident, "/api/v1/reports?mine=true").await.ok();
    assert!(
        mine["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str()),
        "{mine}"
    );
    let theirs = app
        .get(&resident, &format!("/api/v1/reports/{id}"))
        .await
        .ok();
    assert!(theirs.get("contact").is_none(), "{theirs}");

    // Open311 readers (the filing key, and anyone once it is published) never see contacts.
    app.post(
        &committee,
        &format!("/api/v1/reports/{id}/actions"),
        json!({ "action": "accept" }),
    )
    .await
    .ok();
    for uri in [
        format!("/open311/v2/requests/{id}.json?api_key={key}"),
        format!("/open311/v2/requests/{id}.xml?api_key={key}"),
        format!("/open311/v2/requests.json?api_key={key}"),
    ] {
        let body = app.call("GET", &uri, None, None, &[]).await.text();
        assert!(body.contains(&id), "{uri}: {body}");
        for secret in [&phone[7..], "wang.xm", "小明", "dev-42", "acct-7", "****"] {
            assert!(!body.contains(secret), "{uri} leaks {secret}: {body}");
        }
    }

    // An unknown phone is stored but links nobody.
    let id2 = created_id(
        post_form(
            &app,
            &[
                ("api_key", key.as_str()),
                ("service_code", "repair_common"),
                ("address_id", community.as_str()),
                ("description", "井盖松动"),
                ("phone", "13900001111"),
            ],
        )
        .await,
    );
    let v = app
        .get(&committee, &format!("/api/v1/reports/{id2}"))
        .await
        .ok();
    assert_eq!(v["contact"]["phone"], "139****1111");
    assert_eq!(v["contact"]["user_id"], Value::Null);
    assert_eq!(v["report"]["household_id"], Value::Null);
    app.close().await;
}

#[tokio::test]
async fn a_point_is_placed_in_the_community_whose_area_contains_it() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let committee3 = app.login("committee3").await;
    let street = app.login("street").await;
    let xingfu = app.place_id("community", "幸福里社区").await;
    let jiangtan = app.place_id("community", "江滩社区").await;
    let street_id = {
        let p = app.place_path(&xingfu).await;
        p.split('/')
            .filter(|x| !x.is_empty())
            .nth(2)
            .unwrap()
            .to_string()
    };
    let street_key = api_token(&app, &street, &["report_create"], &street_id).await;
    let community_key = api_token(&app, &committee, &["report_create"], &xingfu).await;

    // Inside 江滩社区's boundary, with a key for the whole street: placed there.
    let id = created_id(
        post_form(
            &app,
            &[
                ("api_key", street_key.as_str()),
                ("service_code", "environment"),
                ("lat", "30.5905"),
                ("long", "114.2960"),
                ("description", "江边垃圾堆放"),
            ],
        )
        .await,
    );
    let v = app
        .get(&street, &format!("/api/v1/reports/{id}"))
        .await
        .ok();
    assert_eq!(v["report"]["place_id"], jiangtan.as_str());
    assert_eq!(v["report"]["lat"], 30.5905);

    // A point in no community: 400 with the spec's error list (en and zh), nothing created.
    let before = report_count(&app).await;
    let d = error_description(
        post_form(
            &app,
            &[
                ("api_key", street_key.as_str()),
                ("service_code", "environment"),
                ("lat", "30.5000"),
                ("long", "114.3000"),
                ("description", "垃圾堆放"),
            ],
        )
        .await,
    );
    assert!(
        d.contains("不在任何社区") && d.contains("address_id"),
        "{d}"
    );
    // A point in a community outside the key's area: 400 naming it.
    let d = error_description(
        post_form(
            &app,
            &[
                ("api_key", community_key.as_str()),
                ("service_code", "environment"),
                ("lat", "30.5905"),
                ("long", "114.2960"),
                ("description", "垃圾堆放"),
            ],
        )
        .await,
    );
    assert!(d.contains("江滩社区"), "{d}");
    assert_eq!(report_count(&app).await, before);

    // Store lookup: the boundary first, then the nearest centre within its radius.
    let hit = app
        .store
        .community_at(30.5800, 114.2730)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (hit.place_id.as_str(), hit.matched_by.as_str()),
        (xingfu.as_str(), "boundary")
    );
    let near = app
        .store
        .community_at(30.5845, 114.2730)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (near.place_id.as_str(), near.matched_by.as_str()),
        (xingfu.as_str(), "radius")
    );
    assert!(app.store.community_at(30.5, 114.3).await.unwrap().is_none());

    // Map areas through the API: scoped, validated, audited.
    let geo = app
        .get(&committee, &format!("/api/v1/places/{xingfu}/geo"))
        .await
        .ok();
    assert_eq!(geo["radius_m"], 600);
    assert_eq!(geo["boundary"].as_array().unwrap().len(), 4);
    app.call(
        "PUT",
        &format!("/api/v1/places/{xingfu}/geo"),
        Some(&committee3),
        Some((
            "application/json",
            json!({"lat": 30.58, "lon": 114.27, "radius_m": 500})
                .to_string()
                .into_bytes(),
        )),
        &[],
    )
    .await
    .expect(404);
    let bad = app
        .call(
            "PUT",
            &format!("/api/v1/places/{xingfu}/geo"),
            Some(&committee),
            Some((
                "application/json",
                json!({"lat": 30.58, "lon": 114.27, "radius_m": 0})
                    .to_string()
                    .into_bytes(),
            )),
            &[],
        )
        .await
        .expect(400);
    assert_eq!(bad["code"], "place.geo.invalid");
    // Move 幸福里's area to where the unmatched point was: now it is found there.
    let moved = json!({"lat": 30.5, "lon": 114.3, "radius_m": 300,
        "boundary": [[30.498, 114.298], [30.498, 114.302], [30.502, 114.302], [30.502, 114.298]]});
    app.call(
        "PUT",
        &format!("/api/v1/places/{xingfu}/geo"),
        Some(&committee),
        Some(("application/json", moved.to_string().into_bytes())),
        &[],
    )
    .await
    .ok();
    let hit = app.store.community_at(30.5, 114.3).await.unwrap().unwrap();
    assert_eq!(hit.place_id, xingfu);
    let audit = sqlx::query("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'place.geo'")
        .fetch_one(&app.store.db.read)
        .await
        .unwrap();
    assert_eq!(sqlx::Row::get::<i64, _>(&audit, "n"), 1);
    app.close().await;
}

/// Put a place's map area as `s`.
async fn put_geo(app: &TestApp, s: &Session, place: &str, geo: Value) -> Resp {
    app.call(
        "PUT",
        &format!("/api/v1/places/{place}/geo"),
        Some(s),
        Some(("application/json", geo.to_string().into_bytes())),
        &[],
    )
    .await
}

fn boxed(lat0: f64, lon0: f64, lat1: f64, lon1: f64) -> Value {
    json!({"lat": (lat0 + lat1) / 2.0, "lon": (lon0 + lon1) / 2.0, "radius_m": 300,
           "boundary": [[lat0, lon0], [lat0, lon1], [lat1, lon1], [lat1, lon0]]})
}

/// Issue #13 (round 2), finding 4: a committee could redraw its community's map area over
/// another community's, so that reports located only by a point there landed with it. Areas
/// now nest and do not overlap: a refusal names the place in the way, and nothing changes.
#[tokio::test]
async fn map_areas_nest_and_do_not_overlap() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let committee3 = app.login("committee3").await;
    let xingfu = app.place_id("community", "幸福里社区").await;
    let xincun = app.place_id("community", "新村社区").await;
    let xingfu_path = app.place_path(&xingfu).await;
    let grid = app.place_id_in("grid", "第一网格", &xingfu_path).await;
    let audit = |app: &TestApp| {
        let db = app.store.db.read.clone();
        async move {
            sqlx::Row::get::<i64, _>(
                &sqlx::query("SELECT COUNT(*) FROM audit_log WHERE action = 'place.geo'")
                    .fetch_one(&db)
                    .await
                    .unwrap(),
                0,
            )
        }
    };

    // 新村's committee draws its area over 幸福里's (demo box 30.576–30.584, 114.268–114.278).
    let r = put_geo(
        &app,
        &committee3,
        &xincun,
        boxed(30.577, 114.269, 30.583, 114.277),
    )
    .await
    .expect(409);
    assert_eq!(r["code"], "place.geo.overlaps");
    assert!(r["message"].as_str().unwrap().contains("幸福里社区"), "{r}");
    // Nothing changed: the point is still 幸福里's, 新村 keeps its area.
    let hit = app
        .store
        .community_at(30.58, 114.273)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hit.place_id, xingfu);
    assert_eq!(audit(&app).await, 0);
    // A circle (no boundary) reaching into 幸福里 is refused the same way.
    let r = put_geo(
        &app,
        &committee3,
        &xincun,
        json!({"lat": 30.5860, "lon": 114.2800, "radius_m": 800}),
    )
    .await
    .expect(409);
    assert_eq!(r["code"], "place.geo.overlaps");
    // Sharing a border is fine: 新村 right next to 幸福里's east edge.
    put_geo(
        &app,
        &committee3,
        &xincun,
        boxed(30.576, 114.278, 30.584, 114.285),
    )
    .await
    .ok();

    // A grid's area lies inside its community's.
    let r = put_geo(
        &app,
        &committee,
        &grid,
        boxed(30.580, 114.270, 30.590, 114.276),
    )
    .await
    .expect(409);
    assert_eq!(r["code"], "place.geo.outside_parent");
    assert!(r["message"].as_str().unwrap().contains("幸福里社区"), "{r}");
    put_geo(
        &app,
        &committee,
        &grid,
        boxed(30.576, 114.268, 30.580, 114.273),
    )
    .await
    .ok();
    // …and the community cannot shrink away from its grid's area.
    let r = put_geo(
        &app,
        &committee,
        &xingfu,
        boxed(30.5805, 114.268, 30.584, 114.278),
    )
    .await
    .expect(409);
    assert_eq!(r["code"], "place.geo.child_outside");
    assert!(r["message"].as_str().unwrap().contains("第一网格"), "{r}");
    // A boundary that crosses itself is no area; the centre lies inside its boundary.
    let r = put_geo(
        &app,
        &committee,
        &xingfu,
        json!({"lat": 30.58, "lon": 114.273, "radius_m": 300,
               "boundary": [[30.576, 114.268], [30.584, 114.278], [30.576, 114.278], [30.584, 114.268]]}),
    )
    .await
    .expect(400);
    assert_eq!(r["code"], "place.geo.invalid");
    let r = put_geo(
        &app,
        &committee,
        &xingfu,
        json!({"lat": 30.59, "lon": 114.273, "radius_m": 300,
               "boundary": [[30.576, 114.268], [30.576, 114.278], [30.584, 114.278], [30.584, 114.268]]}),
    )
    .await
    .expect(400);
    assert_eq!(r["code"], "place.geo.centre_outside");
    assert_eq!(audit(&app).await, 2, "only the two accepted areas");
    app.close().await;
}
