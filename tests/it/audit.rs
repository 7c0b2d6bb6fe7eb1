//! The audit chain: every write and reveal leaves an entry; the database refuses edits; a
//! tampered or deleted row is found by `audit verify` at the first broken link.

use serde_json::json;
use sqlx::AssertSqlSafe;

use crate::common::TestApp;

#[tokio::test]
async fn chain_verifies_refuses_edits_and_detects_tampering() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let hid = app.get(&committee, "/api/v1/households?limit=1").await.ok()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 0..3 {
        let v = app
            .get(&committee, &format!("/api/v1/households/{hid}"))
            .await
            .ok();
        app.patch(
            &committee,
            &format!("/api/v1/households/{hid}"),
            json!({"version": v["version"], "note": format!("走访 {i}")}),
        )
        .await
        .ok();
    }
    let report = app.store.audit_verify().await.unwrap();
    assert_eq!(report.first_broken, None);
    assert!(report.entries >= 4, "seed + 3 updates: {report:?}");
    let admin = app.login("admin").await;
    let api = app.get(&admin, "/api/v1/audit/verify").await.ok();
    assert_eq!(api["first_broken"], serde_json::Value::Null);

    // The database itself refuses to change or delete entries.
    let upd = sqlx::query("UPDATE audit_log SET actor = 'nobody' WHERE seq = 2")
        .execute(&app.store.db.write)
        .await;
    assert!(upd.is_err(), "append-only trigger must refuse updates");
    let del = sqlx::query("DELETE FROM audit_log WHERE seq = 2")
        .execute(&app.store.db.write)
        .await;
    assert!(del.is_err(), "append-only trigger must refuse deletes");

    // Someone with raw database access disables the guard and edits entry 3.
    let (disable, enable) = if app.is_postgres() {
        (
            "ALTER TABLE audit_log DISABLE TRIGGER audit_no_change",
            "ALTER TABLE audit_log ENABLE TRIGGER audit_no_change",
        )
    } else {
        ("DROP TRIGGER audit_no_update", "SELECT 1")
    };
    sqlx::query(AssertSqlSafe(disable))
        .execute(&app.store.db.write)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET after_json = '{\"note\":\"forged\"}' WHERE seq = 3")
        .execute(&app.store.db.write)
        .await
        .unwrap();
    sqlx::query(AssertSqlSafe(enable))
        .execute(&app.store.db.write)
        .await
        .unwrap();
    let report = app.store.audit_verify().await.unwrap();
    assert_eq!(report.first_broken, Some(3), "{report:?}");
    let api = app.get(&admin, "/api/v1/audit/verify").await.ok();
    assert_eq!(api["first_broken"], 3);
    app.close().await;
}

#[tokio::test]
async fn deleting_the_newest_entries_is_detected() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let hid = app.get(&committee, "/api/v1/households?limit=1").await.ok()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.patch(
        &committee,
        &format!("/api/v1/households/{hid}"),
        json!({"version": 1, "note": "a"}),
    )
    .await
    .ok();
    let n = app.store.audit_verify().await.unwrap().entries;
    let disable = if app.is_postgres() {
        "ALTER TABLE audit_log DISABLE TRIGGER audit_no_change"
    } else {
        "DROP TRIGGER audit_no_delete"
    };
    sqlx::query(AssertSqlSafe(disable))
        .execute(&app.store.db.write)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)")
        .execute(&app.store.db.write)
        .await
        .unwrap();
    let report = app.store.audit_verify().await.unwrap();
    assert_eq!(report.first_broken, Some(n), "{report:?}");
    app.close().await;
}
