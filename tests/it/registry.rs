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
    // The audit page says it in words, and filters by an action chosen in words.
    let page = app
        .get(&committee, "/admin/audit?action=person.reveal")
        .await
        .doc();
    let row = page.text("tbody tr");
    assert!(row.contains("查看完整证件号或手机号"), "{row}");
    assert!(row.contains("人员"), "{row}");
    assert!(!row.contains("person.reveal"), "{row}");
    assert_eq!(
        page.first("#action option[selected]").attr("value"),
        Some("person.reveal")
    );
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

/// A demo person of 幸福里社区 (not the demo resident's household) with a phone and labels:
/// (name, ID number, phone).
fn demo_person_of_xingfu(nth: usize) -> (String, String, String) {
    let data = linli_core::demo::generate(linli_store::demo::DEMO_SEED);
    let p = data
        .households
        .iter()
        .filter(|h| h.room_key.starts_with("c1/"))
        .skip(5)
        .flat_map(|h| h.persons.iter())
        .filter(|p| p.phone.is_some())
        .nth(nth)
        .unwrap();
    (
        p.name.clone(),
        p.id_number.clone(),
        p.phone.clone().unwrap(),
    )
}

/// Issue #13 (round 2), finding 2: after 幸福里 moved person P out, 新村's committee added a
/// member with P's ID number and any name, and got P's record — real name, masked phone, a
/// reveal gave the full phone; for someone living elsewhere the same call answered 409
/// `duplicate_id`, an oracle for whether an ID number is in the system. Now a community gets a
/// record of its own holding what it entered, the same answer whether the ID is known elsewhere
/// or not; the earlier community is asked to confirm when name and ID match, and only its
/// confirmation shares the phone and labels.
#[tokio::test]
async fn another_community_cannot_take_over_a_persons_record() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let committee3 = app.login("committee3").await;
    let c3 = app.place_id("community", "新村社区").await;
    let hh3 = app
        .get(
            &committee3,
            &format!("/api/v1/households?place_id={c3}&limit=3"),
        )
        .await
        .ok()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    let member = |name: &str, id: &str| json!({"name": name, "id_number": id, "relation": "other"});
    let find_in_xingfu = |id: String| {
        let (app, committee) = (&app, &committee);
        async move {
            app.get(committee, &format!("/api/v1/persons?id_number={id}"))
                .await
                .ok()["items"][0]
                .clone()
        }
    };

    // P moved out of 幸福里 (record kept there).
    let (p_name, p_id, p_phone) = demo_person_of_xingfu(0);
    let p = find_in_xingfu(p_id.clone()).await;
    let p_pid = p["id"].as_str().unwrap().to_string();
    app.post(
        &committee,
        &format!("/api/v1/persons/{p_pid}/move-out"),
        json!({"reason": "迁出"}),
    )
    .await
    .expect(204);

    // 新村 adds P's ID under another name: a record of its own with only what it entered.
    let got = app
        .post(
            &committee3,
            &format!("/api/v1/households/{}/members", hh3[0]),
            member("冒名者", &p_id),
        )
        .await
        .expect(201);
    assert_ne!(got["id"], p_pid.as_str(), "not P's record");
    assert_eq!(got["name"], "冒名者");
    assert_eq!(got["phone_masked"], serde_json::Value::Null);
    assert!(!got.to_string().contains(&p_name));
    let revealed = app
        .post(
            &committee3,
            &format!("/api/v1/persons/{}/reveal", got["id"].as_str().unwrap()),
            json!({"purpose": "核对联系方式", "fields": ["phone"]}),
        )
        .await
        .ok();
    assert_eq!(
        revealed["phone"],
        serde_json::Value::Null,
        "P's phone stays in 幸福里"
    );
    assert!(!revealed.to_string().contains(&p_phone));
    // P's record is still 幸福里's, unchanged, and not 新村's to read.
    let again = app
        .get(&committee, &format!("/api/v1/persons/{p_pid}"))
        .await
        .ok();
    assert_eq!(again["name"], p_name.as_str());
    app.get(&committee3, &format!("/api/v1/persons/{p_pid}"))
        .await
        .expect(404);
    // A wrong name asks nobody.
    let links = app.get(&committee, "/api/v1/person-links").await.ok();
    assert_eq!(links.as_array().unwrap().len(), 0, "{links}");

    // No oracle: an ID of someone living in 幸福里 now, and an ID nobody holds, answer alike.
    let (q_name, q_id, q_phone) = demo_person_of_xingfu(1);
    let known = app
        .post(
            &committee3,
            &format!("/api/v1/households/{}/members", hh3[1]),
            member(&q_name, &q_id),
        )
        .await;
    let unknown = app
        .post(
            &committee3,
            &format!("/api/v1/households/{}/members", hh3[1]),
            member(&q_name, &fresh_id(71)),
        )
        .await;
    assert_eq!(known.status, 201, "{}", known.text());
    assert_eq!(unknown.status, 201, "{}", unknown.text());
    let (known, unknown) = (known.json(), unknown.json());
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&known), keys(&unknown));
    for field in ["name", "phone_masked", "labels", "relation", "version"] {
        assert_eq!(known[field], unknown[field], "{field}");
    }
    // The requester does not see its request; 幸福里 does, with who asks.
    let mine = app.get(&committee3, "/api/v1/person-links").await.ok();
    assert_eq!(mine.as_array().unwrap().len(), 0);
    let links = app.get(&committee, "/api/v1/person-links").await.ok();
    let links = links.as_array().unwrap();
    assert_eq!(links.len(), 1, "{links:?}");
    let link = &links[0];
    assert_eq!(link["name"], q_name.as_str());
    assert_eq!(link["to_community"], "新村社区");
    assert_eq!(link["lives_here"], true);
    let link_id = link["id"].as_str().unwrap().to_string();
    let q_old = link["person_id"].as_str().unwrap().to_string();
    // 新村 cannot decide its own request.
    app.post(
        &committee3,
        &format!("/api/v1/person-links/{link_id}/confirm"),
        json!({}),
    )
    .await
    .expect(404);

    // 幸福里 confirms: 新村's record receives Q's phone and labels; Q's residence in 幸福里
    // ends (moved to 新村); 幸福里 keeps its record; 新村's staff are told.
    let q_new = known["id"].as_str().unwrap().to_string();
    let decided = app
        .post(
            &committee,
            &format!("/api/v1/person-links/{link_id}/confirm"),
            json!({"note": "本人已迁往新村"}),
        )
        .await
        .ok();
    assert_eq!(decided["status"], "confirmed");
    app.post(
        &committee,
        &format!("/api/v1/person-links/{link_id}/confirm"),
        json!({}),
    )
    .await
    .expect(409);
    let revealed = app
        .post(
            &committee3,
            &format!("/api/v1/persons/{q_new}/reveal"),
            json!({"purpose": "核对联系方式", "fields": ["phone"]}),
        )
        .await
        .ok();
    assert_eq!(revealed["phone"], q_phone.as_str());
    let old = app
        .get(&committee, &format!("/api/v1/persons/{q_old}"))
        .await
        .ok();
    assert_eq!(old["household_id"], serde_json::Value::Null, "moved out");
    let inbox = app.get(&committee3, "/api/v1/inbox").await.ok();
    assert!(inbox.to_string().contains(&q_name), "{inbox}");

    // Declining needs a reason, shares nothing and tells the requester nothing.
    let (r_name, r_id, _) = demo_person_of_xingfu(2);
    let r_new = app
        .post(
            &committee3,
            &format!("/api/v1/households/{}/members", hh3[2]),
            member(&r_name, &r_id),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let link_id = app.get(&committee, "/api/v1/person-links").await.ok()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let e = app
        .post(
            &committee,
            &format!("/api/v1/person-links/{link_id}/decline"),
            json!({}),
        )
        .await
        .expect(400);
    assert_eq!(e["code"], "validation.required");
    app.post(
        &committee,
        &format!("/api/v1/person-links/{link_id}/decline"),
        json!({"note": "不是本人"}),
    )
    .await
    .ok();
    let r = app
        .get(&committee3, &format!("/api/v1/persons/{r_new}"))
        .await
        .ok();
    assert_eq!(r["phone_masked"], serde_json::Value::Null);
    let inbox = app.get(&committee3, "/api/v1/inbox").await.ok();
    assert!(!inbox.to_string().contains(&r_name), "{inbox}");
    // 新村 finds its own record by ID (kept in `id_key`), and only that one.
    let mine = app
        .get(&committee3, &format!("/api/v1/persons?id_number={q_id}"))
        .await
        .ok();
    assert_eq!(mine["total"], 1);
    assert_eq!(mine["items"][0]["id"], q_new.as_str());
    app.close().await;
}

/// The same for imports (issue #13 round 2, finding 2): a spreadsheet of 新村 naming IDs that
/// 幸福里 holds imports them as 新村's own records (no `id_belongs_to_other`, no household of
/// 幸福里 reused), and asks 幸福里 only where the name matches.
#[tokio::test]
async fn an_import_cannot_take_over_another_communitys_records() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let committee3 = app.login("committee3").await;
    let (b, u, r) = app.room_names("新村社区").await;
    let (q_name, q_id, _) = demo_person_of_xingfu(3);
    let (_, s_id, _) = demo_person_of_xingfu(4);
    let csv = format!(
        "户号,社区,楼栋,单元,房号,居住类型,姓名,与户主关系,身份证号,手机号,标签,入住日期\n\
         X1,新村社区,{b},{u},{r},租户,{q_name},户主,{q_id},,,2025-06-01\n\
         X1,新村社区,{b},{u},{r},租户,别人,配偶,{s_id},,,2025-06-01\n"
    );
    let report = app
        .call(
            "POST",
            "/api/v1/registry/import/households",
            Some(&committee3),
            Some(("text/csv", csv.into_bytes())),
            &[],
        )
        .await
        .ok();
    assert_eq!(report["rows_rejected"], 0, "{report}");
    assert_eq!(report["households_created"], 1, "{report}");
    assert_eq!(report["persons_created"], 2, "{report}");
    // 幸福里 keeps both records where they were; it is asked about the one whose name matched.
    for id in [&q_id, &s_id] {
        let v = app
            .get(&committee, &format!("/api/v1/persons?id_number={id}"))
            .await
            .ok();
        assert_eq!(v["total"], 1);
        assert!(
            v["items"][0]["household_id"].is_string(),
            "still living in 幸福里"
        );
    }
    let links = app.get(&committee, "/api/v1/person-links").await.ok();
    let names: Vec<&str> = links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [q_name.as_str()]);
    // 新村 reads its own two records, with what it imported.
    let v = app
        .get(&committee3, &format!("/api/v1/persons?id_number={s_id}"))
        .await
        .ok();
    assert_eq!(v["items"][0]["name"], "别人");
    app.close().await;
}

/// The confirmation page: 幸福里's committee sees the request and confirms it with a button.
#[tokio::test]
async fn the_link_page_confirms_a_request() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let committee3 = app.login("committee3").await;
    let c3 = app.place_id("community", "新村社区").await;
    let hh3 = app
        .get(
            &committee3,
            &format!("/api/v1/households?place_id={c3}&limit=1"),
        )
        .await
        .ok()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (q_name, q_id, _) = demo_person_of_xingfu(5);
    app.post(
        &committee3,
        &format!("/api/v1/households/{hh3}/members"),
        json!({"name": q_name, "id_number": q_id, "relation": "other"}),
    )
    .await
    .expect(201);
    let page = app.get(&committee, "/registry/links").await;
    assert_eq!(page.status.as_u16(), 200);
    let html = page.text();
    assert!(
        html.contains(&q_name) && html.contains("新村社区"),
        "{html}"
    );
    let link_id = app.get(&committee, "/api/v1/person-links").await.ok()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(html.contains(&format!("action=\"/registry/links/{link_id}\"")));
    let r = crate::common::post_form(
        &app,
        &committee,
        &format!("/registry/links/{link_id}"),
        &[("_csrf", committee.csrf.as_str()), ("decision", "confirm")],
    )
    .await;
    assert_eq!(r.status.as_u16(), 303, "{}", r.text());
    let all = app
        .get(&committee, "/api/v1/person-links?all=true")
        .await
        .ok();
    assert_eq!(all[0]["status"], "confirmed");
    // 新村's staff have no such request on their page.
    let theirs = app.get(&committee3, "/registry/links").await.text();
    assert!(!theirs.contains(&link_id));
    app.close().await;
}
