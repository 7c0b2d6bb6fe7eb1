//! Repairs (物业报修) end to end: per-person assignment and "my tasks"; the catalogue's dispatch
//! modes — assign, grab (抢单, with a real race between two technicians) and round robin (轮派,
//! fair, persisted in the database, skipping disabled accounts, never silently dropping a report
//! nobody can take); the price quote of paid repairs and its illegal orders; the return-visit
//! policies; and what a technician of another company can neither see nor take.

use serde_json::{Value, json};

use linli_store::{DbConfig, Store};

use crate::common::{Resp, Session, TestApp};

async fn one(app: &TestApp, sql: &str, bind: &str) -> String {
    let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(bind.to_string())
        .fetch_one(&app.store.db.read)
        .await
        .unwrap();
    sqlx::Row::get::<String, _>(&row, 0)
}

async fn count(app: &TestApp, sql: &str, bind: &str) -> i64 {
    let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(bind.to_string())
        .fetch_one(&app.store.db.read)
        .await
        .unwrap();
    sqlx::Row::get::<i64, _>(&row, 0)
}

async fn user_id(app: &TestApp, login: &str) -> String {
    one(app, "SELECT id FROM users WHERE login = $1", login).await
}

async fn disable(app: &TestApp, login: &str, disabled: bool) {
    sqlx::query("UPDATE users SET disabled = $1 WHERE login = $2")
        .bind(i64::from(disabled))
        .bind(login.to_string())
        .execute(&app.store.db.write)
        .await
        .unwrap();
}

/// The demo resident's room.
async fn resident_room(app: &TestApp) -> String {
    app.home_of("resident").await.1
}

async fn act_resp(app: &TestApp, s: &Session, id: &str, body: Value) -> Resp {
    app.post(s, &format!("/api/v1/reports/{id}/actions"), body)
        .await
}

async fn act(app: &TestApp, s: &Session, id: &str, body: Value) -> Value {
    act_resp(app, s, id, body).await.ok()
}

/// A report filed by the resident, accepted and dispatched by the committee along the catalogue.
async fn dispatched(app: &TestApp, category: &str, what: &str) -> (String, Value) {
    let resident = app.login("resident").await;
    let committee = app.login("committee").await;
    let room = resident_room(app).await;
    let created = app
        .post(
            &resident,
            "/api/v1/reports",
            json!({ "category": category, "description": what, "place_id": room }),
        )
        .await
        .expect(201);
    let id = created["report"]["id"].as_str().unwrap().to_string();
    act(app, &committee, &id, json!({ "action": "accept" })).await;
    let r = act(app, &committee, &id, json!({ "action": "dispatch" })).await;
    (id, r)
}

async fn report(app: &TestApp, s: &Session, id: &str) -> Value {
    app.get(s, &format!("/api/v1/reports/{id}")).await.ok()
}

async fn notices(app: &TestApp, login: &str, key: &str, report_id: &str) -> usize {
    let uid = user_id(app, login).await;
    app.store
        .inbox(&app.principal_of(&uid).await, false, None, 200)
        .await
        .unwrap()
        .iter()
        .filter(|n| n.key == key && n.entity_id == report_id)
        .count()
}

fn assert_code(v: &Value, code: &str) {
    assert_eq!(v["code"], code, "{v}");
    let msg = v["message"].as_str().unwrap_or_default();
    assert!(!msg.is_empty() && msg != code, "not localized: {v}");
}

#[tokio::test]
async fn assign_reassign_my_tasks_with_events_audit_and_inbox() {
    let app = TestApp::demo().await;
    let property = app.login("property").await;
    let repair1 = app.login("repair1").await;
    let repair2 = app.login("repair2").await;
    let resident = app.login("resident").await;
    let committee = app.login("committee").await;
    let (r1, r2) = (
        user_id(&app, "repair1").await,
        user_id(&app, "repair2").await,
    );

    let (id, d) = dispatched(&app, "repair_common", "楼道灯不亮").await;
    assert_eq!(d["dispatch_mode"], "assign");
    assert_eq!(d["paid"], false);
    assert!(d["assignee_user_id"].is_null());

    // The unit's people, for the assign form; residents may not ask.
    let people = app
        .get(&property, &format!("/api/v1/reports/{id}/assignees"))
        .await
        .ok();
    let ids: Vec<&str> = people
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["user_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&r1.as_str()) && ids.contains(&r2.as_str()));
    assert!(!ids.contains(&user_id(&app, "committee").await.as_str()));
    app.get(&resident, &format!("/api/v1/reports/{id}/assignees"))
        .await
        .expect(403);

    // Bad input changes nothing.
    let v = act_resp(&app, &property, &id, json!({ "action": "assign" }))
        .await
        .expect(400);
    assert_eq!(v["code"], "validation.required");
    let committee_id = user_id(&app, "committee").await;
    let v = act_resp(
        &app,
        &property,
        &id,
        json!({ "action": "assign", "assignee_user_id": committee_id }),
    )
    .await
    .expect(400);
    assert_code(&v, "report.assignee_not_eligible");
    disable(&app, "repair2", true).await;
    let v = act_resp(
        &app,
        &property,
        &id,
        json!({ "action": "assign", "assignee_user_id": r2 }),
    )
    .await
    .expect(400);
    assert_code(&v, "report.assignee_not_eligible");
    disable(&app, "repair2", false).await;
    // Neither a resident nor a technician of the unit who is not there to assign… the resident.
    act_resp(
        &app,
        &resident,
        &id,
        json!({ "action": "assign", "assignee_user_id": r1 }),
    )
    .await
    .expect(403);
    assert!(
        report(&app, &committee, &id).await["report"]["assignee_user_id"].is_null(),
        "nothing changed"
    );

    // The staff page offers the unit's people.
    let html = app
        .get(&property, &format!("/staff/reports/{id}"))
        .await
        .text();
    assert!(html.contains("name=\"assignee_user_id\"") && html.contains("维修师傅（二）"));
    assert!(!html.contains("id=\"act-grab\""), "not a grab job");

    // Assign, with a note; then reassign.
    let a = act(
        &app,
        &property,
        &id,
        json!({ "action": "assign", "assignee_user_id": r1, "internal_note": "离得近" }),
    )
    .await;
    assert_eq!(a["assignee_user_id"], r1.as_str());
    assert_eq!(a["assignee_name"], "维修师傅（一）");
    assert_eq!(
        a["status"], "dispatched",
        "assignment does not move the status"
    );
    assert_eq!(
        notices(&app, "repair1", "notice-report-assigned", &id).await,
        1
    );
    let mine = app.get(&repair1, "/api/v1/reports?assignee=me").await.ok();
    assert!(
        mine["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str())
    );
    let theirs = app.get(&repair2, "/api/v1/reports?assignee=me").await.ok();
    assert!(theirs["items"].as_array().unwrap().is_empty());
    let v = app
        .get(&repair2, "/api/v1/reports?assignee=someone")
        .await
        .expect(400);
    assert_eq!(v["code"], "validation.bad_value");
    let v = act_resp(
        &app,
        &property,
        &id,
        json!({ "action": "assign", "assignee_user_id": r1 }),
    )
    .await
    .expect(400);
    assert_code(&v, "report.same_assignee");

    // The committee (a dispatcher of the place) may reassign too.
    let a = act(
        &app,
        &committee,
        &id,
        json!({ "action": "assign", "assignee_user_id": r2, "public_note": "改派二号师傅" }),
    )
    .await;
    assert_eq!(a["assignee_user_id"], r2.as_str());
    assert_eq!(
        notices(&app, "repair2", "notice-report-assigned", &id).await,
        1
    );
    assert_eq!(
        notices(&app, "repair1", "notice-report-unassigned", &id).await,
        1
    );
    let view = report(&app, &committee, &id).await;
    let assigns: Vec<&Value> = view["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "assign")
        .collect();
    assert_eq!(assigns.len(), 2);
    assert_eq!(assigns[0]["actor"], "property");
    assert_eq!(assigns[0]["internal_note"], "离得近");
    assert_eq!(assigns[1]["actor"], "committee");
    assert_eq!(assigns[1]["data"]["previous_assignee_user_id"], r1.as_str());
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_log WHERE action = 'report.assign' AND entity_id = $1",
            &id
        )
        .await,
        2
    );
    // The resident sees who comes, but not the internal note.
    let own = report(&app, &resident, &id).await;
    assert_eq!(own["report"]["assignee_name"], "维修师傅（二）");
    assert!(
        own["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["internal_note"].is_null())
    );

    // Work it; once replied, the person can no longer change (409, nothing changed).
    act(&app, &repair2, &id, json!({ "action": "sign" })).await;
    let v = act_resp(
        &app,
        &repair2,
        &id,
        json!({ "action": "quote", "amount_fen": 100, "public_note": "x" }),
    )
    .await
    .expect(409);
    assert_code(&v, "report.quote_not_needed");
    act(
        &app,
        &repair2,
        &id,
        json!({ "action": "reply", "outcome": "solved", "public_note": "已修好" }),
    )
    .await;
    let before = report(&app, &committee, &id).await["report"].clone();
    let v = act_resp(
        &app,
        &committee,
        &id,
        json!({ "action": "assign", "assignee_user_id": r1 }),
    )
    .await
    .expect(409);
    assert_code(&v, "report.illegal_transition");
    assert_eq!(report(&app, &committee, &id).await["report"], before);

    // The staff queue's "my tasks" tab lists it for the assignee.
    let html = app.get(&repair2, "/staff/reports?tab=mine").await;
    assert_eq!(html.status.as_u16(), 200);
    assert!(html.text().contains(&format!("/staff/reports/{id}")));
    let html = app.get(&repair1, "/staff/reports?tab=mine").await.text();
    assert!(!html.contains(&format!("/staff/reports/{id}")));
    app.close().await;
}

/// A second property company (another technician), serving `community`.
async fn other_company_tech(app: &TestApp, login: &str, community: &str) -> Session {
    let admin = app.login("admin").await;
    let district = one(app, "SELECT id FROM places WHERE kind = $1", "district").await;
    let c = one(
        app,
        "SELECT id FROM places WHERE kind = 'community' AND name = $1",
        community,
    )
    .await;
    let org = app
        .post(
            &admin,
            "/api/v1/orgs",
            json!({ "kind": "property_company", "name": format!("{login}物业"), "place_id": district, "serves": [c] }),
        )
        .await
        .expect(201);
    app.post(
        &admin,
        "/api/v1/users",
        json!({
            "login": login,
            "display_name": login,
            "password": crate::common::PASSWORD,
            "bindings": [{ "role": "property_staff", "org_id": org["id"] }],
        }),
    )
    .await
    .expect(201);
    app.login(login).await
}

#[tokio::test]
async fn grab_first_wins_the_race_and_strangers_cannot_take_it() {
    let app = TestApp::demo().await;
    let repair1 = app.login("repair1").await;
    let repair2 = app.login("repair2").await;
    let committee = app.login("committee").await;
    let same_area = other_company_tech(&app, "othertech", "幸福里社区").await;
    let elsewhere = other_company_tech(&app, "fartech", "新村社区").await;

    // Several rounds of two technicians grabbing the same job at the same moment.
    for round in 0..4 {
        let (id, d) = dispatched(&app, "repair_plumbing", &format!("厨房水管漏水 {round}")).await;
        assert_eq!(d["dispatch_mode"], "grab");
        assert!(d["assignee_user_id"].is_null());
        if round == 0 {
            assert_eq!(
                notices(&app, "repair1", "notice-report-grab-open", &id).await,
                1
            );
            // In the pool of the company's people only.
            for (s, sees) in [
                (&repair1, true),
                (&repair2, true),
                (&same_area, false),
                (&elsewhere, false),
                (&committee, false),
            ] {
                let pool = app.get(s, "/api/v1/reports/grab-pool").await.ok();
                let has = pool
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["id"] == id.as_str());
                assert_eq!(has, sees, "{}", s.user["login"]);
            }
            let html = app.get(&repair1, "/staff/reports?tab=grab").await.text();
            assert!(html.contains(&format!("/staff/reports/{id}")));
            // Another company's technician, though the company serves the same community: the
            // report is not their unit's, so for them it does not exist (404), as elsewhere.
            // Dispatchers do not grab.
            act_resp(&app, &same_area, &id, json!({ "action": "grab" }))
                .await
                .expect(404);
            app.get(&same_area, &format!("/api/v1/reports/{id}"))
                .await
                .expect(404);
            act_resp(&app, &elsewhere, &id, json!({ "action": "grab" }))
                .await
                .expect(404);
            app.get(&elsewhere, &format!("/api/v1/reports/{id}"))
                .await
                .expect(404);
            act_resp(&app, &committee, &id, json!({ "action": "grab" }))
                .await
                .expect(403);
        }
        let grab = json!({ "action": "grab" });
        let (a, b) = tokio::join!(
            act_resp(&app, &repair1, &id, grab.clone()),
            act_resp(&app, &repair2, &id, grab.clone())
        );
        let statuses = [a.status.as_u16(), b.status.as_u16()];
        assert!(
            statuses.contains(&200) && statuses.contains(&409),
            "round {round}: {statuses:?} {} {}",
            a.text(),
            b.text()
        );
        let (winner, loser) = if a.status.as_u16() == 200 {
            (a, b)
        } else {
            (b, a)
        };
        let won = winner.json();
        let lost = loser.json();
        assert_code(&lost, "report.already_taken");
        assert!(lost["message"].as_str().unwrap().contains("抢"), "{lost}");
        let stored = report(&app, &committee, &id).await;
        assert_eq!(
            stored["report"]["assignee_user_id"],
            won["assignee_user_id"]
        );
        assert_eq!(
            stored["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["action"] == "grab")
                .count(),
            1,
            "the loser changed nothing"
        );
        // Taken jobs leave the pool; a late grab is the same 409.
        let pool = app.get(&repair1, "/api/v1/reports/grab-pool").await.ok();
        assert!(
            !pool
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["id"] == id.as_str())
        );
        let v = act_resp(&app, &repair1, &id, grab).await.expect(409);
        assert_code(&v, "report.already_taken");
        // So is a late grab from a page that still shows the version it was opened at.
        let stale = json!({ "action": "grab", "version": stored["report"]["version"].as_i64().unwrap() - 1 });
        let v = act_resp(&app, &repair2, &id, stale).await.expect(409);
        assert_code(&v, "report.already_taken");
    }

    // A job not dispatched for grabbing cannot be grabbed.
    let (id, _) = dispatched(&app, "repair_common", "公共走廊墙皮脱落").await;
    let v = act_resp(&app, &repair1, &id, json!({ "action": "grab" }))
        .await
        .expect(409);
    assert_code(&v, "report.not_grab_mode");
    app.close().await;
}

async fn reopen_store(app: &TestApp) -> Store {
    let url = app
        .database_url()
        .unwrap_or_else(|| linli_store::sqlite_url(&app.dir));
    Store::open(
        &DbConfig {
            url,
            max_connections: 2,
            sqlite_synchronous: "NORMAL".into(),
        },
        &app.dir,
        None,
        linli_server::modules::platform(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn round_robin_is_fair_durable_skips_disabled_and_never_drops_a_report() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let property1 = one(&app, "SELECT id FROM orgs WHERE name LIKE $1", "%江城物业%").await;
    let mut people = vec![
        user_id(&app, "property").await,
        user_id(&app, "repair1").await,
        user_id(&app, "repair2").await,
    ];
    people.sort();

    let mut served = Vec::new();
    for i in 0..6 {
        let (id, d) = dispatched(&app, "repair_door", &format!("单元门禁坏了 {i}")).await;
        assert_eq!(d["dispatch_mode"], "round_robin");
        let r = report(&app, &committee, &id).await;
        let who = r["report"]["assignee_user_id"]
            .as_str()
            .unwrap()
            .to_string();
        let auto = r["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "assign")
            .unwrap()
            .clone();
        assert_eq!(auto["data"]["mode"], "round_robin");
        assert_eq!(auto["data"]["auto"], true);
        assert_eq!(
            notices(
                &app,
                &login_of(&app, &who).await,
                "notice-report-assigned",
                &id
            )
            .await,
            1
        );
        served.push(who);
    }
    // In id order, each person once per turn.
    let expected: Vec<String> = people.iter().chain(people.iter()).cloned().collect();
    assert_eq!(served, expected);
    assert_eq!(
        one(
            &app,
            "SELECT last_user_id FROM dispatch_cursors WHERE unit_id = $1",
            &property1
        )
        .await,
        people[2]
    );

    // The rotation lives in the database: a separately opened store continues it.
    let other = reopen_store(&app).await;
    let committee_p = other
        .principal(&user_id(&app, "committee").await)
        .await
        .unwrap()
        .unwrap();
    let resident = app.login("resident").await;
    let room = resident_room(&app).await;
    let created = app
        .post(
            &resident,
            "/api/v1/reports",
            json!({ "category": "repair_door", "description": "门禁刷卡没反应", "place_id": room }),
        )
        .await
        .expect(201);
    let id = created["report"]["id"].as_str().unwrap().to_string();
    for action in ["accept", "dispatch"] {
        other
            .report_act(
                &committee_p,
                &id,
                linli_store::reports::actions::ReportAction {
                    action: action.into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    let r = report(&app, &committee, &id).await;
    assert_eq!(r["report"]["assignee_user_id"], people[0].as_str());
    other.db.read.close().await;
    other.db.write.close().await;

    // A disabled account is skipped.
    let skipped = people[1].clone();
    disable(&app, &login_of(&app, &skipped).await, true).await;
    for i in 0..4 {
        let (id, _) = dispatched(&app, "repair_door", &format!("门禁又坏了 {i}")).await;
        let r = report(&app, &committee, &id).await;
        assert_ne!(r["report"]["assignee_user_id"], skipped.as_str());
        assert!(r["report"]["assignee_user_id"].is_string());
    }

    // Nobody left: the report waits unassigned and the dispatchers are told.
    for p in &people {
        disable(&app, &login_of(&app, p).await, true).await;
    }
    let (id, d) = dispatched(&app, "repair_door", "门禁没人修").await;
    assert_eq!(d["status"], "dispatched");
    assert!(d["assignee_user_id"].is_null());
    let r = report(&app, &committee, &id).await;
    let ev = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "dispatch")
        .unwrap()
        .clone();
    assert_eq!(ev["data"]["round_robin"], "no_eligible_person");
    assert_eq!(
        notices(&app, "street", "notice-report-no-assignee", &id).await,
        1
    );
    app.close().await;
}

async fn login_of(app: &TestApp, user_id: &str) -> String {
    one(app, "SELECT login FROM users WHERE id = $1", user_id).await
}

#[tokio::test]
async fn paid_repairs_need_an_accepted_quote_before_the_reply() {
    let app = TestApp::demo().await;
    let repair1 = app.login("repair1").await;
    let resident = app.login("resident").await;
    let committee = app.login("committee").await;

    let (id, d) = dispatched(&app, "repair_plumbing", "卫生间水龙头更换").await;
    assert_eq!(d["paid"], true);
    act(&app, &repair1, &id, json!({ "action": "grab" })).await;

    // Before signing there is nothing to quote.
    let v = act_resp(
        &app,
        &repair1,
        &id,
        json!({ "action": "quote", "amount_fen": 8000, "public_note": "更换水龙头" }),
    )
    .await
    .expect(409);
    assert_code(&v, "report.quote_not_in_progress");
    act(&app, &repair1, &id, json!({ "action": "sign" })).await;

    let reply = json!({ "action": "reply", "outcome": "solved", "public_note": "已更换" });
    let before = report(&app, &committee, &id).await["report"].clone();
    let v = act_resp(&app, &repair1, &id, reply.clone())
        .await
        .expect(409);
    assert_code(&v, "report.quote_not_accepted");
    // (An answer names the quote it answers: its amount and `quoted_at`.)
    let nothing_shown = json!({ "action": "quote_accept", "amount_fen": 8000, "quoted_at": 1 });
    let v = act_resp(&app, &resident, &id, nothing_shown)
        .await
        .expect(409);
    assert_code(&v, "report.no_pending_quote");
    for bad in [
        json!({ "action": "quote", "public_note": "x" }),
        json!({ "action": "quote", "amount_fen": 0, "public_note": "x" }),
        json!({ "action": "quote", "amount_fen": 100 }),
    ] {
        act_resp(&app, &repair1, &id, bad).await.expect(400);
    }
    assert_eq!(
        report(&app, &committee, &id).await["report"],
        before,
        "nothing changed"
    );

    // The quote, then the resident's answer.
    let q = act(
        &app,
        &repair1,
        &id,
        json!({ "action": "quote", "amount_fen": 8000, "public_note": "更换水龙头，材料费加人工" }),
    )
    .await;
    assert_eq!(q["quote_status"], "pending");
    assert_eq!(q["quote_fen"], 8000);
    assert_eq!(
        notices(&app, "resident", "notice-report-quote", &id).await,
        1
    );
    let v = act_resp(&app, &repair1, &id, reply.clone())
        .await
        .expect(409);
    assert_code(&v, "report.quote_not_accepted");
    // The technician cannot accept for the resident.
    let shown =
        json!({ "action": "quote_accept", "amount_fen": 8000, "quoted_at": q["quoted_at"] });
    act_resp(&app, &repair1, &id, shown).await.expect(403);

    // The resident's page shows the price and the buttons; accepting goes through the form.
    let html = app
        .get(&resident, &format!("/me/reports/{id}"))
        .await
        .text();
    assert!(
        html.contains("¥80.00") && html.contains("id=\"quote-accept\""),
        "{html}"
    );
    let form = quote_answer_form(&html, "accept");
    assert_eq!(control(&form, "amount_fen"), "8000");
    assert_eq!(control(&form, "quoted_at"), q["quoted_at"].to_string());
    let body = format!(
        "_csrf={}&decision=accept&amount_fen=8000&quoted_at={}",
        resident.csrf, q["quoted_at"]
    );
    let no_csrf = app
        .call(
            "POST",
            &format!("/me/reports/{id}/quote"),
            None,
            Some((
                "application/x-www-form-urlencoded",
                b"decision=accept".to_vec(),
            )),
            &[("cookie", resident.cookie.as_str())],
        )
        .await;
    assert_eq!(no_csrf.status.as_u16(), 403);
    let ok = app
        .call(
            "POST",
            &format!("/me/reports/{id}/quote"),
            None,
            Some(("application/x-www-form-urlencoded", body.into_bytes())),
            &[("cookie", resident.cookie.as_str())],
        )
        .await;
    assert_eq!(ok.status.as_u16(), 303, "{}", ok.text());
    let r = report(&app, &committee, &id).await;
    assert_eq!(r["report"]["quote_status"], "accepted");
    assert_eq!(
        notices(&app, "repair1", "notice-report-quote-accepted", &id).await,
        1
    );
    let v = act_resp(
        &app,
        &repair1,
        &id,
        json!({ "action": "quote", "amount_fen": 9000, "public_note": "加价" }),
    )
    .await
    .expect(409);
    assert_code(&v, "report.quote_already_accepted");
    let staff_html = app
        .get(&repair1, &format!("/staff/reports/{id}"))
        .await
        .text();
    assert!(staff_html.contains("id=\"report-quote\""));
    let done = act(&app, &repair1, &id, reply.clone()).await;
    assert_eq!(done["status"], "replied");

    // Declining closes the work with the resident's note; nothing can be replied after.
    let (id2, _) = dispatched(&app, "repair_plumbing", "热水器不出热水").await;
    act(&app, &repair1, &id2, json!({ "action": "grab" })).await;
    act(&app, &repair1, &id2, json!({ "action": "sign" })).await;
    // Staff quote through the page form, in yuan.
    let staff_html = app
        .get(&repair1, &format!("/staff/reports/{id2}"))
        .await
        .text();
    assert!(staff_html.contains("id=\"act-quote\""));
    let form = |amount: &str| {
        format!(
            "_csrf={}&action=quote&amount_yuan={amount}&public_note=%E6%9B%B4%E6%8D%A2%E5%8A%A0%E7%83%AD%E7%AE%A1",
            repair1.csrf
        )
        .into_bytes()
    };
    let post = |body: Vec<u8>| {
        let cookie = repair1.cookie.clone();
        let uri = format!("/staff/reports/{id2}/act");
        let app = &app;
        async move {
            app.call(
                "POST",
                &uri,
                None,
                Some(("application/x-www-form-urlencoded", body)),
                &[("cookie", cookie.as_str())],
            )
            .await
        }
    };
    assert_eq!(post(form("3.5.0")).await.status.as_u16(), 400);
    assert!(report(&app, &committee, &id2).await["report"]["quote_fen"].is_null());
    assert_eq!(post(form("350.00")).await.status.as_u16(), 303);
    assert_eq!(
        report(&app, &committee, &id2).await["report"]["quote_fen"],
        35000
    );
    let quoted_at = report(&app, &resident, &id2).await["report"]["quoted_at"].clone();
    let closed = act(
        &app,
        &resident,
        &id2,
        json!({ "action": "quote_decline", "amount_fen": 35000, "quoted_at": quoted_at, "public_note": "太贵了，自己找人修" }),
    )
    .await;
    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["outcome"], "declined");
    assert_eq!(closed["quote_status"], "declined");
    assert_eq!(closed["extended_status"], "CLOSED");
    assert_eq!(
        notices(&app, "repair1", "notice-report-quote-declined", &id2).await,
        1
    );
    let v = act_resp(&app, &repair1, &id2, reply).await.expect(409);
    assert_code(&v, "report.illegal_transition");
    let v = act_resp(
        &app,
        &resident,
        &id2,
        json!({ "action": "quote_accept", "amount_fen": 35000, "quoted_at": quoted_at }),
    )
    .await
    .expect(409);
    assert_code(&v, "report.quote_not_in_progress");
    let ev = report(&app, &resident, &id2).await["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "quote_decline")
        .unwrap()
        .clone();
    assert_eq!(ev["public_note"], "太贵了，自己找人修");
    assert_eq!(ev["to_status"], "closed");

    // The solve rate counts replies only: the declined job is not one.
    let stats = app
        .get(&committee, "/api/v1/reports/stats?by=category")
        .await
        .ok();
    let row = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "repair_plumbing")
        .unwrap()
        .clone();
    assert_eq!(row["replied"], 1);
    app.close().await;
}

/// Set the return-visit policy of the catalogue rule for repair_common (a new rule version).
async fn set_visit_policy(app: &TestApp, policy: &str, percent: i64) {
    let admin = app.login("admin").await;
    let rules = app.get(&admin, "/api/v1/routing-rules").await.ok();
    let rule = rules
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["category"] == "repair_common")
        .unwrap()
        .clone();
    let mut input = json!({});
    for f in [
        "rule_key",
        "category",
        "area_id",
        "unit_id",
        "deadline_unit",
        "sign_by",
        "first_contact_by",
        "resolve_by",
        "notice_zh",
        "notice_en",
        "dispatch_mode",
        "paid",
    ] {
        input[f] = rule[f].clone();
    }
    input["return_visit"] = json!(policy);
    input["visit_sample_percent"] = json!(percent);
    let r = app
        .post(&admin, "/api/v1/routing-rules", input)
        .await
        .expect(201);
    assert_eq!(r["return_visit"], policy);
}

/// A repair_common report through to the review.
async fn reviewed(app: &TestApp, what: &str) -> (String, Value) {
    let property = app.login("property").await;
    let committee = app.login("committee").await;
    let (id, _) = dispatched(app, "repair_common", what).await;
    act(app, &property, &id, json!({ "action": "sign" })).await;
    act(
        app,
        &property,
        &id,
        json!({ "action": "reply", "outcome": "solved", "public_note": "已处理" }),
    )
    .await;
    let r = act(app, &committee, &id, json!({ "action": "review_pass" })).await;
    (id, r)
}

#[tokio::test]
async fn return_visit_policy_always_none_and_a_reproducible_sample() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let resident = app.login("resident").await;

    let (id, r) = reviewed(&app, "always").await;
    assert_eq!(r["status"], "awaiting_visit");
    assert_eq!(
        notices(&app, "resident", "notice-report-rate", &id).await,
        1
    );

    set_visit_policy(&app, "none", 30).await;
    let (id, r) = reviewed(&app, "none").await;
    assert_eq!(r["status"], "closed");
    assert!(r["closed_at"].is_i64());
    assert!(r["rating"].is_null());
    let ev = report(&app, &committee, &id).await["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "review_pass")
        .unwrap()
        .clone();
    assert_eq!(ev["data"]["return_visit"], "none");
    assert_eq!(ev["data"]["visit"], false);
    // Told it is done, not asked to rate.
    assert_eq!(
        notices(&app, "resident", "notice-report-rate", &id).await,
        0
    );
    assert_eq!(
        notices(&app, "resident", "notice-report-done", &id).await,
        1
    );
    // No visit means no rating afterwards either (visit is only from awaiting_visit).
    let v = act_resp(
        &app,
        &resident,
        &id,
        json!({ "action": "visit", "rating": 5, "solved": true }),
    )
    .await
    .expect(409);
    assert_eq!(v["code"], "report.illegal_transition");
    // Satisfaction counts rated reports only: none are rated yet.
    let stats = app
        .get(&committee, "/api/v1/reports/stats?by=category")
        .await
        .ok();
    let row = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "repair_common")
        .unwrap()
        .clone();
    assert_eq!(row["rated"], 0);
    assert!(row["satisfaction_rate"].is_null());

    set_visit_policy(&app, "sample", 50).await;
    let (mut visited, mut closed) = (0, 0);
    for i in 0..24 {
        let (id, r) = reviewed(&app, &format!("sample {i}")).await;
        let expect_visit = linli_core::reports::repairs::sample_bucket(&id) < 50;
        let want = if expect_visit {
            "awaiting_visit"
        } else {
            "closed"
        };
        assert_eq!(r["status"], want, "{id}");
        let ev = report(&app, &committee, &id).await["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "review_pass")
            .unwrap()
            .clone();
        assert_eq!(ev["data"]["visit"], expect_visit);
        assert_eq!(ev["data"]["sample_percent"], 50);
        if expect_visit {
            visited += 1
        } else {
            closed += 1
        }
        if visited > 0 && closed > 0 && i >= 3 {
            break;
        }
    }
    assert!(
        visited > 0 && closed > 0,
        "both paths taken: {visited} / {closed}"
    );
    app.close().await;
}

/// Round robin under concurrent dispatches: dispatchers sending nine repairs of one unit at the
/// same moment still give each person exactly three (the cursor row is locked inside each
/// dispatch's transaction; on SQLite the writes queue, on PostgreSQL the row lock orders them).
#[tokio::test]
async fn concurrent_round_robin_dispatches_take_turns() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let committee = app.login("committee").await;
    let room = resident_room(&app).await;
    let mut ids = Vec::new();
    for i in 0..9 {
        let created = app
            .post(
                &resident,
                "/api/v1/reports",
                json!({ "category": "repair_door", "description": format!("门禁并发派单 {i}"), "place_id": room }),
            )
            .await
            .expect(201);
        let id = created["report"]["id"].as_str().unwrap().to_string();
        act(&app, &committee, &id, json!({ "action": "accept" })).await;
        ids.push(id);
    }
    let dispatches = ids.iter().map(|id| {
        let (app, committee) = (&app, &committee);
        async move { act(app, committee, id, json!({ "action": "dispatch" })).await }
    });
    let done = futures_util::future::join_all(dispatches).await;
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for d in &done {
        assert_eq!(d["status"], "dispatched");
        *counts
            .entry(d["assignee_user_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|n| *n == 3), "{counts:?}");
    app.close().await;
}

/// A paid repair (水电维修: grab, paid) taken by repair1 and signed: ready for a quote.
async fn signed_paid_job(app: &TestApp, what: &str) -> String {
    let repair1 = app.login("repair1").await;
    let (id, d) = dispatched(app, "repair_plumbing", what).await;
    assert_eq!(d["paid"], true);
    act(app, &repair1, &id, json!({ "action": "grab" })).await;
    act(app, &repair1, &id, json!({ "action": "sign" })).await;
    id
}

/// The controls (name, value) of each form inside the element with this id, read with an
/// XML reader that tolerates HTML (void elements, attributes without values).
fn forms_in(html: &str, element_id: &str) -> Vec<Vec<(String, String)>> {
    use quick_xml::Reader;
    use quick_xml::events::Event;
    let mut reader = Reader::from_str(html);
    reader.config_mut().check_end_names = false;
    reader.config_mut().allow_unmatched_ends = true;
    let attrs = |e: &quick_xml::events::BytesStart| -> Vec<(String, String)> {
        e.html_attributes()
            .filter_map(Result::ok)
            .map(|a| (a.key.as_ref().to_string(), a.value.to_string()))
            .collect()
    };
    let (mut depth, mut forms) = (0usize, Vec::new());
    let mut current: Option<Vec<(String, String)>> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                let name = e.name().as_ref().to_string();
                let a = attrs(&e);
                let get = |k: &str| a.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                if depth == 0 {
                    if get("id").as_deref() == Some(element_id) {
                        depth = 1;
                    }
                    continue;
                }
                match name.as_str() {
                    "form" => current = Some(Vec::new()),
                    "input" => {
                        if let (Some(f), Some(n)) = (current.as_mut(), get("name")) {
                            f.push((n, get("value").unwrap_or_default()));
                        }
                    }
                    "section" | "div" => depth += 1,
                    _ => {}
                }
            }
            Ok(Event::End(e)) if depth > 0 => match e.name().as_ref() {
                "form" => forms.extend(current.take()),
                "section" | "div" => depth -= 1,
                _ => {}
            },
            Ok(Event::Eof) => break,
            Err(e) => panic!("unreadable page: {e}"),
            _ => {}
        }
    }
    forms
}

/// The resident's quote answer form for `decision` (accept / decline) on a report page.
fn quote_answer_form(html: &str, decision: &str) -> Vec<(String, String)> {
    forms_in(html, "quote-answer")
        .into_iter()
        .find(|f| f.iter().any(|(n, v)| n == "decision" && v == decision))
        .unwrap_or_else(|| panic!("no {decision} form in {html}"))
}

fn control<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {form:?}"))
}

async fn post_fields(app: &TestApp, s: &Session, uri: &str, form: &[(String, String)]) -> Resp {
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    crate::common::post_form(app, s, uri, &fields).await
}

/// Issue #13, finding 3: the resident is shown ¥50, the technician re-quotes ¥100,000, the
/// resident answers from the page showing ¥50. The answer names the quote it answers (amount
/// and `quoted_at`); for another quote it is a 409 `report.quote_changed` that changes
/// nothing, the resident was told of the new price, and decides again on what they now see.
#[tokio::test]
async fn a_quote_answer_binds_to_the_quote_the_resident_was_shown() {
    let app = TestApp::demo().await;
    let repair1 = app.login("repair1").await;
    let resident = app.login("resident").await;
    let committee = app.login("committee").await;
    let id = signed_paid_job(&app, "厨房下水管漏水").await;

    act(
        &app,
        &repair1,
        &id,
        json!({ "action": "quote", "amount_fen": 5000, "public_note": "更换密封圈" }),
    )
    .await;
    let seen = report(&app, &resident, &id).await["report"].clone();
    assert_eq!(seen["quote_fen"], 5000);
    let seen_at = seen["quoted_at"].as_i64().unwrap();
    let page = app
        .get(&resident, &format!("/me/reports/{id}"))
        .await
        .text();
    assert_eq!(
        notices(&app, "resident", "notice-report-quote", &id).await,
        1
    );

    // The price changes while the resident's page is open; the resident is told.
    act(
        &app,
        &repair1,
        &id,
        json!({ "action": "quote", "amount_fen": 10_000_000, "public_note": "整体更换下水管" }),
    )
    .await;
    let before = report(&app, &committee, &id).await["report"].clone();
    assert_eq!(before["quote_fen"], 10_000_000);
    assert_eq!(before["quote_status"], "pending");
    assert!(before["quoted_at"].as_i64().unwrap() > seen_at);

    // Answers naming the quote that was shown — the old amount, or the new amount with the old
    // quote — are refused, and so is an answer that names no quote.
    for (action, amount) in [
        ("quote_accept", 5000),
        ("quote_accept", 10_000_000),
        ("quote_decline", 5000),
    ] {
        let v = act_resp(
            &app,
            &resident,
            &id,
            json!({ "action": action, "amount_fen": amount, "quoted_at": seen_at }),
        )
        .await
        .expect(409);
        assert_code(&v, "report.quote_changed");
        assert!(v["message"].as_str().unwrap().contains("¥100000.00"), "{v}");
    }
    let v = act_resp(&app, &resident, &id, json!({ "action": "quote_accept" }))
        .await
        .expect(400);
    assert_eq!(v["code"], "validation.required");
    assert_eq!(
        notices(&app, "resident", "notice-report-quote-changed", &id).await,
        1
    );

    // The old page's accept form: the page comes back with the message and the new price.
    let old = quote_answer_form(&page, "accept");
    assert_eq!(control(&old, "amount_fen"), "5000");
    assert_eq!(control(&old, "quoted_at"), seen_at.to_string());
    let resp = post_fields(&app, &resident, &format!("/me/reports/{id}/quote"), &old).await;
    assert_eq!(resp.status.as_u16(), 409, "{}", resp.text());
    let again = resp.text();
    let flash = forms_in(&again, "quote-answer");
    assert!(!flash.is_empty());
    assert!(again.contains("¥100000.00"), "{again}");
    assert_eq!(
        report(&app, &committee, &id).await["report"],
        before,
        "nothing changed"
    );
    assert_eq!(
        notices(&app, "repair1", "notice-report-quote-accepted", &id).await,
        0
    );
    assert!(
        !report(&app, &committee, &id).await["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "quote_accept"),
        "no acceptance recorded"
    );

    // The page shown now carries the new quote; the resident declines what they see.
    let fresh = quote_answer_form(&again, "decline");
    assert_eq!(control(&fresh, "amount_fen"), "10000000");
    assert_eq!(
        control(&fresh, "quoted_at"),
        before["quoted_at"].as_i64().unwrap().to_string()
    );
    let resp = post_fields(&app, &resident, &format!("/me/reports/{id}/quote"), &fresh).await;
    assert_eq!(resp.status.as_u16(), 303, "{}", resp.text());
    let after = report(&app, &committee, &id).await;
    assert_eq!(after["report"]["status"], "closed");
    assert_eq!(after["report"]["quote_status"], "declined");
    let ev = after["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "quote_decline")
        .unwrap()
        .clone();
    assert_eq!(ev["data"]["amount_fen"], 10_000_000);
    app.close().await;
}

/// Issue #13, finding 3 (second half): the price is stated by the person doing the job — its
/// assignee — or by a dispatcher of the place; another technician of the same company cannot
/// quote on a job someone else took, nor anyone before the job has a person.
#[tokio::test]
async fn only_the_assignee_or_a_dispatcher_quotes() {
    let app = TestApp::demo().await;
    let repair1 = app.login("repair1").await;
    let repair2 = app.login("repair2").await;
    let property = app.login("property").await;
    let committee = app.login("committee").await;
    let id = signed_paid_job(&app, "卫生间地漏堵塞").await;
    let before = report(&app, &committee, &id).await["report"].clone();
    let quote = |fen: i64| json!({ "action": "quote", "amount_fen": fen, "public_note": "疏通" });
    for other in [&repair2, &property] {
        act_resp(&app, other, &id, quote(9_000_000))
            .await
            .expect(403);
    }
    assert_eq!(
        report(&app, &committee, &id).await["report"],
        before,
        "nothing changed"
    );
    // The staff page offers the quote to the assignee only.
    let offered = |html: String| html.contains("id=\"act-quote\"");
    assert!(!offered(
        app.get(&repair2, &format!("/staff/reports/{id}"))
            .await
            .text()
    ));
    assert!(offered(
        app.get(&repair1, &format!("/staff/reports/{id}"))
            .await
            .text()
    ));
    let q = act(&app, &repair1, &id, quote(6000)).await;
    assert_eq!(q["quote_fen"], 6000);
    // A dispatcher may state it for the assignee (e.g. taken by phone).
    let q = act(&app, &committee, &id, quote(6500)).await;
    assert_eq!(q["quote_fen"], 6500);

    // A paid job nobody holds yet (signed by someone of the unit): grab it, or be assigned,
    // before quoting.
    let (open, _) = dispatched(&app, "repair_plumbing", "阳台水管爆裂").await;
    act(&app, &repair2, &open, json!({ "action": "sign" })).await;
    let v = act_resp(&app, &repair2, &open, quote(6000))
        .await
        .expect(403);
    assert_eq!(v["code"], "forbidden");
    app.close().await;
}
