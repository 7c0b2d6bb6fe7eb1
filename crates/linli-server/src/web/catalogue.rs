//! The routing catalogue (派单目录) and the working-day calendar as pages, for the district and
//! city administrators who keep them (`RoutingAdmin`); dispatchers (`ReportDispatch`) may read
//! the catalogue. Same store calls as `api::reports`: a change is a new, audited version of a
//! rule, and a calendar year is entered the way the State Council notice reads (days and
//! ranges), so next year's arrangement can go in the day it is published.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use linli_core::auth::{Action, Grant, Principal};
use linli_core::reports::calendar::parse_day_list;
use linli_core::{AppError, ErrorKind};
use linli_store::audit::Actor;
use linli_store::reports::catalogue::{
    CalendarYearInput, CalendarYearView, RoutingRule, RoutingRuleInput,
};

use crate::AppState;
use crate::manifest::Pages;
use crate::web::{Page, WebResult, WebUser, check_csrf, error_page, or_page, render};

pub fn pages() -> Pages {
    Pages::new()
        .get("/admin/routing", rules)
        .post("/admin/routing", save_rule)
        .get("/admin/routing/new", new_rule)
        .get("/admin/routing/{key}", edit_rule)
        .get("/admin/calendar", calendar)
        .post("/admin/calendar", save_year)
}

/// A rule as the list shows it: names instead of ids.
struct RuleRow {
    rule: RoutingRule,
    category: String,
    area: String,
    unit: String,
}

/// Names of categories, places and units for the pages (id → name in the reader's language).
struct Names {
    categories: Vec<(String, String)>,
    areas: Vec<(String, String)>,
    units: Vec<(String, String)>,
}

impl Names {
    fn of(list: &[(String, String)], id: &str) -> String {
        list.iter()
            .find(|(k, _)| k == id)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| id.to_string())
    }
}

/// The categories, the areas a rule may cover (the caller's top places down to communities)
/// and the units that can handle reports, inside the grant.
async fn names(s: &AppState, page: &Page, p: &Principal, g: &Grant) -> Result<Names, AppError> {
    let categories = s
        .store
        .report_categories()
        .await?
        .into_iter()
        .map(|c| {
            let name = page.label_name(&c.name_zh, &c.name_en);
            (c.code, name)
        })
        .collect();
    let mut areas: Vec<(String, String)> = Vec::new();
    for kind in ["city", "district", "street", "community"] {
        for p in s.store.places(g, None, Some(kind)).await? {
            // `places` lists only places inside the grant's area.
            if !areas.iter().any(|(id, _)| *id == p.id) {
                areas.push((p.id, format!("{} · {}", page.code("kind", kind), p.name)));
            }
        }
    }
    let mut units = Vec::new();
    let orgs = p.grant(Action::OrgRead)?;
    for kind in ["committee", "property_company", "department"] {
        for o in s.store.orgs(&orgs, Some(kind)).await? {
            units.push((o.id, o.name));
        }
    }
    Ok(Names {
        categories,
        areas,
        units,
    })
}

fn read_grant(user: &WebUser) -> Result<Grant, axum::response::Response> {
    or_page(
        &user.page,
        user.principal
            .grant(Action::RoutingAdmin)
            .or_else(|_| user.principal.grant(Action::ReportDispatch))
            .map_err(AppError::from),
    )
}

fn admin_grant(user: &WebUser) -> Result<Grant, axum::response::Response> {
    or_page(
        &user.page,
        user.principal
            .grant(Action::RoutingAdmin)
            .map_err(AppError::from),
    )
}

#[derive(Template)]
#[template(path = "routing.html")]
struct RulesTpl {
    page: Page,
    rows: Vec<RuleRow>,
    can_edit: bool,
    flash: Option<String>,
}

#[derive(Deserialize)]
struct Saved {
    saved: Option<String>,
}

async fn rules(State(s): State<AppState>, user: WebUser, Query(q): Query<Saved>) -> WebResult {
    let g = read_grant(&user)?;
    let list = or_page(&user.page, s.store.routing_rules(&g, false).await)?;
    let n = or_page(&user.page, names(&s, &user.page, &user.principal, &g).await)?;
    // Rule areas may lie above the caller's own (a district rule seen by a committee).
    let area_ids: Vec<&str> = list.iter().map(|r| r.area_id.as_str()).collect();
    let area_names = or_page(&user.page, s.store.place_names(&area_ids).await)?;
    let unit_ids: Vec<String> = list.iter().map(|r| r.unit_id.clone()).collect();
    let mut unit_names = Vec::new();
    for id in unit_ids {
        if !unit_names.iter().any(|(k, _): &(String, String)| *k == id) {
            let name = s
                .store
                .org_name(&id)
                .await
                .ok()
                .flatten()
                .unwrap_or_else(|| id.clone());
            unit_names.push((id, name));
        }
    }
    let rows = list
        .into_iter()
        .map(|rule| RuleRow {
            category: Names::of(&n.categories, &rule.category),
            area: area_names
                .get(&rule.area_id)
                .map(|x| x.1.clone())
                .unwrap_or_else(|| rule.area_id.clone()),
            unit: Names::of(&unit_names, &rule.unit_id),
            rule,
        })
        .collect();
    let flash = q.saved.map(|_| user.page.t("web-saved"));
    let can_edit = user.principal.can(Action::RoutingAdmin);
    Ok(render(&RulesTpl {
        page: user.page,
        rows,
        can_edit,
        flash,
    }))
}

/// The rule form's fields (strings as typed, so a refused form comes back as it was).
#[derive(Debug, Clone, Deserialize)]
struct RuleForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    rule_key: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    area_id: String,
    #[serde(default)]
    unit_id: String,
    #[serde(default)]
    deadline_unit: String,
    #[serde(default)]
    sign_by: String,
    #[serde(default)]
    first_contact_by: String,
    #[serde(default)]
    resolve_by: String,
    #[serde(default)]
    dispatch_mode: String,
    #[serde(default)]
    paid: Option<String>,
    #[serde(default)]
    return_visit: String,
    #[serde(default)]
    visit_sample_percent: String,
    #[serde(default)]
    notice_zh: String,
    #[serde(default)]
    notice_en: String,
}

impl Default for RuleForm {
    fn default() -> Self {
        RuleForm {
            _csrf: String::new(),
            rule_key: String::new(),
            category: String::new(),
            area_id: String::new(),
            unit_id: String::new(),
            deadline_unit: "workdays".into(),
            sign_by: "1".into(),
            first_contact_by: "2".into(),
            resolve_by: "5".into(),
            dispatch_mode: "assign".into(),
            paid: None,
            return_visit: "always".into(),
            visit_sample_percent: "30".into(),
            notice_zh: String::new(),
            notice_en: String::new(),
        }
    }
}

impl From<&RoutingRule> for RuleForm {
    fn from(r: &RoutingRule) -> Self {
        RuleForm {
            _csrf: String::new(),
            rule_key: r.rule_key.clone(),
            category: r.category.clone(),
            area_id: r.area_id.clone(),
            unit_id: r.unit_id.clone(),
            deadline_unit: r.deadline_unit.clone(),
            sign_by: r.sign_by.to_string(),
            first_contact_by: r.first_contact_by.to_string(),
            resolve_by: r.resolve_by.to_string(),
            dispatch_mode: r.dispatch_mode.clone(),
            paid: r.paid.then(|| "1".into()),
            return_visit: r.return_visit.clone(),
            visit_sample_percent: r.visit_sample_percent.to_string(),
            notice_zh: r.notice_zh.clone(),
            notice_en: r.notice_en.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "routing_form.html")]
struct RuleFormTpl {
    page: Page,
    form: RuleForm,
    categories: Vec<(String, String)>,
    areas: Vec<(String, String)>,
    units: Vec<(String, String)>,
    /// Earlier versions of the rule being edited, newest first.
    history: Vec<RuleRow>,
    error: Option<String>,
}

impl RuleFormTpl {
    /// The options of a fixed choice, with the one in the form marked.
    fn choices(&self, current: &str, values: &[&'static str]) -> Vec<(&'static str, bool)> {
        values.iter().map(|v| (*v, *v == current)).collect()
    }
}

async fn form_page(
    s: &AppState,
    user: WebUser,
    form: RuleForm,
    history: Vec<RoutingRule>,
    error: Option<String>,
) -> WebResult {
    let g = admin_grant(&user)?;
    let n = or_page(&user.page, names(s, &user.page, &user.principal, &g).await)?;
    let history = history
        .into_iter()
        .map(|rule| RuleRow {
            category: Names::of(&n.categories, &rule.category),
            area: Names::of(&n.areas, &rule.area_id),
            unit: Names::of(&n.units, &rule.unit_id),
            rule,
        })
        .collect();
    Ok(render(&RuleFormTpl {
        page: user.page,
        form,
        categories: n.categories,
        areas: n.areas,
        units: n.units,
        history,
        error,
    }))
}

async fn new_rule(State(s): State<AppState>, user: WebUser) -> WebResult {
    form_page(&s, user, RuleForm::default(), Vec::new(), None).await
}

async fn edit_rule(State(s): State<AppState>, user: WebUser, Path(key): Path<String>) -> WebResult {
    let g = admin_grant(&user)?;
    let mut versions: Vec<RoutingRule> =
        or_page(&user.page, s.store.routing_rules(&g, true).await)?
            .into_iter()
            .filter(|r| r.rule_key == key)
            .collect();
    versions.sort_by_key(|r| std::cmp::Reverse(r.version));
    let Some(current) = versions.iter().find(|r| r.current).cloned() else {
        return Err(error_page(
            &user.page,
            AppError::not_found("report.rule_not_found"),
        ));
    };
    form_page(&s, user, RuleForm::from(&current), versions, None).await
}

/// A whole number typed into the form; the field named when it is not one.
fn number(field: &str, v: &str) -> Result<i64, AppError> {
    v.trim()
        .parse()
        .map_err(|_| AppError::bad_request("validation.bad_value").arg("field", field.to_string()))
}

async fn save_rule(
    State(s): State<AppState>,
    user: WebUser,
    axum::Form(f): axum::Form<RuleForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let g = admin_grant(&user)?;
    let input = (|| -> Result<RoutingRuleInput, AppError> {
        Ok(RoutingRuleInput {
            rule_key: Some(f.rule_key.clone()).filter(|k| !k.is_empty()),
            category: f.category.clone(),
            area_id: f.area_id.clone(),
            unit_id: f.unit_id.clone(),
            deadline_unit: f.deadline_unit.clone(),
            sign_by: number("sign_by", &f.sign_by)?,
            first_contact_by: number("first_contact_by", &f.first_contact_by)?,
            resolve_by: number("resolve_by", &f.resolve_by)?,
            notice_zh: f.notice_zh.clone(),
            notice_en: f.notice_en.clone(),
            dispatch_mode: f.dispatch_mode.clone(),
            paid: f.paid.is_some(),
            return_visit: f.return_visit.clone(),
            visit_sample_percent: number("visit_sample_percent", &f.visit_sample_percent)?,
        })
    })();
    let saved = match input {
        Ok(input) => {
            s.store
                .put_routing_rule(&g, &Actor::from(&user.principal), input)
                .await
        }
        Err(e) => Err(e),
    };
    match saved {
        Ok(_) => Ok(Redirect::to("/admin/routing?saved=1").into_response()),
        Err(e) if matches!(e.kind, ErrorKind::BadRequest | ErrorKind::NotFound) => {
            let msg = e.message(user.page.lang);
            let mut r = form_page(&s, user, f, Vec::new(), Some(msg)).await?;
            *r.status_mut() = StatusCode::BAD_REQUEST;
            Ok(r)
        }
        Err(e) => Err(error_page(&user.page, e)),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
struct YearForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    year: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    holidays: String,
    #[serde(default)]
    workdays: String,
}

#[derive(Template)]
#[template(path = "calendar.html")]
struct CalendarTpl {
    page: Page,
    years: Vec<CalendarYearView>,
    /// Missing years (this one or next), for the banner.
    missing: Vec<i32>,
    form: YearForm,
    can_edit: bool,
    error: Option<String>,
    flash: Option<String>,
}

impl CalendarTpl {
    fn missing_text(&self) -> String {
        let years: Vec<String> = self.missing.iter().map(i32::to_string).collect();
        self.page
            .t1("web-calendar-missing", "years", &years.join(", "))
    }

    fn counts(&self, y: &CalendarYearView) -> String {
        linli_core::i18n::t_args(
            self.page.lang,
            "web-calendar-count",
            &[
                ("holidays", y.holidays.len().to_string()),
                ("workdays", y.workdays.len().to_string()),
            ],
        )
    }
}

#[derive(Deserialize)]
struct CalendarQuery {
    /// Prefill the form with this year's data (to correct it).
    year: Option<i32>,
    saved: Option<String>,
}

async fn calendar_page(
    s: &AppState,
    user: WebUser,
    form: YearForm,
    error: Option<String>,
    flash: Option<String>,
) -> WebResult {
    let years = or_page(&user.page, s.store.calendar_years().await)?;
    // The same check as `/readyz` and the report pages' banner (the year in the configured time zone).
    let missing = or_page(&user.page, s.store.calendar_missing_years().await)?;
    let can_edit = user.principal.can(Action::RoutingAdmin);
    Ok(render(&CalendarTpl {
        page: user.page,
        years,
        missing,
        form,
        can_edit,
        error,
        flash,
    }))
}

async fn calendar(
    State(s): State<AppState>,
    user: WebUser,
    Query(q): Query<CalendarQuery>,
) -> WebResult {
    // Every report page's banner links here: anyone who works reports may read the calendar.
    or_page(
        &user.page,
        user.principal
            .grant(Action::ReportRead)
            .or_else(|_| user.principal.grant(Action::RoutingAdmin))
            .map_err(AppError::from),
    )?;
    let mut form = YearForm::default();
    if let Some(y) = q.year {
        let known = or_page(&user.page, s.store.calendar_years().await)?;
        match known.into_iter().find(|v| v.year == y) {
            Some(v) => {
                form.year = v.year.to_string();
                form.source = v.source;
                form.holidays = v.holidays.join("\n");
                form.workdays = v.workdays.join("\n");
            }
            None => form.year = y.to_string(),
        }
    }
    let flash = q.saved.map(|_| user.page.t("web-saved"));
    calendar_page(&s, user, form, None, flash).await
}

async fn save_year(
    State(s): State<AppState>,
    user: WebUser,
    axum::Form(f): axum::Form<YearForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let g = admin_grant(&user)?;
    let input = (|| -> Result<CalendarYearInput, AppError> {
        let year: i32 = f
            .year
            .trim()
            .parse()
            .map_err(|_| AppError::bad_request("validation.bad_value").arg("field", "year"))?;
        // The error names the field as the form labels it.
        let days = |label: &str, text: &str| -> Result<Vec<String>, AppError> {
            parse_day_list(text, year)
                .map(|v| v.iter().map(|d| d.format("%Y-%m-%d").to_string()).collect())
                .map_err(|entry| {
                    AppError::bad_request("calendar.bad_entry")
                        .arg("field", user.page.t(label))
                        .arg("entry", entry)
                })
        };
        Ok(CalendarYearInput {
            year,
            source: f.source.clone(),
            holidays: days("web-calendar-holidays", &f.holidays)?,
            workdays: days("web-calendar-workdays", &f.workdays)?,
        })
    })();
    let saved = match input {
        Ok(input) => {
            s.store
                .put_calendar_year(&g, &Actor::from(&user.principal), input)
                .await
        }
        Err(e) => Err(e),
    };
    match saved {
        Ok(_) => Ok(Redirect::to("/admin/calendar?saved=1").into_response()),
        Err(e) if e.kind == ErrorKind::BadRequest => {
            let msg = e.message(user.page.lang);
            let mut r = calendar_page(&s, user, f, Some(msg), None).await?;
            *r.status_mut() = StatusCode::BAD_REQUEST;
            Ok(r)
        }
        Err(e) => Err(error_page(&user.page, e)),
    }
}
