//! Spreadsheet import (preview with bad rows, atomic commit, idempotent re-import, not a
//! spreadsheet, oversize) and export (masked by default, revealed only with right + purpose).

use crate::common::{TestApp, fresh_id};

fn csv_with_bad_rows() -> String {
    let mut bad = fresh_id(21);
    bad.replace_range(17..18, if bad.ends_with('3') { "4" } else { "3" });
    format!(
        "户号,社区,楼栋,单元,房号,居住类型,姓名,与户主关系,身份证号,手机号,标签,入住日期\n\
         A1,幸福里社区,{b},{u},{r},业主,孙一,户主,{id1},13700000001,独居老人,2019-05-01\n\
         A1,幸福里社区,{b},{u},{r},业主,孙二,子女,{bad},,,\n\
         A1,幸福里社区,{b},{u},{r},业主,孙三,配偶,{id3},13700000003,,\n\
         A2,幸福里社区,99栋,1单元,101,业主,周一,户主,{id4},,,\n\
         A3,幸福里社区,{b},{u},{r},租户,,户主,{id5},,,\n\
         A3,幸福里社区,{b},{u},{r},租户,吴二,子女,{id6},,,\n\
         A4,幸福里社区,{b},{u},{r},其他,郑一,户主,{id7},12345,,\n\
         A5,幸福里社区,{b},{u},{r},租户,冯一,户主,{id8},,不存在的标签,\n",
        b = "{b}",
        u = "{u}",
        r = "{r}",
        id1 = fresh_id(20),
        bad = bad,
        id3 = fresh_id(22),
        id4 = fresh_id(23),
        id5 = fresh_id(24),
        id6 = fresh_id(25),
        id7 = fresh_id(26),
        id8 = fresh_id(27),
    )
}

#[tokio::test]
async fn import_reports_bad_rows_commits_good_ones_and_is_idempotent() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let (b, u, r) = app.room_names("幸福里社区").await;
    let csv = csv_with_bad_rows()
        .replace("{b}", &b)
        .replace("{u}", &u)
        .replace("{r}", &r);
    let url = "/api/v1/registry/import/households";
    let audit_before = app.store.audit_verify().await.unwrap().entries;

    // Dry run: the preview lists every bad row with its row number and reason; nothing is written.
    let preview = app
        .call(
            "POST",
            &format!("{url}?dry_run=true"),
            Some(&committee),
            Some(("text/csv", csv.clone().into_bytes())),
            &[],
        )
        .await
        .ok();
    assert_eq!(preview["dry_run"], true);
    assert_eq!(preview["total_rows"], 8);
    let issues: Vec<(u64, String)> = preview["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["row"].as_u64().unwrap(),
                i["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let has = |row: u64, code: &str| issues.iter().any(|(r, c)| *r == row && c == code);
    assert!(has(3, "validation.id_card.check_digit"), "{issues:?}");
    assert!(has(5, "import.unknown_place"), "{issues:?}");
    assert!(has(6, "import.required"), "{issues:?}");
    assert!(has(7, "import.household_head_invalid"), "{issues:?}");
    assert!(has(8, "validation.phone.invalid"), "{issues:?}");
    assert!(has(9, "import.unknown_label"), "{issues:?}");
    assert!(
        preview["issues"][0]["message"]
            .as_str()
            .unwrap()
            .chars()
            .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
        "messages in Chinese"
    );
    assert_eq!(preview["households_created"], 1);
    assert_eq!(preview["persons_created"], 2);
    assert_eq!(
        app.store.audit_verify().await.unwrap().entries,
        audit_before,
        "a dry run writes nothing"
    );
    let v = app
        .get(
            &committee,
            &format!("/api/v1/persons?id_number={}", fresh_id(20)),
        )
        .await
        .ok();
    assert_eq!(v["total"], 0);

    // Commit: the good household (head + valid member) is in, labels included.
    let done = app
        .call(
            "POST",
            url,
            Some(&committee),
            Some(("text/csv", csv.clone().into_bytes())),
            &[],
        )
        .await
        .ok();
    assert_eq!(done["dry_run"], false);
    assert_eq!(done["households_created"], 1);
    assert_eq!(done["persons_created"], 2);
    let v = app
        .get(
            &committee,
            &format!("/api/v1/persons?id_number={}", fresh_id(20)),
        )
        .await
        .ok();
    assert_eq!(v["total"], 1);
    assert_eq!(v["items"][0]["labels"][0]["code"], "elderly_alone");
    let hid = v["items"][0]["household_id"].as_str().unwrap().to_string();
    let view = app
        .get(&committee, &format!("/api/v1/households/{hid}"))
        .await
        .ok();
    assert_eq!(view["members"].as_array().unwrap().len(), 2);
    assert_eq!(view["moved_in"], "2019-05-01");

    // Importing the same file again changes nothing.
    let entries = app.store.audit_verify().await.unwrap().entries;
    let again = app
        .call(
            "POST",
            url,
            Some(&committee),
            Some(("text/csv", csv.into_bytes())),
            &[],
        )
        .await
        .ok();
    assert_eq!(again["households_created"], 0);
    assert_eq!(again["persons_created"], 0);
    assert_eq!(again["persons_unchanged"], 2);
    assert_eq!(app.store.audit_verify().await.unwrap().entries, entries);
    let view2 = app
        .get(&committee, &format!("/api/v1/households/{hid}"))
        .await
        .ok();
    assert_eq!(view, view2);

    // A later file adds a member to that household: the newcomer is found by label and by
    // building (searches that read the household path copied onto the residence).
    let more = format!(
        "户号,社区,楼栋,单元,房号,居住类型,姓名,与户主关系,身份证号,手机号,标签,入住日期\n\
         A1,幸福里社区,{b},{u},{r},业主,孙一,户主,{id1},13700000001,独居老人,2019-05-01\n\
         A1,幸福里社区,{b},{u},{r},业主,孙四,子女,{id9},,独居老人,2019-05-01\n",
        id1 = fresh_id(20),
        id9 = fresh_id(29),
    );
    let added = app
        .call(
            "POST",
            url,
            Some(&committee),
            Some(("text/csv", more.into_bytes())),
            &[],
        )
        .await
        .ok();
    assert_eq!(added["persons_created"], 1, "{added}");
    let by_label = app
        .get(&committee, "/api/v1/persons?label=elderly_alone&limit=500")
        .await
        .ok();
    assert!(
        by_label["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "孙四"),
        "{by_label}"
    );
    let mismatched = app
        .store
        .db
        .fetch_one_fast(&linli_store::db::Sql::new(
            "SELECT COUNT(*) AS n FROM residences r JOIN households h ON h.id = r.household_id \
             WHERE r.hpath IS NULL OR r.hpath <> h.path",
        ))
        .await
        .unwrap()
        .i64("n");
    assert_eq!(
        mismatched, 0,
        "every residence carries its household's path"
    );
    app.close().await;
}

#[tokio::test]
async fn import_accepts_xlsx_and_multipart_and_refuses_non_spreadsheets() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let url = "/api/v1/registry/import/households";
    // The template downloads as a real XLSX.
    let t = app
        .get(&committee, "/api/v1/registry/import/template?format=xlsx")
        .await;
    assert_eq!(t.status, 200);
    assert_eq!(&t.bytes[..2], b"PK");
    let (b, u, r) = app.room_names("幸福里社区").await;
    let headers = linli_core::import_rows::HOUSEHOLD_HEADERS;
    let row = |name: &str, rel: &str, id: String| {
        vec![
            "X".to_string(),
            "幸福里社区".into(),
            b.clone(),
            u.clone(),
            r.clone(),
            "租户".into(),
            name.into(),
            rel.into(),
            id,
            "".into(),
            "".into(),
            "2020/01/02".into(),
        ]
    };
    let xlsx = linli_core::sheet::write_xlsx(
        "导入",
        &headers,
        &[
            row("冯一", "户主", fresh_id(30)),
            row("冯二", "子女", fresh_id(31)),
        ],
    )
    .unwrap();
    // Multipart upload, as a browser form sends it.
    let boundary = "linliboundary";
    let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"户籍.xlsx\"\r\nContent-Type: application/octet-stream\r\n\r\n").into_bytes();
    body.extend_from_slice(&xlsx);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let ct = format!("multipart/form-data; boundary={boundary}");
    let done = app
        .call("POST", url, Some(&committee), Some((&ct, body)), &[])
        .await
        .ok();
    assert_eq!(done["households_created"], 1, "{done}");
    assert_eq!(done["persons_created"], 2);

    // Not a spreadsheet: a clear error, nothing written.
    let entries = app.store.audit_verify().await.unwrap().entries;
    for junk in [
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(),
        b"PK\x03\x04broken zip".to_vec(),
        Vec::new(),
    ] {
        let r = app
            .call(
                "POST",
                url,
                Some(&committee),
                Some(("application/octet-stream", junk)),
                &[("accept-language", "en")],
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text());
        let code = r.json()["code"].as_str().unwrap().to_string();
        assert!(
            code == "import.not_a_spreadsheet" || code == "import.empty",
            "{code}"
        );
    }
    let r = app
        .call(
            "POST",
            url,
            Some(&committee),
            Some(("text/csv", "姓名,身份证号\n张三,1\n".as_bytes().to_vec())),
            &[],
        )
        .await
        .expect(400);
    assert_eq!(r["code"], "import.missing_column");
    // Oversize uploads are refused with 413.
    let big = vec![b'a'; linli_server::api::import_export::IMPORT_LIMIT + 10];
    let r = app
        .call("POST", url, Some(&committee), Some(("text/csv", big)), &[])
        .await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["code"], "payload_too_large");
    assert_eq!(app.store.audit_verify().await.unwrap().entries, entries);
    // Residents cannot import.
    let resident = app.login("resident").await;
    app.call(
        "POST",
        url,
        Some(&resident),
        Some(("text/csv", b"x".to_vec())),
        &[],
    )
    .await
    .expect(403);
    app.close().await;
}

#[tokio::test]
async fn exports_are_masked_unless_revealed_with_a_purpose() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let masked = app
        .get(&committee, "/api/v1/registry/export/persons?format=csv")
        .await;
    assert_eq!(masked.status, 200);
    let text = masked.text();
    let first = text.lines().nth(1).unwrap();
    let id_col = first.split(',').nth(8).unwrap();
    assert!(id_col.contains("********"), "{first}");
    let xlsx = app
        .get(&committee, "/api/v1/registry/export/households?format=xlsx")
        .await;
    assert_eq!(&xlsx.bytes[..2], b"PK");
    let table = linli_core::sheet::read_table(&xlsx.bytes, 100_000).unwrap();
    assert_eq!(table.headers[0], "户号");

    let revealed = app.get(&committee, "/api/v1/registry/export/persons?format=csv&reveal_purpose=%E4%B8%8A%E6%8A%A5%E6%A0%B8%E5%AF%B9").await;
    assert_eq!(revealed.status, 200);
    let row = revealed.text().lines().nth(1).unwrap().to_string();
    let id = row.split(',').nth(8).unwrap();
    assert!(linli_core::idcard::parse(id).is_ok(), "{row}");
    let log = app
        .get(&committee, "/api/v1/audit?action=registry.export_revealed")
        .await
        .ok();
    assert_eq!(log[0]["purpose"], "上报核对");
    // On the page, full numbers are a POST with a purpose from the list, the worker's words and
    // a confirmation — never a GET form whose purpose lands in the browser's history.
    let page = app.get(&committee, "/registry/export").await.doc();
    assert!(
        !page.has("form[method=get]"),
        "no GET form for full numbers"
    );
    let r = crate::common::submit(
        &app,
        &committee,
        &page,
        "#export-revealed",
        &[("purpose", "低保年审")],
    )
    .await;
    assert_eq!(r.status, 400, "without the kind and the confirmation");
    let refused = r.doc();
    assert!(refused.has("#export-kind-error") && refused.has("#export-confirm-error"));
    assert_eq!(
        app.get(&committee, "/api/v1/audit?action=registry.export_revealed")
            .await
            .ok()
            .as_array()
            .unwrap()
            .len(),
        1,
        "nothing exported, nothing audited"
    );
    let r = crate::common::submit(
        &app,
        &committee,
        &page,
        "#export-revealed",
        &[
            ("kind", "subsidy"),
            ("purpose", "低保年审"),
            ("confirm", "1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("persons")
    );
    let log = app
        .get(&committee, "/api/v1/audit?action=registry.export_revealed")
        .await
        .ok();
    assert_eq!(log[0]["purpose"], "低保、救助等核查：低保年审");
    // The unmasked export round-trips through the importer as "nothing to do".
    let again = app
        .call(
            "POST",
            "/api/v1/registry/import/households?dry_run=true",
            Some(&committee),
            Some(("text/csv", revealed.bytes.clone())),
            &[],
        )
        .await
        .ok();
    assert_eq!(again["households_created"], 0);
    assert_eq!(again["persons_created"], 0);
    assert!(again["persons_unchanged"].as_u64().unwrap() > 1000);

    let dept = app.login("dept").await;
    app.get(&dept, "/api/v1/registry/export/persons")
        .await
        .expect(403);
    let street = app.login("street").await;
    app.get(&street, "/api/v1/registry/export/persons?reveal_purpose=xx")
        .await
        .expect(403);
    app.get(&committee, "/api/v1/registry/export/persons?format=pdf")
        .await
        .expect(400);
    app.close().await;
}

/// A file that brings more people than the registry holds takes the bulk path on SQLite (plain
/// indexes dropped and rebuilt inside the transaction): afterwards the schema's indexes are exactly
/// as before, the database is sound, and every kind of search finds the new people.
#[tokio::test]
async fn a_bulk_import_leaves_indexes_as_they_were_and_searchable() {
    let app = TestApp::demo().await;
    let admin = app.login("admin").await;
    let (b, u, r) = app.room_names("幸福里社区").await;
    let index_sql = || async {
        if app.is_postgres() {
            return Vec::new();
        }
        sqlx::query_as::<_, (String, String)>(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL \
             AND tbl_name IN ('households', 'persons', 'residences') ORDER BY name",
        )
        .fetch_all(&app.store.db.read)
        .await
        .unwrap()
    };
    let before = index_sql().await;
    let existing = app.get(&admin, "/api/v1/persons?limit=1").await.ok()["total"]
        .as_i64()
        .unwrap();
    // 3 persons a household, enough households to outnumber the demo's persons.
    let households = 2_700;
    let mut csv = String::from(
        "户号,社区,楼栋,单元,房号,居住类型,姓名,与户主关系,身份证号,手机号,标签,入住日期\n",
    );
    let start = chrono::NaiveDate::from_ymd_opt(1950, 1, 1).unwrap();
    let mut ids = Vec::new();
    for h in 0..households {
        for (k, (name, relation)) in [("秦大", "户主"), ("秦二", "配偶"), ("秦三", "子女")]
            .iter()
            .enumerate()
        {
            let n = h * 3 + k;
            let id = linli_core::idcard::compose(
                "110102",
                start + chrono::Days::new(n as u64 / 7),
                300 + (n % 7) as u16,
            );
            let label = if k == 0 && h % 10 == 0 {
                "独居老人"
            } else {
                ""
            };
            csv.push_str(&format!(
                "B{h},幸福里社区,{b},{u},{r},业主,{name},{relation},{id},,{label},2020-01-01\n"
            ));
            ids.push(id);
        }
    }
    assert!(
        (ids.len() as i64) >= existing,
        "the file must outnumber the registry"
    );
    let res = app
        .call(
            "POST",
            "/api/v1/registry/import/households",
            Some(&admin),
            Some(("text/csv", csv.clone().into_bytes())),
            &[],
        )
        .await
        .ok();
    assert_eq!(res["rows_rejected"], 0, "{res}");
    assert_eq!(res["persons_created"], ids.len());
    assert_eq!(
        index_sql().await,
        before,
        "indexes rebuilt as the schema had them"
    );
    if !app.is_postgres() {
        let ok: (String,) = sqlx::query_as("PRAGMA integrity_check")
            .fetch_one(&app.store.db.read)
            .await
            .unwrap();
        assert_eq!(ok.0, "ok");
    }
    // Exact ID, name prefix, building and label all find the newcomers.
    let one = app
        .get(&admin, &format!("/api/v1/persons?id_number={}", ids[4000]))
        .await
        .ok();
    assert_eq!(one["total"], 1, "{one}");
    assert!(one["items"][0]["address"].as_str().unwrap().contains(&r));
    let by_name = app
        .get(&admin, "/api/v1/persons?name=%E7%A7%A6&limit=5")
        .await
        .ok();
    assert!(by_name["total"].as_i64().unwrap() >= 500, "{by_name}");
    let community = app.place_id("community", "幸福里社区").await;
    let building = app
        .place_id_in("building", &b, &app.place_path(&community).await)
        .await;
    let in_building = app
        .get(
            &admin,
            &format!("/api/v1/persons?place_id={building}&limit=5"),
        )
        .await
        .ok();
    assert!(
        in_building["total"].as_i64().unwrap() >= 500,
        "{in_building}"
    );
    let elderly = app
        .get(&admin, "/api/v1/persons?label=elderly_alone&limit=500")
        .await
        .ok();
    let names: Vec<&str> = elderly["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        names.iter().filter(|n| **n == "秦大").count() >= 1,
        "{elderly}"
    );
    // The same file again changes nothing.
    let again = app
        .call(
            "POST",
            "/api/v1/registry/import/households",
            Some(&admin),
            Some(("text/csv", csv.into_bytes())),
            &[],
        )
        .await
        .ok();
    assert_eq!(again["persons_created"], 0, "{again}");
    assert_eq!(again["persons_unchanged"], ids.len(), "{again}");
    app.close().await;
}
