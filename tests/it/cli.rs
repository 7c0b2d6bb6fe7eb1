//! The `linli` binary's data commands, against the same database the tests use.

use std::process::Command;

use crate::common::{TestApp, fresh_id};

fn linli(app: &TestApp, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_linli"));
    cmd.args(args)
        .arg("--data-dir")
        .arg(&app.dir)
        .env("LINLI_LOG", "warn")
        .env_remove("LINLI_DATABASE_URL");
    if let Some(url) = app.database_url() {
        cmd.arg("--database-url").arg(url);
    }
    cmd.output().expect("linli runs")
}

#[tokio::test]
async fn import_export_and_audit_verify_from_the_command_line() {
    let app = TestApp::demo().await;
    let (building, unit, room) = app.room_names("新村社区").await;
    let csv = format!(
        "户号,社区,楼栋,单元,房号,居住类型,姓名,与户主关系,身份证号\nK1,新村社区,{},{},{},业主,褚一,户主,{}\nK1,新村社区,{},{},{},业主,褚二,子女,123\n",
        building,
        unit,
        room,
        fresh_id(40),
        building,
        unit,
        room
    );
    let file = app.dir.join("导入.csv");
    std::fs::write(&file, csv).unwrap();
    let file = file.to_str().unwrap();

    let out = linli(&app, &["import", "households", file, "--dry-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["issues"][0]["row"], 3);
    assert_eq!(report["issues"][0]["code"], "validation.id_card.length");

    let out = linli(&app, &["import", "households", file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["persons_created"], 1);

    let out = linli(&app, &["export", "persons", "--format", "csv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with('\u{feff}'),
        "CSV has a BOM so Excel reads Chinese"
    );
    assert!(text.contains("褚一") && text.contains("********"));
    assert!(!text.contains(&fresh_id(40)));

    let xlsx = app.dir.join("households.xlsx");
    let out = linli(
        &app,
        &[
            "export",
            "households",
            "--format",
            "xlsx",
            "--output",
            xlsx.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    assert!(
        linli_core::sheet::read_table(&std::fs::read(&xlsx).unwrap(), 100_000)
            .unwrap()
            .rows
            .len()
            > 2000
    );

    let out = linli(&app, &["audit", "verify"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact"));

    let out = Command::new(env!("CARGO_BIN_EXE_linli"))
        .args(["config", "default"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen = \"127.0.0.1:8080\""));
    let out = linli(&app, &["import", "households", "/nonexistent.xlsx"]);
    assert!(!out.status.success());
    app.close().await;
}
