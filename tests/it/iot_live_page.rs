//! The staff safety live view (issue #5): an alarm raised through HTTP ingest is listed with its
//! severity and marks its building on the plan; acknowledge needs the form token; another
//! community's committee does not see it.

use std::time::Duration;

use serde_json::Value;
use sqlx::Row;

use linli_iot::{Iot, IotConfig};
use linli_store::bus::BusEvent;
use linli_store::iot::demo::demo_device_token;

use crate::common::{Resp, Session, TestApp};

async fn iot_app() -> (TestApp, Iot) {
    let mut app = TestApp::demo().await;
    app.store.seed_iot_demo().await.unwrap();
    let iot = Iot::start(
        app.store.clone(),
        IotConfig {
            batch_ms: 5,
            ..IotConfig::default()
        },
    )
    .await
    .unwrap();
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

async fn raised(rx: &mut tokio::sync::broadcast::Receiver<BusEvent>, path: &str) -> BusEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rx.recv().await {
                Ok(e) if e.kind == "alarm.raised" && e.path == path => return e,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("bus closed: {e}"),
            }
        }
    })
    .await
    .expect("alarm raised")
}

async fn form(app: &TestApp, s: &Session, uri: &str, body: &str) -> Resp {
    app.call(
        "POST",
        uri,
        Some(s),
        Some((
            "application/x-www-form-urlencoded",
            body.as_bytes().to_vec(),
        )),
        &[],
    )
    .await
}

async fn acked(app: &TestApp, id: &str) -> i64 {
    sqlx::query("SELECT acked FROM alarms WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(&app.store.db.read)
        .await
        .unwrap()
        .get::<i64, _>("acked")
}

#[tokio::test]
async fn live_page_lists_alarms_marks_buildings_and_acknowledges_with_csrf() {
    let (app, _iot) = iot_app().await;
    let committee = app.login("committee").await;
    let other = app.login("committee3").await;
    let list = app
        .get(&committee, "/api/v1/iot/devices?kind=smoke")
        .await
        .ok();
    let smoke: Value = list[0].clone();
    let dev = smoke["id"].as_str().unwrap().to_string();
    let path = smoke["path"].as_str().unwrap().to_string();

    // Raise a CRITICAL smoke alarm through HTTP ingest.
    let mut bus = app.store.bus.subscribe();
    let auth = format!("Bearer {}", demo_device_token(&dev));
    let r = app
        .call(
            "POST",
            "/api/v1/iot/telemetry",
            None,
            Some(("application/json", br#"{"values":{"smoke":1}}"#.to_vec())),
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    let alarm = raised(&mut bus, &path).await.id;

    // The page: the alarm with its actions, the building marked, the device listed.
    let page = app.get(&committee, "/staff/safety").await;
    assert_eq!(page.status.as_u16(), 200, "{}", page.text());
    let doc = page.doc();
    assert!(doc.text("main h1").starts_with("安全实时监控"));
    // The live region holds the alarm's row, with its severity in words and its ack form.
    let live = "main #iot-live[data-live-events^='alarm.raised']";
    let row = format!("{live} table tr[data-alarm='{alarm}']");
    doc.one(&row);
    assert_eq!(
        doc.text(&format!("{row} .sev-badge")),
        "⚠ 紧急",
        "{}",
        doc.main_html()
    );
    doc.one(&format!(
        "{row} form[method=post][action='/staff/safety/alarms/{alarm}/ack'] button[type=submit]"
    ));
    doc.one(&format!("{live} table tr[data-device='{dev}']"));
    doc.one("nav.side a[href='/staff/safety'][aria-current=page]");
    // The site plan marks the alarm's building CRITICAL, in words too; the others carry NONE.
    let plan = "main svg.siteplan a[data-building]";
    let marked: Vec<String> =
        doc.attrs(&format!("{plan}[data-severity=CRITICAL]"), "data-building");
    assert_eq!(marked.len(), 1, "{}", doc.main_html());
    assert!(
        path.split('/').any(|id| id == marked[0]),
        "the marked building holds the alarm"
    );
    assert!(
        doc.text(&format!("{plan}[data-severity=CRITICAL] text.sev-text"))
            .contains("紧急")
    );
    assert!(
        doc.attrs(plan, "data-severity")
            .iter()
            .all(|s| s == "CRITICAL" || s == "NONE"),
        "{:?}",
        doc.attrs(plan, "data-severity")
    );

    // Another community's committee neither sees it nor can open this community.
    let theirs = app.get(&other, "/staff/safety").await;
    assert_eq!(theirs.status.as_u16(), 200);
    assert!(!theirs.text().contains(&alarm));
    assert!(!theirs.text().contains(&dev));
    let community = path
        .split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>();
    for id in &community {
        let r = app
            .get(&other, &format!("/staff/safety?community={id}"))
            .await;
        if r.status.as_u16() == 200 {
            assert!(!r.text().contains(&alarm));
        }
    }
    let r = form(
        &app,
        &other,
        &format!("/staff/safety/alarms/{alarm}/ack"),
        &format!("_csrf={}", other.csrf),
    )
    .await;
    assert_eq!(r.status.as_u16(), 404);
    assert_eq!(acked(&app, &alarm).await, 0);

    // Without the form token: 403 and unchanged.
    let uri = format!("/staff/safety/alarms/{alarm}/ack");
    let r = form(&app, &committee, &uri, "_csrf=forged").await;
    assert_eq!(r.status.as_u16(), 403);
    assert_eq!(acked(&app, &alarm).await, 0);
    // With it: acknowledged (audited by the store), back to the page.
    let r = form(&app, &committee, &uri, &format!("_csrf={}", committee.csrf)).await;
    assert_eq!(r.status.as_u16(), 303, "{}", r.text());
    assert_eq!(acked(&app, &alarm).await, 1);
    let audited: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'alarm.ack'")
            .fetch_one(&app.store.db.read)
            .await
            .unwrap()
            .get("n");
    assert_eq!(audited, 1);
    let page = app.get(&committee, "/staff/safety?done=acked").await.doc();
    assert_eq!(page.text("main .notice[role=status]"), "告警已确认。");
    let row = format!("main table tr[data-alarm='{alarm}']");
    page.one(&row);
    assert!(
        !page.has(&format!("form[action='/staff/safety/alarms/{alarm}/ack']")),
        "no ack form once acknowledged"
    );
    page.one(&format!(
        "{row} form[action='/staff/safety/alarms/{alarm}/clear']"
    ));

    // Clear: gone from the active list, the building back to no alarm.
    let r = form(
        &app,
        &committee,
        &format!("/staff/safety/alarms/{alarm}/clear"),
        &format!("_csrf={}", committee.csrf),
    )
    .await;
    assert_eq!(r.status.as_u16(), 303);
    let page = app.get(&committee, "/staff/safety").await.doc();
    assert!(!page.has(&format!("[data-alarm='{alarm}']")));
    assert!(!page.has("[data-severity=CRITICAL]"));
    assert!(page.has("main svg.siteplan a[data-severity=NONE]"));
    app.close().await;
}
