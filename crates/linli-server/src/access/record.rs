//! How the pages show the access module's sections of the household record.

use serde_json::Value;

use crate::manifest::{Cell, RecordView};
use crate::web::Page;

pub static VEHICLES: RecordView = RecordView {
    section: &linli_store::access::record::VEHICLES,
    title: "web-linked-vehicles",
    headers: &["web-linked-plate"],
    rows: vehicle_rows,
};

pub static PASSES: RecordView = RecordView {
    section: &linli_store::access::record::PASSES,
    title: "web-linked-passes",
    headers: &["web-linked-visitor", "web-linked-valid", "web-status"],
    rows: pass_rows,
};

pub static PASSAGES: RecordView = RecordView {
    section: &linli_store::access::record::PASSAGES,
    title: "web-linked-passages",
    headers: &["web-linked-when", "web-linked-gate", "web-linked-direction"],
    rows: passage_rows,
};

fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

fn when(page: &Page, v: &Value) -> String {
    v.as_i64().map_or("—".to_string(), |t| page.datetime(&t))
}

fn vehicle_rows(_page: &Page, v: &Value, _staff: bool) -> Vec<Vec<Cell>> {
    items(v)
        .map(|x| vec![Cell::text(x["plate"].as_str().unwrap_or_default())])
        .collect()
}

fn pass_rows(page: &Page, v: &Value, staff: bool) -> Vec<Vec<Cell>> {
    items(v)
        .map(|p| {
            let mut who = format!(
                "{} {}",
                p["visitor_name"].as_str().unwrap_or_default(),
                p["phone_masked"].as_str().unwrap_or_default()
            );
            if let Some(plate) = p["plate"].as_str() {
                who.push_str(&format!(" · {plate}"));
            }
            let who = if staff {
                Cell::text(who)
            } else {
                Cell::link(
                    who,
                    format!("/me/passes/{}", p["id"].as_str().unwrap_or_default()),
                )
            };
            vec![
                who,
                Cell::text(format!(
                    "{} – {}",
                    when(page, &p["valid_from"]),
                    when(page, &p["valid_until"])
                )),
                Cell::text(page.code("pass-status", p["status"].as_str().unwrap_or_default())),
            ]
        })
        .collect()
}

fn passage_rows(page: &Page, v: &Value, _staff: bool) -> Vec<Vec<Cell>> {
    items(v)
        .map(|g| {
            let direction = page.code(
                "linked-direction",
                g["direction"].as_str().unwrap_or_default(),
            );
            vec![
                Cell::text(when(page, &g["at"])),
                Cell::text(g["gate_name"].as_str().unwrap_or_default()),
                if g["fever"].as_bool() == Some(true) {
                    Cell::strong(format!("{direction} · {}", page.t("web-linked-fever")))
                } else {
                    Cell::text(direction)
                },
            ]
        })
        .collect()
}
