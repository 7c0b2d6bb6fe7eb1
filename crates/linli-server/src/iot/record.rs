//! How the pages show the IoT module's sections of the household record.

use serde_json::Value;

use crate::manifest::{Cell, RecordView};
use crate::web::Page;

pub static DEVICES: RecordView = RecordView {
    section: &linli_store::iot::record::DEVICES,
    title: "web-linked-devices",
    headers: &["web-linked-what", "web-linked-kind", "web-linked-last-seen"],
    rows: device_rows,
};

pub static ALARMS: RecordView = RecordView {
    section: &linli_store::iot::record::ALARMS,
    title: "web-linked-alarms",
    headers: &[
        "web-linked-when",
        "web-linked-kind",
        "safety-severity",
        "web-status",
    ],
    rows: alarm_rows,
};

pub static CARE: RecordView = RecordView {
    section: &linli_store::iot::record::CARE,
    title: "web-linked-care",
    headers: &[
        "web-linked-member",
        "web-linked-contacts",
        "web-linked-checkin",
    ],
    rows: care_rows,
};

fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

fn when(page: &Page, v: &Value) -> String {
    v.as_i64().map_or("—".to_string(), |t| page.datetime(&t))
}

fn device_rows(page: &Page, v: &Value, _staff: bool) -> Vec<Vec<Cell>> {
    items(v)
        .map(|d| {
            vec![
                Cell::text(d["name"].as_str().unwrap_or_default()),
                Cell::text(page.code("safety-kind", d["kind"].as_str().unwrap_or_default())),
                Cell::text(when(page, &d["last_seen_at"])),
            ]
        })
        .collect()
}

fn alarm_rows(page: &Page, v: &Value, _staff: bool) -> Vec<Vec<Cell>> {
    items(v)
        .map(|a| {
            let status = match (a["active"].as_bool(), a["acknowledged"].as_bool()) {
                (Some(true), Some(true)) => Cell::text(page.t("web-linked-alarm-acked")),
                (Some(true), _) => Cell::strong(page.t("web-linked-alarm-active")),
                _ => Cell::text(page.t("web-linked-alarm-cleared")),
            };
            let severity = a["severity"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase();
            vec![
                Cell::text(when(page, &a["started_at"])),
                Cell::text(page.code("safety-alarm", a["alarm_type"].as_str().unwrap_or_default())),
                Cell::text(page.t(&format!("safety-sev-{severity}"))),
                status,
            ]
        })
        .collect()
}

fn care_rows(page: &Page, v: &Value, staff: bool) -> Vec<Vec<Cell>> {
    items(v)
        .map(|c| {
            let contacts: Vec<String> = items(&c["contacts"])
                .map(|k| {
                    let name = k["display_name"].as_str().unwrap_or_default();
                    match k["relation"].as_str().filter(|r| !r.is_empty()) {
                        Some(r) => format!("{name}（{r}）"),
                        None => name.to_string(),
                    }
                })
                .collect();
            let name = c["person_name"].as_str().unwrap_or_default();
            // Staff open the member's contacts to change them (whom the SOS calls first).
            let who = match c["person_id"].as_str() {
                Some(id) if staff => Cell::link(name, format!("/staff/persons/{id}/care")),
                _ => Cell::strong(name),
            };
            vec![
                who,
                Cell::text(if contacts.is_empty() {
                    "—".to_string()
                } else {
                    contacts.join(" → ")
                }),
                Cell::text(when(page, &c["last_checkin_at"])),
            ]
        })
        .collect()
}
