//! IoT: real MQTT clients against the embedded broker and the Mosquitto on 127.0.0.1:1883
//! (external mode), alarms seen through the API and the bus behind the SSE stream, durable
//! before PUBACK, bad input counted and dropped, SOS escalation driven by the test clock.

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use sqlx::Row;

use linli_core::iot::Drop;
use linli_iot::{Iot, IotConfig};
use linli_store::bus::BusEvent;
use linli_store::iot::demo::demo_device_token;

use crate::common::{Session, TestApp};

/// The demo app with demo devices and a running IoT runtime behind the router.
async fn iot_app() -> (TestApp, Iot) {
    iot_app_with(IotConfig {
        batch_ms: 5,
        ..IotConfig::default()
    })
    .await
}

async fn iot_app_with(config: IotConfig) -> (TestApp, Iot) {
    let mut app = TestApp::demo().await;
    app.store.seed_iot_demo().await.unwrap();
    let iot = Iot::start(app.store.clone(), config).await.unwrap();
    let state = linli_server::AppState::new(
        app.store.clone(),
        linli_server::ServerConfig {
            secure_cookies: false,
            data_dir: app.dir.clone(),
            trusted_proxies: Vec::new(),
        },
    );
    state.iot.set(iot.clone()).unwrap();
    app.router = linli_server::app(state);
    (app, iot)
}

async fn user_id(app: &TestApp, login: &str) -> String {
    sqlx::query("SELECT id FROM users WHERE login = $1")
        .bind(login.to_string())
        .fetch_one(&app.store.db.read)
        .await
        .unwrap()
        .get::<String, _>("id")
}

/// A demo device of a kind visible to the session.
async fn a_device(app: &TestApp, s: &Session, kind: &str) -> Value {
    let list = app
        .get(s, &format!("/api/v1/iot/devices?kind={kind}"))
        .await
        .ok();
    list.as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} device"))
}

async fn connect(addr: SocketAddr, user: &str, pass: &str) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(
        format!("t-{}", &linli_core::new_id()[24..]),
        addr.ip().to_string(),
        addr.port(),
    );
    o.set_credentials(user, pass)
        .set_keep_alive(Duration::from_secs(5))
        .set_max_packet_size(1 << 20, 1 << 20);
    AsyncClient::new(o, 16)
}

/// Poll until the CONNACK; the return code (or refusal).
async fn connack(ev: &mut EventLoop) -> Result<(), String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(c)))) => {
                return if c.code == ConnectReturnCode::Success {
                    Ok(())
                } else {
                    Err(format!("{:?}", c.code))
                };
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("timeout".into()),
        }
    }
}

/// Poll until a PUBACK arrives (or the connection ends).
async fn puback(ev: &mut EventLoop) -> Result<u16, String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(a)))) => return Ok(a.pkid),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("timeout".into()),
        }
    }
}

/// Reads SSE frames until `want` appears or `wait` passes; returns everything read.
async fn sse_read_until(body: &mut axum::body::Body, want: &str, wait: Duration) -> String {
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

async fn next_alarm_event(
    rx: &mut tokio::sync::broadcast::Receiver<BusEvent>,
    kind: &str,
    path: &str,
) -> BusEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rx.recv().await {
                Ok(e) if e.kind == kind && e.path == path => return e,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("bus closed: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} event at {path}"))
}

#[tokio::test]
async fn mqtt_telemetry_is_durable_before_puback_and_raises_an_alarm_seen_by_api_and_sse() {
    let (app, iot) = iot_app().await;
    let broker = linli_iot::broker::start(iot.clone(), "127.0.0.1:0")
        .await
        .unwrap();
    let committee = app.login("committee").await;
    let other = app.login("committee3").await;
    let smoke = a_device(&app, &committee, "smoke").await;
    let id = smoke["id"].as_str().unwrap().to_string();
    let path = smoke["path"].as_str().unwrap().to_string();
    assert_eq!(smoke["online"], false);

    let mut bus = app.store.bus.subscribe();
    let (client, mut ev) = connect(broker.addr, &id, &demo_device_token(&id)).await;
    connack(&mut ev).await.unwrap();

    // QoS 1: once PUBACK is received, the point is in storage.
    client
        .publish(
            format!("linli/{id}/telemetry"),
            QoS::AtLeastOnce,
            false,
            json!({"values": {"smoke": 0, "battery": 90, "temperature": 21}}).to_string(),
        )
        .await
        .unwrap();
    puback(&mut ev).await.unwrap();
    assert_eq!(app.store.telemetry_count(Some(&id)).await.unwrap(), 1);

    // Live pages of both communities are open (the real SSE stream, `GET /events`).
    let open = |cookie: String| {
        use tower::ServiceExt;
        let router = app.router.clone();
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
    let mut sse_mine = open(committee.cookie.clone()).await;
    let mut sse_theirs = open(other.cookie.clone()).await;

    // Smoke: a CRITICAL alarm, on the bus and the SSE stream, and in the API, in scope only.
    client
        .publish(
            format!("linli/{id}/telemetry"),
            QoS::AtLeastOnce,
            false,
            json!({"values": {"smoke": 1, "battery": 90, "temperature": 48}}).to_string(),
        )
        .await
        .unwrap();
    puback(&mut ev).await.unwrap();
    assert_eq!(app.store.telemetry_count(Some(&id)).await.unwrap(), 2);
    let raised = next_alarm_event(&mut bus, "alarm.raised", &path).await;
    let seen = sse_read_until(&mut sse_mine, &raised.id, Duration::from_secs(5)).await;
    assert!(
        seen.contains("event: alarm.raised") && seen.contains(&raised.id),
        "{seen:?}"
    );
    let other_seen = sse_read_until(&mut sse_theirs, "alarm", Duration::from_millis(300)).await;
    assert!(
        !other_seen.contains("alarm"),
        "another community was told: {other_seen:?}"
    );
    let alarms = app.get(&committee, "/api/v1/alarms?active=true").await.ok();
    let a = alarms
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == raised.id.as_str())
        .expect("alarm listed")
        .clone();
    assert_eq!(a["alarm_type"], "smoke");
    assert_eq!(a["severity"], "CRITICAL");
    assert_eq!(a["status"], "ACTIVE_UNACK");
    assert_eq!(a["device_id"], id.as_str());
    let theirs = app.get(&other, "/api/v1/alarms").await.ok();
    assert!(
        theirs
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["id"] != raised.id.as_str())
    );
    app.get(&other, &format!("/api/v1/alarms/{}", raised.id))
        .await
        .expect(404);
    // Propagation: the alarm is found under its building and its community.
    let building = smoke["place_id"].as_str().unwrap();
    let under = app
        .get(&committee, &format!("/api/v1/alarms?place_id={building}"))
        .await
        .ok();
    assert_eq!(under.as_array().unwrap().len(), 1);

    // A repeat updates the same alarm rather than adding one.
    client
        .publish(
            format!("linli/{id}/event"),
            QoS::AtLeastOnce,
            false,
            json!({"type": "selftest"}).to_string(),
        )
        .await
        .unwrap();
    puback(&mut ev).await.unwrap();

    // Device state and history.
    let d = app
        .get(&committee, &format!("/api/v1/iot/devices/{id}"))
        .await
        .ok();
    assert_eq!(d["online"], true);
    let hist = app
        .get(&committee, &format!("/api/v1/iot/devices/{id}/telemetry"))
        .await
        .ok();
    assert_eq!(hist.as_array().unwrap().len(), 3);
    assert_eq!(hist[1]["values"]["smoke"], 1);

    // Acknowledge (twice is a conflict), comment, then the rule clears it when smoke is gone.
    let acked = app
        .post(
            &committee,
            &format!("/api/v1/alarms/{}/ack", raised.id),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(acked["alarm"]["status"], "ACTIVE_ACK");
    app.post(
        &committee,
        &format!("/api/v1/alarms/{}/ack", raised.id),
        json!({}),
    )
    .await
    .expect(409);
    app.post(
        &committee,
        &format!("/api/v1/alarms/{}/comment", raised.id),
        json!({"text": "物业已到场"}),
    )
    .await
    .ok();
    client
        .publish(
            format!("linli/{id}/telemetry"),
            QoS::AtLeastOnce,
            false,
            json!({"values": {"smoke": 0}}).to_string(),
        )
        .await
        .unwrap();
    puback(&mut ev).await.unwrap();
    next_alarm_event(&mut bus, "alarm.cleared", &path).await;
    let view = app
        .get(&committee, &format!("/api/v1/alarms/{}", raised.id))
        .await
        .ok();
    assert_eq!(view["alarm"]["status"], "CLEARED_ACK");
    let kinds: Vec<&str> = view["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for k in ["raised", "acknowledged", "commented", "cleared"] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    // Every change by a person is audited.
    let audited = sqlx::query(
        "SELECT COUNT(*) AS n FROM audit_log WHERE entity = 'alarm' AND entity_id = $1",
    )
    .bind(raised.id.clone())
    .fetch_one(&app.store.db.read)
    .await
    .unwrap()
    .get::<i64, _>("n");
    assert!(audited >= 3, "{audited}");
    let _ = client.disconnect().await;
    app.close().await;
}

#[tokio::test]
async fn bad_input_is_rejected_counted_and_stores_nothing() {
    let (app, iot) = iot_app().await;
    let broker = linli_iot::broker::start(iot.clone(), "127.0.0.1:0")
        .await
        .unwrap();
    let committee = app.login("committee").await;
    let dev = a_device(&app, &committee, "water_leak").await;
    let id = dev["id"].as_str().unwrap().to_string();
    let token = demo_device_token(&id);
    let other = a_device(&app, &committee, "door").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let stats = iot.stats();

    // Wrong token, unknown device: refused at CONNECT.
    let (_c, mut ev) = connect(broker.addr, &id, "wrong").await;
    assert!(connack(&mut ev).await.is_err());
    assert_eq!(stats.dropped(Drop::BadToken), 1);
    let (_c, mut ev) = connect(broker.addr, "no-such-device", &token).await;
    assert!(connack(&mut ev).await.is_err());
    assert_eq!(stats.dropped(Drop::UnknownDevice), 1);

    // Malformed JSON and a bad payload: acknowledged (never resent), counted, not stored.
    let (c, mut ev) = connect(broker.addr, &id, &token).await;
    connack(&mut ev).await.unwrap();
    c.publish(
        format!("linli/{id}/telemetry"),
        QoS::AtLeastOnce,
        false,
        "{not json",
    )
    .await
    .unwrap();
    puback(&mut ev).await.unwrap();
    c.publish(
        format!("linli/{id}/telemetry"),
        QoS::AtLeastOnce,
        false,
        json!({"values": "x"}).to_string(),
    )
    .await
    .unwrap();
    puback(&mut ev).await.unwrap();
    assert_eq!(stats.dropped(Drop::BadJson), 1);
    assert_eq!(stats.dropped(Drop::BadPayload), 1);
    // Publishing under another device's id: refused, connection closed.
    c.publish(
        format!("linli/{other}/telemetry"),
        QoS::AtLeastOnce,
        false,
        json!({"values": {"open": 1}}).to_string(),
    )
    .await
    .unwrap();
    assert!(puback(&mut ev).await.is_err());
    assert_eq!(stats.dropped(Drop::WrongTopic), 1);
    // A huge payload: connection closed, counted.
    let (c, mut ev) = connect(broker.addr, &id, &token).await;
    connack(&mut ev).await.unwrap();
    let huge = format!(
        r#"{{"values": {{"leak": 0, "pad": "{}"}}}}"#,
        "x".repeat(200_000)
    );
    c.publish(
        format!("linli/{id}/telemetry"),
        QoS::AtLeastOnce,
        false,
        huge.clone(),
    )
    .await
    .unwrap();
    assert!(puback(&mut ev).await.is_err());
    assert_eq!(stats.dropped(Drop::TooLarge), 1);

    // HTTP: wrong token 401, malformed JSON 400, huge 413 — localized, counted.
    let auth = format!("Bearer {token}");
    let r = app
        .call(
            "POST",
            "/api/v1/iot/telemetry",
            None,
            Some(("application/json", b"{\"values\":{\"leak\":1}}".to_vec())),
            &[("authorization", "Bearer dev_wrong")],
        )
        .await;
    assert_eq!(r.status.as_u16(), 401);
    assert_eq!(r.json()["code"], "iot.bad_token");
    let r = app
        .call(
            "POST",
            "/api/v1/iot/telemetry",
            None,
            Some(("application/json", b"{oops".to_vec())),
            &[("authorization", &auth), ("accept-language", "en")],
        )
        .await;
    assert_eq!(r.status.as_u16(), 400);
    assert_eq!(r.json()["message"], "The payload is not valid JSON.");
    let r = app
        .call(
            "POST",
            "/api/v1/iot/event",
            None,
            Some(("application/json", huge.into_bytes())),
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(r.status.as_u16(), 413);
    assert_eq!(stats.dropped(Drop::BadToken), 2);
    assert_eq!(stats.dropped(Drop::BadJson), 2);
    assert_eq!(stats.dropped(Drop::TooLarge), 2);
    assert_eq!(app.store.telemetry_count(Some(&id)).await.unwrap(), 0);
    assert_eq!(app.store.telemetry_count(Some(&other)).await.unwrap(), 0);

    // Still running: a good message over HTTP and over MQTT is stored.
    let r = app
        .call(
            "POST",
            "/api/v1/iot/telemetry",
            None,
            Some(("application/json", b"{\"values\":{\"leak\":0}}".to_vec())),
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    let (c, mut ev) = connect(broker.addr, &id, &token).await;
    connack(&mut ev).await.unwrap();
    c.publish(
        format!("linli/{id}/telemetry"),
        QoS::AtLeastOnce,
        false,
        json!({"values": {"leak": 0}}).to_string(),
    )
    .await
    .unwrap();
    puback(&mut ev).await.unwrap();
    assert_eq!(app.store.telemetry_count(Some(&id)).await.unwrap(), 2);
    app.close().await;
}

/// Issue #13 (round 2), finding 6 (the same class): two replacements of a person's care
/// contacts at once each deleted the old list and inserted theirs, leaving both — twenty
/// contacts where ten is the limit. They queue on the person's row now.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_replacements_of_care_contacts_leave_one_list() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let resident = app.login("resident").await;
    let person = app
        .store
        .own_person_id(
            &app.principal_of(resident.user["id"].as_str().unwrap())
                .await,
        )
        .await
        .unwrap()
        .unwrap();
    let contacts = |login: &'static str| {
        let app = &app;
        async move {
            let id = user_id(app, login).await;
            json!(
                (0..10)
                    .map(|i| json!({"user_id": id, "relation": format!("联系人{i}")}))
                    .collect::<Vec<_>>()
            )
        }
    };
    let lists = [contacts("volunteer").await, contacts("grid").await];
    let mut tasks = Vec::new();
    for round in 0..6 {
        let router = app.router.clone();
        let (cookie, csrf) = (committee.cookie.clone(), committee.csrf.clone());
        let (uri, body) = (
            format!("/api/v1/persons/{person}/care-contacts"),
            lists[round % 2].to_string(),
        );
        tasks.push(tokio::spawn(async move {
            use tower::ServiceExt;
            let req = axum::http::Request::builder()
                .method("PUT")
                .uri(uri)
                .header("cookie", cookie)
                .header("x-csrf-token", csrf)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .unwrap();
            router.oneshot(req).await.unwrap().status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let rows = sqlx::query(
        "SELECT contact_user_id, ord FROM care_contacts WHERE person_id = $1 ORDER BY ord",
    )
    .bind(person.clone())
    .fetch_all(&app.store.db.read)
    .await
    .unwrap();
    assert_eq!(rows.len(), 10, "one list of ten, not two");
    let owners: std::collections::BTreeSet<String> = rows
        .iter()
        .map(|r| sqlx::Row::get::<String, _>(r, 0))
        .collect();
    assert_eq!(owners.len(), 1, "the whole list comes from one replacement");
    app.close().await;
}

#[tokio::test]
async fn sos_escalates_along_the_care_chain_until_acknowledged() {
    let (app, iot) = iot_app().await;
    let committee = app.login("committee").await;
    let resident = app.login("resident").await;
    let volunteer = user_id(&app, "volunteer").await;
    let staff = user_id(&app, "committee").await;
    let person = app
        .store
        .own_person_id(
            &app.principal_of(resident.user["id"].as_str().unwrap())
                .await,
        )
        .await
        .unwrap()
        .unwrap();
    // The family contact first (here the volunteer neighbour's account).
    let set = app
        .call(
            "PUT",
            &format!("/api/v1/persons/{person}/care-contacts"),
            Some(&committee),
            Some((
                "application/json",
                json!([{"user_id": volunteer, "relation": "邻居"}])
                    .to_string()
                    .into_bytes(),
            )),
            &[],
        )
        .await
        .ok();
    assert_eq!(set.as_array().unwrap().len(), 1);
    let other = app.login("committee3").await;
    app.call(
        "PUT",
        &format!("/api/v1/persons/{person}/care-contacts"),
        Some(&other),
        Some(("application/json", b"[]".to_vec())),
        &[],
    )
    .await
    .expect(404);

    let mut bus = app.store.bus.subscribe();
    let sos = app
        .post(&resident, "/api/v1/me/sos", json!({}))
        .await
        .expect(201);
    // The volunteer's open pages hear of it (an inbox event addressed to them).
    let told = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let e = bus.recv().await.unwrap();
            if e.kind == "inbox" {
                return e;
            }
        }
    })
    .await
    .expect("inbox event");
    assert_eq!(told.users, vec![volunteer.clone()]);
    let alarm = sos["alarm_id"].as_str().unwrap().to_string();
    assert_eq!(sos["new"], true);
    let notified = |view: &Value| -> Vec<(String, i64)> {
        view["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "notified")
            .map(|e| {
                (
                    e["user_id"].as_str().unwrap().to_string(),
                    e["step"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let view = app
        .get(&committee, &format!("/api/v1/alarms/{alarm}"))
        .await
        .ok();
    assert_eq!(view["alarm"]["severity"], "CRITICAL");
    assert_eq!(view["alarm"]["alarm_type"], "sos");
    assert_eq!(notified(&view), vec![(volunteer.clone(), 0)]);
    let inbox = app
        .store
        .inbox(&app.principal_of(&volunteer).await, true, None, 10)
        .await
        .unwrap();
    assert_eq!(inbox[0].kind, "alarm.sos");
    assert_eq!(inbox[0].entity_id, alarm);
    // Pressing again updates the same alarm.
    let again = app
        .post(&resident, "/api/v1/me/sos", json!({}))
        .await
        .expect(201);
    assert_eq!(again["alarm_id"], alarm.as_str());
    assert_eq!(again["new"], false);

    // Nobody answers: every 5 minutes the next tier (grid worker, then committee) is told,
    // and the earlier ones again.
    let tick = |ms: i64| {
        let iot = iot.clone();
        let store = app.store.clone();
        async move {
            store.clock.advance(ms);
            iot.tick().await;
        }
    };
    tick(60_000).await;
    let view = app
        .get(&committee, &format!("/api/v1/alarms/{alarm}"))
        .await
        .ok();
    assert_eq!(notified(&view).len(), 1, "nothing before the interval");
    for _ in 0..2 {
        tick(5 * 60_000).await;
    }
    let view = app
        .get(&committee, &format!("/api/v1/alarms/{alarm}"))
        .await
        .ok();
    let n = notified(&view);
    assert!(n.contains(&(staff.clone(), n.iter().map(|x| x.1).max().unwrap())));
    assert!(n.iter().filter(|(u, _)| *u == volunteer).count() >= 2);
    let staff_inbox = app
        .store
        .inbox(&app.principal_of(&staff).await, true, None, 10)
        .await
        .unwrap();
    assert!(staff_inbox.iter().any(|i| i.entity_id == alarm));

    // Acknowledged: the calls stop.
    let acked = app
        .post(
            &committee,
            &format!("/api/v1/alarms/{alarm}/ack"),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(acked["alarm"]["next_esc_at"], Value::Null);
    let before = notified(&acked).len();
    tick(60 * 60_000).await;
    let view = app
        .get(&committee, &format!("/api/v1/alarms/{alarm}"))
        .await
        .ok();
    assert_eq!(notified(&view).len(), before);
    let ack = view["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "acknowledged")
        .unwrap();
    assert_eq!(ack["user_id"], staff.as_str());
    assert!(ack["at"].as_i64().unwrap() > 0);
    // A person without a resident binding has no SOS button.
    app.post(&committee, "/api/v1/me/sos", json!({}))
        .await
        .expect(403);
    app.close().await;
}

#[tokio::test]
async fn silent_devices_raise_offline_alarms_by_the_test_clock_and_clear_on_data() {
    let (app, iot) = iot_app().await;
    let committee = app.login("committee").await;
    let dev = a_device(&app, &committee, "smoke").await;
    let id = dev["id"].as_str().unwrap().to_string();
    let path = dev["path"].as_str().unwrap().to_string();
    let auth = format!("Bearer {}", demo_device_token(&id));
    let send = |body: &'static str| {
        let auth = auth.clone();
        let app = &app;
        async move {
            app.call(
                "POST",
                "/api/v1/iot/telemetry",
                None,
                Some(("application/json", body.as_bytes().to_vec())),
                &[("authorization", &auth)],
            )
            .await
        }
    };
    assert_eq!(send(r#"{"values":{"smoke":0}}"#).await.status.as_u16(), 202);
    let mut bus = app.store.bus.subscribe();
    app.store.clock.advance(3_600_000 + 1_000);
    iot.tick().await;
    let e = next_alarm_event(&mut bus, "alarm.raised", &path).await;
    let view = app
        .get(&committee, &format!("/api/v1/alarms/{}", e.id))
        .await
        .ok();
    assert_eq!(view["alarm"]["alarm_type"], "offline");
    assert_eq!(view["alarm"]["severity"], "WARNING");
    assert_eq!(send(r#"{"values":{"smoke":0}}"#).await.status.as_u16(), 202);
    next_alarm_event(&mut bus, "alarm.cleared", &path).await;

    // A building override raises the threshold rule's severity there.
    let admin = app.login("admin").await;
    let rule = app
        .post(
            &admin,
            "/api/v1/iot/rules",
            json!({
                "device_kind": "smoke",
                "place_id": dev["place_id"],
                "spec": {"alarm_type": "smoke", "severity": "MAJOR",
                         "trigger": {"type": "threshold", "condition": {"key": "smoke", "op": "gt", "value": 0.5}, "count": 2}}
            }),
        )
        .await
        .expect(201);
    assert_eq!(rule["path"], path.as_str());
    app.post(
        &admin,
        "/api/v1/iot/rules",
        json!({"device_kind": "smoke", "spec": {"alarm_type": "x", "severity": "MAJOR",
               "trigger": {"type": "threshold", "condition": {"key": "t", "op": "between", "value": 5}}}}),
    )
    .await
    .expect(400);
    assert_eq!(send(r#"{"values":{"smoke":1}}"#).await.status.as_u16(), 202);
    let active = app
        .get(
            &committee,
            &format!(
                "/api/v1/alarms?place_id={}&active=true",
                dev["place_id"].as_str().unwrap()
            ),
        )
        .await
        .ok();
    assert!(active.as_array().unwrap().is_empty(), "two in a row needed");
    assert_eq!(send(r#"{"values":{"smoke":1}}"#).await.status.as_u16(), 202);
    let e = next_alarm_event(&mut bus, "alarm.raised", &path).await;
    let view = app
        .get(&committee, &format!("/api/v1/alarms/{}", e.id))
        .await
        .ok();
    assert_eq!(view["alarm"]["severity"], "MAJOR");
    app.close().await;
}

#[tokio::test]
async fn external_broker_mode_through_mosquitto() {
    // An external broker is optional for users: without one on 127.0.0.1:1883 this test says
    // so and stops, unless LINLI_TEST_REQUIRE_MOSQUITTO is set (`.ci/run` sets it and starts
    // Mosquitto when it is missing).
    if std::net::TcpStream::connect("127.0.0.1:1883").is_err() {
        assert!(
            std::env::var_os("LINLI_TEST_REQUIRE_MOSQUITTO").is_none(),
            "no MQTT broker on 127.0.0.1:1883"
        );
        eprintln!("no MQTT broker on 127.0.0.1:1883: external-broker test skipped");
        return;
    }
    let (app, iot) = iot_app().await;
    let group = format!("t{}", &linli_core::new_id()[24..]);
    linli_iot::external::start(
        iot.clone(),
        "mqtt://127.0.0.1:1883",
        &format!("linli-{group}"),
        &group,
    )
    .await
    .unwrap();
    let committee = app.login("committee").await;
    let dev = a_device(&app, &committee, "manhole").await;
    let id = dev["id"].as_str().unwrap().to_string();
    let path = dev["path"].as_str().unwrap().to_string();
    let mut bus = app.store.bus.subscribe();
    // Give the subscription a moment to be in place at Mosquitto.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mosquitto: SocketAddr = "127.0.0.1:1883".parse().unwrap();
    let (c, mut ev) = connect(mosquitto, &id, "unused-by-mosquitto").await;
    connack(&mut ev).await.expect("Mosquitto on 127.0.0.1:1883");
    for tilt in [30, 35] {
        c.publish(
            format!("linli/{id}/telemetry"),
            QoS::AtLeastOnce,
            false,
            json!({"values": {"tilt": tilt}}).to_string(),
        )
        .await
        .unwrap();
        puback(&mut ev).await.unwrap();
    }
    let e = next_alarm_event(&mut bus, "alarm.raised", &path).await;
    let view = app
        .get(&committee, &format!("/api/v1/alarms/{}", e.id))
        .await
        .ok();
    assert_eq!(view["alarm"]["alarm_type"], "cover_displaced");
    assert_eq!(app.store.telemetry_count(Some(&id)).await.unwrap(), 2);
    // The rule asks for a repair report; without the reports module that is recorded.
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let v = app
                .get(&committee, &format!("/api/v1/alarms/{}", e.id))
                .await
                .ok();
            if v["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["kind"] == "report_failed")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("report request recorded");
    let _ = c.disconnect().await;
    // Linli's session is persistent; a clean connection under its id removes it from the
    // shared broker, so later runs' messages are not queued for it.
    let mut o = MqttOptions::new(format!("linli-{group}"), "127.0.0.1", 1883);
    o.set_clean_session(true);
    let (wipe, mut wipe_ev) = AsyncClient::new(o, 4);
    let _ = connack(&mut wipe_ev).await;
    let _ = wipe.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), wipe_ev.poll()).await;
    app.close().await;
}

#[tokio::test]
async fn missed_daily_checkin_raises_an_alarm_and_checking_in_clears_it() {
    let (app, iot) = iot_app().await;
    let resident = app.login("resident").await;
    let r = app
        .post(&resident, "/api/v1/me/checkin", json!({}))
        .await
        .ok();
    assert!(r["at"].as_i64().unwrap() > 0);
    // An elderly person living alone (demo SOS-button owner) who checks in.
    let person: String = sqlx::query(
        "SELECT person_id FROM devices WHERE kind = 'sos_button' AND person_id IS NOT NULL ORDER BY path LIMIT 1",
    )
    .fetch_one(&app.store.db.read)
    .await
    .unwrap()
    .get("person_id");
    app.store.checkin(&person).await.unwrap();
    iot.tick().await;
    let open = |app: &TestApp| {
        let store = app.store.clone();
        let person = person.clone();
        async move {
            sqlx::query("SELECT COUNT(*) AS n FROM alarms WHERE originator = $1 AND alarm_type = 'checkin_missed' AND active = 1")
                .bind(person)
                .fetch_one(&store.db.read)
                .await
                .unwrap()
                .get::<i64, _>("n")
        }
    };
    assert_eq!(open(&app).await, 0);
    // The next day at 10:30 (local time) without a check-in.
    let day = 86_400_000;
    let local = app.store.now_ms() + app.store.clock.zone().offset_ms();
    let target = local - local.rem_euclid(day) + day + 10 * 3_600_000 + 30 * 60_000;
    app.store.clock.advance(target - local);
    iot.tick().await;
    assert_eq!(open(&app).await, 1);
    iot.tick().await;
    assert_eq!(open(&app).await, 1, "one alarm, not one per tick");
    app.store.checkin(&person).await.unwrap();
    assert_eq!(open(&app).await, 0);
    app.close().await;
}

#[tokio::test]
async fn old_telemetry_is_downsampled_to_hourly_averages() {
    // The runtime's own hourly retention pass must not race the one this test runs.
    let (app, _iot) = iot_app_with(IotConfig {
        batch_ms: 5,
        downsample_after_days: 100_000,
        retention_days: 100_000,
        ..IotConfig::default()
    })
    .await;
    let committee = app.login("committee").await;
    let dev = a_device(&app, &committee, "door").await;
    let id = dev["id"].as_str().unwrap().to_string();
    let auth = format!("Bearer {}", demo_device_token(&id));
    let hour = 3_600_000;
    let base = app.store.now_ms() - 10 * 86_400_000;
    let base = base - base.rem_euclid(hour);
    for (i, v) in [(0, 1.0), (1, 3.0), (2, 5.0)] {
        let body = json!({"ts": base + i * 60_000, "values": {"open": 0, "temp": v}}).to_string();
        let r = app
            .call(
                "POST",
                "/api/v1/iot/telemetry",
                None,
                Some(("application/json", body.into_bytes())),
                &[("authorization", &auth)],
            )
            .await;
        assert_eq!(r.status.as_u16(), 202);
    }
    let now = app.store.now_ms();
    let (folded, deleted) = app
        .store
        .telemetry_retention(now - 7 * 86_400_000, now - 365 * 86_400_000, 1000)
        .await
        .unwrap();
    // Raw rows are per (device, batch): how many the three points took depends on where the
    // writer cut its batches; the average below proves every point was folded.
    assert!((1..=3).contains(&folded), "folded {folded} rows");
    assert_eq!(deleted, 0);
    let hist = app
        .get(
            &committee,
            &format!(
                "/api/v1/iot/devices/{id}/telemetry?from={}&to={}",
                base - 1,
                base + hour
            ),
        )
        .await
        .ok();
    let pts = hist.as_array().unwrap();
    assert_eq!(pts.len(), 1);
    assert_eq!(pts[0]["ts"], base);
    assert_eq!(pts[0]["values"]["temp"], 3.0);
    let (_, deleted) = app.store.telemetry_retention(now, now, 1000).await.unwrap();
    assert_eq!(deleted, 1);
    app.close().await;
}

#[tokio::test]
async fn the_resident_page_has_the_sos_button_and_it_calls_for_help() {
    let (app, _iot) = iot_app().await;
    let resident = app.login("resident").await;
    let page = app.get(&resident, "/me").await;
    assert_eq!(page.status.as_u16(), 200);
    assert!(page.text().contains("一键呼叫"));
    assert!(page.text().contains("action=\"/me/sos\""));
    let form = format!("_csrf={}", resident.csrf);
    let r = app
        .call(
            "POST",
            "/me/sos",
            Some(&resident),
            Some((
                "application/x-www-form-urlencoded",
                form.clone().into_bytes(),
            )),
            &[],
        )
        .await;
    // Post/redirect/get: the status page, which can be reloaded without calling again.
    assert_eq!(r.status.as_u16(), 303, "{}", r.text());
    assert_eq!(r.headers["location"], "/me/sos");
    let status_page = app.get(&resident, "/me/sos").await;
    assert!(
        status_page.doc().has("#sos-status[data-poll]"),
        "it updates itself"
    );
    let status = status_page.doc();
    let state = status.text("#sos-state");
    assert!(state.contains("正在等待确认"), "{state}");
    // The demo resident has no care contacts: the grid worker was told first, and the page
    // says so plainly (with names, never account codes).
    let told = status.text(".sos-told");
    assert!(told.contains("网格员："), "{told}");
    assert!(
        status
            .text("#sos-no-contacts")
            .contains("还没有登记紧急联系人")
    );
    let n: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM alarms WHERE alarm_type = 'sos' AND active = 1")
            .fetch_one(&app.store.db.read)
            .await
            .unwrap()
            .get("n");
    assert_eq!(n, 1);
    // The grid worker confirms: the resident's page says who is coming and stops reloading.
    let alarm: String =
        sqlx::query("SELECT id FROM alarms WHERE alarm_type = 'sos' AND active = 1")
            .fetch_one(&app.store.db.read)
            .await
            .unwrap()
            .get("id");
    let grid = app.login("grid").await;
    app.post(&grid, &format!("/api/v1/alarms/{alarm}/ack"), json!({}))
        .await
        .ok();
    let acked = app.get(&resident, "/me/sos").await;
    assert!(!acked.doc().has("[data-poll]"), "settled: no more polling");
    let state = acked.doc().text("#sos-state");
    assert!(state.contains("已确认，正在赶来"), "{state}");
    // Only residents have an SOS page (other households: tests/it/matrix).
    let merchant = app.login("merchant").await;
    assert_eq!(app.get(&merchant, "/me/sos").await.status.as_u16(), 403);
    // Without the form token nothing happens.
    let r = app
        .call(
            "POST",
            "/me/sos",
            Some(&resident),
            Some((
                "application/x-www-form-urlencoded",
                b"_csrf=forged".to_vec(),
            )),
            &[],
        )
        .await;
    assert_eq!(r.status.as_u16(), 403);
    app.close().await;
}

#[tokio::test]
async fn a_displaced_manhole_cover_becomes_a_routed_report() {
    let (app, iot) = iot_app().await;
    iot.set_report_opener(std::sync::Arc::new(
        linli_store::reports::from_alarm::AlarmReports::new(app.store.clone()),
    ));
    let committee = app.login("committee").await;
    let dev = a_device(&app, &committee, "manhole").await;
    let id = dev["id"].as_str().unwrap().to_string();
    let path = dev["path"].as_str().unwrap().to_string();
    let auth = format!("Bearer {}", demo_device_token(&id));
    let mut bus = app.store.bus.subscribe();
    // Tilted past 15° twice in a row (the default rule) raises cover_displaced.
    for _ in 0..2 {
        let r = app
            .call(
                "POST",
                "/api/v1/iot/telemetry",
                None,
                Some(("application/json", br#"{"values":{"tilt":32.5}}"#.to_vec())),
                &[("authorization", &auth)],
            )
            .await;
        assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    }
    let e = next_alarm_event(&mut bus, "alarm.raised", &path).await;
    // The report is filed after the alarm commits; wait for the alarm to name it.
    let mut report_id = None;
    for _ in 0..100 {
        let view = app
            .get(&committee, &format!("/api/v1/alarms/{}", e.id))
            .await
            .ok();
        if let Some(r) = view["alarm"]["report_id"].as_str() {
            report_id = Some(r.to_string());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let report_id = report_id.expect("the alarm opened a report");
    let report = app
        .get(&committee, &format!("/api/v1/reports/{report_id}"))
        .await
        .ok();
    let r = if report["report"].is_object() {
        &report["report"]
    } else {
        &report
    };
    assert_eq!(r["category"], "public_facility", "{report}");
    assert_eq!(r["channel"], "iot", "{report}");
    assert!(
        r["description"].as_str().unwrap_or("").contains(&e.id),
        "{report}"
    );
    app.close().await;
}

// ---------------------------------------------------------------------------------------------
// Per-connection resources and revocation (issue #13, finding 5). A raw MQTT client, so the
// tests control exactly what is sent and when the client reads.

mod raw {
    use std::net::SocketAddr;
    use std::time::Duration;

    use bytes::BytesMut;
    use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, Publish, Subscribe};
    use rumqttc::mqttbytes::{Error as MqttError, QoS};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub struct Client {
        pub s: TcpStream,
        rb: BytesMut,
    }

    /// How a wait for the next packet ended.
    #[derive(Debug)]
    pub enum Next {
        Packet(Packet),
        /// The server closed (or reset) the connection.
        Closed,
        TimedOut,
    }

    impl Client {
        /// CONNECT with this keep-alive (seconds) on an already connected socket; the CONNACK
        /// code.
        pub async fn connect_on(
            s: TcpStream,
            user: &str,
            pass: &str,
            keep_alive: u16,
        ) -> Result<Client, String> {
            let mut c = Client {
                s,
                rb: BytesMut::new(),
            };
            let mut connect = Connect::new(format!("raw-{}", &linli_core::new_id()[24..]));
            connect.keep_alive = keep_alive;
            connect.set_login(user, pass);
            c.send(Packet::Connect(connect))
                .await
                .map_err(|e| e.to_string())?;
            match c.next(Duration::from_secs(5)).await {
                Next::Packet(Packet::ConnAck(a)) if a.code == ConnectReturnCode::Success => Ok(c),
                other => Err(format!("{other:?}")),
            }
        }

        pub async fn connect(
            addr: SocketAddr,
            user: &str,
            pass: &str,
            keep_alive: u16,
        ) -> Result<Client, String> {
            let s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            s.set_nodelay(true).unwrap();
            Self::connect_on(s, user, pass, keep_alive).await
        }

        pub async fn send(&mut self, p: Packet) -> std::io::Result<()> {
            let mut b = BytesMut::new();
            p.write(&mut b, usize::MAX)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            self.s.write_all(&b).await
        }

        pub async fn publish(&mut self, topic: &str, qos: QoS, pkid: u16, payload: &str) {
            let mut p = Publish::new(topic, qos, payload.to_string());
            p.pkid = pkid;
            let _ = self.send(Packet::Publish(p)).await;
        }

        pub async fn subscribe(&mut self, pkid: u16, filters: &[String]) {
            let mut s =
                Subscribe::new_many(filters.iter().map(|f| {
                    rumqttc::mqttbytes::v4::SubscribeFilter::new(f.clone(), QoS::AtMostOnce)
                }));
            s.pkid = pkid;
            self.send(Packet::Subscribe(s)).await.unwrap();
        }

        /// The next packet, or how the wait ended.
        pub async fn next(&mut self, wait: Duration) -> Next {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                match Packet::read(&mut self.rb, 1 << 20) {
                    Ok(p) => return Next::Packet(p),
                    Err(MqttError::InsufficientBytes(_)) => {}
                    Err(_) => return Next::Closed,
                }
                match tokio::time::timeout_at(deadline, self.s.read_buf(&mut self.rb)).await {
                    Err(_) => return Next::TimedOut,
                    Ok(Ok(0)) | Ok(Err(_)) => return Next::Closed,
                    Ok(Ok(_)) => {}
                }
            }
        }

        /// Read until the server closes the connection (true) or `wait` passes (false); the
        /// packets received meanwhile.
        pub async fn closed_within(&mut self, wait: Duration) -> (bool, Vec<Packet>) {
            let deadline = tokio::time::Instant::now() + wait;
            let mut got = Vec::new();
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match self.next(left).await {
                    Next::Packet(p) => got.push(p),
                    Next::Closed => return (true, got),
                    Next::TimedOut => return (false, got),
                }
            }
        }
    }
}

fn leak(v: i64) -> String {
    json!({"values": {"leak": v}}).to_string()
}

#[tokio::test]
async fn resetting_a_device_token_ends_its_live_sessions_at_once() {
    use rumqttc::mqttbytes::v4::Packet as P;
    let (app, iot) = iot_app().await;
    let broker = linli_iot::broker::start(iot.clone(), "127.0.0.1:0")
        .await
        .unwrap();
    let property = app.login("property").await;
    let dev = a_device(&app, &property, "water_leak").await;
    let id = dev["id"].as_str().unwrap().to_string();
    let old = demo_device_token(&id);
    let topic = format!("linli/{id}/telemetry");

    // Keep-alive 0 (no keep-alive deadline of its own): one session publishing, one subscribed.
    let mut pubs = raw::Client::connect(broker.addr, &id, &old, 0)
        .await
        .unwrap();
    pubs.publish(&topic, QoS::AtLeastOnce, 1, &leak(0)).await;
    assert!(matches!(
        pubs.next(Duration::from_secs(5)).await,
        raw::Next::Packet(P::PubAck(_))
    ));
    let mut subs = raw::Client::connect(broker.addr, &id, &old, 0)
        .await
        .unwrap();
    subs.subscribe(1, &[format!("linli/{id}/cmd/#")]).await;
    assert!(matches!(
        subs.next(Duration::from_secs(5)).await,
        raw::Next::Packet(P::SubAck(_))
    ));
    assert_eq!(app.store.telemetry_count(Some(&id)).await.unwrap(), 1);

    let new = app
        .post(
            &property,
            &format!("/api/v1/iot/devices/{id}/token"),
            json!({}),
        )
        .await
        .ok()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new, old);

    // Both sessions end at once; a QoS 1 message on the old session is neither acknowledged
    // nor stored.
    pubs.publish(&topic, QoS::AtLeastOnce, 2, &leak(1)).await;
    let (closed, got) = pubs.closed_within(Duration::from_secs(3)).await;
    assert!(closed, "the old session is still open");
    assert!(
        !got.iter().any(|p| matches!(p, P::PubAck(_))),
        "acknowledged after the reset: {got:?}"
    );
    let (closed, _) = subs.closed_within(Duration::from_secs(3)).await;
    assert!(closed, "the subscribed session is still open");
    assert_eq!(app.store.telemetry_count(Some(&id)).await.unwrap(), 1);

    // The old token is refused everywhere, the new one works.
    assert!(
        raw::Client::connect(broker.addr, &id, &old, 30)
            .await
            .is_err()
    );
    let http = |token: String| {
        let app = &app;
        async move {
            app.call(
                "POST",
                "/api/v1/iot/telemetry",
                None,
                Some(("application/json", leak(0).into_bytes())),
                &[("authorization", &format!("Bearer {token}"))],
            )
            .await
            .status
            .as_u16()
        }
    };
    assert_eq!(http(old.clone()).await, 401);
    assert_eq!(http(new.clone()).await, 202);
    let mut c = raw::Client::connect(broker.addr, &id, &new, 30)
        .await
        .unwrap();
    c.publish(&topic, QoS::AtLeastOnce, 3, &leak(0)).await;
    assert!(matches!(
        c.next(Duration::from_secs(5)).await,
        raw::Next::Packet(P::PubAck(_))
    ));
    assert_eq!(app.store.telemetry_count(Some(&id)).await.unwrap(), 3);
    assert!(
        iot.stats()
            .sessions_revoked
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
    app.close().await;
}

/// Several instances on one PostgreSQL: a token reset through one ends the device's sessions
/// on the others and their caches forget the old token (HTTP ingest), through LISTEN/NOTIFY.
#[tokio::test]
async fn a_token_reset_on_one_instance_ends_sessions_and_cached_tokens_on_the_others() {
    use rumqttc::mqttbytes::v4::Packet as P;
    let (app, _iot) = iot_app().await;
    let Some(url) = app.database_url() else {
        // SQLite: one instance (the single-instance case is the test above).
        app.close().await;
        return;
    };
    let other = linli_store::Store::open(
        &linli_store::DbConfig {
            url,
            max_connections: 2,
            sqlite_synchronous: "NORMAL".into(),
        },
        &app.dir,
        None,
        linli_server::modules::platform(),
    )
    .await
    .unwrap();
    assert!(app.store.start_pg_bus().await.unwrap());
    assert!(other.start_pg_bus().await.unwrap());
    let iot_b = Iot::start(
        other.clone(),
        IotConfig {
            batch_ms: 5,
            ..IotConfig::default()
        },
    )
    .await
    .unwrap();
    let broker_b = linli_iot::broker::start(iot_b.clone(), "127.0.0.1:0")
        .await
        .unwrap();
    let property = app.login("property").await;
    let dev = a_device(&app, &property, "water_leak").await;
    let id = dev["id"].as_str().unwrap().to_string();
    let old = demo_device_token(&id);
    let topic = format!("linli/{id}/telemetry");

    // Instance B knows the device and its token (session and HTTP cache).
    let mut s = raw::Client::connect(broker_b.addr, &id, &old, 0)
        .await
        .unwrap();
    s.publish(&topic, QoS::AtLeastOnce, 1, &leak(0)).await;
    assert!(matches!(
        s.next(Duration::from_secs(5)).await,
        raw::Next::Packet(P::PubAck(_))
    ));
    iot_b
        .ingest_http(Some(&old), "telemetry", leak(0).as_bytes())
        .await
        .unwrap();

    // The reset goes through instance A.
    app.post(
        &property,
        &format!("/api/v1/iot/devices/{id}/token"),
        json!({}),
    )
    .await
    .ok();
    let (closed, got) = s.closed_within(Duration::from_secs(5)).await;
    assert!(closed, "instance B kept the session");
    assert!(got.is_empty(), "{got:?}");
    assert!(
        iot_b
            .ingest_http(Some(&old), "telemetry", leak(0).as_bytes())
            .await
            .is_err(),
        "instance B still accepts the old token over HTTP"
    );
    assert!(
        raw::Client::connect(broker_b.addr, &id, &old, 30)
            .await
            .is_err()
    );
    assert_eq!(app.store.telemetry_count(Some(&id)).await.unwrap(), 2);
    other.db.read.close().await;
    other.db.write.close().await;
    app.close().await;
}

#[tokio::test]
async fn subscriptions_per_connection_are_bounded_and_refused_with_0x80() {
    use rumqttc::mqttbytes::v4::{Packet as P, SubscribeReasonCode as Code};
    let (app, iot) = iot_app().await;
    let broker = linli_iot::broker::start(iot.clone(), "127.0.0.1:0")
        .await
        .unwrap();
    let max = iot.config().max_subscriptions;
    let committee = app.login("committee").await;
    let id = a_device(&app, &committee, "door").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let token = demo_device_token(&id);
    let mut c = raw::Client::connect(broker.addr, &id, &token, 30)
        .await
        .unwrap();
    let filters = |from: usize, n: usize| -> Vec<String> {
        (from..from + n)
            .map(|i| format!("linli/{id}/cmd/{i}"))
            .collect()
    };
    // One SUBSCRIBE with far more filters than allowed: the excess is refused (0x80).
    c.subscribe(1, &filters(0, 1000)).await;
    let codes = match c.next(Duration::from_secs(5)).await {
        raw::Next::Packet(P::SubAck(a)) => a.return_codes,
        other => panic!("{other:?}"),
    };
    assert_eq!(codes.len(), 1000);
    let ok = codes
        .iter()
        .filter(|c| matches!(c, Code::Success(_)))
        .count();
    assert_eq!(ok, max, "accepted filters");
    assert!(codes[max..].iter().all(|c| *c == Code::Failure));
    // Later SUBSCRIBEs: a new filter is refused, one already held is accepted again (and
    // replaces it: one delivery per message, not two).
    for pkid in 2..300u16 {
        c.subscribe(pkid, &filters(1000 + usize::from(pkid), 1))
            .await;
    }
    for _ in 2..300u16 {
        match c.next(Duration::from_secs(5)).await {
            raw::Next::Packet(P::SubAck(a)) => assert_eq!(a.return_codes, vec![Code::Failure]),
            other => panic!("{other:?}"),
        }
    }
    c.subscribe(400, &filters(0, 1)).await;
    match c.next(Duration::from_secs(5)).await {
        raw::Next::Packet(P::SubAck(a)) => {
            assert!(matches!(a.return_codes[..], [Code::Success(_)]))
        }
        other => panic!("{other:?}"),
    }
    let mut p = raw::Client::connect(broker.addr, &id, &token, 30)
        .await
        .unwrap();
    p.publish(&format!("linli/{id}/cmd/0"), QoS::AtMostOnce, 0, "{}")
        .await;
    let mut delivered = 0;
    while let raw::Next::Packet(P::Publish(_)) = c.next(Duration::from_millis(500)).await {
        delivered += 1;
    }
    assert_eq!(delivered, 1);
    app.close().await;
}

/// A client that sends but never reads: the server's replies are not queued without limit;
/// the connection is closed once a write has waited `write_timeout_ms`.
#[tokio::test]
async fn a_client_that_does_not_read_is_disconnected_not_buffered() {
    let (app, iot) = iot_app_with(IotConfig {
        batch_ms: 5,
        write_timeout_ms: 500,
        ..IotConfig::default()
    })
    .await;
    let broker = linli_iot::broker::start(iot.clone(), "127.0.0.1:0")
        .await
        .unwrap();
    let committee = app.login("committee").await;
    let id = a_device(&app, &committee, "door").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let token = demo_device_token(&id);

    // PINGREQ flood without reading (a small receive buffer, so the server's writes block
    // early). Bounded: 8 MiB, at most 20 s.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let s = sock.connect(broker.addr).await.unwrap();
    let mut c = raw::Client::connect_on(s, &id, &token, 0).await.unwrap();
    let pings = vec![0xC0u8, 0x00].repeat(32 * 1024);
    let start = std::time::Instant::now();
    let mut sent = 0usize;
    while sent < 8 << 20 && start.elapsed() < Duration::from_secs(20) {
        use tokio::io::AsyncWriteExt;
        match tokio::time::timeout(Duration::from_secs(2), c.s.write_all(&pings)).await {
            Ok(Ok(())) => sent += pings.len(),
            // The server stopped reading (back-pressure) or closed.
            Ok(Err(_)) | Err(_) => break,
        }
    }
    // Still not reading, for longer than the write timeout: the server gives up on the client
    // (rather than queueing its replies), then the connection is found closed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (closed, got) = c.closed_within(Duration::from_secs(15)).await;
    assert!(
        closed,
        "still open after {sent} bytes sent and {} replies read",
        got.len()
    );
    assert_eq!(
        iot.stats()
            .slow_clients
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    app.close().await;
}

/// A subscriber that does not read is closed too (its outgoing queue is bounded); the device
/// publishing to it is not slowed down.
#[tokio::test]
async fn a_subscriber_that_does_not_read_is_disconnected_and_the_publisher_is_not_slowed() {
    use rumqttc::mqttbytes::v4::Packet as P;
    let (app, iot) = iot_app_with(IotConfig {
        batch_ms: 5,
        write_timeout_ms: 500,
        ..IotConfig::default()
    })
    .await;
    let broker = linli_iot::broker::start(iot.clone(), "127.0.0.1:0")
        .await
        .unwrap();
    let committee = app.login("committee").await;
    let id = a_device(&app, &committee, "door").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let token = demo_device_token(&id);
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let s = sock.connect(broker.addr).await.unwrap();
    let mut lazy = raw::Client::connect_on(s, &id, &token, 0).await.unwrap();
    lazy.subscribe(1, &[format!("linli/{id}/raw")]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut p = raw::Client::connect(broker.addr, &id, &token, 30)
        .await
        .unwrap();
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(60_000));
    let t = std::time::Instant::now();
    for pkid in 1..=200u16 {
        p.publish(&format!("linli/{id}/raw"), QoS::AtLeastOnce, pkid, &big)
            .await;
        assert!(
            matches!(
                p.next(Duration::from_secs(5)).await,
                raw::Next::Packet(P::PubAck(_))
            ),
            "publisher stalled at {pkid}"
        );
    }
    assert!(t.elapsed() < Duration::from_secs(20));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (closed, _) = lazy.closed_within(Duration::from_secs(10)).await;
    assert!(
        closed,
        "the subscriber that does not read is still connected: {}",
        iot.stats().snapshot()
    );
    app.close().await;
}

/// Keep-alive 0 (or longer than allowed) does not keep an idle connection forever.
#[tokio::test]
async fn idle_connections_end_even_with_keep_alive_zero() {
    let (app, iot) = iot_app_with(IotConfig {
        batch_ms: 5,
        max_keep_alive_secs: 1,
        ..IotConfig::default()
    })
    .await;
    let broker = linli_iot::broker::start(iot.clone(), "127.0.0.1:0")
        .await
        .unwrap();
    let committee = app.login("committee").await;
    let id = a_device(&app, &committee, "door").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let token = demo_device_token(&id);
    for keep_alive in [0u16, 3600] {
        let mut c = raw::Client::connect(broker.addr, &id, &token, keep_alive)
            .await
            .unwrap();
        let t = std::time::Instant::now();
        let (closed, _) = c.closed_within(Duration::from_secs(6)).await;
        assert!(
            closed,
            "keep-alive {keep_alive}: idle connection still open"
        );
        assert!(
            t.elapsed() >= Duration::from_millis(1400),
            "{:?}",
            t.elapsed()
        );
    }
    // A client that pings within the limit stays.
    let mut c = raw::Client::connect(broker.addr, &id, &token, 0)
        .await
        .unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        c.send(rumqttc::mqttbytes::v4::Packet::PingReq)
            .await
            .unwrap();
        assert!(matches!(
            c.next(Duration::from_secs(2)).await,
            raw::Next::Packet(rumqttc::mqttbytes::v4::Packet::PingResp)
        ));
    }
    app.close().await;
}

/// The store announces a reset wherever it comes from (not only the API handler), and a
/// change that no event announced is caught by the periodic revalidation.
#[tokio::test]
async fn sessions_end_on_the_stores_event_and_on_revalidation() {
    use linli_core::auth::{Action, Grant};
    let (app, iot) = iot_app().await;
    let broker = linli_iot::broker::start(iot.clone(), "127.0.0.1:0")
        .await
        .unwrap();
    let committee = app.login("committee").await;
    let id = a_device(&app, &committee, "door").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut s = raw::Client::connect(broker.addr, &id, &demo_device_token(&id), 0)
        .await
        .unwrap();
    assert_eq!(iot.live_sessions(), 1);
    let token = app
        .store
        .reset_device_token(
            &Grant::system(Action::DeviceAdmin),
            &linli_store::audit::Actor::system("test"),
            &id,
        )
        .await
        .unwrap();
    assert!(s.closed_within(Duration::from_secs(3)).await.0);

    // A change no event told (say, a restore into the database): the next revalidation.
    let mut s = raw::Client::connect(broker.addr, &id, &token, 0)
        .await
        .unwrap();
    sqlx::query("UPDATE devices SET token_hash = 'x' WHERE id = $1")
        .bind(id.clone())
        .execute(&app.store.db.write)
        .await
        .unwrap();
    assert!(!s.closed_within(Duration::from_millis(300)).await.0);
    assert_eq!(iot.revalidate().await.unwrap(), 1);
    assert!(s.closed_within(Duration::from_secs(3)).await.0);
    assert!(
        iot.ingest_http(Some(&token), "telemetry", b"{\"values\":{\"open\":0}}")
            .await
            .is_err()
    );
    assert_eq!(iot.live_sessions(), 0);
    app.close().await;
}

/// A person living now in the community `community` (by name).
async fn resident_in(app: &TestApp, community: &str) -> (String, String) {
    let path = app
        .place_path(&app.place_id("community", community).await)
        .await;
    let rows = sqlx::query(
        "SELECT r.person_id, h.room_id, h.path FROM residences r JOIN households h ON h.id = r.household_id WHERE r.end_date IS NULL ORDER BY r.person_id",
    )
    .fetch_all(&app.store.db.read)
    .await
    .unwrap();
    rows.iter()
        .find(|r| r.get::<String, _>("path").starts_with(&path))
        .map(|r| (r.get("person_id"), r.get("room_id")))
        .expect("a resident")
}

/// Issue #13 (round 2), finding 7: a device could name any person — an SOS button registered
/// in 新村社区 for a resident of 幸福里社区 raised SOS alarms on 幸福里's path, calling its grid
/// workers and committee. A device names only a person who lives in its area now; a button
/// whose person does not (moved away, or legacy data) raises the SOS of its own place.
#[tokio::test]
async fn a_device_names_only_a_person_of_its_area() {
    let (app, _iot) = iot_app().await;
    let property = app.login("property").await;
    let (here, room3) = resident_in(&app, "新村社区").await;
    let (elsewhere, _) = resident_in(&app, "幸福里社区").await;
    let button = |person: &str| json!({"kind": "sos_button", "name": "一键呼叫", "place_id": room3, "person_id": person});
    let before = app.store.audit_verify().await.unwrap().entries;
    for person in [elsewhere.as_str(), "no-such-person"] {
        let e = app
            .post(&property, "/api/v1/iot/devices", button(person))
            .await
            .expect(404);
        assert_eq!(e["code"], "registry.person.not_found", "alike for both");
    }
    assert_eq!(app.store.audit_verify().await.unwrap().entries, before);
    let dev = app
        .post(&property, "/api/v1/iot/devices", button(&here))
        .await
        .expect(201);
    let dev_id = dev["device"]["id"].as_str().unwrap().to_string();
    let dev_path = dev["device"]["path"].as_str().unwrap().to_string();
    assert_eq!(dev["device"]["person_id"], here.as_str());

    // A button that names someone of another community (written before this check existed)
    // raises the SOS of its own place, not on the other community's path.
    sqlx::query("UPDATE devices SET person_id = $1 WHERE id = $2")
        .bind(elsewhere.clone())
        .bind(dev_id.clone())
        .execute(&app.store.db.write)
        .await
        .unwrap();
    let cfg = linli_store::iot::sos::SafetyConfig::default();
    let r = app
        .store
        .raise_sos(&elsewhere, Some(&dev_id), "button", &cfg)
        .await
        .unwrap();
    let alarm = sqlx::query("SELECT path, person_id FROM alarms WHERE id = $1")
        .bind(r.alarm_id.clone())
        .fetch_one(&app.store.db.read)
        .await
        .unwrap();
    assert_eq!(alarm.get::<String, _>("path"), dev_path);
    assert_eq!(alarm.get::<Option<String>, _>("person_id"), None);
    app.close().await;
}

/// A community worker sets whom the SOS calls first on a page: from the household's record
/// (every member listed, also one without contacts) to the member's contacts; adds family by
/// login name or mobile number, moves one up, removes one; a change made on a list somebody
/// changed meanwhile writes nothing; then the resident's SOS tells the family first.
#[tokio::test]
async fn staff_set_care_contacts_on_a_page_and_the_sos_calls_them_first() {
    use crate::common::submit;
    let (app, _iot) = iot_app().await;
    let committee = app.login("committee").await;
    let resident = app.login("resident").await;
    let row = sqlx::query(
        "SELECT u.person_id, r.household_id FROM users u JOIN residences r ON r.person_id = u.person_id AND r.end_date IS NULL WHERE u.login = 'resident'",
    )
    .fetch_one(&app.store.db.read)
    .await
    .unwrap();
    let (person, household): (String, String) = (row.get("person_id"), row.get("household_id"));
    let care_uri = format!("/staff/persons/{person}/care");
    // The household page links every member to their contacts.
    let home = app
        .get(&committee, &format!("/registry/households/{household}"))
        .await;
    assert_eq!(home.status.as_u16(), 200);
    assert!(
        home.doc().has(&format!("a[href='{care_uri}']")),
        "member links to contacts"
    );

    let page = app.get(&committee, &care_uri).await.doc();
    assert!(page.has("#care-empty"));
    let r = submit(
        &app,
        &committee,
        &page,
        "#care-add",
        &[("who", "volunteer"), ("relation", "女儿")],
    )
    .await;
    assert_eq!(r.status.as_u16(), 303, "{}", r.text());
    let page = app.get(&committee, &care_uri).await.doc();
    assert!(page.text("#care-list").contains("（女儿）"));
    // Unknown account: said next to the field, nothing written.
    let r = submit(
        &app,
        &committee,
        &page,
        "#care-add",
        &[("who", "13900000000")],
    )
    .await;
    assert_eq!(r.status.as_u16(), 400);
    assert!(r.doc().text("#care-who-error").contains("没有找到"));
    // The same person twice: refused.
    let r = submit(
        &app,
        &committee,
        &page,
        "#care-add",
        &[("who", "volunteer")],
    )
    .await;
    assert_eq!(r.status.as_u16(), 400);
    assert!(r.doc().text("#care-who-error").contains("已经在"));
    let r = submit(
        &app,
        &committee,
        &page,
        "#care-add",
        &[("who", "grid"), ("relation", "网格员")],
    )
    .await;
    assert_eq!(r.status.as_u16(), 303);
    let stale = page; // shown with one contact
    let page = app.get(&committee, &care_uri).await.doc();
    let names = page.texts("#care-list li strong");
    assert_eq!(names.len(), 2, "{names:?}");
    // Move the second up: the order changes.
    let r = submit(
        &app,
        &committee,
        &page,
        "#care-list li:nth-child(2) form:first-of-type",
        &[],
    )
    .await;
    assert_eq!(r.status.as_u16(), 303);
    let page = app.get(&committee, &care_uri).await.doc();
    let moved = page.texts("#care-list li strong");
    assert_eq!(moved, vec![names[1].clone(), names[0].clone()]);
    // A removal from the page shown before the changes: refused, nothing written.
    let r = submit(
        &app,
        &committee,
        &stale,
        "#care-list li:nth-child(1) form",
        &[],
    )
    .await;
    assert_eq!(r.status.as_u16(), 409);
    assert_eq!(
        app.get(&committee, &care_uri)
            .await
            .doc()
            .texts("#care-list li strong"),
        moved
    );

    // The SOS now calls the family first.
    let r = crate::common::post_form(
        &app,
        &resident,
        "/me/sos",
        &[("_csrf", resident.csrf.as_str())],
    )
    .await;
    assert_eq!(r.status.as_u16(), 303);
    let status = app.get(&resident, "/me/sos").await.doc();
    let told = status.texts(".sos-told li");
    assert!(told[0].starts_with("紧急联系人："), "{told:?}");
    assert!(!status.has("#sos-no-contacts"));
    // A resident cannot open or change anyone's contacts.
    assert_eq!(app.get(&resident, &care_uri).await.status.as_u16(), 403);
    app.close().await;
}

/// Silence from before the runtime started does not count: after downtime longer than a
/// no-data period, a restart does not flag every device that could not reach Linli; a device
/// still silent one period after the start is flagged.
#[tokio::test]
async fn a_restart_after_downtime_does_not_flag_every_device_at_once() {
    let (app, iot) = iot_app().await;
    let committee = app.login("committee").await;
    let dev = a_device(&app, &committee, "smoke").await;
    let id = dev["id"].as_str().unwrap().to_string();
    // Last seen three hours ago (the smoke detectors' offline rule: one hour).
    let long_ago = app.store.now_ms() - 3 * 3_600_000;
    sqlx::query(
        "INSERT INTO device_latest (device_id, ts, vals, seen_at) VALUES ($1, $2, '{}', $2)
         ON CONFLICT (device_id) DO UPDATE SET ts = excluded.ts, seen_at = excluded.seen_at",
    )
    .bind(id.clone())
    .bind(long_ago)
    .execute(&app.store.db.write)
    .await
    .unwrap();
    let offline = || async {
        sqlx::query(
            "SELECT COUNT(*) AS n FROM alarms WHERE originator = $1 AND alarm_type = 'offline' AND active = 1",
        )
        .bind(id.clone())
        .fetch_one(&app.store.db.read)
        .await
        .unwrap()
        .get::<i64, _>("n")
    };
    assert_eq!(offline().await, 0, "no alarm before");
    iot.tick().await;
    assert_eq!(offline().await, 0, "not flagged right after the start");
    app.store.clock.advance(3_600_000 + 1_000);
    iot.tick().await;
    assert_eq!(
        offline().await,
        1,
        "flagged once a period passed without data"
    );
    app.close().await;
}
