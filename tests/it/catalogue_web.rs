//! The routing catalogue (派单目录) and working-day calendar pages: an administrator changes a
//! rule (a new, audited version; the history shows both), enters a year of the calendar the way
//! the State Council notice reads it; bad entries are refused with the entry named and change
//! nothing; dispatchers read the catalogue but cannot change it; forms need the CSRF token.

use serde_json::Value;

use crate::common::{Doc, Session, TestApp, post_form};

const ROUTING_FORM: &str = "main form#routing-form[action='/admin/routing']";
const CALENDAR_FORM: &str = "main form#calendar-form[action='/admin/calendar']";

/// The value a form control of `form` sends (an input's value, the selected option, a
/// textarea's text).
#[track_caller]
fn field(doc: &Doc, form: &str, name: &str) -> String {
    doc.form_values(form, &[])
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no control {name} in {form}"))
        .1
}

async fn audit_count(app: &TestApp, action: &str) -> i64 {
    let row = sqlx::query("SELECT COUNT(*) FROM audit_log WHERE action = $1")
        .bind(action.to_string())
        .fetch_one(&app.store.db.read)
        .await
        .unwrap();
    sqlx::Row::get::<i64, _>(&row, 0)
}

#[tokio::test]
async fn administrators_edit_the_catalogue_as_new_versions() {
    let app = TestApp::demo().await;
    let district = app.login("district").await;
    let committee = app.login("committee").await;

    let list = app.get(&district, "/admin/routing").await;
    assert_eq!(list.status, 200);
    let doc = list.doc();
    doc.assert_inside("table#routing-rules", "main");
    assert!(
        doc.texts("main table#routing-rules tbody td")
            .iter()
            .any(|t| t.contains("江城物业")),
        "{}",
        doc.main_html()
    );
    // The elevator rule of the property company, in clock hours.
    let rules: Value = app.get(&district, "/api/v1/routing-rules").await.ok();
    let rule = rules
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["category"] == "repair_elevator")
        .unwrap()
        .clone();
    let key = rule["rule_key"].as_str().unwrap().to_string();
    doc.one(&format!(
        "main table#routing-rules tr[data-rule='{key}'] a[href='/admin/routing/{key}']"
    ));

    // The edit form holds the current version; saving makes version 2, audited.
    let page = app
        .get(&district, &format!("/admin/routing/{key}"))
        .await
        .doc();
    assert_eq!(field(&page, ROUTING_FORM, "rule_key"), key);
    assert_eq!(field(&page, ROUTING_FORM, "deadline_unit"), "hours");
    let csrf = page.hidden(ROUTING_FORM, "_csrf");
    let before = audit_count(&app, "routing_rule.put").await;
    let mut fields: Vec<(&str, String)> = [
        "rule_key",
        "category",
        "area_id",
        "unit_id",
        "deadline_unit",
        "sign_by",
        "first_contact_by",
        "dispatch_mode",
        "return_visit",
        "visit_sample_percent",
    ]
    .iter()
    .map(|n| (*n, field(&page, ROUTING_FORM, n)))
    .collect();
    fields.push(("_csrf", csrf.clone()));
    fields.push(("resolve_by", "12".into()));
    fields.push(("notice_zh", "电梯故障12小时内修复".into()));
    let as_refs = |f: &[(&'static str, String)]| -> Vec<(&'static str, String)> { f.to_vec() };
    let send = |f: Vec<(&'static str, String)>| {
        let (app, district) = (&app, &district);
        async move {
            let v: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post_form(app, district, "/admin/routing", &v).await
        }
    };
    let r = send(as_refs(&fields)).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(audit_count(&app, "routing_rule.put").await, before + 1);
    let versions: Value = app
        .get(&district, "/api/v1/routing-rules?all_versions=true")
        .await
        .ok();
    let mine: Vec<&Value> = versions
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["rule_key"] == key.as_str())
        .collect();
    assert_eq!(mine.len(), 2);
    let current = mine.iter().find(|r| r["current"] == true).unwrap();
    assert_eq!(current["version"], 2);
    assert_eq!(current["resolve_by"], 12);
    assert_eq!(current["notice_zh"], "电梯故障12小时内修复");
    let page = app
        .get(&district, &format!("/admin/routing/{key}"))
        .await
        .doc();
    let versions: Vec<String> = page
        .texts("main table#routing-history tbody tr td:first-child")
        .into_iter()
        .map(|v| v.split(' ').next().unwrap_or_default().to_string())
        .collect();
    assert!(
        versions.contains(&"v1".to_string()) && versions.contains(&"v2".to_string()),
        "{versions:?}"
    );

    // Bad input: a deadline that is not a number, deadlines out of order — the form comes back
    // with the reason, and nothing is written.
    let mut bad = fields.clone();
    bad.retain(|(k, _)| *k != "resolve_by");
    bad.push(("resolve_by", "十二".into()));
    let r = send(bad).await;
    assert_eq!(r.status, 400);
    assert!(!r.doc().text("main #routing-error[role=alert]").is_empty());
    let mut bad = fields.clone();
    bad.retain(|(k, _)| *k != "resolve_by" && *k != "sign_by");
    bad.push(("sign_by", "30".into()));
    bad.push(("resolve_by", "2".into()));
    assert_eq!(send(bad).await.status, 400);
    let mut forged = fields.clone();
    forged.retain(|(k, _)| *k != "_csrf");
    assert_eq!(send(forged).await.status, 403);
    assert_eq!(audit_count(&app, "routing_rule.put").await, before + 1);

    // A dispatcher reads the catalogue, without edit links, and cannot post to it.
    let doc = app.get(&committee, "/admin/routing").await.doc();
    doc.assert_inside("table#routing-rules", "main");
    assert!(!doc.has("#routing-new"));
    assert!(!doc.has("main a[href^='/admin/routing/']"), "no edit links");
    let v: Vec<(&str, &str)> = vec![("_csrf", committee.csrf.as_str()), ("category", "inquiry")];
    assert_eq!(
        post_form(&app, &committee, "/admin/routing", &v)
            .await
            .status,
        403
    );
    assert_eq!(app.get(&committee, "/admin/routing/new").await.status, 403);
    let resident = app.login("resident").await;
    assert_eq!(app.get(&resident, "/admin/routing").await.status, 403);
    app.close().await;
}

#[tokio::test]
async fn a_year_of_the_calendar_is_entered_as_the_notice_reads() {
    let app = TestApp::demo().await;
    let district: Session = app.login("district").await;
    let page = app.get(&district, "/admin/calendar").await;
    assert_eq!(page.status, 200);
    let doc = page.doc();
    assert!(
        doc.has("main table#calendar-years tr[data-year='2026']"),
        "the built-in year"
    );
    // The banner follows the API's warning (a missing current or next year).
    let info: Value = app.get(&district, "/api/v1/work-calendar").await.ok();
    assert_eq!(
        doc.has("main #calendar-missing[role=alert]"),
        info["warning"].is_string()
    );
    let csrf = doc.hidden(CALENDAR_FORM, "_csrf");
    let before = audit_count(&app, "calendar.put_year").await;
    let post = |holidays: &'static str, workdays: &'static str| {
        let (app, district, csrf) = (&app, &district, csrf.clone());
        async move {
            post_form(
                app,
                district,
                "/admin/calendar",
                &[
                    ("_csrf", csrf.as_str()),
                    ("year", "2030"),
                    ("source", "测试：2030年节假日安排"),
                    ("holidays", holidays),
                    ("workdays", workdays),
                ],
            )
            .await
        }
    };
    // Not a date of the year; a weekday as a make-up working day; a day both off and worked.
    let r = post("01-01\n02-30", "").await;
    assert_eq!(r.status, 400);
    assert!(
        r.doc().text("main #calendar-error").contains("02-30"),
        "the entry is named"
    );
    let r = post("01-01", "2030-01-07").await;
    assert_eq!(r.status, 400);
    assert!(r.doc().text("main #calendar-error").contains("2030-01-07"));
    let r = post("01-05", "01-05").await;
    assert_eq!(r.status, 400);
    assert_eq!(audit_count(&app, "calendar.put_year").await, before);
    assert_eq!(
        app.get(&district, "/api/v1/work-calendar/2030")
            .await
            .status,
        404
    );

    // Days and ranges as the notice reads; saved, audited, readable through the API.
    let r = post("2030-01-01，02-02~02-08、05-01至05-05", "2030-01-05 02-09").await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(audit_count(&app, "calendar.put_year").await, before + 1);
    let year: Value = app.get(&district, "/api/v1/work-calendar/2030").await.ok();
    assert_eq!(year["holidays"].as_array().unwrap().len(), 1 + 7 + 5);
    assert_eq!(
        year["workdays"],
        serde_json::json!(["2030-01-05", "2030-02-09"])
    );
    let doc = app.get(&district, "/admin/calendar").await.doc();
    assert!(doc.has("main table#calendar-years tr[data-year='2030']"));
    // Correcting a year starts from what is stored.
    let doc = app.get(&district, "/admin/calendar?year=2030").await.doc();
    assert_eq!(field(&doc, CALENDAR_FORM, "year"), "2030");
    assert!(field(&doc, CALENDAR_FORM, "holidays").contains("2030-02-05"));
    assert_eq!(
        field(&doc, CALENDAR_FORM, "source"),
        "测试：2030年节假日安排"
    );

    // Staff who may only read see the years but no form.
    let committee = app.login("committee").await;
    let doc = app.get(&committee, "/admin/calendar").await.doc();
    assert!(doc.has("main table#calendar-years tr[data-year='2030']"));
    assert!(!doc.has("#calendar-form") && !doc.has("form[action='/admin/calendar']"));
    let r = post_form(
        &app,
        &committee,
        "/admin/calendar",
        &[
            ("_csrf", committee.csrf.as_str()),
            ("year", "2031"),
            ("source", "x"),
        ],
    )
    .await;
    assert_eq!(r.status, 403);
    app.close().await;
}
