//! Backup and restore (SQLite): a round trip reproduces every table and the uploads; an online
//! backup taken while audited writes go on restores to a database whose audit chain verifies;
//! bad restores (wrong key, not a backup, non-empty target, existing file) change nothing.
//! PostgreSQL deployments use pg_dump (docs/operations.md), so these tests run on SQLite only.

use std::process::Command;

use serde_json::json;

use linli_store::ops::backup::{BackupError, compare_sqlite, restore, sqlite_path};
use linli_store::{DbConfig, Store};

use crate::common::TestApp;

fn key_of(app: &TestApp) -> String {
    std::fs::read_to_string(app.dir.join("master.key")).unwrap()
}

async fn open(dir: &std::path::Path) -> Store {
    let cfg = DbConfig {
        url: linli_store::sqlite_url(dir),
        max_connections: 2,
        sqlite_synchronous: "NORMAL".into(),
    };
    Store::open(&cfg, dir, None, linli_server::modules::platform())
        .await
        .expect("restored store opens")
}

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("linli-bk-{name}-{}", linli_core::new_id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn round_trip_reproduces_every_table_and_the_uploads() {
    let app = TestApp::demo().await;
    if app.is_postgres() {
        eprintln!("backup/restore of PostgreSQL is pg_dump's job; SQLite-only test skipped");
        app.close().await;
        return;
    }
    // Some audited activity and an uploaded file.
    let committee = app.login("committee").await;
    let v = app.get(&committee, "/api/v1/persons?limit=1").await.ok();
    let pid = v["items"][0]["id"].as_str().unwrap().to_string();
    app.post(
        &committee,
        &format!("/api/v1/persons/{pid}/reveal"),
        json!({"purpose": "备份测试", "fields": ["id_number"]}),
    )
    .await
    .ok();
    let up = app.dir.join("uploads").join("ab");
    std::fs::create_dir_all(&up).unwrap();
    std::fs::write(
        up.join("photo-1.jpg"),
        b"\xff\xd8\xff\xe0 not really a jpeg",
    )
    .unwrap();
    std::fs::write(up.join("half.part"), b"being written").unwrap();

    let out = scratch("out");
    let file = out.join("linli.backup");
    let report = app.store.backup_to(&file, &app.dir).await.expect("backup");
    assert_eq!(
        report.uploads, 1,
        "the .part file is not part of the backup"
    );
    assert!(report.tables >= 10);
    // Never overwrite an existing backup.
    assert!(matches!(
        app.store.backup_to(&file, &app.dir).await,
        Err(BackupError::Exists(_))
    ));

    let target = scratch("restored");
    let r = restore(&file, &target, Some(&key_of(&app)))
        .await
        .expect("restore");
    assert_eq!(r.uploads, 1);
    assert_eq!(
        std::fs::read(target.join("uploads/ab/photo-1.jpg")).unwrap(),
        b"\xff\xd8\xff\xe0 not really a jpeg"
    );
    assert!(!target.join("uploads/ab/half.part").exists());
    // Every table, row by row: the live database (quiet now) and the restored one are equal.
    let diffs = compare_sqlite(&sqlite_path(&app.dir), &sqlite_path(&target))
        .await
        .unwrap();
    assert!(diffs.is_empty(), "{diffs:?}");
    let restored = open(&target).await;
    let v = restored.audit_verify().await.unwrap();
    assert_eq!(v.first_broken, None);
    assert!(v.entries > 0);

    // A second restore into the same (now non-empty) directory is refused.
    assert!(matches!(
        restore(&file, &target, Some(&key_of(&app))).await,
        Err(BackupError::TargetNotEmpty(_))
    ));
    // Another instance's key is refused, and nothing is left behind.
    let other = scratch("wrongkey");
    let wrong = linli_core::crypto::FieldCipher::generate_hex();
    assert!(matches!(
        restore(&file, &other, Some(&wrong)).await,
        Err(BackupError::WrongKey)
    ));
    assert!(!sqlite_path(&other).exists());
    // Without any key: a clear refusal.
    let nokey = scratch("nokey");
    assert!(matches!(
        restore(&file, &nokey, None).await,
        Err(BackupError::NoKey)
    ));
    // A file that is not a backup (a plain database, or not SQLite at all).
    let junk = out.join("junk.xlsx");
    std::fs::write(&junk, b"PK\x03\x04 spreadsheet").unwrap();
    assert!(matches!(
        restore(&junk, &nokey, Some(&key_of(&app))).await,
        Err(BackupError::NotABackup(_))
    ));
    assert!(matches!(
        restore(&sqlite_path(&app.dir), &nokey, Some(&key_of(&app))).await,
        Err(BackupError::NotABackup(_))
    ));
    assert!(!sqlite_path(&nokey).exists());

    // Opening the original data with the wrong key is refused too.
    let cfg = DbConfig {
        url: linli_store::sqlite_url(&app.dir),
        max_connections: 2,
        sqlite_synchronous: "NORMAL".into(),
    };
    let err = Store::open(
        &cfg,
        &app.dir,
        Some(&wrong),
        linli_server::modules::platform(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("master key"), "{err}");

    restored.db.read.close().await;
    restored.db.write.close().await;
    for d in [out, target, other, nokey] {
        let _ = std::fs::remove_dir_all(d);
    }
    app.close().await;
}

#[tokio::test]
async fn online_backup_under_concurrent_writes_is_consistent() {
    let app = TestApp::demo().await;
    if app.is_postgres() {
        app.close().await;
        return;
    }
    let committee = app.login("committee").await;
    let v = app.get(&committee, "/api/v1/persons?limit=20").await.ok();
    let ids: Vec<String> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    // Audited writes (reveals append to the hash chain) run while the backup is taken.
    let writer = {
        let router = app.router.clone();
        let committee = committee.clone();
        tokio::spawn(async move {
            use tower::ServiceExt;
            let mut n = 0;
            for round in 0..30 {
                for id in &ids {
                    let req = axum::http::Request::builder()
                        .method("POST")
                        .uri(format!("/api/v1/persons/{id}/reveal"))
                        .header("cookie", &committee.cookie)
                        .header("x-csrf-token", &committee.csrf)
                        .header("content-type", "application/json")
                        .body(axum::body::Body::from(
                            json!({"purpose": format!("并发备份 {round}"), "fields": ["phone"]})
                                .to_string(),
                        ))
                        .unwrap();
                    let resp = router.clone().oneshot(req).await.unwrap();
                    assert!(resp.status().is_success());
                    n += 1;
                }
            }
            n
        })
    };
    let out = scratch("online");
    let file = out.join("online.backup");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    app.store.backup_to(&file, &app.dir).await.expect("backup");
    let writes = writer.await.unwrap();
    assert_eq!(writes, 600);

    let target = scratch("online-restored");
    restore(&file, &target, Some(&key_of(&app))).await.unwrap();
    let restored = open(&target).await;
    let v = restored.audit_verify().await.unwrap();
    assert_eq!(v.first_broken, None, "{:?}", v.reason);
    let ok: String = sqlx::Row::get(
        &sqlx::query("PRAGMA integrity_check")
            .fetch_one(&restored.db.read)
            .await
            .unwrap(),
        0,
    );
    assert_eq!(ok, "ok");
    restored.db.read.close().await;
    restored.db.write.close().await;
    let _ = std::fs::remove_dir_all(out);
    let _ = std::fs::remove_dir_all(target);
    app.close().await;
}

#[tokio::test]
async fn backup_and_restore_from_the_command_line() {
    let app = TestApp::demo().await;
    if app.is_postgres() {
        // The command refuses PostgreSQL with a pointer to pg_dump.
        let url = app.database_url().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_linli"))
            .args([
                "backup",
                "/tmp/never-written.backup",
                "--database-url",
                &url,
            ])
            .env("LINLI_LOG", "warn")
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"));
        assert!(!std::path::Path::new("/tmp/never-written.backup").exists());
        app.close().await;
        return;
    }
    let out = scratch("cli");
    let file = out.join("cli.backup");
    let run = |args: &[&str], dir: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_linli"))
            .args(args)
            .arg("--data-dir")
            .arg(dir)
            .env("LINLI_LOG", "warn")
            .env_remove("LINLI_DATABASE_URL")
            .env_remove("LINLI_MASTER_KEY")
            .output()
            .unwrap()
    };
    let o = run(&["backup", file.to_str().unwrap()], &app.dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let target = out.join("data");
    let key = app.dir.join("master.key");
    let o = run(
        &[
            "restore",
            file.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--verify",
        ],
        &target,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("verified"));
    let o = run(&["audit", "verify"], &target);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let _ = std::fs::remove_dir_all(out);
    app.close().await;
}
