//! Crash safety, short run: the real `linli` server is killed with SIGKILL at random moments
//! while clients write — audited reveals, household edits, report transitions, household imports
//! and QoS 1 MQTT telemetry; after every kill, each acknowledged write is present, no import is
//! half there, the audit chain verifies and (SQLite) the database passes its integrity check.
//! The long run is `linli bench crash --rounds N`.

use std::process::Command;

use crate::common::TestApp;

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    // An empty database of our own (on PostgreSQL a new database; the harness seeds the demo).
    let app = TestApp::empty().await;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_linli"));
    cmd.args([
        "bench",
        "crash",
        "--rounds",
        "5",
        "--clients",
        "3",
        "--min-ms",
        "400",
        "--max-ms",
        "1200",
    ])
    .arg("--dir")
    .arg(&app.dir)
    .env("LINLI_LOG", "warn")
    .env_remove("LINLI_DATABASE_URL");
    if let Some(url) = app.database_url() {
        cmd.arg("--database-url").arg(url);
    }
    // The harness runs in this test's data directory and database: release our pool first.
    app.store.db.read.close().await;
    app.store.db.write.close().await;
    let out = cmd.output().expect("linli runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "crash run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["lost"], 0, "{v}");
    // Every kind of write was acknowledged at least once, so every kind was checked.
    for kind in [
        "reveals",
        "household_edits",
        "reports_created",
        "report_transitions",
        "imports",
        "import_rows",
        "telemetry_qos1",
    ] {
        let n = v["acknowledged_writes_checked"][kind].as_u64().unwrap_or(0);
        assert!(n > 0, "no acknowledged {kind}: {v}");
    }
    app.close().await;
}
