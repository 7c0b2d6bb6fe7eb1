//! A resident's own data: read, export, correction requests reviewed by staff.

use serde_json::json;

use crate::common::{TestApp, demo_resident};

#[tokio::test]
async fn resident_reads_exports_and_corrects_own_household() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let (name, id_number, phone) = demo_resident();
    let mine = app.get(&resident, "/api/v1/me/household").await.ok();
    assert_eq!(mine["members"][0]["person"]["name"], name.as_str());
    assert!(!mine.to_string().contains(&id_number), "the view is masked");

    let export = app.get(&resident, "/api/v1/me/export").await;
    assert_eq!(export.status, 200);
    assert!(
        export
            .headers
            .get("content-disposition")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let ex = export.json();
    assert_eq!(
        ex["me"]["id_number"],
        id_number.as_str(),
        "residents get their own full numbers"
    );
    assert_eq!(ex["me"]["phone"], phone.as_str());
    assert_eq!(ex["household"]["id"], mine["id"]);

    // Bad corrections are refused with a clear code.
    let pid = mine["members"][0]["person"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .post(
            &resident,
            "/api/v1/me/corrections",
            json!({"person_id": pid, "field": "phone", "new_value": "123"}),
        )
        .await
        .expect(400);
    assert_eq!(r["code"], "validation.phone.invalid");
    let r = app
        .post(
            &resident,
            "/api/v1/me/corrections",
            json!({"field": "salary", "new_value": "1"}),
        )
        .await
        .expect(400);
    assert_eq!(r["code"], "validation.bad_value");
    let c = app
        .post(&resident, "/api/v1/me/corrections", json!({"person_id": pid, "field": "phone", "new_value": "13611112222", "reason": "换了新号码"}))
        .await
        .expect(201);
    assert_eq!(c["status"], "pending");

    // The other community does not see it; the resident's committee approves, and it applies.
    let other = app.login("committee3").await;
    assert!(
        app.get(&other, "/api/v1/corrections?status=pending")
            .await
            .ok()
            .as_array()
            .unwrap()
            .is_empty()
    );
    let committee = app.login("committee").await;
    let pending = app
        .get(&committee, "/api/v1/corrections?status=pending")
        .await
        .ok();
    assert_eq!(pending.as_array().unwrap().len(), 1);
    let cid = c["id"].as_str().unwrap();
    let decided = app
        .post(
            &committee,
            &format!("/api/v1/corrections/{cid}/decision"),
            json!({"approve": true, "note": "已核实"}),
        )
        .await
        .ok();
    assert_eq!(decided["status"], "approved");
    app.post(
        &committee,
        &format!("/api/v1/corrections/{cid}/decision"),
        json!({"approve": false}),
    )
    .await
    .expect(409);
    let person = app
        .get(&committee, &format!("/api/v1/persons/{pid}"))
        .await
        .ok();
    assert_eq!(person["phone_masked"], "136****2222");
    // The resident sees the decision and who processed their data.
    let ex = app.get(&resident, "/api/v1/me/export").await.ok();
    assert_eq!(ex["household"]["corrections"][0]["status"], "approved");
    let actions: Vec<&str> = ex["processing_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"correction.submit")
            && actions.contains(&"correction.approve")
            && actions.contains(&"person.update"),
        "{actions:?}"
    );

    // A rejection changes nothing.
    let c2 = app
        .post(
            &resident,
            "/api/v1/me/corrections",
            json!({"field": "tenure", "new_value": "tenant"}),
        )
        .await
        .expect(201);
    let before = app
        .get(
            &committee,
            &format!("/api/v1/households/{}", mine["id"].as_str().unwrap()),
        )
        .await
        .ok();
    app.post(
        &committee,
        &format!(
            "/api/v1/corrections/{}/decision",
            c2["id"].as_str().unwrap()
        ),
        json!({"approve": false, "note": "与房产证不符"}),
    )
    .await
    .ok();
    let after = app
        .get(
            &committee,
            &format!("/api/v1/households/{}", mine["id"].as_str().unwrap()),
        )
        .await
        .ok();
    assert_eq!(before["tenure"], after["tenure"]);
    app.close().await;
}
