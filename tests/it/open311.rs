//! Open311 GeoReport v2 (`/open311/v2/`): discovery, services (JSON and XML), service
//! definitions with attributes, POST with api_key (valid, missing, wrong, lacking
//! report_create), bad input as the spec's error list with nothing created, reading back by id
//! and token, the GET filters (status, service_code, dates, empty = absent, the 90-day default
//! window), mySociety's update feed, and XML that parses.

use quick_xml::Reader;
use quick_xml::events::Event;
use serde_json::{Value, json};

use crate::common::{Resp, Session, TestApp};

const DAY: i64 = 86_400_000;

async fn anon(app: &TestApp, uri: &str) -> Resp {
    app.call("GET", uri, None, None, &[]).await
}

async fn anon_en(app: &TestApp, uri: &str) -> Resp {
    app.call("GET", uri, None, None, &[("accept-language", "en")])
        .await
}

fn encode(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

async fn post_form(app: &TestApp, uri: &str, pairs: &[(&str, &str)]) -> Resp {
    app.call(
        "POST",
        uri,
        None,
        Some((
            "application/x-www-form-urlencoded",
            encode(pairs).into_bytes(),
        )),
        &[("accept-language", "en")],
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

/// Parse XML completely (panics when it is not well-formed) into (element path, text) pairs.
fn xml_texts(s: &str) -> Vec<(String, String)> {
    let mut r = Reader::from_str(s);
    let mut stack: Vec<String> = Vec::new();
    let mut out: Vec<(String, String)> = Vec::new();
    let mut text = String::new();
    loop {
        match r
            .read_event()
            .unwrap_or_else(|e| panic!("bad XML: {e}\n{s}"))
        {
            Event::Start(e) => {
                stack.push(e.name().into_inner().to_string());
                text.clear();
            }
            Event::Empty(e) => {
                let name = e.name().into_inner().to_string();
                out.push((format!("{}/{name}", stack.join("/")), String::new()));
            }
            Event::Text(t) => text.push_str(&t.into_inner()),
            Event::GeneralRef(g) => {
                let raw = g.into_inner();
                let name: &str = &raw;
                text.push_str(match name {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    other => panic!("unexpected entity {other}"),
                });
            }
            Event::End(e) => {
                let name = e.name().into_inner().to_string();
                assert_eq!(stack.pop().as_deref(), Some(name.as_str()), "{s}");
                out.push((format!("{}/{name}", stack.join("/")), text.clone()));
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(stack.is_empty(), "unclosed elements in {s}");
    out
}

fn xml_values<'a>(x: &'a [(String, String)], path: &str) -> Vec<&'a str> {
    x.iter()
        .filter(|(p, _)| p == path)
        .map(|(_, t)| t.as_str())
        .collect()
}

#[track_caller]
fn error_list(r: Resp, status: u16) -> String {
    assert_eq!(r.status.as_u16(), status, "{}", r.text());
    let v = r.json();
    let list = v.as_array().expect("a list of errors");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["code"], json!(status));
    let d = list[0]["description"].as_str().unwrap().to_string();
    assert!(!d.is_empty());
    d
}

struct Setup {
    app: TestApp,
    committee: Session,
    community: String,
    room: String,
    key: String,
}

async fn setup() -> Setup {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let community = app.place_id("community", "幸福里社区").await;
    let (room, _) = app.a_room_in("幸福里社区").await;
    let key = api_token(&app, &committee, &["report_create"], &community).await;
    Setup {
        app,
        committee,
        community,
        room,
        key,
    }
}

async fn create(s: &Setup, extra: &[(&str, &str)]) -> String {
    let mut pairs = vec![
        ("api_key", s.key.as_str()),
        ("service_code", "repair_elevator"),
        ("address_id", s.room.as_str()),
        ("description", "3号楼电梯停在二楼不动"),
    ];
    for (k, v) in extra {
        pairs.retain(|(pk, _)| pk != k);
        pairs.push((k, v));
    }
    let v = post_form(&s.app, "/open311/v2/requests.json", &pairs)
        .await
        .ok();
    let id = v[0]["service_request_id"].as_str().unwrap().to_string();
    assert!(!id.is_empty());
    id
}

#[tokio::test]
async fn discovery_and_services_in_json_and_xml() {
    let app = TestApp::demo().await;
    let r = app
        .call(
            "GET",
            "/open311/v2/discovery.json",
            None,
            None,
            &[("host", "linli.example")],
        )
        .await;
    assert_eq!(
        r.headers
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("*")
    );
    let d = r.ok();
    assert_eq!(d["endpoints"][0]["url"], "http://linli.example/open311/v2");
    assert_eq!(
        d["endpoints"][0]["specification"],
        "http://wiki.open311.org/GeoReport_v2"
    );
    assert!(
        d["endpoints"][0]["formats"]
            .as_array()
            .unwrap()
            .contains(&json!("text/xml"))
    );
    let x = anon(&app, "/open311/v2/discovery.xml").await;
    assert!(
        x.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml")
    );
    let x = xml_texts(&x.text());
    assert_eq!(
        xml_values(&x, "discovery/endpoints/endpoint/formats/format"),
        ["application/json", "text/xml"]
    );

    let services = anon(&app, "/open311/v2/services.json").await.ok();
    let list = services.as_array().unwrap();
    let cats = app.store.report_categories().await.unwrap();
    assert_eq!(list.len(), cats.len());
    let lift = list
        .iter()
        .find(|s| s["service_code"] == "repair_elevator")
        .unwrap();
    assert_eq!(lift["service_name"], "电梯故障");
    assert_eq!(lift["metadata"], true);
    assert_eq!(lift["type"], "realtime");
    assert!(lift["group"].is_string() && lift["keywords"] == "repair");
    let en = anon_en(&app, "/open311/v2/services.json").await.ok();
    assert!(
        en.as_array()
            .unwrap()
            .iter()
            .any(|s| s["service_name"] == "Lift breakdown")
    );

    let x = anon(&app, "/open311/v2/services.xml").await;
    assert_eq!(x.status.as_u16(), 200);
    let x = xml_texts(&x.text());
    let codes = xml_values(&x, "services/service/service_code");
    assert_eq!(codes.len(), cats.len());
    assert!(codes.contains(&"repair_elevator"));
    assert_eq!(
        xml_values(&x, "services/service/metadata"),
        vec!["true"; cats.len()]
    );

    // Cross-origin preflight, and an unknown format.
    let r = app
        .call(
            "OPTIONS",
            "/open311/v2/requests.json",
            None,
            None,
            &[
                ("origin", "https://other.example"),
                ("access-control-request-method", "POST"),
            ],
        )
        .await;
    assert!(r.status.is_success());
    assert!(
        r.headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    error_list(anon(&app, "/open311/v2/services.html").await, 404);
    app.close().await;
}

#[tokio::test]
async fn service_definitions_expose_the_attributes() {
    let app = TestApp::demo().await;
    let d = anon_en(&app, "/open311/v2/services/repair_elevator.json")
        .await
        .ok();
    assert_eq!(d["service_code"], "repair_elevator");
    let attrs = d["attributes"].as_array().unwrap();
    let codes: Vec<&str> = attrs.iter().map(|a| a["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["title", "public", "anonymous"]);
    let public = &attrs[1];
    assert_eq!(public["datatype"], "singlevaluelist");
    assert_eq!(public["variable"], true);
    assert_eq!(public["required"], false);
    assert_eq!(public["order"], 2);
    assert_eq!(
        public["values"],
        json!([{"key": "yes", "name": "Yes"}, {"key": "no", "name": "No"}])
    );
    assert_eq!(attrs[0]["datatype"], "string");
    assert!(attrs[0]["description"].as_str().unwrap().contains("title"));

    // Complaints are never public: no such attribute.
    let d = anon(&app, "/open311/v2/services/complaint_property.json")
        .await
        .ok();
    let codes: Vec<&str> = d["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["title", "anonymous"]);

    let x = anon(&app, "/open311/v2/services/repair_elevator.xml").await;
    let x = xml_texts(&x.text());
    assert_eq!(
        xml_values(&x, "service_definition/attributes/attribute/code"),
        ["title", "public", "anonymous"]
    );
    assert_eq!(
        xml_values(
            &x,
            "service_definition/attributes/attribute/values/value/key"
        ),
        ["yes", "no", "yes", "no"]
    );

    let d = error_list(
        anon_en(&app, "/open311/v2/services/no_such_service.json").await,
        404,
    );
    assert!(d.contains("no_such_service"), "{d}");
    let x = anon(&app, "/open311/v2/services/no_such_service.xml").await;
    assert_eq!(x.status.as_u16(), 404);
    let x = xml_texts(&x.text());
    assert_eq!(xml_values(&x, "errors/error/code"), ["404"]);
    app.close().await;
}

#[tokio::test]
async fn posting_needs_an_api_key_allowed_to_create_reports() {
    let s = setup().await;
    let app = &s.app;
    let before = report_count(app).await;
    let base = [
        ("service_code", "repair_elevator"),
        ("address_id", s.room.as_str()),
        ("description", "电梯不动"),
    ];
    let with = |key: &'static str| {
        let mut v: Vec<(&str, &str)> = base.to_vec();
        v.push(("api_key", key));
        v
    };
    // Missing, empty (= absent), wrong.
    let d = error_list(
        post_form(app, "/open311/v2/requests.json", &base).await,
        403,
    );
    assert!(d.contains("api_key"), "{d}");
    error_list(
        post_form(app, "/open311/v2/requests.json", &with("")).await,
        403,
    );
    let d = error_list(
        post_form(app, "/open311/v2/requests.json", &with("llt_wrong")).await,
        403,
    );
    assert!(d.contains("Invalid api_key"), "{d}");
    // A valid token without report_create.
    let reader = api_token(app, &s.committee, &["person_read"], &s.community).await;
    let mut pairs: Vec<(&str, &str)> = base.to_vec();
    pairs.push(("api_key", reader.as_str()));
    let d = error_list(
        post_form(app, "/open311/v2/requests.json", &pairs).await,
        403,
    );
    assert!(d.contains("report_create"), "{d}");
    // XML errors too.
    let x = app
        .call(
            "POST",
            "/open311/v2/requests.xml",
            None,
            Some((
                "application/x-www-form-urlencoded",
                encode(&base).into_bytes(),
            )),
            &[],
        )
        .await;
    assert_eq!(x.status.as_u16(), 403);
    let x = xml_texts(&x.text());
    assert_eq!(xml_values(&x, "errors/error/code"), ["403"]);
    assert_eq!(report_count(app).await, before, "nothing was created");

    // The valid key creates a report through the open311 channel.
    let id = create(&s, &[("attribute[title]", "电梯故障")]).await;
    assert_eq!(report_count(app).await, before + 1);
    let p = app.login("committee").await;
    let r = app.get(&p, &format!("/api/v1/reports/{id}")).await.ok();
    assert_eq!(r["report"]["channel"], "open311");
    assert_eq!(r["report"]["category"], "repair_elevator");
    assert_eq!(r["report"]["place_id"], s.room);
    assert_eq!(r["report"]["title"], "电梯故障");
    assert_eq!(r["report"]["public_requested"], false);

    // XML answer of a POST.
    let mut pairs: Vec<(&str, &str)> = base.to_vec();
    pairs.push(("api_key", s.key.as_str()));
    let x = app
        .call(
            "POST",
            "/open311/v2/requests.xml",
            None,
            Some((
                "application/x-www-form-urlencoded",
                encode(&pairs).into_bytes(),
            )),
            &[],
        )
        .await;
    assert_eq!(x.status.as_u16(), 200, "{}", x.text());
    let x = xml_texts(&x.text());
    assert_eq!(
        xml_values(&x, "service_requests/request/service_request_id").len(),
        1
    );
    s.app.close().await;
}

#[tokio::test]
async fn bad_posts_answer_the_error_list_and_change_nothing() {
    let s = setup().await;
    let app = &s.app;
    let before = report_count(app).await;
    let key = s.key.as_str();
    let room = s.room.as_str();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        // No location at all (empty parameters count as absent).
        (
            vec![
                ("api_key", key),
                ("service_code", "repair_elevator"),
                ("description", "x"),
                ("address_id", ""),
                ("lat", ""),
                ("long", ""),
            ],
            "location",
        ),
        // Unknown service.
        (
            vec![
                ("api_key", key),
                ("service_code", "potholes"),
                ("address_id", room),
                ("description", "x"),
            ],
            "potholes",
        ),
        // No service code.
        (
            vec![("api_key", key), ("address_id", room), ("description", "x")],
            "service_code",
        ),
        // lat without long.
        (
            vec![
                ("api_key", key),
                ("service_code", "environment"),
                ("lat", "30.5"),
                ("description", "x"),
            ],
            "long",
        ),
        // lat out of range.
        (
            vec![
                ("api_key", key),
                ("service_code", "environment"),
                ("lat", "130.5"),
                ("long", "114.3"),
                ("description", "x"),
            ],
            "lat",
        ),
        // An attribute the service does not have, and a bad value.
        (
            vec![
                ("api_key", key),
                ("service_code", "complaint_property"),
                ("address_id", room),
                ("description", "x"),
                ("attribute[public]", "yes"),
            ],
            "public",
        ),
        (
            vec![
                ("api_key", key),
                ("service_code", "repair_elevator"),
                ("address_id", room),
                ("description", "x"),
                ("attribute[anonymous]", "maybe"),
            ],
            "anonymous",
        ),
        // No description.
        (
            vec![
                ("api_key", key),
                ("service_code", "repair_elevator"),
                ("address_id", room),
            ],
            "description",
        ),
        // A place that does not exist.
        (
            vec![
                ("api_key", key),
                ("service_code", "repair_elevator"),
                ("address_id", "no-such-place"),
                ("description", "x"),
            ],
            "",
        ),
        // A bad media_url.
        (
            vec![
                ("api_key", key),
                ("service_code", "repair_elevator"),
                ("address_id", room),
                ("description", "x"),
                ("media_url", "javascript:alert(1)"),
            ],
            "media_url",
        ),
    ];
    for (pairs, needle) in cases {
        let r = post_form(app, "/open311/v2/requests.json", &pairs).await;
        let d = error_list(r, 400);
        assert!(d.contains(needle), "{pairs:?}: {d}");
    }
    // A place outside the key's community.
    let (other_room, _) = app.a_room_in("江滩社区").await;
    error_list(
        post_form(
            app,
            "/open311/v2/requests.json",
            &[
                ("api_key", key),
                ("service_code", "repair_elevator"),
                ("address_id", other_room.as_str()),
                ("description", "x"),
            ],
        )
        .await,
        400,
    );
    // Not a form.
    let r = app
        .call(
            "POST",
            "/open311/v2/requests.json",
            None,
            Some(("application/json", b"{}".to_vec())),
            &[],
        )
        .await;
    error_list(r, 400);
    // A key limited to a street cannot place lat/long: address_id is asked for.
    let street_officer = app.login("street").await;
    let street_id = {
        let c = app.place_path(&s.community).await;
        let ids: Vec<&str> = c.split('/').filter(|x| !x.is_empty()).collect();
        ids[2].to_string()
    };
    let street_key = api_token(app, &street_officer, &["report_create"], &street_id).await;
    let d = error_list(
        post_form(
            app,
            "/open311/v2/requests.json",
            &[
                ("api_key", street_key.as_str()),
                ("service_code", "environment"),
                ("lat", "30.5"),
                ("long", "114.3"),
                ("description", "垃圾堆放"),
            ],
        )
        .await,
        400,
    );
    assert!(d.contains("address_id"), "{d}");
    // An address naming places below one another is resolved inside the key's area; a name
    // found in several places is not guessed.
    let d = error_list(
        post_form(
            app,
            "/open311/v2/requests.json",
            &[
                ("api_key", street_key.as_str()),
                ("service_code", "environment"),
                ("address_string", "1单元"),
                ("description", "垃圾堆放"),
            ],
        )
        .await,
        400,
    );
    assert!(d.contains("address_id"), "{d}");
    assert_eq!(report_count(app).await, before, "nothing was created");
    let v = post_form(
        app,
        "/open311/v2/requests.json",
        &[
            ("api_key", street_key.as_str()),
            ("service_code", "environment"),
            ("address_string", "幸福里社区 1栋 1单元"),
            ("description", "垃圾堆放"),
        ],
    )
    .await
    .ok();
    let id = v[0]["service_request_id"].as_str().unwrap();
    let r = app
        .get(&street_officer, &format!("/api/v1/reports/{id}"))
        .await
        .ok();
    let unit = r["report"]["place_id"].as_str().unwrap();
    let unit_path = app.place_path(unit).await;
    assert!(unit_path.starts_with(&app.place_path(&s.community).await));
    let g = linli_core::auth::Grant::system(linli_core::auth::Action::PlaceRead);
    let unit_place = app.store.place(&g, unit).await.unwrap();
    assert_eq!(
        (unit_place.kind.as_str(), unit_place.name.as_str()),
        ("unit", "1单元")
    );
    assert!(
        r["report"]["description"]
            .as_str()
            .unwrap()
            .contains("幸福里社区 1栋 1单元")
    );
    let before = report_count(app).await;

    // The same in Chinese by default.
    let r = app
        .call(
            "POST",
            "/open311/v2/requests.json",
            None,
            Some((
                "application/x-www-form-urlencoded",
                encode(&[
                    ("api_key", key),
                    ("service_code", "repair_elevator"),
                    ("description", "x"),
                ])
                .into_bytes(),
            )),
            &[],
        )
        .await;
    let d = error_list(r, 400);
    assert!(d.contains("请提供位置"), "{d}");
    assert_eq!(report_count(app).await, before);

    // lat/long alone with a key limited to one community: placed in that community.
    let id = create(
        &s,
        &[("address_id", ""), ("lat", "30.58"), ("long", "114.27")],
    )
    .await;
    let r = app
        .get(&s.committee, &format!("/api/v1/reports/{id}"))
        .await
        .ok();
    assert_eq!(r["report"]["place_id"], s.community);
    assert_eq!(r["report"]["lat"], 30.58);
    s.app.close().await;
}

#[tokio::test]
async fn read_back_by_id_and_token_with_visibility() {
    let s = setup().await;
    let app = &s.app;
    // A routing rule with a notice for lifts in the community.
    let row = sqlx::query("SELECT id FROM orgs WHERE kind = 'committee' AND place_id = $1")
        .bind(s.community.clone())
        .fetch_one(&app.store.db.read)
        .await
        .unwrap();
    let committee_org: String = sqlx::Row::get(&row, "id");
    let admin = app.login("admin").await;
    app.post(
        &admin,
        "/api/v1/routing-rules",
        json!({"category": "repair_elevator", "area_id": s.community, "unit_id": committee_org,
               "deadline_unit": "hours", "sign_by": 2, "first_contact_by": 4, "resolve_by": 24,
               "notice_zh": "电梯故障24小时内处理", "notice_en": "Lift faults are handled within 24 hours"}),
    )
    .await
    .expect(201);
    let posted = post_form(
        app,
        "/open311/v2/requests.json",
        &[
            ("api_key", s.key.as_str()),
            ("service_code", "repair_elevator"),
            ("address_id", s.room.as_str()),
            ("description", "3号楼电梯停在二楼不动"),
            ("attribute[public]", "yes"),
            ("media_url", "https://example.org/lift.jpg"),
            ("account_id", "acct-7"),
        ],
    )
    .await
    .ok();
    assert_eq!(
        posted[0]["service_notice"],
        "Lift faults are handled within 24 hours"
    );
    assert_eq!(posted[0]["account_id"], "acct-7");
    let id = posted[0]["service_request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let key = s.key.clone();

    // Anonymous callers do not see unpublished reports; the key that filed it does.
    error_list(
        anon(app, &format!("/open311/v2/requests/{id}.json")).await,
        404,
    );
    let v = anon(
        app,
        &format!("/open311/v2/requests/{id}.json?api_key={key}"),
    )
    .await
    .ok();
    let r = &v[0];
    assert_eq!(r["service_request_id"], id);
    assert_eq!(r["status"], "open");
    assert_eq!(r["service_code"], "repair_elevator");
    assert_eq!(r["service_name"], "电梯故障");
    assert!(
        r["description"]
            .as_str()
            .unwrap()
            .contains("https://example.org/lift.jpg")
    );
    assert_eq!(r["extended_attributes"]["detailed_status"], "OPEN");
    assert_eq!(r["service_notice"], "电梯故障24小时内处理");
    assert_eq!(r["address_id"], s.room);
    let requested = r["requested_datetime"].as_str().unwrap();
    assert!(requested.ends_with("+08:00"), "{requested}");
    assert!(chrono::DateTime::parse_from_rfc3339(requested).is_ok());
    let full_address = r["address"].as_str().unwrap().to_string();
    assert!(full_address.starts_with("幸福里社区 "), "{full_address}");

    // Tokens: the request id doubles as the token — for whoever may read the request. An
    // unpublished report's token answers anonymous callers exactly like an unknown one, so the
    // lookup confirms no private report (issue #13 round 2, finding 9).
    let t = anon(app, &format!("/open311/v2/tokens/{id}.json?api_key={key}"))
        .await
        .ok();
    assert_eq!(t, json!([{"service_request_id": id, "token": id}]));
    let x = anon(app, &format!("/open311/v2/tokens/{id}.xml?api_key={key}")).await;
    let x = xml_texts(&x.text());
    assert_eq!(
        xml_values(&x, "service_requests/request/service_request_id"),
        [id.as_str()]
    );
    let private = anon(app, &format!("/open311/v2/tokens/{id}.json")).await;
    let unknown = anon(
        app,
        &format!("/open311/v2/tokens/{}.json", linli_core::new_id()),
    )
    .await;
    assert_eq!(private.status, unknown.status);
    assert_eq!(
        private.text(),
        unknown.text(),
        "private and unknown answer alike"
    );
    error_list(private, 404);
    error_list(anon(app, "/open311/v2/tokens/nope.json").await, 404);

    // Accepted with a public and an internal note, then published by moderation.
    app.post(
        &s.committee,
        &format!("/api/v1/reports/{id}/actions"),
        json!({"action": "accept", "public_note": "已受理，物业今日上门", "internal_note": "内部：催物业经理"}),
    )
    .await
    .ok();
    app.post(
        &s.committee,
        &format!("/api/v1/reports/{id}/actions"),
        json!({"action": "moderate", "public": true}),
    )
    .await
    .ok();
    let v = anon(app, &format!("/open311/v2/requests/{id}.json"))
        .await
        .ok();
    let r = &v[0];
    assert_eq!(r["status_notes"], "已受理，物业今日上门");
    assert_eq!(r["extended_attributes"]["detailed_status"], "INVESTIGATING");
    // Published-only view: the address stops at the building.
    let public_address = r["address"].as_str().unwrap();
    assert!(
        full_address.starts_with(public_address) && public_address.len() < full_address.len(),
        "{public_address} vs {full_address}"
    );
    assert_ne!(r["address_id"], s.room);
    assert!(!v.to_string().contains("内部"));
    // Published: now anyone may look its token up.
    let t = anon(app, &format!("/open311/v2/tokens/{id}.json"))
        .await
        .ok();
    assert_eq!(t, json!([{"service_request_id": id, "token": id}]));
    let x = anon(app, &format!("/open311/v2/requests/{id}.xml")).await;
    let x = xml_texts(&x.text());
    assert_eq!(xml_values(&x, "service_requests/request/status"), ["open"]);
    assert_eq!(
        xml_values(
            &x,
            "service_requests/request/extended_attributes/detailed_status"
        ),
        ["INVESTIGATING"]
    );
    error_list(anon(app, "/open311/v2/requests/nope.json").await, 404);
    s.app.close().await;
}

fn ids_of(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["service_request_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn request_filters_and_the_default_window() {
    let mut s = setup().await;
    let old = create(&s, &[]).await;
    s.app.store.clock.advance(100 * DAY);
    // Sessions (a week) and API tokens (30 days here) live on the same clock: new ones.
    s.committee = s.app.login("committee").await;
    s.key = api_token(&s.app, &s.committee, &["report_create"], &s.community).await;
    let s = s;
    let app = &s.app;
    let reader = api_token(
        app,
        &s.committee,
        &["report_read", "report_create"],
        &s.community,
    )
    .await;
    let lift = create(&s, &[]).await;
    let dirty = create(
        &s,
        &[
            ("service_code", "environment"),
            ("description", "楼道堆放杂物"),
        ],
    )
    .await;
    // Close one: rejected as answered.
    app.post(
        &s.committee,
        &format!("/api/v1/reports/{dirty}/actions"),
        json!({"action": "reject", "reason": "answered", "public_note": "已电话答复"}),
    )
    .await
    .ok();
    let list = |q: String| {
        let reader = reader.clone();
        async move {
            ids_of(
                &anon(
                    app,
                    &format!("/open311/v2/requests.json?api_key={reader}{q}"),
                )
                .await
                .ok(),
            )
        }
    };
    // Default window: the last 90 days, newest first.
    assert_eq!(list(String::new()).await, [dirty.as_str(), lift.as_str()]);
    // Empty parameters are absent.
    assert_eq!(
        list("&status=&service_code=&start_date=&end_date=".into()).await,
        [dirty.as_str(), lift.as_str()]
    );
    assert_eq!(list("&status=open".into()).await, [lift.as_str()]);
    assert_eq!(list("&status=closed".into()).await, [dirty.as_str()]);
    assert_eq!(
        list("&status=open,closed".into()).await,
        [dirty.as_str(), lift.as_str()]
    );
    assert_eq!(
        list("&service_code=environment".into()).await,
        [dirty.as_str()]
    );
    assert_eq!(
        list("&service_code=environment,repair_elevator".into()).await,
        [dirty.as_str(), lift.as_str()]
    );
    // Dates: the old report is found by an explicit window.
    let now = app.store.now_ms();
    let iso = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let q = format!(
        "&start_date={}&end_date={}",
        iso(now - 120 * DAY),
        iso(now - 50 * DAY)
    );
    assert_eq!(list(q).await, [old.as_str()]);
    // start_date alone: 90 days from it.
    assert_eq!(
        list(format!("&start_date={}", iso(now - 101 * DAY))).await,
        [old.as_str()]
    );
    // end_date alone: the 90 days before it.
    assert_eq!(
        list(format!("&end_date={}", iso(now - 99 * DAY))).await,
        [old.as_str()]
    );
    // service_request_id overrides the other filters.
    assert_eq!(
        list(format!("&service_request_id={old},{lift}&status=closed")).await,
        [lift.as_str(), old.as_str()]
    );
    // Bad filters.
    let bad = |q: &'static str| {
        let reader = reader.clone();
        async move {
            anon_en(
                app,
                &format!("/open311/v2/requests.json?api_key={reader}{q}"),
            )
            .await
        }
    };
    assert!(error_list(bad("&status=pending").await, 400).contains("pending"));
    assert!(error_list(bad("&start_date=yesterday").await, 400).contains("start_date"));
    assert!(
        error_list(
            bad("&start_date=2026-01-01T00:00:00Z&end_date=2026-06-01T00:00:00Z").await,
            400
        )
        .contains("90")
    );
    error_list(
        bad("&start_date=2026-02-01T00:00:00Z&end_date=2026-01-01T00:00:00Z").await,
        400,
    );

    // Anonymous: nothing published yet; the XML list is empty but well-formed.
    assert!(ids_of(&anon(app, "/open311/v2/requests.json").await.ok()).is_empty());
    let x = anon(app, "/open311/v2/requests.xml").await;
    assert_eq!(x.status.as_u16(), 200);
    assert!(
        xml_texts(&x.text())
            .iter()
            .any(|(p, _)| p == "/service_requests")
    );
    // A key limited to another community sees nothing of this one.
    let c3 = app.login("committee3").await;
    let c3_id = app.place_id("community", "新村社区").await;
    let other = api_token(app, &c3, &["report_read"], &c3_id).await;
    assert!(
        ids_of(
            &anon(app, &format!("/open311/v2/requests.json?api_key={other}"))
                .await
                .ok()
        )
        .is_empty()
    );
    error_list(
        anon(app, "/open311/v2/requests.json?api_key=llt_nope").await,
        403,
    );
    s.app.close().await;
}

#[tokio::test]
async fn service_request_updates_carry_public_notes_only() {
    let s = setup().await;
    let app = &s.app;
    let id = create(&s, &[("attribute[public]", "yes")]).await;
    app.post(
        &s.committee,
        &format!("/api/v1/reports/{id}/actions"),
        json!({"action": "accept", "public_note": "已受理", "internal_note": "内部备注"}),
    )
    .await
    .ok();
    // Unpublished: anonymous callers get no updates; the filing key does.
    let v = anon(app, "/open311/v2/servicerequestupdates.json")
        .await
        .ok();
    assert!(v.as_array().unwrap().is_empty());
    let key = s.key.clone();
    let v = anon(
        app,
        &format!("/open311/v2/servicerequestupdates.json?api_key={key}"),
    )
    .await
    .ok();
    let ups = v.as_array().unwrap();
    assert_eq!(ups.len(), 2, "{v}");
    assert_eq!(ups[0]["service_request_id"], id);
    assert_eq!(ups[0]["status"], "open");
    assert_eq!(ups[0]["external_status_code"], "submitted");
    assert_eq!(ups[1]["status"], "investigating");
    assert_eq!(ups[1]["external_status_code"], "accepted");
    assert_eq!(ups[1]["description"], "已受理");
    assert!(ups[1]["update_id"].is_string());
    assert!(
        ups[1]["updated_datetime"]
            .as_str()
            .unwrap()
            .ends_with("+08:00")
    );
    assert!(!v.to_string().contains("内部"));

    // Published: everyone sees the updates; in XML as mySociety names them.
    app.post(
        &s.committee,
        &format!("/api/v1/reports/{id}/actions"),
        json!({"action": "moderate", "public": true}),
    )
    .await
    .ok();
    let x = anon(app, "/open311/v2/servicerequestupdates.xml").await;
    assert_eq!(x.status.as_u16(), 200);
    let x = xml_texts(&x.text());
    let descr = xml_values(&x, "service_request_updates/request_update/description");
    assert!(descr.contains(&"已受理"));
    assert!(!x.iter().any(|(_, t)| t.contains("内部")));
    // A window that ends before the report: nothing.
    let now = app.store.now_ms();
    let end = chrono::DateTime::from_timestamp_millis(now - DAY)
        .unwrap()
        .to_rfc3339();
    let v = anon(
        app,
        &format!(
            "/open311/v2/servicerequestupdates.json?end_date={}",
            end.replace('+', "%2B")
        ),
    )
    .await
    .ok();
    assert!(v.as_array().unwrap().is_empty());
    s.app.close().await;
}
