//! 一户一表 through the API: places, households, persons; validation, masking, blind-index
//! lookup, audited reveal, optimistic concurrency, move-out history.

use serde_json::json;

use crate::common::{TestApp, demo_resident, fresh_id};

#[tokio::test]
async fn places_follow_the_tree_rules() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let top = app.get(&committee, "/api/v1/places").await.ok();
    assert_eq!(top.as_array().unwrap().len(), 1);
    assert_eq!(top[0]["name"], "幸福里社区");
    let c1 = top[0]["id"].as_str().unwrap().to_string();
    let grids = app
        .get(&committee, &format!("/api/v1/places?parent_id={c1}"))
        .await
        .ok();
    let grid = grids
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "grid")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = app.post(&committee, "/api/v1/places", json!({"parent_id": grid, "kind": "building", "name": "新建楼", "plan": [10, 10, 50, 40]})).await.expect(201);
    assert_eq!(b["plan"], json!([10, 10, 50, 40]));
    let r = app
        .post(
            &committee,
            "/api/v1/places",
            json!({"parent_id": grid, "kind": "room", "name": "101"}),
        )
        .await
        .expect(400);
    assert_eq!(r["code"], "registry.place.bad_parent");
    let r = app
        .post(
            &committee,
            "/api/v1/places",
            json!({"parent_id": grid, "kind": "building", "name": "  "}),
        )
        .await
        .expect(400);
    assert_eq!(r["code"], "validation.required");
    let r = app
        .patch(
            &committee,
            &format!("/api/v1/places/{c1}"),
            json!({"code": "12345"}),
        )
        .await
        .expect(400);
    assert_eq!(r["code"], "validation.division_code");
    let u = app
        .post(
            &committee,
            "/api/v1/places",
            json!({"parent_id": b["id"], "kind": "unit", "name": "1单元"}),
        )
        .await
        .expect(201);
    let room = app
        .post(&committee, "/api/v1/places", json!({"parent_id": u["id"], "kind": "room", "name": "101", "area_x100": 8950, "room_use": "residential"}))
        .await
        .expect(201);
    assert!(
        room["path"]
            .as_str()
            .unwrap()
            .starts_with(b["path"].as_str().unwrap())
    );
    app.close().await;
}

#[tokio::test]
async fn households_and_persons_with_validation_masking_and_history() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let (room, _) = app.a_room_in("幸福里社区").await;
    let head_id = fresh_id(10);

    // Bad input: a clear, localized error, and nothing is written.
    let before = app.store.audit_verify().await.unwrap().entries;
    let mut bad_id = head_id.clone();
    bad_id.replace_range(17..18, if head_id.ends_with('1') { "2" } else { "1" });
    let r = app
        .call(
            "POST",
            "/api/v1/households",
            Some(&committee),
            Some(("application/json", json!({"room_id": room, "tenure": "owner", "head": {"name": "赵大", "id_number": bad_id, "relation": "head"}}).to_string().into_bytes())),
            &[("accept-language", "en")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "validation.id_card.check_digit");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("check digit")
    );
    let r = app
        .post(&committee, "/api/v1/households", json!({"room_id": room, "tenure": "owner", "head": {"name": "赵大", "id_number": head_id, "phone": "12345", "relation": "head"}}))
        .await
        .expect(400);
    assert_eq!(r["code"], "validation.phone.invalid");
    assert_eq!(
        r["message"],
        "手机号格式不正确（应为 11 位，以 13–19 开头）。"
    );
    let r = app
        .post(&committee, "/api/v1/households", json!({"room_id": room, "tenure": "landlord", "head": {"name": "赵大", "id_number": head_id, "relation": "head"}}))
        .await
        .expect(400);
    assert_eq!(r["code"], "validation.bad_value");
    assert_eq!(app.store.audit_verify().await.unwrap().entries, before);

    // Create: numbers come back masked.
    let hh = app
        .post(
            &committee,
            "/api/v1/households",
            json!({"room_id": room, "tenure": "tenant", "moved_in": "2024-03-01",
                   "head": {"name": "赵大", "id_number": head_id, "phone": "139 1234 5678", "relation": "head", "labels": ["elderly_alone", "disabled"]}}),
        )
        .await
        .expect(201);
    let hid = hh["id"].as_str().unwrap().to_string();
    let head = &hh["members"][0]["person"];
    assert_eq!(head["id_number_masked"], idmask(&head_id));
    assert_eq!(head["phone_masked"], "139****5678");
    assert!(
        !hh.to_string().contains(&head_id),
        "the full ID never appears unasked"
    );
    let codes: Vec<&str> = head["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["elderly_alone", "disabled"]);
    let pid = head["id"].as_str().unwrap().to_string();

    // The same ID twice is a conflict.
    let r = app
        .post(
            &committee,
            &format!("/api/v1/households/{hid}/members"),
            json!({"name": "重复", "id_number": head_id, "relation": "spouse"}),
        )
        .await
        .expect(409);
    assert_eq!(r["code"], "registry.person.duplicate_id");
    let spouse = app
        .post(&committee, &format!("/api/v1/households/{hid}/members"), json!({"name": "钱二", "id_number": fresh_id(11), "relation": "spouse", "start_date": "2024-03-02"}))
        .await
        .expect(201);

    // Exact lookups through the blind index (ID with lower-case x, phone with spaces).
    let v = app
        .get(
            &committee,
            &format!("/api/v1/persons?id_number={}", head_id.to_lowercase()),
        )
        .await
        .ok();
    assert_eq!(v["total"], 1);
    assert_eq!(v["items"][0]["id"], pid.as_str());
    let v = app
        .get(&committee, "/api/v1/persons?phone=13912345678")
        .await
        .ok();
    assert_eq!(v["total"], 1);
    let v = app.get(&committee, "/api/v1/persons?name=赵大").await.ok();
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == pid.as_str())
    );
    let v = app.get(&committee, "/api/v1/persons?name=%25").await.ok();
    assert_eq!(v["total"], 0, "LIKE wildcards in the query are literal");
    let v = app
        .get(&committee, "/api/v1/persons?label=elderly_alone&limit=500")
        .await
        .ok();
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == pid.as_str())
    );

    // Sensitive labels: the property company does not see them, nor may it filter by them.
    let property = app.login("property").await;
    let p = app
        .get(&property, &format!("/api/v1/persons/{pid}"))
        .await
        .ok();
    let codes: Vec<&str> = p["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["elderly_alone"]);
    app.get(&property, "/api/v1/persons?label=disabled")
        .await
        .expect(403);

    // Reveal needs a purpose; the reveal is audited with it.
    let r = app
        .post(
            &committee,
            &format!("/api/v1/persons/{pid}/reveal"),
            json!({"purpose": "", "fields": ["id_number"]}),
        )
        .await
        .expect(400);
    assert_eq!(r["code"], "validation.purpose_required");
    let r = app
        .post(
            &committee,
            &format!("/api/v1/persons/{pid}/reveal"),
            json!({"purpose": "办理低保核对身份", "fields": ["id_number", "phone"]}),
        )
        .await
        .ok();
    assert_eq!(r["id_number"], head_id.as_str());
    assert_eq!(r["phone"], "13912345678");
    let log = app
        .get(
            &committee,
            &format!("/api/v1/audit?entity=person&entity_id={pid}&action=person.reveal"),
        )
        .await
        .ok();
    assert_eq!(log[0]["purpose"], "办理低保核对身份");
    assert_eq!(log[0]["actor"], "committee");
    // Neither a department officer nor the property company (its technicians included) may
    // reveal full numbers (issue #13 round 2, finding 9); they see residents masked.
    let dept = app.login("dept").await;
    for (who, fields) in [
        (&dept, json!(["phone"])),
        (&property, json!(["id_number"])),
        (&property, json!(["phone"])),
    ] {
        app.post(
            who,
            &format!("/api/v1/persons/{pid}/reveal"),
            json!({"purpose": "上门维修联系", "fields": fields}),
        )
        .await
        .expect(403);
    }
    let me = app.get(&property, "/api/v1/auth/me").await.ok();
    assert!(
        !me["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "person_reveal"),
        "{me}"
    );

    // Edits use optimistic concurrency; audit keeps before/after masked.
    let r = app
        .patch(
            &committee,
            &format!("/api/v1/persons/{pid}"),
            json!({"version": 1, "name": "赵大明", "phone": "13800001111"}),
        )
        .await
        .ok();
    assert_eq!(r["name"], "赵大明");
    assert_eq!(r["version"], 2);
    app.patch(
        &committee,
        &format!("/api/v1/persons/{pid}"),
        json!({"version": 1, "name": "旧版本"}),
    )
    .await
    .expect(409);
    let log = app
        .get(
            &committee,
            &format!("/api/v1/audit?entity=person&entity_id={pid}&action=person.update"),
        )
        .await
        .ok();
    assert_eq!(log[0]["before"]["phone"], "139****5678");
    assert_eq!(log[0]["after"]["phone"], "138****1111");
    assert!(!log.to_string().contains("13800001111"));

    // A grid worker outside that grid? The household view for staff shows both members.
    let view = app
        .get(&committee, &format!("/api/v1/households/{hid}"))
        .await
        .ok();
    assert_eq!(view["members"].as_array().unwrap().len(), 2);
    assert_eq!(view["tenure"], "tenant");

    // Moving out ends the residence but keeps the history.
    let spouse_id = spouse["id"].as_str().unwrap();
    app.post(
        &committee,
        &format!("/api/v1/persons/{spouse_id}/move-out"),
        json!({"end_date": "2025-01-31", "reason": "迁往外地"}),
    )
    .await
    .expect(204);
    let view = app
        .get(&committee, &format!("/api/v1/households/{hid}"))
        .await
        .ok();
    assert_eq!(view["members"].as_array().unwrap().len(), 1);
    assert_eq!(view["former_members"][0]["name"], "钱二");
    assert_eq!(view["former_members"][0]["end_date"], "2025-01-31");
    app.post(
        &committee,
        &format!("/api/v1/persons/{spouse_id}/move-out"),
        json!({"reason": "再次"}),
    )
    .await
    .expect(404);
    // …and the person can move into another household later (matched by ID).
    let again = app
        .post(
            &committee,
            &format!("/api/v1/households/{hid}/members"),
            json!({"name": "钱二", "id_number": fresh_id(11), "relation": "spouse"}),
        )
        .await
        .expect(201);
    assert_eq!(again["id"], spouse_id);

    let r = app
        .patch(
            &committee,
            &format!("/api/v1/households/{hid}"),
            json!({"version": view["version"], "tenure": "owner", "moved_in": "2024-02-30"}),
        )
        .await
        .expect(400);
    assert_eq!(r["code"], "validation.bad_value");
    app.close().await;
}

#[tokio::test]
async fn demo_district_is_realistic_and_seeding_is_idempotent() {
    let app = TestApp::demo().await;
    use linli_core::auth::{Action, Grant};
    let (households, persons) = app
        .store
        .registry_counts(&Grant::system(Action::HouseholdRead))
        .await
        .unwrap();
    assert!((2700..=3300).contains(&households), "{households}");
    assert!((7000..=9000).contains(&persons), "{persons}");
    let counts = app
        .store
        .place_counts(&Grant::system(Action::PlaceRead))
        .await
        .unwrap();
    let count = |k: &str| {
        counts
            .iter()
            .find(|(kind, _)| kind == k)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    };
    assert_eq!(
        (
            count("city"),
            count("district"),
            count("street"),
            count("community")
        ),
        (1, 1, 2, 3)
    );
    assert!((25..=35).contains(&count("building")));
    app.store.seed_demo("linli-demo").await.unwrap();
    assert_eq!(
        app.store
            .registry_counts(&Grant::system(Action::HouseholdRead))
            .await
            .unwrap(),
        (households, persons)
    );
    // The resident can sign in with the mobile number too.
    let (_, _, phone) = demo_resident();
    let r = app.login_with(&phone, "linli-demo").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["user"]["login"], "resident");
    app.close().await;
}

fn idmask(id: &str) -> String {
    format!("{}********{}", &id[..6], &id[14..])
}
