//! One configurable time zone (`time_zone`, carried by the store's clock): with a zone other
//! than Asia/Shanghai, pages show local times in it, Open311 writes its offset, the working-day
//! calendar ends days at its midnight, and "this year" turns at its New Year.

use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::json;

use linli_core::tz::Zone;
use linli_store::notify::Notice;

use crate::common::TestApp;

fn utc_ms(y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0)
        .unwrap()
        .timestamp_millis()
}

/// The text of the first inbox entry's time (`<p class="muted">` of the first `inbox-item`).
fn first_inbox_time(html: &str) -> String {
    let item = html
        .split("<section class=\"card inbox-item")
        .nth(1)
        .expect("an inbox item");
    let start = item.find("<p class=\"muted\">").expect("its time") + "<p class=\"muted\">".len();
    item[start..start + item[start..].find("</p>").unwrap()].to_string()
}

#[tokio::test]
async fn a_non_default_time_zone_moves_display_and_day_boundaries() {
    let app = TestApp::demo().await;
    let urumqi = Zone::from_name("Asia/Urumqi").unwrap();
    assert_eq!(app.store.clock.zone(), Zone::SHANGHAI, "the default");

    // Monday 2 March 2026, 17:00 UTC: Tuesday 01:00 in Shanghai, still Monday 23:00 in Urumqi.
    let t = utc_ms(2026, 3, 2, 17, 0);
    app.store.clock.advance(t - app.store.now_ms());
    let resident = app.login("resident").await;
    let committee = app.login("committee").await;

    // Today, and a deadline of "this working day" (0 working days): the end of the local day.
    let end_of_day = |d: u32, zone: Zone| {
        zone.utc_ms(
            NaiveDate::from_ymd_opt(2026, 3, d)
                .unwrap()
                .and_hms_milli_opt(23, 59, 59, 999)
                .unwrap(),
        )
    };
    let due = |app: &TestApp| {
        let store = app.store.clone();
        async move {
            let now = store.now_ms();
            store
                .work_calendar()
                .await
                .unwrap()
                .add_working_days(now, 0)
                .unwrap()
        }
    };
    assert_eq!(app.store.clock.today(), "2026-03-03");
    assert_eq!(due(&app).await, end_of_day(3, Zone::SHANGHAI));
    app.store.clock.set_zone(urumqi);
    assert_eq!(app.store.clock.today(), "2026-03-02");
    assert_eq!(due(&app).await, end_of_day(2, urumqi));
    assert_eq!(due(&app).await, utc_ms(2026, 3, 2, 18, 0) - 1);

    // Display: the inbox shows the notice's time in the zone of the moment of the request.
    let uid = resident.user["id"].as_str().unwrap().to_string();
    let mut tx = app.store.db.begin_write().await.unwrap();
    app.store
        .notify(
            &mut tx,
            std::slice::from_ref(&uid),
            &Notice {
                kind: "report.dispatched",
                key: "notice-entity-updated",
                args: json!({ "title": "3栋漏水", "state": "已派单" }),
                entity: "report",
                entity_id: "r-tz",
                path: None,
                link: None,
            },
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let page = app.get(&resident, "/inbox").await.text();
    assert_eq!(first_inbox_time(&page), "2026年03月02日 23:00");
    app.store.clock.set_zone(Zone::SHANGHAI);
    let page = app.get(&resident, "/inbox").await.text();
    assert_eq!(first_inbox_time(&page), "2026年03月03日 01:00");

    // Open311 writes timestamps with the zone's offset.
    app.store.clock.set_zone(urumqi);
    let community = app.place_id("community", "幸福里社区").await;
    let key = app
        .post(
            &committee,
            "/api/v1/auth/tokens",
            json!({"name": "tz", "actions": ["report_read"], "place_id": community, "expires_in_days": 30}),
        )
        .await
        .expect(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, room) = app.home_of("resident").await;
    let id = app
        .post(
            &resident,
            "/api/v1/reports",
            json!({ "category": "environment", "description": "楼道堆放杂物", "place_id": room }),
        )
        .await
        .expect(201)["report"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let v = app
        .call(
            "GET",
            &format!("/open311/v2/requests/{id}.json?api_key={key}"),
            None,
            None,
            &[],
        )
        .await
        .ok();
    let requested = v[0]["requested_datetime"].as_str().unwrap();
    assert!(
        requested.starts_with("2026-03-02T23:00") && requested.ends_with("+06:00"),
        "{requested}"
    );

    // "This year" turns at the zone's New Year: 31 December 2026, 17:00 UTC is 2027 in
    // Shanghai (2027 and 2028 missing from a calendar that has 2026) but 2026 in Urumqi.
    let eve = utc_ms(2026, 12, 31, 17, 0);
    app.store.clock.advance(eve - app.store.now_ms());
    assert_eq!(app.store.calendar_missing_years().await.unwrap(), [2027]);
    app.store.clock.set_zone(Zone::SHANGHAI);
    assert_eq!(
        app.store.calendar_missing_years().await.unwrap(),
        [2027, 2028]
    );
    app.close().await;
}
