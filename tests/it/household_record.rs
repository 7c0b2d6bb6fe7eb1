//! 一户一表, whole: the household's record gathers what every module holds about it — reports,
//! devices in the home and their alarms, vehicles, visitor passes, SOS contacts and check-ins,
//! gate passages — for staff by their capabilities, for the household's residents entirely, and
//! in the resident's own export; another community's staff get a 404.

use serde_json::{Value, json};

use crate::common::TestApp;

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|x| x["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn the_household_record_gathers_every_module() {
    let app = TestApp::demo().await;
    let admin = app.login("admin").await;
    let committee = app.login("committee").await;
    let committee3 = app.login("committee3").await;
    let property = app.login("property").await;
    let resident = app.login("resident").await;
    let (hh, room) = app.home_of("resident").await;
    let me = app
        .store
        .own_person_id(
            &app.principal_of(resident.user["id"].as_str().unwrap())
                .await,
        )
        .await
        .unwrap()
        .unwrap();
    let c1 = app.place_id("community", "幸福里社区").await;

    // Each module writes something about the household, through its own API.
    let report = app
        .post(
            &resident,
            "/api/v1/reports",
            json!({ "category": "repair_common", "description": "厨房水管漏水", "place_id": room }),
        )
        .await
        .expect(201)["report"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let device = app
        .post(
            &property,
            "/api/v1/iot/devices",
            json!({ "kind": "smoke", "name": "厨房烟感", "place_id": room }),
        )
        .await
        .expect(201)["device"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let button = app
        .post(
            &property,
            "/api/v1/iot/devices",
            json!({ "kind": "sos_button", "name": "随身呼叫器", "place_id": c1, "person_id": me }),
        )
        .await
        .expect(201)["device"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let volunteer = app.login("volunteer").await;
    app.call(
        "PUT",
        &format!("/api/v1/persons/{me}/care-contacts"),
        Some(&committee),
        Some((
            "application/json",
            json!([{ "user_id": volunteer.user["id"], "relation": "邻居" }])
                .to_string()
                .into_bytes(),
        )),
        &[],
    )
    .await
    .expect(200);
    app.post(&resident, "/api/v1/me/checkin", json!({}))
        .await
        .expect(200);
    let sos = app
        .post(&resident, "/api/v1/me/sos", json!({}))
        .await
        .expect(201)["alarm_id"]
        .as_str()
        .unwrap()
        .to_string();
    app.post(
        &resident,
        "/api/v1/access/vehicles",
        json!({ "plate": "鄂A12345" }),
    )
    .await
    .expect(201);
    let pass = app
        .post(
            &resident,
            "/api/v1/access/passes",
            json!({ "visitor_name": "张访客", "phone": "13912345678", "valid_until": app.store.now_ms() + 3_600_000 }),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let gate = app
        .post(
            &admin,
            "/api/v1/access/gates",
            json!({ "name": "东门人脸", "place_id": c1, "kind": "face" }),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let terminal = app
        .post(
            &admin,
            "/api/v1/auth/tokens",
            json!({ "name": "gate", "actions": ["visitor_verify"], "place_id": c1, "expires_in_days": 1 }),
        )
        .await
        .expect(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let auth = format!("Bearer {terminal}");
    app.call(
        "POST",
        "/api/v1/access/records",
        None,
        Some((
            "application/json",
            json!({ "records": [{ "gate_id": gate, "direction": "in", "person_id": me, "temperature_x10": 366, "at": app.store.now_ms() - 1000 }] })
                .to_string()
                .into_bytes(),
        )),
        &[("authorization", auth.as_str())],
    )
    .await
    .expect(201);

    // The committee's view of the household: every section, with what was written.
    let uri = format!("/api/v1/households/{hh}/linked");
    let v = app.get(&committee, &uri).await.ok();
    assert_eq!(ids(&v["reports"]), vec![report.clone()], "{v}");
    let devs = ids(&v["devices"]);
    assert!(
        devs.contains(&device) && devs.contains(&button),
        "the room's and the member's devices: {v}"
    );
    assert!(ids(&v["alarms"]).contains(&sos), "{v}");
    assert_eq!(v["vehicles"][0]["plate"], "鄂A12345");
    assert_eq!(ids(&v["visitor_passes"]), vec![pass.clone()]);
    assert!(v["visitor_passes"][0].get("token").is_none(), "no QR token");
    assert_eq!(v["visitor_passes"][0]["status"], "active");
    let care = v["care"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["person_id"] == me.as_str())
        .expect("every member has a care entry");
    assert_eq!(care["contacts"][0]["user_id"], volunteer.user["id"]);
    assert!(care["last_checkin_at"].as_i64().unwrap() > 0);
    assert_eq!(v["gate_passages"][0]["gate_name"], "东门人脸");

    // The household's own resident sees the same record, and takes it home in the export.
    let mine = app.get(&resident, &uri).await.ok();
    assert_eq!(ids(&mine["reports"]), vec![report.clone()]);
    assert_eq!(ids(&mine["visitor_passes"]), vec![pass.clone()]);
    assert!(ids(&mine["alarms"]).contains(&sos));
    let export = app.get(&resident, "/api/v1/me/export").await.ok();
    assert_eq!(ids(&export["linked"]["reports"]), vec![report.clone()]);
    assert_eq!(export["linked"]["vehicles"][0]["plate"], "鄂A12345");
    assert_eq!(
        export["linked"]["gate_passages"][0]["gate_name"],
        "东门人脸"
    );

    let page = app.get(&resident, "/me").await.doc();
    assert!(
        section(&page, "main #my-linked", "vehicles").contains(&"鄂A12345".to_string()),
        "{}",
        page.main_html()
    );
    assert!(
        section(&page, "main #my-linked", "devices").contains(&"厨房烟感".to_string()),
        "{}",
        page.main_html()
    );

    // The property company: the devices of the communities it serves — and the household's
    // report only once it is dispatched to the company (unit visibility).
    let p = app.get(&property, &uri).await.ok();
    assert!(ids(&p["devices"]).contains(&device));
    assert!(ids(&p["reports"]).is_empty(), "not yet the company's: {p}");
    for action in ["accept", "dispatch"] {
        app.post(
            &committee,
            &format!("/api/v1/reports/{report}/actions"),
            json!({ "action": action }),
        )
        .await
        .ok();
    }
    let p = app.get(&property, &uri).await.ok();
    assert_eq!(ids(&p["reports"]), vec![report.clone()]);

    // A neighbour resident and another community's staff: not found; a role without a module's
    // capability gets that section as null.
    app.get(&committee3, &uri).await.expect(404);
    let merchant = app.login("merchant").await;
    app.get(&merchant, &uri).await.expect(404);
    let dept = app.login("dept").await;
    let d = app.get(&dept, &uri).await.ok();
    assert!(d["devices"].is_null() && d["alarms"].is_null(), "{d}");
    assert!(d["visitor_passes"].is_null() && d["gate_passages"].is_null());
    assert!(
        ids(&d["reports"]).is_empty(),
        "no report reached the department"
    );

    // The staff household page shows the sections.
    let doc = app
        .get(&committee, &format!("/registry/households/{hh}"))
        .await
        .doc();
    for (key, text) in [
        ("reports", "厨房水管漏水"),
        ("devices", "厨房烟感"),
        ("vehicles", "鄂A12345"),
        ("visitor_passes", "张访客"),
        ("gate_passages", "东门人脸"),
    ] {
        let cells = section(&doc, "main", key);
        assert!(
            cells.iter().any(|c| c.contains(text)),
            "{text} missing from the {key} section: {cells:?}"
        );
    }
    doc.assert_inside("h2#linked-care", "main");
    app.close().await;
}

/// The cells of one section of the household record (`<h2 id="linked-{key}">` and the table
/// after it) inside `within`.
fn section(doc: &crate::common::Doc, within: &str, key: &str) -> Vec<String> {
    doc.assert_inside(&format!("h2#linked-{key}"), within);
    doc.texts(&format!("{within} h2#linked-{key} + .table-wrap td"))
}
