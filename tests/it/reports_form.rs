//! The resident's filing form (`/me/reports/new`) as a phone sends it: multipart with photos and
//! a position. Photos are checked and cleaned by the store before anything is written (a bad,
//! oversize or extra photo brings the form back with the typed values and creates nothing); a
//! bare point is placed in the community whose map area holds it, a spot on the site plan in the
//! building drawn there; CSRF and the double-submit guard hold with multipart.

use serde_json::json;

use crate::common::{Resp, Session, TestApp};

/// One part of a multipart body: a text field, or a file (field, file name, bytes).
enum Part<'a> {
    Text(&'a str, &'a str),
    File(&'a str, &'a str, Vec<u8>),
}

const BOUNDARY: &str = "----linli-form-boundary";

fn multipart(parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for p in parts {
        match p {
            Part::Text(name, value) => body.extend_from_slice(
                format!(
                    "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            ),
            Part::File(name, file, bytes) => {
                body.extend_from_slice(
                    format!(
                        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(bytes);
                body.extend_from_slice(b"\r\n");
            }
        }
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Post the filing form with the session cookie only (the CSRF token travels in the form).
async fn post_new(app: &TestApp, s: &Session, parts: &[Part<'_>]) -> Resp {
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    app.call(
        "POST",
        "/me/reports/new",
        None,
        Some((ct.as_str(), multipart(parts))),
        &[("cookie", s.cookie.as_str())],
    )
    .await
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).expect("hidden input") + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

/// The text of the field error beside `field`, if any.
fn field_error(html: &str, field: &str) -> Option<String> {
    let marker = format!("id=\"{field}-error\">");
    let start = html.find(&marker)? + marker.len();
    Some(html[start..].split('<').next().unwrap().to_string())
}

async fn count(app: &TestApp, table: &str) -> i64 {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(&app.store.db.read)
        .await
        .unwrap();
    sqlx::Row::get::<i64, _>(&row, 0)
}

/// Files under the photo directory (nothing may be written for a refused form).
fn photo_files(app: &TestApp) -> usize {
    std::fs::read_dir(app.dir.join("uploads").join("reports"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(ty: &[u8], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    c.extend_from_slice(ty);
    c.extend_from_slice(data);
    let mut crc_in = ty.to_vec();
    crc_in.extend_from_slice(data);
    c.extend_from_slice(&crc32(&crc_in).to_be_bytes());
    c
}

/// A 1×1 PNG carrying an eXIf chunk with a GPS position and a text chunk naming the place.
fn png_with_gps() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend(png_chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]));
    v.extend(png_chunk(b"eXIf", b"MM\0*GPSLatitude=30.58"));
    v.extend(png_chunk(b"tEXt", b"Location\0GPS 30.58,114.27"));
    v.extend(png_chunk(b"IDAT", &[0x78, 0x9C, 0x63, 0, 0, 0, 1, 0, 1]));
    v.extend(png_chunk(b"IEND", &[]));
    v
}

/// A minimal JPEG with an EXIF segment holding a GPS position.
fn jpeg_with_gps() -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8];
    let exif = b"Exif\0\0GPSLatitude=30.58";
    v.extend_from_slice(&[0xFF, 0xE1]);
    v.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
    v.extend_from_slice(exif);
    v.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x0B, 8, 0, 1, 0, 1, 1, 1, 0x11, 0]);
    v.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 0x3F, 0]);
    v.extend_from_slice(&[0x12, 0x34, 0xFF, 0x00, 0x56, 0xFF, 0xD9]);
    v
}

/// A fresh form token from the page.
async fn once(app: &TestApp, s: &Session) -> String {
    let page = app.get(s, "/me/reports/new").await;
    assert_eq!(page.status.as_u16(), 200);
    hidden(&page.text(), "_once")
}

async fn report(app: &TestApp, s: &Session, loc: &str) -> serde_json::Value {
    let id = loc.trim_start_matches("/me/reports/");
    app.get(s, &format!("/api/v1/reports/{id}")).await.ok()
}

#[tokio::test]
async fn the_form_files_a_report_with_its_photos_or_nothing() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;

    // The page: a multipart form with photos, the point and the site plan, its script external.
    let page = app.get(&resident, "/me/reports/new").await;
    assert_eq!(page.status.as_u16(), 200);
    let html = page.text();
    assert!(html.contains("enctype=\"multipart/form-data\""), "{html}");
    assert!(html.contains("id=\"photos\" name=\"photos\" multiple"));
    assert!(html.contains("最多 9 张"));
    assert!(html.contains("id=\"lat\" name=\"lat\" step=\"0.000001\""));
    assert!(html.contains("<label for=\"lon\">经度</label>"));
    assert!(html.contains("id=\"plan-pick\""));
    assert!(html.contains("<script src=\"/static/report-form.js\" defer></script>"));
    assert!(!html.contains("<script>"));
    let js = app.get(&resident, "/static/report-form.js").await;
    assert_eq!(js.status.as_u16(), 200);
    assert!(js.text().contains("navigator.geolocation"));
    assert!(
        js.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );

    let reports = count(&app, "reports").await;
    let photos = count(&app, "report_photos").await;
    let files = photo_files(&app);
    let description = "单元门口的路灯不亮了";
    let tok = once(&app, &resident).await;

    // Without the CSRF token: refused, nothing created.
    let refused = post_new(
        &app,
        &resident,
        &[
            Part::Text("_once", &tok),
            Part::Text("category", "repair_common"),
            Part::Text("description", description),
            Part::File("photos", "a.png", png_with_gps()),
        ],
    )
    .await;
    assert_eq!(refused.status.as_u16(), 403);
    assert_eq!(count(&app, "reports").await, reports);
    let tok = once(&app, &resident).await;

    // A fake image beside a good one: the form comes back naming it, with what was typed.
    let fake = post_new(
        &app,
        &resident,
        &[
            Part::Text("_csrf", &resident.csrf),
            Part::Text("_once", &tok),
            Part::Text("category", "repair_common"),
            Part::Text("description", description),
            Part::Text("place_id", ""),
            Part::Text("lat", "30.58"),
            Part::Text("lon", "114.273"),
            Part::File("photos", "good.png", png_with_gps()),
            Part::File(
                "photos",
                "fake.jpg",
                b"<html><script>alert(1)</script></html>".to_vec(),
            ),
            Part::Text("anonymous", "1"),
        ],
    )
    .await;
    assert_eq!(fake.status.as_u16(), 400, "{}", fake.text());
    let html = fake.text();
    let err = field_error(&html, "photos").expect("the photo error is beside the field");
    assert!(err.contains("fake.jpg") && err.contains("JPEG"), "{err}");
    assert!(html.contains("id=\"photos\" name=\"photos\" multiple accept=\"image/jpeg,image/png,image/webp\" aria-describedby=\"photos-hint photos-error\" aria-invalid=\"true\""));
    assert!(html.contains(&format!(">{description}</textarea>")));
    assert!(html.contains("value=\"30.58\""));
    assert!(html.contains("value=\"114.273\""));
    assert!(html.contains("<option value=\"\" selected>"));
    assert!(html.contains("name=\"anonymous\" value=\"1\" checked"));
    assert!(!html.contains("<script>alert(1)"));
    assert_eq!(count(&app, "reports").await, reports);
    assert_eq!(count(&app, "report_photos").await, photos);
    assert_eq!(photo_files(&app), files);

    // An oversize photo: refused by size, beside the field, nothing created.
    let mut big = jpeg_with_gps();
    big.resize(9 * 1024 * 1024, 0);
    let tok = once(&app, &resident).await;
    let oversize = post_new(
        &app,
        &resident,
        &[
            Part::Text("_csrf", &resident.csrf),
            Part::Text("_once", &tok),
            Part::Text("category", "repair_common"),
            Part::File("photos", "huge.jpg", big),
            Part::Text("description", description),
        ],
    )
    .await;
    assert_eq!(oversize.status.as_u16(), 413, "{}", oversize.text());
    let html = oversize.text();
    let err = field_error(&html, "photos").expect("size error beside the field");
    assert!(err.contains("huge.jpg") && err.contains("8 MB"), "{err}");
    // The fields after the photo still arrived.
    assert!(html.contains(&format!(">{description}</textarea>")));
    assert_eq!(count(&app, "reports").await, reports);
    assert_eq!(count(&app, "report_photos").await, photos);

    // More photos than a report may have.
    let tok = once(&app, &resident).await;
    let mut parts = vec![
        Part::Text("_csrf", &resident.csrf),
        Part::Text("_once", &tok),
        Part::Text("category", "repair_common"),
        Part::Text("description", description),
    ];
    for _ in 0..10 {
        parts.push(Part::File("photos", "p.jpg", jpeg_with_gps()));
    }
    let too_many = post_new(&app, &resident, &parts).await;
    assert_eq!(too_many.status.as_u16(), 400);
    assert!(
        field_error(&too_many.text(), "photos")
            .unwrap()
            .contains("最多 9 张")
    );
    assert_eq!(count(&app, "reports").await, reports);

    // Another field wrong while photos were sent: the photos must be chosen again, said so.
    let tok = once(&app, &resident).await;
    let no_text = post_new(
        &app,
        &resident,
        &[
            Part::Text("_csrf", &resident.csrf),
            Part::Text("_once", &tok),
            Part::Text("category", "repair_common"),
            Part::Text("description", "  "),
            Part::File("photos", "good.png", png_with_gps()),
        ],
    )
    .await;
    assert_eq!(no_text.status.as_u16(), 400);
    let html = no_text.text();
    assert!(field_error(&html, "description").is_some());
    assert!(html.contains("id=\"photos-again\""));
    assert_eq!(count(&app, "reports").await, reports);
    assert_eq!(photo_files(&app), files);

    // A PNG and a JPEG, both with a GPS position, and an empty file input: filed with both
    // photos, the positions gone.
    let tok = once(&app, &resident).await;
    let home = hidden_home(&app, &resident).await;
    let parts = [
        Part::Text("_csrf", &resident.csrf),
        Part::Text("_once", &tok),
        Part::Text("category", "repair_common"),
        Part::Text("description", description),
        Part::Text("place_id", &home),
        Part::File("photos", "door.png", png_with_gps()),
        Part::File("photos", "lamp.jpg", jpeg_with_gps()),
        Part::File("photos", "", Vec::new()),
    ];
    let ok = post_new(&app, &resident, &parts).await;
    assert_eq!(ok.status.as_u16(), 303, "{}", ok.text());
    let loc = ok.headers["location"].to_str().unwrap().to_string();
    assert!(
        loc.starts_with("/me/reports/") && !loc.contains('?'),
        "{loc}"
    );
    assert_eq!(count(&app, "reports").await, reports + 1);
    assert_eq!(count(&app, "report_photos").await, photos + 2);
    let v = report(&app, &resident, &loc).await;
    let id = v["report"]["id"].as_str().unwrap().to_string();
    let got = v["photos"].as_array().unwrap();
    assert_eq!(got.len(), 2, "{v}");
    let mut mimes: Vec<&str> = got.iter().map(|p| p["mime"].as_str().unwrap()).collect();
    mimes.sort_unstable();
    assert_eq!(mimes, ["image/jpeg", "image/png"]);
    for p in got {
        assert_eq!(p["stage"], "intake");
        let bytes = app
            .get(
                &resident,
                &format!("/api/v1/reports/{id}/photos/{}", p["id"].as_str().unwrap()),
            )
            .await;
        assert!(bytes.status.is_success());
        for gone in [&b"GPS"[..], b"Exif", b"eXIf", b"tEXt"] {
            assert!(
                !bytes.bytes.windows(gone.len()).any(|w| w == gone),
                "{} still holds {}",
                p["mime"],
                String::from_utf8_lossy(gone)
            );
        }
    }
    // The resident's page shows them.
    let detail = app.get(&resident, &loc).await.text();
    assert_eq!(
        detail
            .matches(&format!("<img src=\"/api/v1/reports/{id}/photos/"))
            .count(),
        2
    );
    // A double tap creates nothing more.
    let again = post_new(&app, &resident, &parts).await;
    assert_eq!(again.status.as_u16(), 303);
    assert_eq!(again.headers["location"].to_str().unwrap(), loc);
    assert_eq!(count(&app, "reports").await, reports + 1);
    assert_eq!(count(&app, "report_photos").await, photos + 2);
    app.close().await;
}

#[tokio::test]
async fn the_form_places_a_report_by_point_or_by_a_spot_on_the_site_plan() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let community = app.place_id("community", "幸福里社区").await;
    let community_path = app.place_path(&community).await;
    let home = hidden_home(&app, &resident).await;
    let reports = count(&app, "reports").await;

    let file = |place: &'static str, fields: Vec<(&'static str, String)>| {
        file_at(&app, &resident, place, fields)
    };
    let point = |lat: &str, lon: &str| vec![("lat", lat.to_string()), ("lon", lon.to_string())];

    // A bare point inside the resident's community (幸福里, demo map area): placed there.
    let ok = file("", point("30.5801", "114.2733")).await;
    assert_eq!(ok.status.as_u16(), 303, "{}", ok.text());
    let v = report(&app, &resident, ok.headers["location"].to_str().unwrap()).await;
    assert_eq!(v["report"]["place_id"], community.as_str());
    assert_eq!(v["report"]["path"], community_path.as_str());
    assert_eq!(v["report"]["lat"], 30.5801);
    assert_eq!(v["report"]["lon"], 114.2733);

    // A place chosen and a point: the place wins, the point is kept (as the store does).
    let ok = file_at(&app, &resident, &home, point("30.5799", "114.2721")).await;
    assert_eq!(ok.status.as_u16(), 303, "{}", ok.text());
    let v = report(&app, &resident, ok.headers["location"].to_str().unwrap()).await;
    assert_eq!(v["report"]["place_id"], home.as_str());
    assert_eq!(v["report"]["lat"], 30.5799);
    assert_eq!(count(&app, "reports").await, reports + 2);

    // Far away (Beijing): in no community, beside the latitude, nothing created.
    let far = file("", point("39.9042", "116.4074")).await;
    assert_eq!(far.status.as_u16(), 400, "{}", far.text());
    let html = far.text();
    let err = field_error(&html, "lat").expect("error beside the latitude");
    assert!(err.contains("不在任何社区"), "{err}");
    assert!(html.contains("value=\"39.9042\""));
    // In another community (江滩): not the resident's.
    let other = file("", point("30.5900", "114.2950")).await;
    assert_eq!(other.status.as_u16(), 400);
    assert!(
        field_error(&other.text(), "lat")
            .unwrap()
            .contains("只能报告您所在社区")
    );
    // Half a point, a word for a number, a latitude out of range, nothing at all.
    let half = file("", vec![("lat", "30.58".into()), ("lon", String::new())]).await;
    assert_eq!(half.status.as_u16(), 400);
    assert_eq!(
        field_error(&half.text(), "lon").unwrap(),
        "请同时填写纬度和经度。"
    );
    let word = file("", point("北纬30度", "114.27")).await;
    assert_eq!(word.status.as_u16(), 400);
    assert!(
        field_error(&word.text(), "lat")
            .unwrap()
            .contains("-90 到 90")
    );
    let range = file("", point("95", "114.27")).await;
    assert_eq!(range.status.as_u16(), 400);
    assert!(
        field_error(&range.text(), "lat")
            .unwrap()
            .contains("-90 到 90")
    );
    let nothing = file("", vec![]).await;
    assert_eq!(nothing.status.as_u16(), 400);
    assert!(
        field_error(&nothing.text(), "place_id")
            .unwrap()
            .contains("地点")
    );
    assert_eq!(count(&app, "reports").await, reports + 2);

    // A spot on the site plan: on a building's footprint → that building; elsewhere → the
    // community; out of range → beside the field.
    let (building, [x, y, w, h]) = a_building_on_the_plan(&app, &community_path).await;
    let spot = |x: i64, y: i64| vec![("plan_x", x.to_string()), ("plan_y", y.to_string())];
    let ok = file("", spot(x + w / 2, y + h / 2)).await;
    assert_eq!(ok.status.as_u16(), 303, "{}", ok.text());
    let v = report(&app, &resident, ok.headers["location"].to_str().unwrap()).await;
    assert_eq!(v["report"]["place_id"], building.as_str());
    assert_eq!(v["report"]["plan_x"], x + w / 2);
    assert_eq!(v["report"]["plan_y"], y + h / 2);
    let ok = file("", spot(2, 2)).await;
    assert_eq!(ok.status.as_u16(), 303, "{}", ok.text());
    let v = report(&app, &resident, ok.headers["location"].to_str().unwrap()).await;
    assert_eq!(v["report"]["place_id"], community.as_str());
    let bad = file("", spot(5000, 10)).await;
    assert_eq!(bad.status.as_u16(), 400);
    let html = bad.text();
    assert!(field_error(&html, "plan_x").unwrap().contains("0 到 1000"));
    // The spot typed is drawn on the plan again.
    assert!(html.contains("id=\"plan-mark\" class=\"plan-mark\" cx=\"5000\" cy=\"10\" r=\"16\">"));
    let half = file("", vec![("plan_x", "10".into())]).await;
    assert_eq!(half.status.as_u16(), 400);
    assert!(field_error(&half.text(), "plan_y").is_some());
    assert_eq!(count(&app, "reports").await, reports + 4);

    // The JSON API places a bare point the same way (the store does it).
    let created = app
        .post(
            &resident,
            "/api/v1/reports",
            json!({ "category": "environment", "description": "井盖松动", "lat": 30.5805, "lon": 114.2741 }),
        )
        .await
        .expect(201);
    assert_eq!(created["report"]["place_id"], community.as_str());
    let e = app
        .post(
            &resident,
            "/api/v1/reports",
            json!({ "category": "environment", "description": "井盖松动", "lat": 39.9, "lon": 116.4 }),
        )
        .await
        .expect(400);
    assert_eq!(e["code"], "report.point_in_no_community");
    assert_eq!(count(&app, "reports").await, reports + 5);
    app.close().await;
}

/// Post the form for a chosen place with extra fields.
async fn file_at(
    app: &TestApp,
    s: &Session,
    place: &str,
    fields: Vec<(&'static str, String)>,
) -> Resp {
    let tok = once(app, s).await;
    let mut parts = vec![
        Part::Text("_csrf", &s.csrf),
        Part::Text("_once", &tok),
        Part::Text("category", "environment"),
        Part::Text("description", "绿化带里有人倾倒建筑垃圾"),
        Part::Text("place_id", place),
    ];
    for (k, v) in &fields {
        parts.push(Part::Text(k, v));
    }
    post_new(app, s, &parts).await
}

/// The place the form selects by default (the resident's home).
async fn hidden_home(app: &TestApp, s: &Session) -> String {
    let html = app.get(s, "/me/reports/new").await.text();
    let start = html.find("<select id=\"place_id\"").unwrap();
    let sel = &html[start..];
    let marker = "<option value=\"";
    let at = sel.find(marker).unwrap() + marker.len();
    let id = sel[at..].split('"').next().unwrap().to_string();
    assert!(
        sel[at..].starts_with(&format!("{id}\" selected")),
        "home first and selected"
    );
    id
}

/// A building of the community with its footprint on the site plan.
async fn a_building_on_the_plan(app: &TestApp, community_path: &str) -> (String, [i64; 4]) {
    let rows = sqlx::query(
        "SELECT id, path, plan FROM places WHERE kind = 'building' AND plan IS NOT NULL ORDER BY id",
    )
    .fetch_all(&app.store.db.read)
    .await
    .unwrap();
    for r in rows {
        let path: String = sqlx::Row::get(&r, "path");
        if path.starts_with(community_path) {
            let plan: String = sqlx::Row::get(&r, "plan");
            let p: [i64; 4] = serde_json::from_str(&plan).unwrap();
            return (sqlx::Row::get(&r, "id"), p);
        }
    }
    panic!("no building with a plan in {community_path}");
}
