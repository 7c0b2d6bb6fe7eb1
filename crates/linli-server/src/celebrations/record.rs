//! How the pages show the household's celebrations in its record.

use serde_json::Value;

use crate::manifest::{Cell, RecordView};
use crate::web::Page;

pub static CELEBRATIONS: RecordView = RecordView {
    section: &linli_store::celebrations::record::CELEBRATIONS,
    title: "celebration-record",
    headers: &[
        "web-linked-when",
        "web-linked-what",
        "celebration-congratulations",
    ],
    rows,
};

fn rows(page: &Page, v: &Value, _staff: bool) -> Vec<Vec<Cell>> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let kind = c["kind"].as_str().unwrap_or_default();
            let mut what = format!(
                "{} · {}",
                page.t(&format!("celebration-kind-{kind}")),
                c["title"].as_str().unwrap_or_default()
            );
            if c["hidden"].as_bool() == Some(true) {
                what.push_str(&format!("（{}）", page.t("celebration-hidden")));
            }
            vec![
                Cell::text(page.datetime(&c["created_at"].as_i64().unwrap_or_default())),
                Cell::text(what),
                Cell::text(
                    c["congratulations"]
                        .as_i64()
                        .unwrap_or_default()
                        .to_string(),
                ),
            ]
        })
        .collect()
}
