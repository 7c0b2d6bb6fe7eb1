//! How the pages show the reports' section of the household record.

use serde_json::Value;

use crate::manifest::{Cell, RecordView};
use crate::web::Page;

pub static REPORTS: RecordView = RecordView {
    section: &linli_store::reports::record::REPORTS,
    title: "web-linked-reports",
    headers: &[
        "web-linked-when",
        "web-linked-what",
        "web-status",
        "web-linked-unit",
    ],
    rows: report_rows,
};

fn report_rows(page: &Page, items: &Value, staff: bool) -> Vec<Vec<Cell>> {
    let base = if staff {
        "/staff/reports"
    } else {
        "/me/reports"
    };
    items
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            vec![
                Cell::text(page.datetime(&r["created_at"].as_i64().unwrap_or_default())),
                Cell::link(s("title"), format!("{base}/{}", s("id"))),
                Cell::text(page.code("report-status", &s("status"))),
                Cell::text(r["unit_name"].as_str().unwrap_or("—")),
            ]
        })
        .collect()
}
