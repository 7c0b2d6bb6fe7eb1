//! Gates, access records, alarms, vehicles and visitor passes.

use serde_json::{Value, json};

use crate::common::{Resp, Session, TestApp, form, submit};

/// A demo district with gates and gate-terminal tokens in two communities.
struct Setup {
    app: TestApp,
    admin: Session,
    property: Session,
    committee: Session,
    committee3: Session,
    resident: Session,
    c1: String,
    c3: String,
    /// Face gate and vehicle barrier in 幸福里社区, face gate in 新村社区.
    gate1: String,
    barrier1: String,
    gate3: String,
    /// Bearer secrets of gate terminals (VisitorVerify) for community 1 and 3.
    term1: String,
    term3: String,
}

async fn setup() -> Setup {
    let app = TestApp::demo().await;
    let admin = app.login("admin").await;
    let property = app.login("property").await;
    let committee = app.login("committee").await;
    let committee3 = app.login("committee3").await;
    let resident = app.login("resident").await;
    let c1 = app.place_id("community", "幸福里社区").await;
    let c3 = app.place_id("community", "新村社区").await;
    let gate = |place: &str, kind: &str, name: &str| json!({ "name": name, "place_id": place, "kind": kind, "device_id": format!("dev-{name}") });
    let gate1 = app
        .post(
            &property,
            "/api/v1/access/gates",
            gate(&c1, "face", "东门人脸"),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let barrier1 = app
        .post(
            &property,
            "/api/v1/access/gates",
            gate(&c1, "vehicle", "东门道闸"),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let gate3 = app
        .post(
            &property,
            "/api/v1/access/gates",
            gate(&c3, "face", "新村北门"),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let token = |place: &str| json!({ "name": "gate terminal", "actions": ["visitor_verify"], "place_id": place, "expires_in_days": 30 });
    let term1 = app
        .post(&admin, "/api/v1/auth/tokens", token(&c1))
        .await
        .expect(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let term3 = app
        .post(&admin, "/api/v1/auth/tokens", token(&c3))
        .await
        .expect(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    Setup {
        app,
        admin,
        property,
        committee,
        committee3,
        resident,
        c1,
        c3,
        gate1,
        barrier1,
        gate3,
        term1,
        term3,
    }
}

impl Setup {
    /// A person living now in a household of the community `community_id`.
    async fn resident_of(&self, community_id: &str) -> String {
        let path = self.app.place_path(community_id).await;
        let rows = sqlx::query(
            "SELECT r.person_id, h.path FROM residences r JOIN households h ON h.id = r.household_id WHERE r.end_date IS NULL ORDER BY r.person_id",
        )
        .fetch_all(&self.app.store.db.read)
        .await
        .unwrap();
        rows.iter()
            .find(|r| sqlx::Row::get::<String, _>(*r, 1).starts_with(&path))
            .map(|r| sqlx::Row::get::<String, _>(r, 0))
            .expect("a resident")
    }

    async fn bearer(&self, secret: &str, method: &str, uri: &str, body: Value) -> Resp {
        let auth = format!("Bearer {secret}");
        self.app
            .call(
                method,
                uri,
                None,
                Some(("application/json", body.to_string().into_bytes())),
                &[("authorization", auth.as_str())],
            )
            .await
    }

    async fn verify(&self, secret: &str, gate: &str, token: &str) -> Value {
        self.bearer(
            secret,
            "POST",
            "/api/v1/access/verify",
            json!({ "gate_id": gate, "token": token }),
        )
        .await
        .expect(200)
    }

    fn now(&self) -> i64 {
        self.app.store.now_ms()
    }

    async fn new_pass(&self, s: &Session, extra: Value) -> Value {
        let mut body = json!({
            "visitor_name": "张访客",
            "phone": "139 1234 5678",
            "valid_until": self.now() + 2 * 3_600_000,
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.app
            .post(s, "/api/v1/access/passes", body)
            .await
            .expect(201)
    }

    async fn count(&self, table: &str) -> i64 {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM {table}"
        )))
        .fetch_one(&self.app.store.db.read)
        .await
        .unwrap();
        sqlx::Row::get::<i64, _>(&r, "n")
    }

    /// A household of 幸福里社区 other than the demo resident's.
    async fn other_household(&self) -> String {
        let mine = self
            .app
            .get(&self.resident, "/api/v1/me/household")
            .await
            .ok()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let v = self
            .app
            .get(
                &self.committee,
                &format!("/api/v1/households?place_id={}&limit=5", self.c1),
            )
            .await
            .ok();
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap().to_string())
            .find(|id| *id != mine)
            .unwrap()
    }
}

/// Ids of the gates a caller sees.
async fn gate_ids(app: &TestApp, s: &Session) -> Vec<String> {
    app.get(s, "/api/v1/access/gates")
        .await
        .ok()
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_string())
        .collect()
}

/// The value of a Prometheus counter line (0 when absent).
async fn counter(app: &TestApp, line_start: &str) -> f64 {
    let text = app.call("GET", "/metrics", None, None, &[]).await.text();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn pass_lifecycle_single_and_multi_use_window_and_revoke() {
    let t = setup().await;
    let app = &t.app;
    let pass = t
        .new_pass(&t.resident, json!({ "plate": "沪b 54321" }))
        .await;
    assert_eq!(pass["status"], "active");
    assert_eq!(pass["phone_masked"], "139****5678");
    assert_eq!(pass["plate"], "沪B54321");
    let token = pass["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 55);
    let id = pass["id"].as_str().unwrap().to_string();
    // The phone number is stored encrypted, never in clear.
    let enc: String = sqlx::Row::get(
        &sqlx::query("SELECT phone_enc FROM visitor_passes WHERE id = $1")
            .bind(id.clone())
            .fetch_one(&app.store.db.read)
            .await
            .unwrap(),
        "phone_enc",
    );
    assert!(!enc.contains("13912345678"));
    assert_eq!(app.store.cipher.decrypt(&enc).unwrap(), "13912345678");

    // The QR code for the resident's page.
    let qr = app
        .get(&t.resident, &format!("/api/v1/access/passes/{id}/qr.svg"))
        .await;
    assert_eq!(qr.status.as_u16(), 200);
    assert_eq!(qr.headers["content-type"], "image/svg+xml");
    assert!(qr.text().contains("<svg"));
    // The same code as an image to save or send (a PNG of whole modules).
    let png = app
        .get(&t.resident, &format!("/api/v1/access/passes/{id}/qr.png"))
        .await;
    assert_eq!(png.status.as_u16(), 200);
    assert_eq!(png.headers["content-type"], "image/png");
    assert_eq!(png.headers["cache-control"], "no-store");
    assert_eq!(&png.bytes[..8], b"\x89PNG\r\n\x1a\n");

    // First scan lets the visitor in, and writes an access record; the second is refused.
    let v = t.verify(&t.term1, &t.gate1, &token).await;
    assert_eq!(v["accepted"], true, "{v}");
    assert_eq!(v["reason"], "accepted");
    assert_eq!(v["visitor_name"], "张访客");
    assert!(v["message"].as_str().unwrap().contains("放行"), "{v}");
    let v = t.verify(&t.term1, &t.gate1, &token).await;
    assert_eq!(v["accepted"], false);
    assert_eq!(v["reason"], "used");
    assert_eq!(
        v["visitor_name"],
        Value::Null,
        "a refusal names nobody: {v}"
    );
    assert_eq!(v["plate"], Value::Null, "{v}");
    let seen = app
        .get(&t.resident, &format!("/api/v1/access/passes/{id}"))
        .await
        .ok();
    assert_eq!(seen["status"], "used");
    assert_eq!(seen["uses"], 1);
    assert_eq!(seen["checks"].as_array().unwrap().len(), 2);
    let recs = app
        .get(&t.committee, "/api/v1/access/records?limit=50")
        .await
        .ok();
    let visitor: Vec<&Value> = recs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["pass_id"] == json!(id))
        .collect();
    assert_eq!(visitor.len(), 1);
    assert_eq!(visitor[0]["subject"], "visitor");

    // A multi-use pass works any number of times within its window.
    let multi = t.new_pass(&t.resident, json!({ "multi_use": true })).await;
    let mtoken = multi["token"].as_str().unwrap();
    for _ in 0..3 {
        let v = t.verify(&t.term1, &t.gate1, mtoken).await;
        assert_eq!(v["accepted"], true, "{v}");
    }
    // Revoked by its owner: refused, and revoking twice is a conflict.
    let mid = multi["id"].as_str().unwrap();
    let r = app
        .post(
            &t.resident,
            &format!("/api/v1/access/passes/{mid}/revoke"),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(r["status"], "revoked");
    let v = t.verify(&t.term1, &t.gate1, mtoken).await;
    assert_eq!(v["reason"], "revoked");
    app.post(
        &t.resident,
        &format!("/api/v1/access/passes/{mid}/revoke"),
        json!({}),
    )
    .await
    .expect(409);

    // The window: not yet valid, then valid, then expired (the store clock moves).
    let later = t
        .new_pass(
            &t.resident,
            json!({ "valid_from": t.now() + 3_600_000, "valid_until": t.now() + 3 * 3_600_000, "multi_use": true }),
        )
        .await;
    let ltoken = later["token"].as_str().unwrap();
    assert_eq!(later["status"], "pending");
    assert_eq!(
        t.verify(&t.term1, &t.gate1, ltoken).await["reason"],
        "not_yet_valid"
    );
    app.store.clock.advance(2 * 3_600_000);
    assert_eq!(
        t.verify(&t.term1, &t.gate1, ltoken).await["reason"],
        "accepted"
    );
    app.store.clock.advance(2 * 3_600_000);
    assert_eq!(
        t.verify(&t.term1, &t.gate1, ltoken).await["reason"],
        "expired"
    );

    // Bad input is refused with a localized message and creates nothing.
    let before = t.count("visitor_passes").await;
    let bad = app
        .post(
            &t.resident,
            "/api/v1/access/passes",
            json!({ "visitor_name": "李", "phone": "12345", "valid_until": t.now() + 3_600_000 }),
        )
        .await
        .expect(400);
    assert_eq!(bad["code"], "validation.phone.invalid");
    let bad = app
        .call(
            "POST",
            "/api/v1/access/passes",
            Some(&t.resident),
            Some((
                "application/json",
                json!({ "visitor_name": "李", "phone": "13912345678", "valid_until": t.now() - 1 })
                    .to_string()
                    .into_bytes(),
            )),
            &[("accept-language", "en")],
        )
        .await
        .expect(400);
    assert_eq!(bad["code"], "access.pass.bad_window");
    assert!(bad["message"].as_str().unwrap().contains("window"));
    app.post(
        &t.resident,
        "/api/v1/access/passes",
        json!({ "visitor_name": "李", "phone": "13912345678", "plate": "ABC", "valid_until": t.now() + 3_600_000 }),
    )
    .await
    .expect(400);
    assert_eq!(t.count("visitor_passes").await, before);
    t.app.close().await;
}

#[tokio::test]
async fn forged_tampered_and_garbage_tokens_are_refused_counted_and_store_nothing() {
    let t = setup().await;
    let app = &t.app;
    let pass = t.new_pass(&t.resident, json!({})).await;
    let token = pass["token"].as_str().unwrap().to_string();
    let tables = [
        "pass_checks",
        "access_records",
        "audit_log",
        "visitor_passes",
    ];
    let mut before = Vec::new();
    for tb in tables {
        before.push(t.count(tb).await);
    }
    let forged_before = counter(app, "linli_access_verify_total{result=\"forged\"}").await;
    let malformed_before = counter(app, "linli_access_verify_total{result=\"malformed\"}").await;

    // One character changed anywhere in the MAC or the body.
    let mut tampered = token.clone().into_bytes();
    let i = 30;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    // A token for the same pass, extended by a day, signed with another key.
    let pid = uuid::Uuid::parse_str(pass["id"].as_str().unwrap()).unwrap();
    let other_key = linli_core::access::encode_pass(
        &[1u8; 32],
        &linli_core::access::PassClaim {
            pass_id: pid,
            valid_until: pass["valid_until"].as_i64().unwrap() + 86_400_000,
        },
    );
    for (tok, reason) in [
        (tampered.as_str(), "forged"),
        (other_key.as_str(), "forged"),
        ("", "malformed"),
        ("https://example.com/?q=1", "malformed"),
        (&"Z".repeat(5000), "malformed"),
        ("京京京京京京京京京京京京京京京京京京", "malformed"),
    ] {
        let v = t.verify(&t.term1, &t.gate1, tok).await;
        assert_eq!(v["accepted"], false);
        assert_eq!(v["reason"], reason, "token {tok:.40}");
    }
    // Signed with our key but for a pass that does not exist.
    let ghost = app
        .store
        .pass_token(&linli_core::new_id(), t.now() + 3_600_000);
    assert_eq!(
        t.verify(&t.term1, &t.gate1, &ghost).await["reason"],
        "unknown"
    );
    // Malformed JSON is a 400, not a crash.
    let r = app
        .call(
            "POST",
            "/api/v1/access/verify",
            None,
            Some(("application/json", b"{\"gate_id\": ".to_vec())),
            &[("authorization", &format!("Bearer {}", t.term1))],
        )
        .await;
    assert_eq!(r.status.as_u16(), 400);

    for (tb, n) in tables.iter().zip(before) {
        assert_eq!(t.count(tb).await, n, "{tb} changed");
    }
    assert!(
        counter(app, "linli_access_verify_total{result=\"forged\"}").await >= forged_before + 2.0
    );
    assert!(
        counter(app, "linli_access_verify_total{result=\"malformed\"}").await
            >= malformed_before + 4.0
    );
    // The genuine token still works afterwards.
    assert_eq!(t.verify(&t.term1, &t.gate1, &token).await["accepted"], true);
    // Replayed: refused as used, and no second entry recorded.
    let recs = t.count("access_records").await;
    assert_eq!(t.verify(&t.term1, &t.gate1, &token).await["reason"], "used");
    assert_eq!(t.count("access_records").await, recs);
    t.app.close().await;
}

#[tokio::test]
async fn concurrent_scans_of_a_single_use_pass_accept_once() {
    use tower::ServiceExt;
    let t = setup().await;
    let pass = t.new_pass(&t.resident, json!({})).await;
    let token = pass["token"].as_str().unwrap().to_string();
    // A second gate in the same community, so two gates race.
    let gate2 = t
        .app
        .post(
            &t.property,
            "/api/v1/access/gates",
            json!({ "name": "西门人脸", "place_id": t.c1, "kind": "face" }),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..12 {
        let router = t.app.router.clone();
        let body = json!({ "gate_id": if i % 2 == 0 { &t.gate1 } else { &gate2 }, "token": token })
            .to_string();
        let auth = format!("Bearer {}", t.term1);
        set.spawn(async move {
            let req = axum::http::Request::builder()
                .method("POST")
                .uri("/api/v1/access/verify")
                .header("content-type", "application/json")
                .header("authorization", auth)
                .body(axum::body::Body::from(body))
                .unwrap();
            let resp = router.oneshot(req).await.unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            let bytes = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        });
    }
    let mut accepted = 0;
    let mut used = 0;
    while let Some(r) = set.join_next().await {
        let v = r.unwrap();
        match v["reason"].as_str().unwrap() {
            "accepted" => accepted += 1,
            "used" => used += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((accepted, used), (1, 11));
    let n: i64 = sqlx::Row::get(
        &sqlx::query("SELECT COUNT(*) AS n FROM access_records WHERE pass_id = $1")
            .bind(pass["id"].as_str().unwrap().to_string())
            .fetch_one(&t.app.store.db.read)
            .await
            .unwrap(),
        "n",
    );
    assert_eq!(n, 1);
    t.app.close().await;
}

#[tokio::test]
async fn passes_stay_in_their_community_and_household() {
    let t = setup().await;
    let app = &t.app;
    let pass = t.new_pass(&t.resident, json!({ "multi_use": true })).await;
    let token = pass["token"].as_str().unwrap();
    let id = pass["id"].as_str().unwrap();
    // A gate of community 3 refuses a pass of community 1 (and records the attempt).
    let v = t.verify(&t.term3, &t.gate3, token).await;
    assert_eq!(v["reason"], "wrong_community");
    // …without saying who the pass is for (issue #13 round 2, finding 9).
    assert_eq!(v["visitor_name"], Value::Null, "{v}");
    assert_eq!(v["plate"], Value::Null, "{v}");
    // A terminal token of community 1 cannot even use community 3's gate.
    t.bearer(
        &t.term1,
        "POST",
        "/api/v1/access/verify",
        json!({ "gate_id": t.gate3, "token": token }),
    )
    .await
    .expect(404);
    // Terminals cannot register passes or read them.
    t.bearer(
        &t.term1,
        "GET",
        &format!("/api/v1/access/passes/{id}"),
        json!({}),
    )
    .await
    .expect(404);

    // The QR secret is the household's: staff who may read the pass (committee and property,
    // AccessRead) see it without its token and get no QR code (issue #13 round 2, finding 9).
    for staff in [&t.committee, &t.property] {
        let seen = app
            .get(staff, &format!("/api/v1/access/passes/{id}"))
            .await
            .ok();
        assert_eq!(seen["id"], id);
        assert_eq!(seen["token"], Value::Null, "{seen}");
        let listed = app.get(staff, "/api/v1/access/passes?limit=500").await.ok();
        let row = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .expect("listed for staff");
        assert_eq!(row["token"], Value::Null);
        assert!(!listed.to_string().contains(token), "no token in the list");
        for qr in ["qr.svg", "qr.png"] {
            app.get(staff, &format!("/api/v1/access/passes/{id}/{qr}"))
                .await
                .expect(404);
        }
    }
    let mine = app
        .get(&t.resident, &format!("/api/v1/access/passes/{id}"))
        .await
        .ok();
    assert_eq!(mine["token"], token, "the household keeps its token");

    // Staff register a pass for another household; the resident cannot see or revoke it.
    let other = t.other_household().await;
    let theirs = t
        .new_pass(&t.committee, json!({ "household_id": other }))
        .await;
    let tid = theirs["id"].as_str().unwrap();
    for uri in [
        format!("/api/v1/access/passes/{tid}"),
        format!("/api/v1/access/passes/{tid}/qr.svg"),
        format!("/api/v1/access/passes/{tid}/qr.png"),
    ] {
        app.get(&t.resident, &uri).await.expect(404);
        app.get(&t.committee3, &uri).await.expect(404);
    }
    app.post(
        &t.resident,
        &format!("/api/v1/access/passes/{tid}/revoke"),
        json!({}),
    )
    .await
    .expect(404);
    app.post(
        &t.resident,
        "/api/v1/access/passes",
        json!({ "household_id": other, "visitor_name": "王", "phone": "13912345678", "valid_until": t.now() + 3_600_000 }),
    )
    .await
    .expect(404);
    let own = app.get(&t.resident, "/api/v1/access/passes").await.ok();
    let ids: Vec<&str> = own
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id]);
    // Staff lists stay in their area.
    let c3_list = app.get(&t.committee3, "/api/v1/access/passes").await.ok();
    assert!(c3_list.as_array().unwrap().is_empty());
    let c1_list = app
        .get(
            &t.committee,
            &format!("/api/v1/access/passes?place_id={}", t.c1),
        )
        .await
        .ok();
    assert_eq!(c1_list.as_array().unwrap().len(), 2);
    // Staff may revoke in their area; committee of community 3 may not.
    app.post(
        &t.committee3,
        &format!("/api/v1/access/passes/{tid}/revoke"),
        json!({}),
    )
    .await
    .expect(404);
    app.post(
        &t.committee,
        &format!("/api/v1/access/passes/{tid}/revoke"),
        json!({}),
    )
    .await
    .ok();
    // Vehicles: the resident's own household only.
    app.post(
        &t.resident,
        "/api/v1/access/vehicles",
        json!({ "household_id": other, "plate": "沪B11111" }),
    )
    .await
    .expect(404);
    app.get(
        &t.resident,
        &format!("/api/v1/access/vehicles?household_id={other}"),
    )
    .await
    .expect(404);
    let v = app
        .post(
            &t.resident,
            "/api/v1/access/vehicles",
            json!({ "plate": "沪B11111" }),
        )
        .await
        .expect(201);
    let vid = v["id"].as_str().unwrap();
    app.post(
        &t.committee,
        "/api/v1/access/vehicles",
        json!({ "household_id": other, "plate": "沪b11111" }),
    )
    .await
    .expect(409);
    app.call(
        "DELETE",
        &format!("/api/v1/access/vehicles/{vid}"),
        Some(&t.committee3),
        None,
        &[],
    )
    .await
    .expect(404);
    app.call(
        "DELETE",
        &format!("/api/v1/access/vehicles/{vid}"),
        Some(&t.resident),
        None,
        &[],
    )
    .await
    .expect(204);
    t.app.close().await;
}

#[tokio::test]
async fn fever_and_blacklist_raise_alarms_for_the_area() {
    let t = setup().await;
    let app = &t.app;
    let mut events = app.store.bus.subscribe();
    app.post(
        &t.property,
        "/api/v1/access/blacklist",
        json!({ "plate": "京A·12345", "place_id": t.c1, "reason": "多次冲卡" }),
    )
    .await
    .expect(201);
    app.post(
        &t.property,
        "/api/v1/access/blacklist",
        json!({ "plate": "京A12345", "place_id": t.c1, "reason": "again" }),
    )
    .await
    .expect(409);
    // Committee staff have no DeviceAdmin: they cannot edit the blacklist.
    app.post(
        &t.committee,
        "/api/v1/access/blacklist",
        json!({ "plate": "京A54321", "place_id": t.c1, "reason": "x" }),
    )
    .await
    .expect(403);
    // The resident's registered car, and a visitor's car named by a pass.
    app.post(
        &t.resident,
        "/api/v1/access/vehicles",
        json!({ "plate": "沪C22222" }),
    )
    .await
    .expect(201);
    t.new_pass(
        &t.resident,
        json!({ "plate": "沪D33333", "valid_from": t.now() - 3_600_000 }),
    )
    .await;

    let now = t.now();
    let person = t.resident_of(&t.c1).await;
    let r = t
        .bearer(
            &t.term1,
            "POST",
            "/api/v1/access/records",
            json!({ "records": [
                { "gate_id": t.gate1, "direction": "in", "person_id": person, "temperature_x10": 382, "at": now - 1000 },
                { "gate_id": t.gate1, "direction": "in", "temperature_x10": 365, "at": now - 900 },
                { "gate_id": t.barrier1, "direction": "in", "plate": "京A12345", "at": now - 800 },
                { "gate_id": t.barrier1, "direction": "in", "plate": "沪C22222", "at": now - 700 },
                { "gate_id": t.barrier1, "direction": "out", "plate": "沪D33333", "at": now - 600 },
                { "gate_id": t.barrier1, "direction": "in", "plate": "浙E44444", "at": now - 500 },
            ] }),
        )
        .await
        .expect(201);
    assert_eq!(r["stored"], 6);
    assert_eq!(r["alarms"], json!(["fever", "blacklist"]));
    let recs = r["records"].as_array().unwrap();
    assert_eq!(recs[0]["fever"], true);
    assert_eq!(recs[0]["subject"], "person");
    assert_eq!(recs[1]["fever"], false);
    assert_eq!(recs[1]["subject"], "unknown");
    assert_eq!(recs[3]["vehicle"], "resident");
    assert_eq!(recs[4]["vehicle"], "visitor");
    assert_eq!(recs[5]["vehicle"], "unknown");

    // Alarms are visible to the area's staff only, and reach their inboxes and live pages.
    let alerts = app.get(&t.committee, "/api/v1/access/alerts").await.ok();
    let kinds: Vec<&str> = alerts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 2);
    assert!(kinds.contains(&"fever") && kinds.contains(&"blacklist"));
    assert!(
        app.get(&t.committee3, "/api/v1/access/alerts")
            .await
            .ok()
            .as_array()
            .unwrap()
            .is_empty()
    );
    for s in [&t.committee, &t.property] {
        let uid = s.user["id"].as_str().unwrap();
        let inbox = app
            .store
            .inbox(&app.principal_of(&uid).await, true, None, 50)
            .await
            .unwrap();
        let keys: Vec<&str> = inbox.iter().map(|n| n.key.as_str()).collect();
        assert!(keys.contains(&"notice-access-fever"), "{keys:?}");
        assert!(keys.contains(&"notice-access-blacklist"));
    }
    let c3_uid = t.committee3.user["id"].as_str().unwrap();
    assert!(
        app.store
            .inbox(&app.principal_of(&c3_uid).await, true, None, 50)
            .await
            .unwrap()
            .is_empty()
    );
    let mut alert_events = 0;
    while let Ok(e) = events.try_recv() {
        if e.kind == "access.alert" {
            alert_events += 1;
            assert!(e.path.starts_with(&t.app.place_path(&t.c1).await));
        }
    }
    assert_eq!(alert_events, 2);

    // Listing filters.
    let fever = app
        .get(&t.committee, "/api/v1/access/records?fever=true")
        .await
        .ok();
    assert_eq!(fever.as_array().unwrap().len(), 1);
    let by_plate = app
        .get(&t.committee, "/api/v1/access/records?plate=%E4%BA%ACA12345")
        .await
        .ok();
    assert_eq!(by_plate.as_array().unwrap().len(), 1);
    let c3_gates = gate_ids(app, &t.committee3).await;
    for r in app
        .get(&t.committee3, "/api/v1/access/records?limit=1000")
        .await
        .ok()
        .as_array()
        .unwrap()
    {
        assert!(c3_gates.contains(&r["gate_id"].as_str().unwrap().to_string()));
    }

    // A higher threshold (platform-wide, whole-tree device admins only).
    app.call(
        "PUT",
        "/api/v1/access/settings",
        Some(&t.property),
        Some((
            "application/json",
            json!({ "fever_threshold_x10": 385 })
                .to_string()
                .into_bytes(),
        )),
        &[],
    )
    .await
    .expect(403);
    app.call(
        "PUT",
        "/api/v1/access/settings",
        Some(&t.admin),
        Some((
            "application/json",
            json!({ "fever_threshold_x10": 385 })
                .to_string()
                .into_bytes(),
        )),
        &[],
    )
    .await
    .ok();
    let r = t
        .bearer(
            &t.term1,
            "POST",
            "/api/v1/access/records",
            json!({ "gate_id": t.gate1, "direction": "in", "temperature_x10": 382, "at": t.now() }),
        )
        .await
        .expect(201);
    assert_eq!(r["alarms"], json!([]));

    // Bad records: refused with the index, nothing stored.
    let before = t.count("access_records").await;
    for (rec, code) in [
        (
            json!({ "gate_id": t.gate1, "direction": "up", "at": now }),
            "validation.bad_value",
        ),
        (
            json!({ "gate_id": t.barrier1, "direction": "in", "at": now }),
            "validation.required",
        ),
        (
            json!({ "gate_id": t.gate1, "direction": "in", "temperature_x10": 600, "at": now }),
            "access.temperature.invalid",
        ),
        (
            json!({ "gate_id": t.barrier1, "direction": "in", "plate": "XYZ", "at": now }),
            "access.plate.invalid",
        ),
        (
            json!({ "gate_id": t.gate1, "direction": "in", "at": now + 86_400_000 }),
            "validation.bad_value",
        ),
        // A person of another community cannot pass this gate on record (issue #13 round 2,
        // finding 7): refused like an unknown id.
        (
            json!({ "gate_id": t.gate1, "direction": "in", "person_id": t.resident_of(&t.c3).await, "at": now }),
            "validation.bad_value",
        ),
        (
            json!({ "gate_id": t.gate1, "direction": "in", "person_id": "no-such-person", "at": now }),
            "validation.bad_value",
        ),
    ] {
        let body = json!({ "records": [
            { "gate_id": t.gate1, "direction": "in", "at": now },
            rec,
        ] });
        let e = t
            .bearer(&t.term1, "POST", "/api/v1/access/records", body)
            .await
            .expect(400);
        assert_eq!(e["code"], code);
        assert_eq!(e["details"]["index"], 1);
    }
    // A gate of another community is unknown to this terminal.
    t.bearer(
        &t.term1,
        "POST",
        "/api/v1/access/records",
        json!({ "gate_id": t.gate3, "direction": "in", "at": now }),
    )
    .await
    .expect(404);
    // People cannot post records with their session (no VisitorVerify).
    app.post(
        &t.committee,
        "/api/v1/access/records",
        json!({ "gate_id": t.gate1, "direction": "in", "at": now }),
    )
    .await
    .expect(403);
    assert_eq!(t.count("access_records").await, before);
    t.app.close().await;
}

#[tokio::test]
async fn entries_per_gate_per_hour() {
    let t = setup().await;
    let app = &t.app;
    let hour = 3_600_000;
    let base = (t.now() / hour - 3) * hour; // three hours ago, on the hour
    let rec =
        |gate: &str, dir: &str, at: i64| json!({ "gate_id": gate, "direction": dir, "at": at });
    t.bearer(
        &t.term1,
        "POST",
        "/api/v1/access/records",
        json!({ "records": [
            rec(&t.gate1, "in", base + 60_000),
            rec(&t.gate1, "in", base + 120_000),
            rec(&t.gate1, "out", base + 180_000),
            rec(&t.gate1, "in", base + hour + 5),
        ] }),
    )
    .await
    .expect(201);
    t.bearer(
        &t.term3,
        "POST",
        "/api/v1/access/records",
        json!({ "records": [rec(&t.gate3, "in", base + 10)] }),
    )
    .await
    .expect(201);
    let uri = format!(
        "/api/v1/access/stats/hourly?from={}&to={}",
        base,
        base + 4 * hour
    );
    let v = app.get(&t.committee, &uri).await.ok();
    // Only gates of the committee's community are counted (the demo has its own gates too).
    let c1_gates = gate_ids(app, &t.committee).await;
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|r| c1_gates.contains(&r["gate_id"].as_str().unwrap().to_string()))
    );
    let rows: Vec<(String, i64, i64)> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["gate_id"] == json!(t.gate1))
        .map(|r| {
            (
                r["gate_id"].as_str().unwrap().to_string(),
                r["hour_start"].as_i64().unwrap(),
                r["entries"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (t.gate1.clone(), base, 2),
            (t.gate1.clone(), base + hour, 1)
        ]
    );
    let v3 = app.get(&t.committee3, &uri).await.ok();
    let c3_gates = gate_ids(app, &t.committee3).await;
    assert!(c3_gates.contains(&t.gate3) && !c3_gates.contains(&t.gate1));
    let mine: Vec<&Value> = v3
        .as_array()
        .unwrap()
        .iter()
        .inspect(|r| assert!(c3_gates.contains(&r["gate_id"].as_str().unwrap().to_string())))
        .filter(|r| r["gate_id"] == json!(t.gate3))
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["hour_start"], json!(base));
    // Residents have no access statistics.
    app.get(&t.resident, &uri).await.expect(403);
    app.get(
        &t.committee,
        &format!("/api/v1/access/stats/hourly?from={}&to={}", base, base - 1),
    )
    .await
    .expect(400);
    t.app.close().await;
}

#[tokio::test]
async fn gates_are_managed_inside_the_area() {
    let t = setup().await;
    let app = &t.app;
    // Committee staff read gates but have no DeviceAdmin.
    let list = app.get(&t.committee, "/api/v1/access/gates").await.ok();
    let c1_path = app.place_path(&t.c1).await;
    let ids = gate_ids(app, &t.committee).await;
    assert!(ids.contains(&t.gate1) && ids.contains(&t.barrier1) && !ids.contains(&t.gate3));
    // The demo seeds a face gate and a barrier per community, with a day of records.
    assert_eq!(ids.len(), 4);
    assert!(
        !app.get(&t.committee, "/api/v1/access/stats/hourly")
            .await
            .ok()
            .as_array()
            .unwrap()
            .is_empty()
    );
    for g in list.as_array().unwrap() {
        let place = app.place_path(g["place_id"].as_str().unwrap()).await;
        assert!(place.starts_with(&c1_path));
    }
    app.post(
        &t.committee,
        "/api/v1/access/gates",
        json!({ "name": "x", "place_id": t.c1, "kind": "face" }),
    )
    .await
    .expect(403);
    app.get(&t.committee3, &format!("/api/v1/access/gates/{}", t.gate1))
        .await
        .expect(404);
    app.get(&t.resident, "/api/v1/access/gates")
        .await
        .expect(403);
    // Only community or building entrances; known kinds only.
    let (room, _) = app.a_room_in("幸福里社区").await;
    let e = app
        .post(
            &t.property,
            "/api/v1/access/gates",
            json!({ "name": "x", "place_id": room, "kind": "face" }),
        )
        .await
        .expect(400);
    assert_eq!(e["code"], "access.gate.bad_place");
    app.post(
        &t.property,
        "/api/v1/access/gates",
        json!({ "name": "x", "place_id": t.c1, "kind": "drone" }),
    )
    .await
    .expect(400);
    // Edit with versions; a stale version changes nothing.
    let g = app
        .get(&t.property, &format!("/api/v1/access/gates/{}", t.gate1))
        .await
        .ok();
    assert_eq!(g["device_id"], "dev-东门人脸");
    let uri = format!("/api/v1/access/gates/{}", t.gate1);
    let g2 = app
        .patch(
            &t.property,
            &uri,
            json!({ "version": g["version"], "name": "东门人脸一号", "device_id": "" }),
        )
        .await
        .ok();
    assert_eq!(g2["name"], "东门人脸一号");
    assert_eq!(g2["device_id"], Value::Null);
    app.patch(
        &t.property,
        &uri,
        json!({ "version": g["version"], "name": "旧" }),
    )
    .await
    .expect(409);
    // A switched-off gate takes no records.
    app.patch(
        &t.property,
        &uri,
        json!({ "version": g2["version"], "active": false }),
    )
    .await
    .ok();
    t.bearer(
        &t.term1,
        "POST",
        "/api/v1/access/records",
        json!({ "gate_id": t.gate1, "direction": "in", "at": t.now() }),
    )
    .await
    .expect(404);
    // Every change is in the audit log.
    let audit = app
        .get(&t.admin, "/api/v1/audit?entity=gate&limit=50")
        .await
        .ok();
    let actions: Vec<String> = audit["items"]
        .as_array()
        .or(audit.as_array())
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert!(actions.iter().any(|a| a == "access.gate.create"));
    assert!(
        actions
            .iter()
            .filter(|a| *a == "access.gate.update")
            .count()
            >= 2
    );
    // Blacklist entries of community 1 are invisible and untouchable from community 3.
    let b = app
        .post(
            &t.property,
            "/api/v1/access/blacklist",
            json!({ "plate": "京B99999", "place_id": t.c1, "reason": "欠费" }),
        )
        .await
        .expect(201);
    assert!(
        app.get(&t.committee3, "/api/v1/access/blacklist")
            .await
            .ok()
            .as_array()
            .unwrap()
            .is_empty()
    );
    let bid = b["id"].as_str().unwrap();
    app.call(
        "DELETE",
        &format!("/api/v1/access/blacklist/{bid}"),
        Some(&t.committee3),
        None,
        &[],
    )
    .await
    .expect(403);
    // A device administrator of community 3 does not find it either.
    let admin3 = app
        .post(
            &t.admin,
            "/api/v1/auth/tokens",
            json!({ "name": "c3 devices", "actions": ["device_admin"], "place_id": t.c3 }),
        )
        .await
        .expect(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    t.bearer(
        &admin3,
        "DELETE",
        &format!("/api/v1/access/blacklist/{bid}"),
        json!({}),
    )
    .await
    .expect(404);
    app.call(
        "DELETE",
        &format!("/api/v1/access/blacklist/{bid}"),
        Some(&t.property),
        None,
        &[],
    )
    .await
    .expect(204);
    t.app.close().await;
}

async fn post_form(app: &TestApp, s: &Session, uri: &str, fields: &[(&str, &str)]) -> Resp {
    app.call(
        "POST",
        uri,
        Some(s),
        Some(("application/x-www-form-urlencoded", form(fields))),
        &[],
    )
    .await
}

/// The residents' forms on `/me/passes`.
const PASS_FORM: &str = "form[action='/me/passes']";
const VEHICLE_FORM: &str = "form[action='/me/vehicles']";

/// Issue #12: the vehicle form sat in the page's `title` block, so browsers showed it as the
/// tab's text (CSRF token included, into the history) and residents could not register a car.
/// The page as a browser parses it, then a car registered through that very form.
#[tokio::test]
async fn residents_register_a_car_through_the_form_on_their_passes_page() {
    let app = TestApp::demo().await;
    let r = app.login("resident").await;
    let page = app.get(&r, "/me/passes").await;
    assert_eq!(page.status.as_u16(), 200);
    let doc = page.doc();
    doc.assert_head_clean();
    assert_eq!(doc.title(), "访客通行证 · 邻里");
    assert!(
        !doc.title().contains(&r.csrf),
        "the CSRF token is in the title"
    );
    doc.assert_inside(VEHICLE_FORM, "main");
    let plate = format!("{VEHICLE_FORM} input[name=plate]");
    assert_eq!(doc.attr(&plate, "id"), "vplate");
    doc.one(&format!("main {VEHICLE_FORM} label[for=vplate]"));
    doc.one(&format!("main {VEHICLE_FORM} button[type=submit]"));
    assert_eq!(doc.hidden(VEHICLE_FORM, "_csrf"), r.csrf);
    assert_eq!(doc.texts("main h2").last().unwrap(), "我家的车辆");

    let done = submit(&app, &r, &doc, VEHICLE_FORM, &[("plate", "鄂A12345")]).await;
    assert_eq!(done.status.as_u16(), 303, "{}", done.text());
    let back = done.headers["location"].to_str().unwrap().to_string();
    assert_eq!(back, "/me/passes?done=vehicle");
    let doc = app.get(&r, &back).await.doc();
    assert!(doc.inside("[role=status]", "main"));
    assert_eq!(
        doc.texts("main form[action$='/remove'] strong"),
        ["鄂A12345"]
    );
    let cars = app.get(&r, "/api/v1/access/vehicles").await.ok();
    assert_eq!(cars.as_array().unwrap().len(), 1, "{cars}");
    assert_eq!(cars[0]["plate"], "鄂A12345");
    app.close().await;
}

#[tokio::test]
async fn resident_and_staff_pages() {
    let t = setup().await;
    let app = &t.app;
    let r = &t.resident;
    let page = app.get(r, "/me/passes").await;
    assert_eq!(page.status.as_u16(), 200);
    let doc = page.doc();
    assert_eq!(doc.text("main h1"), "访客通行证");
    let once = doc.hidden(PASS_FORM, "_once");
    // Without the CSRF token: refused, nothing created.
    let no_csrf = app
        .call(
            "POST",
            "/me/passes",
            None,
            Some((
                "application/x-www-form-urlencoded",
                form(&[
                    ("visitor_name", "赵"),
                    ("phone", "13912345678"),
                    ("hours", "8"),
                ]),
            )),
            &[("cookie", r.cookie.as_str())],
        )
        .await;
    assert_eq!(no_csrf.status.as_u16(), 403);
    // A bad number is shown beside the field, the typed values are kept.
    let bad = post_form(
        app,
        r,
        "/me/passes",
        &[
            ("_csrf", &r.csrf),
            ("_once", &once),
            ("visitor_name", "赵<b>客"),
            ("phone", "123"),
            ("hours", "8"),
        ],
    )
    .await;
    assert_eq!(bad.status.as_u16(), 400);
    let doc = bad.doc();
    assert!(doc.field_error("phone").is_some(), "{}", doc.main_html());
    doc.assert_inside("[id='phone-error']", PASS_FORM);
    // The typed name is kept as the field's value, as text: no element made of it.
    assert_eq!(
        doc.attr(&format!("{PASS_FORM} input[name=visitor_name]"), "value"),
        "赵<b>客"
    );
    assert!(!doc.has("main b"));
    let once = doc.hidden(PASS_FORM, "_once");
    let fields = [
        ("_csrf", r.csrf.as_str()),
        ("_once", once.as_str()),
        ("visitor_name", "赵客"),
        ("phone", "13912345678"),
        ("plate", "沪A88888"),
        ("hours", "24"),
        ("multi_use", "1"),
    ];
    let ok = post_form(app, r, "/me/passes", &fields).await;
    assert_eq!(ok.status.as_u16(), 303, "{}", ok.text());
    let loc = ok.headers["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with("/me/passes/"));
    // A double tap lands on the same pass and creates nothing more.
    let again = post_form(app, r, "/me/passes", &fields).await;
    assert_eq!(again.headers["location"].to_str().unwrap(), loc);
    let mine = app.get(r, "/api/v1/access/passes").await.ok();
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_eq!(mine[0]["multi_use"], true);
    assert_eq!(
        mine[0]["valid_until"].as_i64().unwrap() - mine[0]["valid_from"].as_i64().unwrap(),
        24 * 3_600_000
    );
    let pass_page = app.get(r, &loc).await;
    assert_eq!(pass_page.status.as_u16(), 200);
    let doc = pass_page.doc();
    let qr = doc.attr("main img.qr", "src");
    assert!(
        qr.starts_with("/api/v1/access/passes/") && qr.ends_with("/qr.svg"),
        "{qr}"
    );
    assert!(
        doc.has("main img.qr[alt]"),
        "the QR code has a text alternative"
    );
    // Another user's pass page is a 404 page.
    app.get(&t.committee3, &loc).await.expect(404);
    let rv = post_form(app, r, &format!("{loc}/revoke"), &[("_csrf", &r.csrf)]).await;
    assert_eq!(rv.status.as_u16(), 303);
    assert_eq!(
        app.get(r, "/api/v1/access/passes").await.ok()[0]["status"],
        "revoked"
    );

    // The household's cars, from the same page.
    let bad = post_form(
        app,
        r,
        "/me/vehicles",
        &[("_csrf", &r.csrf), ("plate", "??")],
    )
    .await;
    assert_eq!(bad.status.as_u16(), 400);
    let doc = bad.doc();
    assert!(doc.field_error("vplate").is_some(), "{}", doc.main_html());
    doc.assert_inside("[id='vplate-error']", VEHICLE_FORM);
    assert_eq!(
        doc.attr(&format!("{VEHICLE_FORM} input[name=plate]"), "value"),
        "??",
        "the typed plate is kept"
    );
    let ok = post_form(
        app,
        r,
        "/me/vehicles",
        &[("_csrf", &r.csrf), ("plate", "沪E55555")],
    )
    .await;
    assert_eq!(ok.status.as_u16(), 303);
    assert_eq!(
        app.get(r, "/me/passes")
            .await
            .doc()
            .texts("main form[action$='/remove'] strong"),
        ["沪E55555"]
    );
    let cars = app.get(r, "/api/v1/access/vehicles").await.ok();
    let car = cars[0]["id"].as_str().unwrap().to_string();
    let rm = post_form(
        app,
        r,
        &format!("/me/vehicles/{car}/remove"),
        &[("_csrf", &r.csrf)],
    )
    .await;
    assert_eq!(rm.status.as_u16(), 303);
    assert!(app.get(r, "/api/v1/access/vehicles").await.ok()[0].is_null());

    // Staff page: alarms, per-hour bars for every gate, records, blacklist.
    t.bearer(
        &t.term1,
        "POST",
        "/api/v1/access/records",
        json!({ "gate_id": t.gate1, "direction": "in", "temperature_x10": 390, "at": t.now() }),
    )
    .await
    .expect(201);
    let staff = app.get(&t.committee, "/staff/access").await;
    assert_eq!(staff.status.as_u16(), 200);
    let doc = staff.doc();
    // One chart per gate of the area, each an SVG with its bars.
    let charts = doc.texts("main figure figcaption strong");
    assert!(charts.iter().any(|c| c == "东门人脸"), "{charts:?}");
    assert!(doc.inside("figure svg[role=img] rect", "main"));
    assert!(
        doc.texts("main table td")
            .iter()
            .any(|t| t.contains("39.0")),
        "the fever reading is listed"
    );
    assert!(
        !doc.body_text().contains("新村北门"),
        "another community's gate"
    );
    assert!(
        !doc.has("#add-blacklist") && !doc.has("form[action='/staff/access/blacklist']"),
        "no DeviceAdmin, no form"
    );
    let en = app
        .call(
            "GET",
            "/staff/access",
            Some(&t.committee),
            None,
            &[("accept-language", "en")],
        )
        .await;
    let headings = en.doc().texts("main h2");
    assert!(
        headings
            .iter()
            .any(|h| h.starts_with("Entries per gate per hour")),
        "{headings:?}"
    );
    app.get(r, "/staff/access").await.expect(403);
    let p = &t.property;
    let bad = post_form(
        app,
        p,
        "/staff/access/blacklist",
        &[
            ("_csrf", &p.csrf),
            ("plate", "nope"),
            ("place_id", &t.c1),
            ("reason", "x"),
        ],
    )
    .await;
    assert_eq!(bad.status.as_u16(), 400);
    let doc = bad.doc();
    assert!(doc.field_error("bl-plate").is_some(), "{}", doc.main_html());
    doc.assert_inside(
        "[id='bl-plate-error']",
        "form[action='/staff/access/blacklist']",
    );
    let ok = post_form(
        app,
        p,
        "/staff/access/blacklist",
        &[
            ("_csrf", &p.csrf),
            ("plate", "京C12345"),
            ("place_id", &t.c1),
            ("reason", "欠费"),
        ],
    )
    .await;
    assert_eq!(ok.status.as_u16(), 303);
    let doc = app.get(p, "/staff/access").await.doc();
    let listed = doc
        .select("main tr")
        .into_iter()
        .find(|tr| crate::common::visible_text(*tr).starts_with("京C12345"))
        .expect("the plate is on the blacklist table");
    assert!(crate::common::Doc::within(listed, "main table"));
    assert!(crate::common::visible_text(listed).contains("欠费"));
    // Gates from the same page: a name is required; a new gate can be taken out of service.
    let bad = post_form(
        app,
        p,
        "/staff/access/gates",
        &[
            ("_csrf", &p.csrf),
            ("name", " "),
            ("place_id", &t.c1),
            ("kind", "face"),
        ],
    )
    .await;
    assert_eq!(bad.status.as_u16(), 400);
    let doc = bad.doc();
    assert!(
        doc.field_error("gate-name").is_some(),
        "{}",
        doc.main_html()
    );
    doc.assert_inside(
        "[id='gate-name-error']",
        "form[action='/staff/access/gates']",
    );
    let ok = post_form(
        app,
        p,
        "/staff/access/gates",
        &[
            ("_csrf", &p.csrf),
            ("name", "北门人脸"),
            ("place_id", &t.c1),
            ("kind", "face"),
            ("device_id", "face-n1"),
        ],
    )
    .await;
    assert_eq!(ok.status.as_u16(), 303);
    let gates = app.get(p, "/api/v1/access/gates").await.ok();
    let g = gates
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "北门人脸")
        .unwrap()
        .clone();
    assert_eq!(g["device_id"], "face-n1");
    let off = post_form(
        app,
        p,
        &format!("/staff/access/gates/{}/toggle", g["id"].as_str().unwrap()),
        &[("_csrf", &p.csrf), ("version", &g["version"].to_string())],
    )
    .await;
    assert_eq!(off.status.as_u16(), 303);
    let g2 = app
        .get(
            p,
            &format!("/api/v1/access/gates/{}", g["id"].as_str().unwrap()),
        )
        .await
        .ok();
    assert_eq!(g2["active"], false);
    t.app.close().await;
}

/// Reads SSE frames until `want` appears or `wait` passes; returns everything read.
async fn read_until(body: &mut axum::body::Body, want: &str, wait: std::time::Duration) -> String {
    use http_body_util::BodyExt;
    let deadline = tokio::time::Instant::now() + wait;
    let mut all = String::new();
    while !all.contains(want) {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(b) = frame.into_data() {
                    all.push_str(&String::from_utf8_lossy(&b));
                }
            }
            _ => break,
        }
    }
    all
}

#[tokio::test]
async fn gate_alarms_reach_the_areas_live_pages_only() {
    use tower::ServiceExt;
    let t = setup().await;
    let open = |cookie: String| {
        let router = t.app.router.clone();
        async move {
            let req = axum::http::Request::get("/events")
                .header("cookie", cookie)
                .body(axum::body::Body::empty())
                .unwrap();
            let resp = router.oneshot(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.into_body()
        }
    };
    let mut mine = open(t.committee.cookie.clone()).await;
    let mut theirs = open(t.committee3.cookie.clone()).await;
    let r = t
        .bearer(
            &t.term1,
            "POST",
            "/api/v1/access/records",
            json!({ "gate_id": t.gate1, "direction": "in", "temperature_x10": 391, "at": t.now() }),
        )
        .await
        .expect(201);
    assert_eq!(r["alarms"], json!(["fever"]));
    let got = read_until(
        &mut mine,
        "event: access.alert",
        std::time::Duration::from_secs(5),
    )
    .await;
    assert!(got.contains("event: access.alert"), "{got:?}");
    let other = read_until(&mut theirs, "access", std::time::Duration::from_millis(500)).await;
    assert!(
        !other.contains("access"),
        "another community was told: {other:?}"
    );
    t.app.close().await;
}
