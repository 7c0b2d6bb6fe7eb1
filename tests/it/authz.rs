//! The authorization matrix: for every endpoint, a caller scoped to one community never sees or
//! changes another community's data; a resident sees only their household; a token only its
//! scope. A new endpoint fails `every_endpoint_is_in_the_matrix` until it is listed here.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use linli_core::auth::{Action, Grant};

use crate::common::{Session, TestApp, fresh_id};

/// Every operation, with how the matrix exercises it.
const MATRIX: &[(&str, &str, &str)] = &[
    (
        "GET",
        "/api/v1/celebrations",
        "own community only (celebrations.rs)",
    ),
    (
        "POST",
        "/api/v1/celebrations",
        "own household only (celebrations.rs)",
    ),
    (
        "GET",
        "/api/v1/celebrations/{id}",
        "other community: 404 (celebrations.rs)",
    ),
    (
        "POST",
        "/api/v1/celebrations/{id}/congratulations",
        "other community: 404 (celebrations.rs)",
    ),
    (
        "POST",
        "/api/v1/celebrations/{id}/hide",
        "other community: 404; residents: 403 (celebrations.rs)",
    ),
    ("GET", "/api/v1/auth/me", "own identity only"),
    ("GET", "/api/v1/auth/tokens", "own tokens only"),
    ("POST", "/api/v1/auth/tokens", "token outside own area: 403"),
    (
        "DELETE",
        "/api/v1/auth/tokens/{id}",
        "another user's token: 404",
    ),
    ("POST", "/api/v1/auth/login", "public"),
    ("POST", "/api/v1/auth/logout", "public"),
    ("POST", "/api/v1/auth/password", "own account only"),
    ("GET", "/api/v1/places", "list filtered by scope"),
    ("POST", "/api/v1/places", "parent outside scope: 404"),
    ("GET", "/api/v1/places/{id}", "outside scope: 404"),
    ("PATCH", "/api/v1/places/{id}", "outside scope: 404"),
    (
        "GET",
        "/api/v1/places/{id}/geo",
        "outside scope: 404 (places_geo.rs)",
    ),
    (
        "PUT",
        "/api/v1/places/{id}/geo",
        "outside scope: 404 (places_geo.rs)",
    ),
    ("GET", "/api/v1/orgs", "list filtered by scope"),
    ("POST", "/api/v1/orgs", "place outside scope: 403/404"),
    ("GET", "/api/v1/orgs/{id}", "outside scope: 404"),
    ("GET", "/api/v1/labels", "configuration, same for all"),
    ("POST", "/api/v1/labels", "admins only: 403"),
    ("GET", "/api/v1/households", "list filtered by scope"),
    ("POST", "/api/v1/households", "room outside scope: 404"),
    ("GET", "/api/v1/households/{id}", "outside scope: 404"),
    (
        "GET",
        "/api/v1/households/{id}/linked",
        "outside scope: 404; sections by capability (household_record.rs)",
    ),
    ("PATCH", "/api/v1/households/{id}", "outside scope: 404"),
    (
        "POST",
        "/api/v1/households/{id}/members",
        "outside scope: 404",
    ),
    ("GET", "/api/v1/persons", "list filtered by scope"),
    ("GET", "/api/v1/persons/{id}", "outside scope: 404"),
    ("PATCH", "/api/v1/persons/{id}", "outside scope: 404"),
    ("POST", "/api/v1/persons/{id}/reveal", "outside scope: 404"),
    (
        "POST",
        "/api/v1/persons/{id}/move-out",
        "outside scope: 404",
    ),
    (
        "GET",
        "/api/v1/person-links",
        "requests about persons of the caller's area only (registry.rs)",
    ),
    (
        "POST",
        "/api/v1/person-links/{id}/confirm",
        "outside scope (and the asking side): 404 (registry.rs)",
    ),
    (
        "POST",
        "/api/v1/person-links/{id}/decline",
        "outside scope (and the asking side): 404 (registry.rs)",
    ),
    ("GET", "/api/v1/me/household", "own household only"),
    ("GET", "/api/v1/me/export", "own household only"),
    ("POST", "/api/v1/me/corrections", "own household only"),
    ("GET", "/api/v1/corrections", "list filtered by scope"),
    (
        "POST",
        "/api/v1/corrections/{id}/decision",
        "outside scope: 404",
    ),
    ("GET", "/api/v1/inbox", "own notices only (notify.rs)"),
    ("GET", "/api/v1/inbox/unread-count", "own notices only"),
    (
        "POST",
        "/api/v1/inbox/{id}/read",
        "another user's notice: 404",
    ),
    ("POST", "/api/v1/inbox/read-all", "own notices only"),
    ("GET", "/api/v1/me/channels", "own channels only"),
    ("PUT", "/api/v1/me/channels", "own channels only"),
    ("GET", "/api/v1/follows", "own follows only"),
    ("POST", "/api/v1/follows", "entity outside area: 404"),
    ("DELETE", "/api/v1/follows", "own follows only"),
    ("GET", "/api/v1/webhooks", "list filtered by scope"),
    ("POST", "/api/v1/webhooks", "place outside scope: 404"),
    ("GET", "/api/v1/webhooks/{id}", "outside scope: 404"),
    ("PATCH", "/api/v1/webhooks/{id}", "outside scope: 404"),
    ("DELETE", "/api/v1/webhooks/{id}", "outside scope: 404"),
    ("POST", "/api/v1/webhooks/{id}/ping", "outside scope: 404"),
    (
        "POST",
        "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
        "outside scope: 404 (webhooks_web.rs)",
    ),
    (
        "GET",
        "/api/v1/webhooks/{id}/deliveries",
        "outside scope: 404",
    ),
    ("GET", "/api/v1/users", "list filtered by scope"),
    (
        "GET",
        "/api/v1/roles",
        "custom roles of own area (roles.rs)",
    ),
    (
        "POST",
        "/api/v1/roles",
        "beyond own rights: 403; other area: 404 (roles.rs)",
    ),
    ("GET", "/api/v1/roles/{id}", "outside scope: 404 (roles.rs)"),
    (
        "PATCH",
        "/api/v1/roles/{id}",
        "outside scope: 404 (roles.rs)",
    ),
    (
        "DELETE",
        "/api/v1/roles/{id}",
        "outside scope: 404; held: 409 (roles.rs)",
    ),
    ("POST", "/api/v1/users", "binding outside scope: 403"),
    (
        "POST",
        "/api/v1/users/{id}/disable",
        "account outside scope: 404; bound elsewhere too: 403 (accounts.rs)",
    ),
    (
        "POST",
        "/api/v1/users/{id}/enable",
        "account outside scope: 404; bound elsewhere too: 403 (accounts.rs)",
    ),
    ("GET", "/api/v1/audit", "list filtered by scope"),
    (
        "GET",
        "/api/v1/audit/verify",
        "whole-tree auditors only: 403",
    ),
    (
        "GET",
        "/api/v1/registry/import/template",
        "import right only",
    ),
    (
        "POST",
        "/api/v1/registry/import/households",
        "rooms outside scope are unknown",
    ),
    (
        "GET",
        "/api/v1/registry/export/{what}",
        "rows filtered by scope",
    ),
    (
        "GET",
        "/api/v1/reports",
        "visibility filtered in SQL (reports.rs)",
    ),
    (
        "POST",
        "/api/v1/reports",
        "own community / ReportCreate scope (reports.rs)",
    ),
    (
        "GET",
        "/api/v1/reports/duplicates",
        "own community or scope: 404",
    ),
    ("GET", "/api/v1/reports/stats", "ReportStats scope"),
    ("GET", "/api/v1/reports/stats/export", "ReportStats scope"),
    (
        "GET",
        "/api/v1/reports/{id}",
        "not visible: 404 (reports.rs)",
    ),
    (
        "POST",
        "/api/v1/reports/{id}/actions",
        "not visible: 404, no right: 403",
    ),
    (
        "GET",
        "/api/v1/reports/grab-pool",
        "own units' grab jobs in own scope only (repairs.rs)",
    ),
    (
        "GET",
        "/api/v1/reports/{id}/assignees",
        "not visible: 404, cannot assign: 403 (repairs.rs)",
    ),
    ("POST", "/api/v1/reports/{id}/me-too", "not visible: 404"),
    ("POST", "/api/v1/reports/{id}/photos", "not visible: 404"),
    (
        "GET",
        "/api/v1/reports/{id}/photos/{photo_id}",
        "not visible: 404",
    ),
    (
        "GET",
        "/api/v1/report-categories",
        "configuration, same for all",
    ),
    ("GET", "/api/v1/routing-rules", "rules of the area"),
    (
        "POST",
        "/api/v1/routing-rules",
        "RoutingAdmin over the area",
    ),
    (
        "GET",
        "/api/v1/work-calendar",
        "configuration, same for all",
    ),
    ("POST", "/api/v1/work-calendar", "RoutingAdmin only: 403"),
    (
        "GET",
        "/api/v1/work-calendar/{year}",
        "the same calendar for every signed-in caller (catalogue_web.rs)",
    ),
    // Access (tests/it/access.rs checks each of these across communities).
    ("GET", "/api/v1/access/gates", "list filtered by scope"),
    ("POST", "/api/v1/access/gates", "place outside scope: 404"),
    ("GET", "/api/v1/access/gates/{id}", "outside scope: 404"),
    ("PATCH", "/api/v1/access/gates/{id}", "outside scope: 404"),
    ("GET", "/api/v1/access/records", "list filtered by scope"),
    (
        "POST",
        "/api/v1/access/records",
        "gate outside token scope: 404",
    ),
    (
        "GET",
        "/api/v1/access/stats/hourly",
        "counts filtered by scope",
    ),
    ("GET", "/api/v1/access/alerts", "list filtered by scope"),
    ("GET", "/api/v1/access/blacklist", "list filtered by scope"),
    (
        "POST",
        "/api/v1/access/blacklist",
        "place outside scope: 404",
    ),
    (
        "DELETE",
        "/api/v1/access/blacklist/{id}",
        "outside scope: 404",
    ),
    ("GET", "/api/v1/access/vehicles", "other household: 404"),
    ("POST", "/api/v1/access/vehicles", "other household: 404"),
    (
        "DELETE",
        "/api/v1/access/vehicles/{id}",
        "other household: 404",
    ),
    ("GET", "/api/v1/access/settings", "access roles only: 403"),
    (
        "PUT",
        "/api/v1/access/settings",
        "whole-tree device admins only: 403",
    ),
    ("GET", "/api/v1/access/passes", "own household / scope"),
    ("POST", "/api/v1/access/passes", "other household: 404"),
    ("GET", "/api/v1/access/passes/{id}", "other household: 404"),
    (
        "GET",
        "/api/v1/access/passes/{id}/qr.svg",
        "other household: 404",
    ),
    (
        "POST",
        "/api/v1/access/passes/{id}/revoke",
        "other household: 404",
    ),
    (
        "POST",
        "/api/v1/access/verify",
        "gate outside token scope: 404",
    ),
    (
        "GET",
        "/api/v1/iot/devices",
        "list filtered by scope (tests/it/iot.rs)",
    ),
    ("POST", "/api/v1/iot/devices", "place outside scope: 404"),
    ("GET", "/api/v1/iot/devices/{id}", "outside scope: 404"),
    (
        "POST",
        "/api/v1/iot/devices/{id}/token",
        "outside scope: 404",
    ),
    (
        "GET",
        "/api/v1/iot/devices/{id}/telemetry",
        "outside scope: 404",
    ),
    (
        "GET",
        "/api/v1/iot/rules",
        "defaults plus overrides in scope",
    ),
    (
        "POST",
        "/api/v1/iot/rules",
        "place/device outside scope: 404; defaults: whole tree only",
    ),
    ("POST", "/api/v1/iot/telemetry", "device token only"),
    ("POST", "/api/v1/iot/event", "device token only"),
    (
        "GET",
        "/api/v1/alarms",
        "list filtered by scope (tests/it/iot.rs)",
    ),
    (
        "GET",
        "/api/v1/alarms/{id}",
        "outside scope: 404 (tests/it/iot.rs)",
    ),
    ("POST", "/api/v1/alarms/{id}/ack", "outside scope: 404"),
    ("POST", "/api/v1/alarms/{id}/clear", "outside scope: 404"),
    ("POST", "/api/v1/alarms/{id}/assign", "outside scope: 404"),
    ("POST", "/api/v1/alarms/{id}/comment", "outside scope: 404"),
    ("POST", "/api/v1/me/sos", "own person only"),
    ("POST", "/api/v1/me/checkin", "own person only"),
    (
        "GET",
        "/api/v1/persons/{id}/care-contacts",
        "outside scope: 404",
    ),
    (
        "PUT",
        "/api/v1/persons/{id}/care-contacts",
        "outside scope: 404 (tests/it/iot.rs)",
    ),
];

#[test]
fn every_endpoint_is_in_the_matrix() {
    let (_, spec) = linli_server::api_parts();
    let v = serde_json::to_value(&spec).unwrap();
    let mut ops = BTreeSet::new();
    for (path, item) in v["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert((method.to_uppercase(), path.clone()));
        }
    }
    let listed: BTreeSet<(String, String)> = MATRIX
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = ops.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&ops).collect();
    assert!(
        missing.is_empty(),
        "endpoints missing from the authorization matrix: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "matrix lists endpoints that no longer exist: {stale:?}"
    );
}

/// Household id → room path, for checking where listed rows live.
async fn household_path(app: &TestApp, id: &str) -> String {
    let g = Grant::system(Action::HouseholdRead);
    let h = app.store.household(&g, None, id).await.unwrap();
    app.place_path(&h.room_id).await
}

async fn assert_persons_within(
    app: &TestApp,
    s: &Session,
    prefixes: &[String],
    query: &str,
) -> usize {
    let v = app
        .get(s, &format!("/api/v1/persons?limit=500{query}"))
        .await
        .ok();
    let items = v["items"].as_array().unwrap();
    for p in items {
        let path = household_path(app, p["household_id"].as_str().unwrap()).await;
        assert!(
            prefixes.iter().any(|x| path.starts_with(x)),
            "{} sees person outside its area: {path}",
            s.user["login"]
        );
    }
    v["total"].as_u64().unwrap() as usize
}

async fn assert_households_within(app: &TestApp, s: &Session, prefixes: &[String]) -> usize {
    let v = app.get(s, "/api/v1/households?limit=500").await.ok();
    for h in v["items"].as_array().unwrap() {
        let path = app.place_path(h["room_id"].as_str().unwrap()).await;
        assert!(
            prefixes.iter().any(|x| path.starts_with(x)),
            "{} sees household outside its area",
            s.user["login"]
        );
    }
    v["total"].as_u64().unwrap() as usize
}

#[tokio::test]
async fn scoped_lists_never_leak() {
    let app = TestApp::demo().await;
    let c1 = app
        .place_path(&app.place_id("community", "幸福里社区").await)
        .await;
    let c3 = app
        .place_path(&app.place_id("community", "新村社区").await)
        .await;
    let grid1 = app
        .place_path(&app.place_id_in("grid", "第一网格", &c1).await)
        .await;
    let all_communities: Vec<String> = {
        let g = Grant::system(Action::PlaceRead);
        app.store
            .places(&g, None, Some("community"))
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.path)
            .collect()
    };

    let committee = app.login("committee").await;
    let committee3 = app.login("committee3").await;
    let grid = app.login("grid").await;
    let property = app.login("property").await;
    let admin = app.login("admin").await;

    assert!(assert_persons_within(&app, &committee, std::slice::from_ref(&c1), "").await > 0);
    assert!(assert_persons_within(&app, &committee3, std::slice::from_ref(&c3), "").await > 0);
    assert!(assert_persons_within(&app, &grid, std::slice::from_ref(&grid1), "").await > 0);
    assert!(assert_persons_within(&app, &property, &all_communities, "").await > 0);
    // Label and name filters stay inside the area too.
    assert_persons_within(
        &app,
        &committee3,
        std::slice::from_ref(&c3),
        "&label=elderly_alone",
    )
    .await;
    assert_persons_within(&app, &grid, std::slice::from_ref(&grid1), "&name=%E7%8E%8B").await;
    let admin_total = assert_persons_within(&app, &admin, &["/".to_string()], "").await;
    assert!(admin_total > 0);
    // Filters cannot widen the scope: a place outside the area yields nothing.
    let c1_building = app.place_id_in("building", "1栋", &c1).await;
    let v = app
        .get(
            &committee3,
            &format!("/api/v1/persons?place_id={c1_building}"),
        )
        .await
        .ok();
    assert_eq!(v["total"], 0);
    let v = app
        .get(
            &committee3,
            &format!("/api/v1/households?place_id={c1_building}"),
        )
        .await
        .ok();
    assert_eq!(v["total"], 0);

    let h_c1 = assert_households_within(&app, &committee, std::slice::from_ref(&c1)).await;
    let h_c3 = assert_households_within(&app, &committee3, std::slice::from_ref(&c3)).await;
    let h_grid = assert_households_within(&app, &grid, std::slice::from_ref(&grid1)).await;
    let h_prop = assert_households_within(&app, &property, &all_communities).await;
    let h_all = assert_households_within(&app, &admin, &["/".to_string()]).await;
    assert!(h_c1 > 0 && h_c3 > 0 && h_grid > 0);
    assert!(h_grid < h_c1, "a grid is a part of its community");
    assert_eq!(
        h_prop, h_all,
        "the property company serves all three communities"
    );
    assert!(h_c1 + h_c3 < h_all);

    // Places: the top of each caller's area, and kinds inside it.
    for (s, prefix) in [(&committee, &c1), (&committee3, &c3), (&grid, &grid1)] {
        for uri in [
            "/api/v1/places",
            "/api/v1/places?kind=building",
            "/api/v1/places?kind=room",
        ] {
            for p in app.get(s, uri).await.ok().as_array().unwrap() {
                assert!(
                    p["path"].as_str().unwrap().starts_with(prefix.as_str()),
                    "{} got place outside area via {uri}",
                    s.user["login"]
                );
            }
        }
    }
    // Organisations attached inside, or serving, the area.
    let orgs = app.get(&committee3, "/api/v1/orgs").await.ok();
    let names: Vec<&str> = orgs
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"新村社区居民委员会") && names.contains(&"江城物业服务有限公司"));
    assert!(!names.contains(&"幸福里社区居民委员会"), "{names:?}");

    // Audit entries are about the caller's area only.
    let c1_household =
        app.get(&committee, "/api/v1/households?limit=1").await.ok()["items"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
    app.patch(
        &committee,
        &format!("/api/v1/households/{c1_household}"),
        json!({"version": 1, "note": "入户走访"}),
    )
    .await
    .ok();
    let mine = app
        .get(&committee, "/api/v1/audit?entity=household")
        .await
        .ok();
    assert!(
        mine.as_array()
            .unwrap()
            .iter()
            .any(|e| e["entity_id"] == c1_household.as_str())
    );
    let theirs = app
        .get(&committee3, "/api/v1/audit?entity=household")
        .await
        .ok();
    assert!(
        !theirs
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["entity_id"] == c1_household.as_str())
    );

    // Exports carry only the caller's rows.
    let csv = app
        .get(&committee3, "/api/v1/registry/export/persons?format=csv")
        .await;
    assert_eq!(csv.status, 200);
    let text = csv.text();
    assert!(text.contains("新村社区") && !text.contains("幸福里社区"));
    let p3 = app
        .store
        .principal(committee3.user["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    let (_, persons_c3) = app
        .store
        .registry_counts(&p3.grant(Action::HouseholdRead).unwrap())
        .await
        .unwrap();
    assert_eq!(text.lines().count() as i64 - 1, persons_c3);

    // Users: each admin sees accounts bound in its area.
    let users = app.get(&committee3, "/api/v1/users").await.ok();
    let logins: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["login"].as_str().unwrap())
        .collect();
    assert!(
        logins.contains(&"committee3")
            && !logins.contains(&"committee")
            && !logins.contains(&"resident"),
        "{logins:?}"
    );
    app.close().await;
}

#[tokio::test]
async fn cross_community_reads_and_writes_are_refused_and_change_nothing() {
    let app = TestApp::demo().await;
    let c1 = app
        .place_path(&app.place_id("community", "幸福里社区").await)
        .await;
    let committee = app.login("committee").await;
    let other = app.login("committee3").await;
    let resident = app.login("resident").await;

    let hh = app.get(&committee, "/api/v1/households?limit=1").await.ok()["items"][0].clone();
    let hid = hh["id"].as_str().unwrap().to_string();
    let household = app
        .get(&committee, &format!("/api/v1/households/{hid}"))
        .await
        .ok();
    let pid = household["members"][0]["person"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let building = app.place_id_in("building", "1栋", &c1).await;
    let (room, _) = app.a_room_in("幸福里社区").await;
    let org = app
        .get(&committee, "/api/v1/orgs?kind=committee")
        .await
        .ok()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let correction = app
        .post(
            &resident,
            "/api/v1/me/corrections",
            json!({"field": "note", "new_value": "请更新", "reason": "测试"}),
        )
        .await
        .ok()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let audit_before = app.store.audit_verify().await.unwrap().entries;

    let not_found = [
        ("GET", format!("/api/v1/households/{hid}"), None),
        ("GET", format!("/api/v1/households/{hid}/linked"), None),
        ("GET", format!("/api/v1/persons/{pid}"), None),
        ("GET", format!("/api/v1/places/{building}"), None),
        ("GET", format!("/api/v1/orgs/{org}"), None),
        (
            "PATCH",
            format!("/api/v1/households/{hid}"),
            Some(json!({"version": 1, "note": "x"})),
        ),
        (
            "PATCH",
            format!("/api/v1/persons/{pid}"),
            Some(json!({"version": 1, "name": "改名"})),
        ),
        (
            "PATCH",
            format!("/api/v1/places/{building}"),
            Some(json!({"name": "99栋"})),
        ),
        (
            "POST",
            format!("/api/v1/persons/{pid}/reveal"),
            Some(json!({"purpose": "核实身份", "fields": ["id_number"]})),
        ),
        (
            "POST",
            format!("/api/v1/persons/{pid}/move-out"),
            Some(json!({"reason": "搬走"})),
        ),
        (
            "POST",
            format!("/api/v1/households/{hid}/members"),
            Some(json!({"name": "新人", "id_number": fresh_id(1), "relation": "child"})),
        ),
        (
            "POST",
            "/api/v1/places".to_string(),
            Some(json!({"parent_id": building, "kind": "unit", "name": "9单元"})),
        ),
        (
            "POST",
            "/api/v1/households".to_string(),
            Some(
                json!({"room_id": room, "tenure": "owner", "head": {"name": "某人", "id_number": fresh_id(2), "relation": "head"}}),
            ),
        ),
        (
            "POST",
            format!("/api/v1/corrections/{correction}/decision"),
            Some(json!({"approve": true})),
        ),
    ];
    for (method, uri, body) in &not_found {
        let r = match body {
            Some(b) => {
                app.call(
                    method,
                    uri,
                    Some(&other),
                    Some(("application/json", b.to_string().into_bytes())),
                    &[],
                )
                .await
            }
            None => app.call(method, uri, Some(&other), None, &[]).await,
        };
        assert_eq!(r.status, 404, "{method} {uri}: {}", r.text());
    }
    let forbidden = [
        (
            "POST",
            "/api/v1/orgs",
            json!({"kind": "merchant", "name": "小店", "place_id": building}),
        ),
        (
            "POST",
            "/api/v1/labels",
            json!({"code": "x", "name_zh": "某", "name_en": "x"}),
        ),
        (
            "POST",
            "/api/v1/auth/tokens",
            json!({"name": "t", "actions": ["person_read"], "place_id": building}),
        ),
        (
            "POST",
            "/api/v1/users",
            json!({"login": "spy", "display_name": "间谍", "password": "long-enough", "bindings": [{"role": "grid_worker", "place_id": building}]}),
        ),
    ];
    for (method, uri, body) in &forbidden {
        let r = app
            .call(
                method,
                uri,
                Some(&other),
                Some(("application/json", body.to_string().into_bytes())),
                &[],
            )
            .await;
        assert!(
            matches!(r.status.as_u16(), 403 | 404),
            "{method} {uri}: {} {}",
            r.status,
            r.text()
        );
    }
    let r = app.get(&other, "/api/v1/audit/verify").await;
    assert_eq!(r.status, 403);
    // Importing rows that name another community's rooms imports nothing.
    let csv = format!(
        "户号,社区,楼栋,单元,房号,居住类型,姓名,与户主关系,身份证号\nX1,幸福里社区,1栋,1单元,101,业主,外来人,户主,{}\n",
        fresh_id(3)
    );
    let r = app
        .call(
            "POST",
            "/api/v1/registry/import/households",
            Some(&other),
            Some(("text/csv", csv.into_bytes())),
            &[],
        )
        .await
        .ok();
    assert_eq!(r["households_created"], 0);
    assert_eq!(r["issues"][0]["code"], "import.unknown_place");

    // Nothing changed: no audit entries, the data is as before.
    assert_eq!(
        app.store.audit_verify().await.unwrap().entries,
        audit_before
    );
    let after = app
        .get(&committee, &format!("/api/v1/households/{hid}"))
        .await
        .ok();
    assert_eq!(after["version"], household["version"]);
    assert_eq!(
        after["members"].as_array().unwrap().len(),
        household["members"].as_array().unwrap().len()
    );
    app.close().await;
}

#[tokio::test]
async fn residents_and_merchants_see_only_what_is_theirs() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    for uri in [
        "/api/v1/persons",
        "/api/v1/households",
        "/api/v1/corrections",
        "/api/v1/audit",
        "/api/v1/users",
        "/api/v1/places",
        "/api/v1/registry/export/persons",
    ] {
        assert_eq!(
            app.get(&resident, uri).await.status,
            403,
            "resident on {uri}"
        );
    }
    let mine = app.get(&resident, "/api/v1/me/household").await.ok();
    let own_id = resident.user["households"][0].as_str().unwrap();
    assert_eq!(mine["id"], own_id);
    let committee = app.login("committee").await;
    let another = app.get(&committee, "/api/v1/households?limit=5").await.ok()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .find(|id| id != own_id)
        .unwrap();
    assert_eq!(
        app.get(&resident, &format!("/api/v1/households/{another}"))
            .await
            .status,
        403
    );

    let merchant = app.login("merchant").await;
    assert_eq!(app.get(&merchant, "/api/v1/persons").await.status, 403);
    assert_eq!(app.get(&merchant, "/api/v1/me/household").await.status, 403);
    let volunteer = app.login("volunteer").await;
    assert_eq!(app.get(&volunteer, "/api/v1/households").await.status, 403);
    app.close().await;
}

#[tokio::test]
async fn enterprise_tokens_see_only_their_scope_and_actions() {
    let app = TestApp::demo().await;
    let c1_id = app.place_id("community", "幸福里社区").await;
    let c1 = app.place_path(&c1_id).await;
    let grid1 = app.place_id_in("grid", "第一网格", &c1).await;
    let committee = app.login("committee").await;
    let created = app
        .post(&committee, "/api/v1/auth/tokens", json!({"name": "某公司 API", "actions": ["person_read"], "place_id": grid1, "expires_in_days": 30}))
        .await
        .expect(201);
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("llt_"));
    let bearer = format!("Bearer {token}");
    let r = app
        .call(
            "GET",
            "/api/v1/persons?limit=500",
            None,
            None,
            &[("authorization", &bearer)],
        )
        .await
        .ok();
    let grid_path = app.place_path(&grid1).await;
    assert!(r["total"].as_u64().unwrap() > 0);
    for p in r["items"].as_array().unwrap() {
        assert!(
            household_path(&app, p["household_id"].as_str().unwrap())
                .await
                .starts_with(&grid_path)
        );
    }
    // Only the granted action.
    let r = app
        .call(
            "GET",
            "/api/v1/households",
            None,
            None,
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = app
        .call(
            "POST",
            "/api/v1/auth/tokens",
            None,
            Some(("application/json", b"{}".to_vec())),
            &[("authorization", &bearer)],
        )
        .await;
    assert!(matches!(r.status.as_u16(), 400 | 403));
    // A token cannot be wider than its creator.
    let c3 = app.place_id("community", "新村社区").await;
    let r = app
        .post(
            &committee,
            "/api/v1/auth/tokens",
            json!({"name": "x", "actions": ["person_read"], "place_id": c3}),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = app
        .post(
            &committee,
            "/api/v1/auth/tokens",
            json!({"name": "x", "actions": ["label_write"], "place_id": c1_id}),
        )
        .await;
    assert_eq!(r.status, 403);
    // The secret is stored hashed; revoked tokens stop working; unknown tokens are 401.
    let id = created["info"]["id"].as_str().unwrap();
    let other = app.login("committee3").await;
    assert_eq!(
        app.call(
            "DELETE",
            &format!("/api/v1/auth/tokens/{id}"),
            Some(&other),
            None,
            &[]
        )
        .await
        .status,
        404
    );
    assert_eq!(
        app.call(
            "DELETE",
            &format!("/api/v1/auth/tokens/{id}"),
            Some(&committee),
            None,
            &[]
        )
        .await
        .status,
        204
    );
    let r = app
        .call(
            "GET",
            "/api/v1/persons",
            None,
            None,
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], "auth.token_invalid");
    let listed: Value = app.get(&committee, "/api/v1/auth/tokens").await.ok();
    assert_eq!(listed[0]["revoked"], true);
    assert!(!listed.to_string().contains(&token));
    app.close().await;
}
