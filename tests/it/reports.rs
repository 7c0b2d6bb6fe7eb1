//! The reports engine end to end: intake, every transition of the state machine, deadlines
//! driven by the store clock, 吹哨 with two summoned units, reopen, metrics; bad input; and
//! visibility between residents, communities and roles.

use serde_json::{Value, json};

use crate::common::{Session, TestApp};

const HOUR: i64 = 3_600_000;

async fn one(app: &TestApp, sql: &str, bind: &str) -> String {
    let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(bind.to_string())
        .fetch_one(&app.store.db.read)
        .await
        .unwrap();
    sqlx::Row::get::<String, _>(&row, 0)
}

async fn count(app: &TestApp, table: &str) -> i64 {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(&app.store.db.read)
        .await
        .unwrap();
    sqlx::Row::get::<i64, _>(&row, 0)
}

/// The demo resident's household and its room.
async fn resident_home(app: &TestApp) -> (String, String) {
    app.home_of("resident").await
}

async fn org(app: &TestApp, name_like: &str) -> String {
    one(
        app,
        "SELECT id FROM orgs WHERE name LIKE $1 ORDER BY name",
        &format!("%{name_like}%"),
    )
    .await
}

/// A second resident account in another household of the same community.
async fn neighbour(app: &TestApp, own_household: &str) -> Session {
    app.neighbour_of(own_household, "neighbour").await
}

async fn act(app: &TestApp, s: &Session, id: &str, body: Value) -> Value {
    app.post(s, &format!("/api/v1/reports/{id}/actions"), body)
        .await
        .ok()
}

#[tokio::test]
async fn a_report_walks_through_every_transition_and_produces_metrics() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let committee = app.login("committee").await;
    let property = app.login("property").await;
    let (_, room) = resident_home(&app).await;
    let committee1 = org(&app, "幸福里社区居民委员会").await;
    let property1 = org(&app, "江城物业").await;
    let cg1 = org(&app, "大智街道城管科").await;
    let zz1 = org(&app, "大智街道综治办").await;

    // Intake by the resident, with the catalogue's notice.
    let created = app
        .post(
            &resident,
            "/api/v1/reports",
            json!({ "category": "repair_common", "description": "3楼楼道灯不亮，晚上很危险", "place_id": room, "public": true }),
        )
        .await
        .expect(201);
    let id = created["report"]["id"].as_str().unwrap().to_string();
    assert_eq!(created["report"]["status"], "submitted");
    assert_eq!(created["report"]["channel"], "resident_app");
    assert!(created["notice"].as_str().unwrap().contains("物业"));
    // The answer is exactly what was stored.
    let stored = app
        .get(&resident, &format!("/api/v1/reports/{id}"))
        .await
        .ok();
    assert_eq!(stored["report"], created["report"]);

    act(
        &app,
        &committee,
        &id,
        json!({ "action": "accept", "public_note": "已受理" }),
    )
    .await;
    let d = act(&app, &committee, &id, json!({ "action": "dispatch" })).await;
    assert_eq!(d["status"], "dispatched");
    assert_eq!(d["unit_id"], property1.as_str());
    assert!(d["routing_rule_id"].is_string());
    assert!(d["sign_by"].as_i64().unwrap() > d["dispatched_at"].as_i64().unwrap());

    // 退单 with a reason, then dispatched again.
    let r = act(
        &app,
        &property,
        &id,
        json!({ "action": "return", "reason": "不属于物业管理范围，请核实" }),
    )
    .await;
    assert_eq!(r["status"], "accepted");
    assert_eq!(r["returned_count"], 1);
    act(&app, &committee, &id, json!({ "action": "dispatch" })).await;
    let r = act(&app, &property, &id, json!({ "action": "sign" })).await;
    assert_eq!(r["status"], "in_progress");
    assert_eq!(r["overdue_sign"], false);
    act(
        &app,
        &property,
        &id,
        json!({ "action": "contact", "public_note": "已电话联系居民" }),
    )
    .await;

    // 转办 to the committee and back.
    let r = act(
        &app,
        &committee,
        &id,
        json!({ "action": "transfer", "unit_id": committee1 }),
    )
    .await;
    assert_eq!(r["status"], "dispatched");
    act(&app, &committee, &id, json!({ "action": "sign" })).await;
    act(
        &app,
        &committee,
        &id,
        json!({ "action": "transfer", "unit_id": property1 }),
    )
    .await;
    // The committee cannot sign for the property company without dispatch rights… it has them,
    // so use the property account as the unit would.
    act(&app, &property, &id, json!({ "action": "sign" })).await;

    // 延期: asked by the unit, approved before the due time.
    let before = app
        .get(&committee, &format!("/api/v1/reports/{id}"))
        .await
        .ok();
    let due = before["report"]["resolve_by"].as_i64().unwrap();
    act(
        &app,
        &property,
        &id,
        json!({ "action": "extend_request", "days": 2, "reason": "需采购灯具" }),
    )
    .await;
    let r = act(&app, &committee, &id, json!({ "action": "extend" })).await;
    assert_eq!(r["extended_count"], 1);
    let new_due = r["resolve_by"].as_i64().unwrap();
    assert!(new_due > due + 24 * HOUR, "{due} → {new_due}");

    // Missed deadline: the clock moves past resolve-by; the job urges and escalates once.
    let now = app.store.now_ms();
    app.store.clock.advance(new_due - now + 25 * HOUR);
    // Sessions live on the same clock: a week later everyone signs in again.
    let resident = app.login("resident").await;
    let committee = app.login("committee").await;
    let property = app.login("property").await;
    let dept = app.login("dept").await;
    let street = app.login("street").await;
    let t = app.store.reports_tick().await.unwrap();
    assert_eq!((t.urged, t.escalated), (1, 1), "{t:?}");
    let again = app.store.reports_tick().await.unwrap();
    assert_eq!((again.urged, again.escalated, again.reminded), (0, 0, 0));
    let v = app
        .get(&committee, &format!("/api/v1/reports/{id}"))
        .await
        .ok();
    assert_eq!(v["report"]["overdue_resolve"], true);
    assert_eq!(v["report"]["escalation_level"], 1);
    let street_notices = count_notices(&app, "street", "notice-report-escalated").await;
    assert_eq!(street_notices, 1);
    // Extension after the due time is refused and changes nothing.
    let late = app
        .post(
            &property,
            &format!("/api/v1/reports/{id}/actions"),
            json!({ "action": "extend_request", "days": 1 }),
        )
        .await
        .expect(409);
    assert_eq!(late["code"], "report.extension_after_due");

    // 吹哨: two departments summoned; no reply until both replied (事不完人不撤).
    act(
        &app,
        &committee,
        &id,
        json!({ "action": "whistle", "unit_ids": [cg1, zz1], "internal_note": "涉及占道" }),
    )
    .await;
    let blocked = app
        .post(
            &property,
            &format!("/api/v1/reports/{id}/actions"),
            json!({ "action": "reply", "outcome": "solved", "public_note": "已修好" }),
        )
        .await
        .expect(409);
    assert_eq!(blocked["code"], "report.summons_outstanding");
    act(
        &app,
        &dept,
        &id,
        json!({ "action": "summon_sign", "unit_id": cg1 }),
    )
    .await;
    act(
        &app,
        &dept,
        &id,
        json!({ "action": "summon_reply", "unit_id": cg1, "public_note": "已清理占道杂物" }),
    )
    .await;
    // The dept officer does not work for 综治办.
    app.post(
        &dept,
        &format!("/api/v1/reports/{id}/actions"),
        json!({ "action": "summon_sign", "unit_id": zz1 }),
    )
    .await
    .expect(403);
    act(
        &app,
        &street,
        &id,
        json!({ "action": "summon_sign", "unit_id": zz1 }),
    )
    .await;
    act(
        &app,
        &street,
        &id,
        json!({ "action": "summon_reply", "unit_id": zz1, "public_note": "已排查" }),
    )
    .await;

    // Reply, review fail (补办), reply, review pass, resident rating, reopen, and close again.
    let r = act(
        &app,
        &property,
        &id,
        json!({ "action": "reply", "outcome": "solved", "public_note": "已更换灯具" }),
    )
    .await;
    assert_eq!(r["status"], "replied");
    let r = act(
        &app,
        &committee,
        &id,
        json!({ "action": "review_fail", "internal_note": "缺少照片" }),
    )
    .await;
    assert_eq!(r["status"], "in_progress");
    act(
        &app,
        &property,
        &id,
        json!({ "action": "reply", "outcome": "solved", "public_note": "已更换灯具并拍照" }),
    )
    .await;
    let r = act(&app, &committee, &id, json!({ "action": "review_pass" })).await;
    assert_eq!(r["status"], "awaiting_visit");
    let r = act(
        &app,
        &resident,
        &id,
        json!({ "action": "visit", "rating": 2, "solved": false }),
    )
    .await;
    assert_eq!(r["status"], "closed");
    let r = act(
        &app,
        &resident,
        &id,
        json!({ "action": "reopen", "public_note": "灯又坏了" }),
    )
    .await;
    assert_eq!(r["status"], "in_progress");
    assert_eq!(r["reopened_count"], 1);
    act(
        &app,
        &property,
        &id,
        json!({ "action": "reply", "outcome": "solved", "public_note": "重新检修线路" }),
    )
    .await;
    act(&app, &committee, &id, json!({ "action": "review_pass" })).await;
    let closed = act(
        &app,
        &committee,
        &id,
        json!({ "action": "visit", "rating": 5, "solved": true, "public_note": "电话回访满意" }),
    )
    .await;
    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["open311_status"], "closed");
    assert_eq!(closed["extended_status"], "FIXED");

    // Illegal transition on a closed report: 409, localized, nothing changed.
    let events_before = count(&app, "report_events").await;
    let audit_before = count(&app, "audit_log").await;
    let resp = app
        .call(
            "POST",
            &format!("/api/v1/reports/{id}/actions"),
            Some(&property),
            Some((
                "application/json",
                json!({ "action": "sign" }).to_string().into_bytes(),
            )),
            &[("accept-language", "en")],
        )
        .await;
    let e = resp.expect(409);
    assert_eq!(e["code"], "report.illegal_transition");
    assert!(e["message"].as_str().unwrap().contains("not possible"));
    assert_eq!(count(&app, "report_events").await, events_before);
    assert_eq!(count(&app, "audit_log").await, audit_before);
    let after = app
        .get(&committee, &format!("/api/v1/reports/{id}"))
        .await
        .ok();
    assert_eq!(after["report"]["version"], closed["version"]);

    // The history: every action is an event; internal notes for staff only.
    let actions: Vec<String> = after["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    for a in [
        "submit",
        "accept",
        "dispatch",
        "return",
        "sign",
        "contact",
        "transfer",
        "extend_request",
        "extend",
        "urge",
        "escalate",
        "whistle",
        "summon_sign",
        "summon_reply",
        "reply",
        "review_fail",
        "review_pass",
        "visit",
        "reopen",
    ] {
        assert!(
            actions.contains(&a.to_string()),
            "missing {a} in {actions:?}"
        );
    }
    assert!(after.to_string().contains("缺少照片"));
    let public = app
        .get(&resident, &format!("/api/v1/reports/{id}"))
        .await
        .ok();
    assert_eq!(public["staff_view"], false);
    assert!(!public.to_string().contains("缺少照片"));
    assert!(public.to_string().contains("已更换灯具"));
    assert_eq!(public["summons"].as_array().unwrap().len(), 2);

    // Metrics of the property company: returned, extended, reopened, late, satisfied at last.
    let stats = app
        .get(&committee, "/api/v1/reports/stats?by=unit")
        .await
        .ok();
    let row = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == property1.as_str())
        .unwrap_or_else(|| panic!("{stats}"))
        .clone();
    assert_eq!(row["total"], 1);
    assert_eq!(row["response_rate"], 1.0);
    assert_eq!(row["solve_rate"], 1.0);
    assert_eq!(row["satisfaction_rate"], 1.0);
    assert_eq!(row["on_time_rate"], 0.0);
    assert_eq!(row["return_rate"], 1.0);
    assert_eq!(row["reopen_rate"], 1.0);
    assert_eq!(row["extension_rate"], 1.0);
    assert!(row["avg_sign_ms"].is_i64());
    let by_month = app
        .get(&committee, "/api/v1/reports/stats?by=month")
        .await
        .ok();
    assert_eq!(by_month.as_array().unwrap().len(), 1);
    let csv = app
        .get(
            &committee,
            "/api/v1/reports/stats/export?format=csv&by=category",
        )
        .await;
    assert!(csv.status.is_success());
    assert!(csv.text().contains("repair_common"));
    // Residents have no statistics right.
    app.get(&resident, "/api/v1/reports/stats")
        .await
        .expect(403);
    app.close().await;
}

async fn count_notices(app: &TestApp, login: &str, key: &str) -> i64 {
    let row = sqlx::query(
        "SELECT COUNT(*) FROM notifications n JOIN users u ON u.id = n.user_id WHERE u.login = $1 AND n.msg_key = $2",
    )
    .bind(login.to_string())
    .bind(key.to_string())
    .fetch_one(&app.store.db.read)
    .await
    .unwrap();
    sqlx::Row::get::<i64, _>(&row, 0)
}

/// A minimal JPEG with an EXIF segment holding a GPS position.
fn jpeg_with_gps() -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8];
    let exif = b"Exif\0\0GPSLatitude=30.59";
    v.extend_from_slice(&[0xFF, 0xE1]);
    v.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
    v.extend_from_slice(exif);
    v.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x0B, 8, 0, 1, 0, 1, 1, 1, 0x11, 0]);
    v.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 0x3F, 0]);
    v.extend_from_slice(&[0x12, 0x34, 0xFF, 0x00, 0x56, 0xFF, 0xD9]);
    v
}

/// Issue #13 (round 2), finding 6: 40 photos uploaded at once to one report stored 35 — the
/// nine-photo limit was counted before the writing transaction. It is counted under the
/// report's row lock inside that transaction now, on both databases.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_photo_limit_holds_under_concurrent_uploads() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let (_, room) = resident_home(&app).await;
    let id = app
        .post(
            &resident,
            "/api/v1/reports",
            json!({ "category": "environment", "description": "垃圾桶满溢，拍了很多照片", "place_id": room }),
        )
        .await
        .expect(201)["report"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let router = app.router.clone();
        let (cookie, csrf, uri) = (
            resident.cookie.clone(),
            resident.csrf.clone(),
            format!("/api/v1/reports/{id}/photos"),
        );
        tasks.push(tokio::spawn(async move {
            use tower::ServiceExt;
            let req = axum::http::Request::builder()
                .method("POST")
                .uri(uri)
                .header("cookie", cookie)
                .header("x-csrf-token", csrf)
                .header("content-type", "image/jpeg")
                .body(axum::body::Body::from(jpeg_with_gps()))
                .unwrap();
            router.oneshot(req).await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let stored = statuses.iter().filter(|s| **s == 201).count();
    let refused = statuses.iter().filter(|s| **s == 400).count();
    assert_eq!((stored, refused), (9, 31), "{statuses:?}");
    let n: i64 = sqlx::Row::get(
        &sqlx::query("SELECT COUNT(*) FROM report_photos WHERE report_id = $1")
            .bind(id.clone())
            .fetch_one(&app.store.db.read)
            .await
            .unwrap(),
        0,
    );
    assert_eq!(n, 9, "nine photos, not one more");
    // The refused uploads left no files behind.
    let files = std::fs::read_dir(app.dir.join("uploads").join("reports"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(files, 9);
    app.close().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_a_clear_error_and_changes_nothing() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let (hh, room) = resident_home(&app).await;
    let reports_before = count(&app, "reports").await;

    let e = app
        .call(
            "POST",
            "/api/v1/reports",
            Some(&resident),
            Some((
                "application/json",
                json!({ "category": "ufo", "description": "x", "place_id": room })
                    .to_string()
                    .into_bytes(),
            )),
            &[("accept-language", "en")],
        )
        .await
        .expect(400);
    assert_eq!(e["code"], "report.unknown_category");
    assert!(e["message"].as_str().unwrap().contains("ufo"));
    let e = app
        .post(
            &resident,
            "/api/v1/reports",
            json!({ "category": "environment", "description": "垃圾没清运" }),
        )
        .await
        .expect(400);
    assert_eq!(e["code"], "report.location_required");
    assert!(e["message"].as_str().unwrap().contains("地点"));
    let e = app
        .post(&resident, "/api/v1/reports", json!({ "category": "complaint_property", "description": "保安态度差", "place_id": room, "public": true }))
        .await
        .expect(400);
    assert_eq!(e["code"], "report.complaint_never_public");
    // Outside the resident's community.
    let (other_room, _) = app.a_room_in("新村社区").await;
    let e = app
        .post(
            &resident,
            "/api/v1/reports",
            json!({ "category": "environment", "description": "x", "place_id": other_room }),
        )
        .await
        .expect(400);
    assert_eq!(e["code"], "report.place_outside_community");
    assert_eq!(count(&app, "reports").await, reports_before);

    let id = app
        .post(
            &resident,
            "/api/v1/reports",
            json!({ "category": "environment", "description": "垃圾桶满溢", "place_id": room }),
        )
        .await
        .expect(201)["report"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let created = app
        .get(&resident, &format!("/api/v1/reports/{id}"))
        .await
        .ok();
    assert_eq!(created["report"]["household_id"], hh.as_str());

    // Photos: fake, oversize, then a real one whose GPS metadata is stripped.
    let photos = format!("/api/v1/reports/{id}/photos");
    let e = app
        .call(
            "POST",
            &photos,
            Some(&resident),
            Some(("image/jpeg", b"<html>not an image</html>".to_vec())),
            &[],
        )
        .await
        .expect(400);
    assert_eq!(e["code"], "report.photo_invalid");
    let mut big = jpeg_with_gps();
    big.resize(9 * 1024 * 1024, 0);
    app.call(
        "POST",
        &photos,
        Some(&resident),
        Some(("image/jpeg", big)),
        &[],
    )
    .await
    .expect(413);
    assert_eq!(count(&app, "report_photos").await, 0);
    let meta = app
        .call(
            "POST",
            &photos,
            Some(&resident),
            Some(("image/jpeg", jpeg_with_gps())),
            &[],
        )
        .await
        .expect(201);
    assert_eq!(meta["mime"], "image/jpeg");
    let got = app
        .get(
            &resident,
            &format!("{photos}/{}", meta["id"].as_str().unwrap()),
        )
        .await;
    assert!(got.status.is_success());
    assert!(!got.bytes.windows(4).any(|w| w == b"Exif"));
    assert!(got.bytes.starts_with(&[0xFF, 0xD8]));

    // Illegal transition: signing a report nobody dispatched.
    let committee = app.login("committee").await;
    let e = app
        .post(
            &committee,
            &format!("/api/v1/reports/{id}/actions"),
            json!({ "action": "sign" }),
        )
        .await
        .expect(409);
    assert_eq!(e["code"], "report.illegal_transition");
    let e = app
        .post(
            &committee,
            &format!("/api/v1/reports/{id}/actions"),
            json!({ "action": "fly" }),
        )
        .await
        .expect(400);
    assert_eq!(e["code"], "validation.bad_value");
    // Someone else's report: the neighbour cannot see it, act on it, or fetch its photo.
    let neighbour = neighbour(&app, &hh).await;
    let events_before = count(&app, "report_events").await;
    app.get(&neighbour, &format!("/api/v1/reports/{id}"))
        .await
        .expect(404);
    app.post(
        &neighbour,
        &format!("/api/v1/reports/{id}/actions"),
        json!({ "action": "reopen" }),
    )
    .await
    .expect(404);
    app.get(
        &neighbour,
        &format!("{photos}/{}", meta["id"].as_str().unwrap()),
    )
    .await
    .expect(404);
    // A resident cannot accept their own report.
    app.post(
        &resident,
        &format!("/api/v1/reports/{id}/actions"),
        json!({ "action": "accept" }),
    )
    .await
    .expect(403);
    assert_eq!(count(&app, "report_events").await, events_before);
    app.close().await;
}

#[tokio::test]
async fn residents_see_their_own_and_moderated_public_reports_never_complaints() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let committee = app.login("committee").await;
    let committee3 = app.login("committee3").await;
    let property = app.login("property").await;
    let (hh, room) = resident_home(&app).await;
    let neighbour = neighbour(&app, &hh).await;

    let public_id = app
        .post(&resident, "/api/v1/reports", json!({ "category": "public_facility", "description": "小区健身器材损坏", "place_id": room, "public": true, "anonymous": true }))
        .await
        .expect(201)["report"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let complaint_id = app
        .post(&resident, "/api/v1/reports", json!({ "category": "complaint_property", "description": "物业费收取不透明", "place_id": room }))
        .await
        .expect(201)["report"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ids = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    // Before moderation the neighbour sees nothing.
    let l = app.get(&neighbour, "/api/v1/reports").await.ok();
    assert!(ids(&l).is_empty(), "{l}");
    app.get(&neighbour, &format!("/api/v1/reports/{public_id}"))
        .await
        .expect(404);
    // The owner sees both.
    let mine = app.get(&resident, "/api/v1/reports?mine=true").await.ok();
    assert_eq!(ids(&mine).len(), 2);

    // Moderation: the public one is shown, the complaint can never be.
    act(
        &app,
        &committee,
        &public_id,
        json!({ "action": "moderate", "public": true }),
    )
    .await;
    let e = app
        .post(
            &committee,
            &format!("/api/v1/reports/{complaint_id}/actions"),
            json!({ "action": "moderate", "public": true }),
        )
        .await
        .expect(400);
    assert_eq!(e["code"], "report.complaint_never_public");
    let l = app.get(&neighbour, "/api/v1/reports").await.ok();
    assert_eq!(ids(&l), vec![public_id.clone()]);
    let seen = app
        .get(&neighbour, &format!("/api/v1/reports/{public_id}"))
        .await
        .ok();
    // Anonymous to neighbours: no reporter, no household.
    assert!(seen["report"]["reporter_user_id"].is_null());
    assert!(seen["report"]["household_id"].is_null());
    app.get(&neighbour, &format!("/api/v1/reports/{complaint_id}"))
        .await
        .expect(404);

    // Duplicates preview and "me too" for the neighbour.
    let dups = app
        .get(
            &neighbour,
            &format!("/api/v1/reports/duplicates?category=public_facility&place_id={room}"),
        )
        .await
        .ok();
    assert!(dups.to_string().contains(&public_id), "{dups}");
    let n = app
        .post(
            &neighbour,
            &format!("/api/v1/reports/{public_id}/me-too"),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(n["supporters"], 1);
    let again = app
        .post(
            &neighbour,
            &format!("/api/v1/reports/{public_id}/me-too"),
            json!({}),
        )
        .await
        .expect(409);
    assert_eq!(again["code"], "report.already_supported");

    // Staff of another community see neither; the property company serving it sees neither
    // until one is dispatched to it (`unit_staff_see_only_what_reaches_their_unit`).
    let l3 = app.get(&committee3, "/api/v1/reports").await.ok();
    assert!(!ids(&l3).contains(&public_id));
    app.get(&committee3, &format!("/api/v1/reports/{complaint_id}"))
        .await
        .expect(404);
    app.post(
        &committee3,
        &format!("/api/v1/reports/{complaint_id}/actions"),
        json!({ "action": "accept" }),
    )
    .await
    .expect(404);
    let lp = app
        .get(&property, "/api/v1/reports?kind=complaint")
        .await
        .ok();
    assert!(ids(&lp).is_empty(), "{lp}");
    app.get(&property, &format!("/api/v1/reports/{complaint_id}"))
        .await
        .expect(404);
    let staff = app
        .get(&committee, &format!("/api/v1/reports/{public_id}"))
        .await
        .ok();
    assert_eq!(staff["staff_view"], true);
    assert!(staff["report"]["reporter_user_id"].is_string());

    // Merge: a duplicate is rejected into the other; its reporter backs the survivor.
    let dup_id = app
        .post(&neighbour, "/api/v1/reports", json!({ "category": "public_facility", "description": "健身器材坏了", "place_id": room }))
        .await
        .expect(201)["report"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = act(&app, &committee, &dup_id, json!({ "action": "reject", "reason": "duplicate", "duplicate_of": public_id, "public_note": "已合并到同一问题" })).await;
    assert_eq!(r["status"], "closed");
    assert_eq!(r["extended_status"], "DUPLICATE");
    let survivor = app
        .get(&committee, &format!("/api/v1/reports/{public_id}"))
        .await
        .ok();
    assert_eq!(
        survivor["report"]["supporters"], 1,
        "the neighbour backed it once already"
    );
    app.close().await;
}

/// Whether a session finds a report, in the list and one by one (the two must agree); the
/// report view when it does.
async fn sees(app: &TestApp, who: &Session, id: &str) -> Option<Value> {
    let list = app.get(who, "/api/v1/reports?limit=200").await.ok();
    let listed = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == id);
    let one = app.get(who, &format!("/api/v1/reports/{id}")).await;
    let found = one.status == 200;
    assert_eq!(
        listed, found,
        "{}: list and detail agree on {id}",
        who.user["login"]
    );
    found.then(|| one.ok())
}

/// The units in a session's report statistics.
async fn unit_keys(app: &TestApp, who: &Session) -> Vec<String> {
    let rows = app.get(who, "/api/v1/reports/stats?by=unit").await.ok();
    let mut keys: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    keys
}

/// A property company's or a department's staff see the reports of their area that their unit
/// handles or was summoned to — not everything filed there: a complaint about the property
/// company is the committee's until the committee sends it on.
#[tokio::test]
async fn unit_staff_see_only_what_reaches_their_unit() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let committee = app.login("committee").await;
    let property = app.login("property").await;
    let dept = app.login("dept").await;
    let (_, room) = resident_home(&app).await;
    let committee1 = org(&app, "幸福里社区居民委员会").await;
    let property1 = org(&app, "江城物业").await;
    let cg1 = org(&app, "大智街道城管科").await;
    let file = |category: &'static str, text: &'static str| {
        let (app, resident, room) = (&app, &resident, room.clone());
        async move {
            app.post(
                resident,
                "/api/v1/reports",
                json!({ "category": category, "description": text, "place_id": room }),
            )
            .await
            .expect(201)["report"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let repair = file("repair_common", "单元门禁坏了").await;
    let complaint = file("complaint_property", "物业保安态度恶劣").await;
    let other = file("complaint_other", "楼下商户油烟扰民").await;
    // Filed, not yet sent anywhere: the committee (area staff) sees all three as staff; the
    // property company and the department see none of them.
    for id in [&repair, &complaint, &other] {
        let v = sees(&app, &committee, id).await.expect("committee sees it");
        assert_eq!(v["staff_view"], true);
        assert!(sees(&app, &property, id).await.is_none(), "property: {id}");
        assert!(sees(&app, &dept, id).await.is_none(), "dept: {id}");
    }
    // Acting on a report one cannot see is "not found", as for strangers.
    app.post(
        &property,
        &format!("/api/v1/reports/{complaint}/actions"),
        json!({ "action": "sign" }),
    )
    .await
    .expect(404);

    // The repair dispatched to the company: its staff see it as staff (who reported it, so they
    // can call), and still not the complaints.
    act(&app, &committee, &repair, json!({ "action": "accept" })).await;
    let d = act(&app, &committee, &repair, json!({ "action": "dispatch" })).await;
    assert_eq!(d["unit_id"], property1.as_str());
    let v = sees(&app, &property, &repair)
        .await
        .expect("dispatched to it");
    assert_eq!(v["staff_view"], true);
    assert!(v["report"]["reporter_user_id"].is_string());
    assert!(sees(&app, &property, &complaint).await.is_none());
    // Accepting the complaint does not show it either, nor does dispatching it as the demo
    // catalogue says: a complaint about the company is the committee's to handle (issue #13
    // round 2, finding 9). Only a dispatcher sending it to the company on purpose shows it there.
    act(&app, &committee, &complaint, json!({ "action": "accept" })).await;
    assert!(sees(&app, &property, &complaint).await.is_none());
    let d = act(
        &app,
        &committee,
        &complaint,
        json!({ "action": "dispatch" }),
    )
    .await;
    assert_eq!(d["unit_id"], committee1.as_str(), "routed to the committee");
    assert!(sees(&app, &property, &complaint).await.is_none());
    act(&app, &committee, &complaint, json!({ "action": "sign" })).await;
    act(
        &app,
        &committee,
        &complaint,
        json!({ "action": "transfer", "unit_id": property1 }),
    )
    .await;
    assert!(sees(&app, &property, &complaint).await.is_some());

    // 吹哨: the department summoned to the committee's report sees it, as staff, from then on;
    // the property company never does.
    act(&app, &committee, &other, json!({ "action": "accept" })).await;
    let d = act(&app, &committee, &other, json!({ "action": "dispatch" })).await;
    assert_eq!(d["unit_id"], committee1.as_str());
    act(&app, &committee, &other, json!({ "action": "sign" })).await;
    assert!(sees(&app, &dept, &other).await.is_none());
    act(
        &app,
        &committee,
        &other,
        json!({ "action": "whistle", "unit_ids": [cg1], "internal_note": "油烟需城管执法" }),
    )
    .await;
    let v = sees(&app, &dept, &other).await.expect("summoned");
    assert_eq!(v["staff_view"], true);
    assert_eq!(v["report"]["unit_id"], committee1.as_str());
    act(
        &app,
        &dept,
        &other,
        json!({ "action": "summon_sign", "unit_id": cg1 }),
    )
    .await;
    assert!(sees(&app, &property, &other).await.is_none());
    assert!(sees(&app, &dept, &repair).await.is_none());

    // Statistics follow the same line: the company counts its own unit's reports only.
    assert_eq!(unit_keys(&app, &property).await, vec![property1.clone()]);
    let mut all = vec![committee1.clone(), property1.clone()];
    all.sort();
    assert_eq!(unit_keys(&app, &committee).await, all);
    app.close().await;
}

#[tokio::test]
async fn catalogue_versions_and_the_calendar_are_data() {
    let app = TestApp::demo().await;
    let admin = app.login("admin").await;
    let committee = app.login("committee").await;
    let resident = app.login("resident").await;
    let (_, room) = resident_home(&app).await;

    let cats = app.get(&resident, "/api/v1/report-categories").await.ok();
    for k in [
        "public_affair",
        "repair",
        "complaint",
        "suggestion",
        "inquiry",
    ] {
        assert!(cats.to_string().contains(k), "{k}");
    }
    let cal = app.get(&resident, "/api/v1/work-calendar").await.ok();
    assert!(cal["years"].as_array().unwrap().contains(&json!(2026)));

    let rules = app.get(&admin, "/api/v1/routing-rules").await.ok();
    let rule = rules
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["category"] == "repair_elevator")
        .unwrap()
        .clone();
    assert_eq!(rule["deadline_unit"], "hours");
    let mut input = rule.clone();
    input["resolve_by"] = json!(12);
    let v2 = app
        .post(&admin, "/api/v1/routing-rules", input.clone())
        .await
        .expect(201);
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["rule_key"], rule["rule_key"]);
    let all = app
        .get(&admin, "/api/v1/routing-rules?all_versions=true")
        .await
        .ok();
    let versions = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["rule_key"] == rule["rule_key"])
        .count();
    assert_eq!(versions, 2);
    // Committee staff may read but not edit the catalogue.
    app.post(&committee, "/api/v1/routing-rules", input)
        .await
        .expect(403);
    app.post(
        &committee,
        "/api/v1/work-calendar",
        json!({ "year": 2027, "source": "x" }),
    )
    .await
    .expect(403);

    // A report dispatched now remembers the new version and its 12-hour deadline.
    let id = app
        .post(&resident, "/api/v1/reports", json!({ "category": "repair_elevator", "description": "2单元电梯困人", "place_id": room }))
        .await
        .expect(201)["report"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    act(&app, &committee, &id, json!({ "action": "accept" })).await;
    let d = act(&app, &committee, &id, json!({ "action": "dispatch" })).await;
    assert_eq!(d["routing_rule_id"], v2["id"]);
    assert_eq!(
        d["resolve_by"].as_i64().unwrap() - d["dispatched_at"].as_i64().unwrap(),
        12 * HOUR
    );
    // Nobody signs or calls back within the hour: both deadlines are urged, once.
    app.store.clock.advance(2 * HOUR);
    let t = app.store.reports_tick().await.unwrap();
    assert_eq!((t.urged, t.escalated), (2, 0), "{t:?}");
    let t = app.store.reports_tick().await.unwrap();
    assert_eq!(t.urged, 0);

    // A year without data: working-day deadlines fall back to clock days, with the warning
    // recorded on the report; once the year is entered, no warning.
    app.store.clock.advance(3 * 365 * 24 * HOUR);
    // Sessions live on the same clock: three years later everyone signs in again.
    let admin = app.login("admin").await;
    let committee = app.login("committee").await;
    let resident = app.login("resident").await;
    let info = app.get(&admin, "/api/v1/work-calendar").await.ok();
    assert!(info["warning"].is_string());
    let id2 = app
        .post(
            &resident,
            "/api/v1/reports",
            json!({ "category": "environment", "description": "绿化带垃圾", "place_id": room }),
        )
        .await
        .expect(201)["report"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    act(&app, &committee, &id2, json!({ "action": "accept" })).await;
    let d2 = act(&app, &committee, &id2, json!({ "action": "dispatch" })).await;
    assert!(
        d2["calendar_warning"]
            .as_str()
            .unwrap()
            .starts_with("calendar_missing_year")
    );
    let year = chrono::DateTime::from_timestamp_millis(app.store.now_ms())
        .unwrap()
        .format("%Y")
        .to_string()
        .parse::<i32>()
        .unwrap();
    for y in [year, year + 1] {
        app.post(
            &admin,
            "/api/v1/work-calendar",
            json!({ "year": y, "source": "测试录入", "holidays": [format!("{y}-10-01")] }),
        )
        .await
        .ok();
    }
    let info = app.get(&admin, "/api/v1/work-calendar").await.ok();
    assert!(info["warning"].is_null(), "{info}");
    app.close().await;
}

#[tokio::test]
async fn concurrent_intake_is_group_committed_and_the_audit_chain_holds() {
    let app = std::sync::Arc::new(TestApp::demo().await);
    let committee = app.login("committee").await;
    let (_, room) = resident_home(&app).await;
    let before = count(&app, "reports").await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (app, s, room) = (app.clone(), committee.clone(), room.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({ "category": "environment", "description": format!("电话报事 {i}"), "place_id": room, "channel": "phone" });
            app.post(&s, "/api/v1/reports", body).await.expect(201)["report"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40);
    assert_eq!(count(&app, "reports").await, before + 40);
    // Every confirmed report has its event, and the audit chain is intact.
    let events = sqlx::query("SELECT COUNT(*) FROM report_events WHERE action = 'submit'")
        .fetch_one(&app.store.db.read)
        .await
        .unwrap();
    assert_eq!(sqlx::Row::get::<i64, _>(&events, 0), before + 40);
    let v = app.store.audit_verify().await.unwrap();
    assert!(v.first_broken.is_none(), "{:?}", v.reason);
    let staff = app
        .get(&committee, &format!("/api/v1/reports/{}", ids[0]))
        .await
        .ok();
    assert_eq!(staff["report"]["channel"], "phone");
    if let Ok(app) = std::sync::Arc::try_unwrap(app) {
        app.close().await;
    }
}

/// One HTTP/1.1 exchange over a fresh connection (the server runs as a separate process).
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), rest.to_string())
}

fn serve(app: &TestApp, port: u16) -> std::process::Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_linli"));
    cmd.args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&app.dir)
        .env("LINLI_LOG", "warn")
        .env_remove("LINLI_DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(url) = app.database_url() {
        cmd.arg("--database-url").arg(url);
    }
    let mut child = cmd.spawn().expect("linli starts");
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(120) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && http(port, "GET", "/healthz", &[], None).0 == 200
        {
            return child;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("server did not start");
}

fn login(port: u16) -> (String, String) {
    let body = json!({ "login": "committee", "password": crate::common::PASSWORD }).to_string();
    let (status, head, body) = http(port, "POST", "/api/v1/auth/login", &[], Some(&body));
    assert_eq!(status, 200, "{body}");
    let cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = serde_json::from_str::<Value>(&body).unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    (cookie, csrf)
}

/// Crash safety: every report the API confirmed is there after `kill -9` and a restart.
#[tokio::test]
async fn confirmed_reports_survive_kill_9() {
    let app = TestApp::empty().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let room = {
        let mut child = serve(&app, port);
        let (cookie, csrf) = login(port);
        let room = one(
            &app,
            "SELECT id FROM places WHERE kind = $1 ORDER BY path LIMIT 1",
            "room",
        )
        .await;
        let mut ids = Vec::new();
        // Concurrent writers, so some confirmations come from shared (group) commits.
        let handles: Vec<_> = (0..24)
            .map(|i| {
                let (cookie, csrf, room) = (cookie.clone(), csrf.clone(), room.clone());
                std::thread::spawn(move || {
                    let body = json!({ "category": "environment", "description": format!("崩溃测试 {i}"), "place_id": room, "channel": "phone" }).to_string();
                    let (status, _, body) = http(port, "POST", "/api/v1/reports", &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)], Some(&body));
                    assert_eq!(status, 201, "{body}");
                    serde_json::from_str::<Value>(&body).unwrap()["report"]["id"].as_str().unwrap().to_string()
                })
            })
            .collect();
        for h in handles {
            ids.push(h.join().unwrap());
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let mut child = serve(&app, port);
        let (cookie, _) = login(port);
        for id in &ids {
            let (status, _, body) = http(
                port,
                "GET",
                &format!("/api/v1/reports/{id}"),
                &[("Cookie", &cookie)],
                None,
            );
            assert_eq!(status, 200, "{id} lost after kill -9: {body}");
        }
        child.kill().unwrap();
        child.wait().unwrap();
        room
    };
    assert!(!room.is_empty());
    app.close().await;
}

/// Regression (found by `linli bench crash` on PostgreSQL): the first requests that need the
/// working-day calendar, arriving together, each found it missing and seeded it; the second
/// insert of the year failed as a duplicate and a dispatch answered 409. Now it is seeded once.
#[tokio::test]
async fn concurrent_first_uses_of_the_calendar_seed_it_once() {
    let app = TestApp::empty().await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = app.store.clone();
        tasks.push(tokio::spawn(async move { store.work_calendar().await }));
    }
    for t in tasks {
        t.await.unwrap().expect("every first use gets the calendar");
    }
    assert!(count(&app, "calendar_years").await >= 1);
    app.close().await;
}

/// Moderation (审核后展示) approves what the moderator saw. A photo the reporter adds later
/// was never seen by anyone: the report leaves the neighbours' view until a dispatcher looks
/// again (and is told to), and a moderation decided on the page from before the photo is a 409.
/// A photo a dispatcher adds does not undo their own approval.
#[tokio::test]
async fn a_photo_added_after_moderation_is_not_shown_before_it_is_moderated() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let committee = app.login("committee").await;
    let (hh, room) = resident_home(&app).await;
    let neighbour = neighbour(&app, &hh).await;
    let id = app
        .post(&resident, "/api/v1/reports", json!({ "category": "public_facility", "description": "小区凉亭顶棚破损", "place_id": room, "public": true }))
        .await
        .expect(201)["report"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = act(
        &app,
        &committee,
        &id,
        json!({ "action": "moderate", "public": true }),
    )
    .await;
    assert_eq!(shown["public"], true);
    app.get(&neighbour, &format!("/api/v1/reports/{id}"))
        .await
        .expect(200);

    let photos = format!("/api/v1/reports/{id}/photos");
    let moderators_page = app
        .get(&committee, &format!("/api/v1/reports/{id}"))
        .await
        .ok()["report"]["version"]
        .as_i64()
        .unwrap();
    app.call(
        "POST",
        &photos,
        Some(&resident),
        Some(("image/jpeg", jpeg_with_gps())),
        &[],
    )
    .await
    .expect(201);
    app.get(&neighbour, &format!("/api/v1/reports/{id}"))
        .await
        .expect(404);
    let now = app
        .get(&committee, &format!("/api/v1/reports/{id}"))
        .await
        .ok();
    assert_eq!(now["report"]["public"], false);
    assert!(now["report"]["version"].as_i64().unwrap() > moderators_page);
    let withdrawn = now["events"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|e| e["action"] == "moderate")
        .unwrap()
        .clone();
    assert_eq!(withdrawn["data"]["public"], false);
    assert_eq!(withdrawn["data"]["reason"], "new_photo");
    assert_eq!(
        count_notices(&app, "committee", "notice-report-moderate-again").await,
        1
    );

    // Deciding on the page from before the photo: a conflict, nothing changes.
    let stale = app
        .post(
            &committee,
            &format!("/api/v1/reports/{id}/actions"),
            json!({ "action": "moderate", "public": true, "version": moderators_page }),
        )
        .await
        .expect(409);
    assert_eq!(stale["code"], "conflict");
    app.get(&neighbour, &format!("/api/v1/reports/{id}"))
        .await
        .expect(404);

    // Looked at again (photo included): shown; the dispatcher's own photo keeps it shown.
    act(
        &app,
        &committee,
        &id,
        json!({ "action": "moderate", "public": true, "version": now["report"]["version"] }),
    )
    .await;
    app.call(
        "POST",
        &photos,
        Some(&committee),
        Some(("image/jpeg", jpeg_with_gps())),
        &[],
    )
    .await
    .expect(201);
    let seen = app
        .get(&neighbour, &format!("/api/v1/reports/{id}"))
        .await
        .ok();
    assert_eq!(seen["photos"].as_array().unwrap().len(), 2);
    app.close().await;
}
