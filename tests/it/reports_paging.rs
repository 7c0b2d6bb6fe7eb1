//! Keyset paging of the staff community report list: `cursor` pages cover every report once,
//! newest first, even when reports arrive between pages (offset paging would repeat one); the
//! old `offset` parameter still works; a bad cursor is a 400; on SQLite the plan walks the
//! `(community_path, created_at, id)` index without sorting the area; the queue page links
//! "next" by cursor.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::common::{Session, TestApp};

async fn file(app: &TestApp, s: &Session, place: &str, n: usize) -> String {
    app.post(
        s,
        "/api/v1/reports",
        json!({ "category": "public_facility", "description": format!("第{n}条：楼下噪音"), "place_id": place, "channel": "phone" }),
    )
    .await
    .expect(201)["report"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_community_list_pages_by_cursor_without_gaps_or_repeats() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let c1 = app.place_id("community", "幸福里社区").await;
    let cats = app.get(&committee, "/api/v1/report-categories").await.ok();
    assert!(cats.to_string().contains("public_facility"), "{cats}");
    let mut filed = Vec::new();
    for n in 0..25 {
        filed.push(file(&app, &committee, &c1, n).await);
    }

    // Everything, newest first, in one go (offset paging, the old way).
    let all = app.get(&committee, "/api/v1/reports?limit=200").await.ok();
    let all_ids = ids(&all);
    assert_eq!(all_ids.len(), 25);
    assert_eq!(all["next_cursor"], Value::Null);
    let offset_page = app
        .get(&committee, "/api/v1/reports?limit=10&offset=10")
        .await
        .ok();
    assert_eq!(ids(&offset_page), all_ids[10..20].to_vec());
    assert_eq!(offset_page["next_offset"], 20);

    // By cursor: page 1, then a new report arrives, then the rest.
    let p1 = app.get(&committee, "/api/v1/reports?limit=10").await.ok();
    assert_eq!(ids(&p1), all_ids[..10].to_vec());
    let cursor = p1["next_cursor"].as_str().unwrap().to_string();
    let newcomer = file(&app, &committee, &c1, 99).await;
    let mut seen: Vec<String> = ids(&p1);
    let mut cursor = Some(cursor);
    let mut pages = 1;
    while let Some(c) = cursor.take() {
        let p = app
            .get(&committee, &format!("/api/v1/reports?limit=10&cursor={c}"))
            .await
            .ok();
        assert_eq!(p["next_offset"], Value::Null, "cursor pages carry cursors");
        seen.extend(ids(&p));
        cursor = p["next_cursor"].as_str().map(str::to_string);
        pages += 1;
        assert!(pages < 10, "bounded");
    }
    assert_eq!(
        seen, all_ids,
        "every report once, in order; the newcomer waits for page 1"
    );
    assert!(!seen.contains(&newcomer));
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len());
    assert!(filed.iter().all(|f| seen.contains(f)));

    // A bad cursor: 400, the same localized validation error as elsewhere.
    let bad = app
        .get(&committee, "/api/v1/reports?cursor=yesterday")
        .await
        .expect(400);
    assert_eq!(bad["code"], "validation.bad_value");

    // The plan (SQLite): an index walk on the community, no sort of the area.
    if !app.is_postgres() {
        let p = app
            .store
            .principal(committee.user["id"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        let v = app.store.report_viewer(&p).await.unwrap();
        let q = linli_store::reports::queries::ReportQuery {
            limit: Some(20),
            cursor: p1["next_cursor"].as_str().map(str::to_string),
            ..Default::default()
        };
        let plan = app.store.reports_plan(&v, &q).await.unwrap().join("\n");
        assert!(plan.contains("reports_community_keyset"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    // The queue page: 20 per page, "next" by cursor, back to the newest; old offset links work.
    let html = app.get(&committee, "/staff/reports").await.text();
    let next = html
        .split("id=\"queue-next\"")
        .next()
        .and_then(|h| h.rsplit("href=\"").next())
        .map(|h| {
            h.split('"')
                .next()
                .unwrap()
                .replace("&amp;", "&")
                .replace("&#38;", "&")
        })
        .unwrap();
    assert!(next.contains("cursor="), "{next}");
    let page2 = app.get(&committee, &next).await;
    assert_eq!(page2.status, 200);
    let html2 = page2.text();
    assert!(html2.contains("id=\"queue-first\""), "{next}: {html2}");
    assert!(
        !html2.contains("id=\"queue-next\""),
        "26 reports: two pages"
    );
    let old = app.get(&committee, "/staff/reports?offset=20").await;
    assert_eq!(old.status, 200);
    app.close().await;
}
