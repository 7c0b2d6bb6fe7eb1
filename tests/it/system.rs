//! Health, readiness, metrics, OpenAPI, errors, security headers.

use crate::common::TestApp;

#[tokio::test]
async fn health_ready_metrics_and_docs() {
    let app = TestApp::empty().await;
    let r = app.call("GET", "/healthz", None, None, &[]).await;
    assert_eq!(r.status, 200);
    let r = app.call("GET", "/readyz", None, None, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ready");
    app.call("GET", "/api/v1/nowhere", None, None, &[]).await;
    let r = app.call("GET", "/metrics", None, None, &[]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("linli_http_requests_total"),
        "{}",
        r.text()
    );
    let r = app.call("GET", "/api/docs/", None, None, &[]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("swagger"),
        "docs page served from the binary"
    );
    app.close().await;
}

/// A working-day calendar without the current or the next year is said loudly: `/readyz` lists
/// it under `warnings` (still 200), `/metrics` counts it, staff report pages show a banner; once
/// an administrator adds the years, all of them are quiet.
#[tokio::test]
async fn a_missing_calendar_year_is_reported_by_readyz_metrics_and_staff_pages() {
    let app = TestApp::demo().await;
    let admin = app.login("admin").await;
    let committee = app.login("committee").await;
    let resident = app.login("resident").await;
    let year = app.store.clock.zone().year(app.store.now_ms());
    // Linli ships 2026 only (2027's arrangement is not published yet).
    let missing: Vec<i32> = [year, year + 1]
        .into_iter()
        .filter(|y| *y != 2026)
        .collect();
    assert!(!missing.is_empty());

    let r = app.call("GET", "/readyz", None, None, &[]).await;
    assert_eq!(r.status, 200, "warnings do not make the instance unready");
    let v = r.json();
    assert_eq!(v["status"], "ready");
    let years: Vec<i64> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            assert_eq!(w["code"], "calendar_missing_year");
            w["year"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(
        years,
        missing.iter().map(|y| i64::from(*y)).collect::<Vec<_>>()
    );
    let m = app.call("GET", "/metrics", None, None, &[]).await.text();
    assert!(
        m.contains(&format!(
            "linli_work_calendar_missing_years {}",
            missing.len()
        )),
        "{m}"
    );
    // Said to those who can enter the year (routing administrators), with the link to do it;
    // not to staff who can do nothing about it (the link would be closed to them).
    let queue = app.get(&admin, "/staff/reports").await.text();
    assert!(queue.contains("id=\"calendar-warning\""), "{queue}");
    assert!(queue.contains(&missing[0].to_string()));
    assert!(queue.contains("工作日日历缺少"));
    let theirs = app.get(&committee, "/staff/reports").await.text();
    assert!(
        !theirs.contains("calendar-warning"),
        "committee cannot act on it"
    );
    let mine = app.get(&resident, "/me/reports").await.text();
    assert!(
        !mine.contains("calendar-warning"),
        "residents are not bothered"
    );

    for y in &missing {
        app.post(
            &admin,
            "/api/v1/work-calendar",
            serde_json::json!({ "year": y, "source": "test arrangement" }),
        )
        .await
        .ok();
    }
    let v = app.call("GET", "/readyz", None, None, &[]).await.json();
    assert_eq!(v["warnings"], serde_json::json!([]));
    let m = app.call("GET", "/metrics", None, None, &[]).await.text();
    assert!(m.contains("linli_work_calendar_missing_years 0"), "{m}");
    let queue = app.get(&admin, "/staff/reports").await.text();
    assert!(!queue.contains("calendar-warning"));
    app.close().await;
}

#[tokio::test]
async fn errors_are_localized_json_with_security_headers() {
    let app = TestApp::empty().await;
    let r = app.call("GET", "/api/v1/persons", None, None, &[]).await;
    assert_eq!(r.status, 401);
    let v = r.json();
    assert_eq!(v["code"], "unauthorized");
    assert_eq!(v["message"], "请先登录。");
    assert!(
        r.headers
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(r.headers.get("x-content-type-options").unwrap(), "nosniff");
    let r = app
        .call(
            "GET",
            "/api/v1/persons",
            None,
            None,
            &[("accept-language", "en-US,en;q=0.9")],
        )
        .await;
    assert_eq!(r.json()["message"], "Please sign in first.");
    let r = app
        .call(
            "GET",
            "/api/v1/unknown",
            None,
            None,
            &[("accept-language", "en")],
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "not_found");
    // Malformed JSON is a localized 400, not axum's plain text.
    let r = app
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(("application/json", b"{not json".to_vec())),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "bad_request");
    app.close().await;
}

/// The OpenAPI document is generated from the handlers; its routes are snapshotted so an API
/// change is a visible diff (update tests/it/snapshots/openapi_routes.txt on purpose).
#[tokio::test]
async fn openapi_routes_snapshot() {
    let (_, spec) = linli_server::api_parts();
    let v = serde_json::to_value(&spec).unwrap();
    assert_eq!(v["openapi"], "3.1.0");
    let mut routes = Vec::new();
    for (path, item) in v["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    routes.sort();
    let actual = routes.join("\n") + "\n";
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/snapshots/openapi_routes.txt"
    );
    if std::env::var("LINLI_UPDATE_SNAPSHOTS").is_ok() {
        std::fs::write(file, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(file).unwrap_or_default();
    assert_eq!(
        actual, expected,
        "OpenAPI routes changed; rerun with LINLI_UPDATE_SNAPSHOTS=1 if intended"
    );
    // Every operation documents its error body.
    for (path, item) in v["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} has no responses"
            );
        }
    }
}

/// The suite really runs on the backend CI asked for.
#[tokio::test]
async fn runs_on_the_requested_backend() {
    let app = TestApp::empty().await;
    let want_pg = std::env::var("LINLI_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty());
    assert_eq!(
        app.store.backend() == linli_store::Backend::Postgres,
        want_pg
    );
    app.close().await;
}

/// A fresh, empty database (PostgreSQL when `LINLI_TEST_DATABASE_URL` names one, else a SQLite
/// file) that no store has opened yet: its URL, a data directory, and how to drop it.
async fn empty_database() -> (String, std::path::PathBuf, Option<(String, String)>) {
    let unique = linli_core::new_id().replace('-', "")[12..].to_string();
    let dir = std::env::temp_dir().join(format!("linli-it-{unique}"));
    std::fs::create_dir_all(&dir).unwrap();
    match std::env::var("LINLI_TEST_DATABASE_URL") {
        Ok(admin) if !admin.is_empty() => {
            let name = format!("linli_it_{unique}");
            sqlx::any::install_default_drivers();
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
                .await
                .unwrap();
            sqlx::Executor::execute(
                &mut conn,
                sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
            )
            .await
            .unwrap();
            let base = admin.rsplit_once('/').unwrap().0.to_string();
            (format!("{base}/{name}"), dir, Some((admin, name)))
        }
        _ => (linli_store::sqlite_url(&dir), dir, None),
    }
}

async fn drop_database(stores: Vec<linli_store::Store>, pg: Option<(String, String)>) {
    for s in stores {
        s.db.read.close().await;
        s.db.write.close().await;
    }
    if let Some((admin, name)) = pg {
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
            .await
            .unwrap();
        let _ = sqlx::Executor::execute(
            &mut conn,
            sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
        )
        .await;
    }
}

/// Issue #13 (round 2), finding 6: two instances starting together on an empty PostgreSQL
/// database exited with a duplicate-key conflict — each read "no key fingerprint yet" (and "no
/// default labels yet") and inserted it. Both inserts are conditional now: every instance
/// starts, one fingerprint and one set of labels are stored, and another key is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_together_on_an_empty_database_all_start() {
    let (url, dir, pg) = empty_database().await;
    let cfg = linli_store::DbConfig {
        url,
        max_connections: 2,
        sqlite_synchronous: "NORMAL".into(),
    };
    let key = linli_core::crypto::FieldCipher::generate_hex();
    let start_together = |n: usize| {
        let starts = (0..n).map(|_| {
            let (cfg, dir, key) = (cfg.clone(), dir.clone(), key.clone());
            tokio::spawn(async move {
                let store = linli_store::Store::open(
                    &cfg,
                    &dir,
                    Some(&key),
                    linli_server::modules::platform(),
                )
                .await
                .map_err(|e| e.to_string())?;
                store
                    .ensure_default_labels()
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(store)
            })
        });
        futures_util::future::join_all(starts)
    };
    let mut stores = Vec::new();
    for s in start_together(4).await {
        stores.push(s.unwrap().expect("every instance starts"));
    }
    // The migrations take a lock of their own, so the instances above often reach the
    // fingerprint one after the other. The race itself: a migrated database without a
    // fingerprint or labels yet, and eight instances arriving at them at once.
    for sql in [
        "DELETE FROM settings WHERE key = 'master_key_check'",
        "DELETE FROM labels",
    ] {
        sqlx::query(sql).execute(&stores[0].db.write).await.unwrap();
    }
    for s in start_together(8).await {
        stores.push(s.unwrap().expect("every instance starts"));
    }
    let one = &stores[0];
    let count = |sql: &'static str| async move {
        sqlx::Row::get::<i64, _>(&sqlx::query(sql).fetch_one(&one.db.read).await.unwrap(), 0)
    };
    assert_eq!(
        count("SELECT COUNT(*) FROM settings WHERE key = 'master_key_check'").await,
        1
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM labels").await,
        linli_store::registry::labels::DEFAULT_LABELS.len() as i64
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM labels WHERE parent_id IS NOT NULL").await,
        linli_store::registry::labels::DEFAULT_LABELS
            .iter()
            .filter(|l| l.0.is_some())
            .count() as i64,
        "children found their parents"
    );
    // Another key is still refused.
    let other = linli_core::crypto::FieldCipher::generate_hex();
    assert!(
        linli_store::Store::open(&cfg, &dir, Some(&other), linli_server::modules::platform())
            .await
            .is_err()
    );
    drop_database(stores, pg).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two instances started with `--demo` on one empty database seed one demo: the seeding is
/// claimed inside the transactions that write it (and, on PostgreSQL, held under one lock),
/// so neither fails on the other's rows and nothing is seeded twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_seeding_the_demo_together_make_one_demo() {
    let app = TestApp::empty().await;
    let url = app
        .database_url()
        .unwrap_or_else(|| linli_store::sqlite_url(&app.dir));
    let b = linli_store::Store::open(
        &linli_store::DbConfig {
            url,
            max_connections: 4,
            sqlite_synchronous: "NORMAL".into(),
        },
        &app.dir,
        None,
        linli_server::modules::platform(),
    )
    .await
    .unwrap();
    let (ra, rb) = tokio::join!(
        linli_server::modules::seed_demo(&app.store, crate::common::PASSWORD),
        linli_server::modules::seed_demo(&b, crate::common::PASSWORD)
    );
    let (ra, rb) = (ra.expect("instance A seeds"), rb.expect("instance B seeds"));
    assert_eq!(ra.len(), rb.len());
    let count = |sql: &'static str| {
        let db = app.store.db.read.clone();
        async move { sqlx::Row::get::<i64, _>(&sqlx::query(sql).fetch_one(&db).await.unwrap(), 0) }
    };
    let data = linli_core::demo::generate(linli_store::demo::DEMO_SEED);
    assert_eq!(
        count("SELECT COUNT(*) FROM places").await,
        data.places.len() as i64
    );
    for (what, sql) in [
        (
            "routing rules",
            "SELECT COUNT(*) FROM (SELECT category, area_id FROM routing_rules GROUP BY category, area_id HAVING COUNT(*) > 1) d",
        ),
        (
            "default alarm rules",
            "SELECT COUNT(*) FROM (SELECT device_kind, alarm_type FROM alarm_rules WHERE path IS NULL AND device_id IS NULL GROUP BY device_kind, alarm_type HAVING COUNT(*) > 1) d",
        ),
        (
            "devices",
            "SELECT COUNT(*) FROM (SELECT name, place_id FROM devices GROUP BY name, place_id HAVING COUNT(*) > 1) d",
        ),
        (
            "gates",
            "SELECT COUNT(*) FROM (SELECT name, place_id FROM gates GROUP BY name, place_id HAVING COUNT(*) > 1) d",
        ),
    ] {
        assert_eq!(count(sql).await, 0, "{what} seeded twice");
    }
    assert!(count("SELECT COUNT(*) FROM routing_rules").await > 0);
    b.db.read.close().await;
    b.db.write.close().await;
    app.close().await;
}

/// Pages and JSON go out gzip-compressed to a client that asks for it (a phone on a slow network
/// gets a page in a fraction of the bytes); small answers, clients that do not ask and refusals
/// (`gzip;q=0`) get the plain body.
#[tokio::test]
async fn text_responses_are_gzip_compressed_for_clients_that_accept_it() {
    use std::io::Read;
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let plain = app.get(&resident, "/me").await;
    assert_eq!(plain.status, 200);
    assert!(plain.headers.get("content-encoding").is_none());
    let gz = app
        .call(
            "GET",
            "/me",
            Some(&resident),
            None,
            &[("accept-encoding", "gzip, deflate, br")],
        )
        .await;
    assert_eq!(gz.status, 200);
    assert_eq!(gz.headers["content-encoding"], "gzip");
    assert!(
        gz.headers["vary"]
            .to_str()
            .unwrap()
            .contains("accept-encoding")
    );
    assert!(
        gz.bytes.len() * 2 < plain.bytes.len(),
        "{} vs {}",
        gz.bytes.len(),
        plain.bytes.len()
    );
    let mut page = String::new();
    flate2::read::GzDecoder::new(&gz.bytes[..])
        .read_to_string(&mut page)
        .unwrap();
    assert!(page.contains("</html>"));
    let refused = app
        .call(
            "GET",
            "/me",
            Some(&resident),
            None,
            &[("accept-encoding", "gzip;q=0")],
        )
        .await;
    assert!(refused.headers.get("content-encoding").is_none());
    let small = app
        .call(
            "GET",
            "/healthz",
            None,
            None,
            &[("accept-encoding", "gzip")],
        )
        .await;
    assert!(small.headers.get("content-encoding").is_none());
    app.close().await;
}

/// Installable on a phone's home screen: every page names the manifest; the manifest's icons,
/// the service worker and its offline page are served to anybody (the worker caches nothing
/// else: pages hold personal data).
#[tokio::test]
async fn the_app_is_installable_with_icons_a_service_worker_and_an_offline_page() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let me = app.get(&resident, "/me").await;
    assert!(
        me.text()
            .contains(r#"<link rel="manifest" href="/manifest.webmanifest">"#)
    );
    let m = app
        .call("GET", "/manifest.webmanifest", None, None, &[])
        .await;
    assert_eq!(m.status, 200);
    assert_eq!(m.headers["content-type"], "application/manifest+json");
    let manifest = m.json();
    assert_eq!(manifest["display"], "standalone");
    assert_eq!(manifest["start_url"], "/");
    for icon in manifest["icons"].as_array().unwrap() {
        let src = icon["src"].as_str().unwrap();
        let r = app.call("GET", src, None, None, &[]).await;
        assert_eq!(r.status, 200, "{src}");
        assert_eq!(
            r.headers["content-type"],
            icon["type"].as_str().unwrap(),
            "{src}"
        );
        if let Some((w, _)) = icon["sizes"].as_str().unwrap().split_once('x') {
            // PNG: width is the big-endian u32 at byte 16 of the IHDR chunk.
            let width = u32::from_be_bytes(r.bytes[16..20].try_into().unwrap());
            assert_eq!(width.to_string(), w, "{src}");
        }
    }
    let sw = app.call("GET", "/sw.js", None, None, &[]).await;
    assert_eq!(sw.status, 200);
    assert_eq!(sw.headers["cache-control"], "no-cache");
    assert!(sw.text().contains(r#"req.mode !== "navigate""#));
    let offline = app.call("GET", "/offline", None, None, &[]).await;
    assert_eq!(offline.status, 200);
    assert!(offline.text().contains("网络已断开"));
    assert!(offline.text().contains("120"));
    app.close().await;
}
