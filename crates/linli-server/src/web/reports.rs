//! Reports pages (报事 / 报修 / 投诉, issue #4 screens): the resident's "my reports", the filing
//! form with similar open reports and "me too", the public timeline with the rating form; the
//! staff queue, the full timeline with one form per action; and the metrics dashboard with a
//! server-drawn SVG bar chart. Same store calls and grants as `api::reports`.

use askama::Template;
use axum::extract::multipart::MultipartError;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use linli_core::auth::Action;
use linli_core::i18n::{self, Lang};
use linli_core::{AppError, ErrorKind};
use linli_store::reports::Report;
use linli_store::reports::actions::ReportAction;
use linli_store::reports::catalogue::Category;
use linli_store::reports::images::{MAX_PHOTO_BYTES, MAX_PHOTOS};
use linli_store::reports::intake::{Duplicate, DuplicateQuery, NewReport};
use linli_store::reports::metrics::{StatsQuery, StatsRow, StatsScope};
use linli_store::reports::queries::{ReportQuery, ReportView};
use linli_store::reports::repairs::Assignee;
use linli_store::reports::{community_prefix, path_ids};

use crate::AppState;
use crate::extract::field_text;
use crate::manifest::Pages;
use crate::web::registry::PlanBuilding;
use crate::web::{
    FieldErrors, FormOnce, Once, Page, WebResult, WebUser, check_csrf, error_page, or_page, render,
};

pub fn pages() -> Pages {
    Pages::new()
        .get("/me/reports", my_reports)
        .get("/me/reports/new", new_report)
        .post_limited("/me/reports/new", create_report, NEW_FORM_LIMIT)
        .get("/me/reports/{id}", my_report)
        .get("/reports/{id}", open_report)
        .post("/me/reports/{id}/me-too", me_too)
        .post("/me/reports/{id}/rate", rate)
        .post("/me/reports/{id}/quote", answer_quote)
        .post_limited(
            "/reports/{id}/photos",
            upload_photo,
            MAX_PHOTO_BYTES + 64 * 1024,
        )
        .get("/staff/reports", staff_queue)
        .get("/staff/reports/stats", stats)
        .get("/staff/reports/{id}", staff_report)
        .post("/staff/reports/{id}/act", staff_act)
}

/// The statuses, in the order of the state machine (filters, labels).
const STATUSES: [&str; 7] = [
    "submitted",
    "accepted",
    "dispatched",
    "in_progress",
    "replied",
    "awaiting_visit",
    "closed",
];
const PAGE_SIZE: i64 = 20;

fn category_name(lang: Lang, cats: &[Category], code: &str) -> String {
    cats.iter()
        .find(|c| c.code == code)
        .map(|c| {
            if lang == Lang::En && !c.name_en.is_empty() {
                c.name_en.clone()
            } else {
                c.name_zh.clone()
            }
        })
        .unwrap_or_else(|| code.to_string())
}

fn resident(user: &WebUser) -> Result<(), AppError> {
    if user.principal.own_households().is_empty() {
        return Err(AppError::new(
            ErrorKind::Forbidden,
            "registry.not_a_resident",
        ));
    }
    Ok(())
}

fn staff(user: &WebUser) -> Result<(), AppError> {
    if !user.page.staff {
        return Err(AppError::new(ErrorKind::Forbidden, "auth.forbidden"));
    }
    user.principal.grant(Action::ReportRead)?;
    Ok(())
}

/// The banner staff report pages show while the working-day calendar lacks the current or the
/// next year (deadlines into it are counted in clock days until an administrator adds it).
/// The missing-calendar warning, for those who can enter the year (routing administrators):
/// to everybody else it would be an alarm they cannot act on, with a link they cannot open.
async fn calendar_banner(s: &AppState, user: &WebUser) -> Option<String> {
    let page = &user.page;
    if !user.principal.can(Action::RoutingAdmin) {
        return None;
    }
    let missing = s.store.calendar_missing_years().await.ok()?;
    let years: Vec<String> = missing.iter().map(i32::to_string).collect();
    (!years.is_empty()).then(|| page.t1("web-report-calendar-missing", "years", &years.join(", ")))
}

// ---------------------------------------------------------------------------------------------
// Resident

#[derive(Template)]
#[template(path = "reports_mine.html")]
struct MineTpl {
    page: Page,
    reports: Vec<Report>,
    cats: Vec<Category>,
}

impl MineTpl {
    fn cat(&self, code: &str) -> String {
        category_name(self.page.lang, &self.cats, code)
    }
}

async fn my_reports(State(s): State<AppState>, user: WebUser) -> WebResult {
    or_page(&user.page, resident(&user))?;
    let v = or_page(&user.page, s.store.report_viewer(&user.principal).await)?;
    let q = ReportQuery {
        mine: Some(true),
        limit: Some(100),
        ..ReportQuery::default()
    };
    let reports = or_page(&user.page, s.store.reports(&v, &q).await)?.items;
    let cats = or_page(&user.page, s.store.report_categories().await)?;
    Ok(render(&MineTpl {
        page: user.page,
        reports,
        cats,
    }))
}

/// The filing form as typed (kept when it comes back with an error).
#[derive(Debug, Clone, Default, Deserialize)]
struct NewForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    _once: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    description: String,
    /// Empty: "by the position below" (the point or the spot on the site plan).
    #[serde(default)]
    place_id: String,
    #[serde(default)]
    lat: String,
    #[serde(default)]
    lon: String,
    #[serde(default)]
    plan_x: String,
    #[serde(default)]
    plan_y: String,
    #[serde(default)]
    anonymous: Option<String>,
    #[serde(default)]
    public: Option<String>,
}

impl NewForm {
    /// One text part of the multipart form.
    fn set(&mut self, name: &str, value: String) {
        match name {
            "_csrf" => self._csrf = value,
            "_once" => self._once = value,
            "category" => self.category = value,
            "description" => self.description = value,
            "place_id" => self.place_id = value,
            "lat" => self.lat = value,
            "lon" => self.lon = value,
            "plan_x" => self.plan_x = value,
            "plan_y" => self.plan_y = value,
            "anonymous" => self.anonymous = Some(value),
            "public" => self.public = Some(value),
            _ => {}
        }
    }
}

/// A photo as sent with the form: its file name (to name it in an error) and its bytes.
struct Upload {
    name: String,
    bytes: Vec<u8>,
}

/// The longest text field of a multipart form kept (the description's limit is far below).
const MAX_TEXT_FIELD: usize = 64 * 1024;

/// The largest filing form: every photo the store accepts at its size limit, plus the text.
const NEW_FORM_LIMIT: usize = MAX_PHOTOS as usize * (MAX_PHOTO_BYTES + 64 * 1024) + 256 * 1024;

#[derive(Template)]
#[template(path = "reports_new.html")]
struct NewTpl {
    page: Page,
    cats: Vec<Category>,
    places: Vec<(String, String)>,
    form: NewForm,
    similar: Vec<Duplicate>,
    checked: bool,
    once: String,
    errors: FieldErrors,
    /// The site plan of the resident's community (buildings with a footprint), if it has one.
    plan: Vec<PlanBuilding>,
    /// The spot typed or tapped on the plan, when it is a pair of numbers.
    mark: Option<(i64, i64)>,
    /// Photos were sent with a form that came back: they must be chosen again.
    photos_again: bool,
}

impl NewTpl {
    fn cat(&self, code: &str) -> String {
        category_name(self.page.lang, &self.cats, code)
    }
    fn cat_label(&self, c: &Category) -> String {
        category_name(self.page.lang, std::slice::from_ref(c), &c.code)
    }
    fn photos_hint(&self) -> String {
        i18n::t_args(
            self.page.lang,
            "web-report-photos-hint",
            &[
                ("max", MAX_PHOTOS.to_string()),
                ("mb", (MAX_PHOTO_BYTES / 1_048_576).to_string()),
            ],
        )
    }
    fn mark_x(&self) -> i64 {
        self.mark.map_or(0, |m| m.0)
    }
    fn mark_y(&self) -> i64 {
        self.mark.map_or(0, |m| m.1)
    }
}

/// The places a resident may report at: own home first, then its building(s) and community.
async fn resident_places(s: &AppState, user: &WebUser) -> Result<Vec<(String, String)>, AppError> {
    let mut ids: Vec<String> = Vec::new();
    for (_, path) in s.store.own_homes(&user.principal).await? {
        let p = path_ids(&path);
        {
            for id in p.iter().skip(3).rev() {
                if !ids.contains(id) {
                    ids.push(id.clone());
                }
            }
        }
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let names = s.store.place_names(&refs).await?;
    let home = user.page.t("web-report-place-home");
    Ok(ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let name = names.get(id).map(|n| n.1.clone()).unwrap_or_default();
            let label = if i == 0 {
                format!("{home} · {name}")
            } else {
                name
            };
            (id.clone(), label)
        })
        .collect())
}

/// The community of the resident's home (first household) and the buildings drawn on its site
/// plan: the plan offered on the form, and what a spot on it is resolved against.
async fn home_plan(
    s: &AppState,
    user: &WebUser,
) -> Result<Option<(String, Vec<PlanBuilding>)>, AppError> {
    for (_, path) in s.store.own_homes(&user.principal).await? {
        if let Some(community) = community_prefix(&path)
            && let Some(id) = path_ids(&community).pop()
        {
            let buildings = s.store.plan_buildings(&community).await?;
            let plan = buildings
                .into_iter()
                .filter_map(PlanBuilding::from_place)
                .collect();
            return Ok(Some((id, plan)));
        }
    }
    Ok(None)
}

async fn new_form_page(
    s: &AppState,
    user: WebUser,
    form: NewForm,
    errors: FieldErrors,
    check: bool,
    photos_again: bool,
) -> Result<NewTpl, axum::response::Response> {
    let cats = or_page(&user.page, s.store.report_categories().await)?;
    let places = or_page(&user.page, resident_places(s, &user).await)?;
    let plan = or_page(&user.page, home_plan(s, &user).await)?
        .map(|(_, plan)| plan)
        .unwrap_or_default();
    let checked = check && !form.category.is_empty() && !form.place_id.is_empty();
    let mut similar = Vec::new();
    if checked {
        let q = DuplicateQuery {
            category: form.category.clone(),
            place_id: form.place_id.clone(),
            lat: None,
            lon: None,
        };
        similar = s
            .store
            .report_duplicates(&user.principal, &q)
            .await
            .unwrap_or_default();
    }
    let mark = form
        .plan_x
        .trim()
        .parse()
        .ok()
        .zip(form.plan_y.trim().parse().ok());
    Ok(NewTpl {
        page: user.page,
        cats,
        places,
        form,
        similar,
        checked,
        once: FormOnce::new_token(),
        errors,
        plan,
        mark,
        photos_again,
    })
}

#[derive(Deserialize)]
struct NewQuery {
    #[serde(default)]
    category: String,
    #[serde(default)]
    place_id: String,
    #[serde(default)]
    description: String,
}

async fn new_report(
    State(s): State<AppState>,
    user: WebUser,
    Query(q): Query<NewQuery>,
) -> WebResult {
    or_page(&user.page, resident(&user))?;
    let mut form = NewForm {
        category: q.category,
        place_id: q.place_id,
        description: q.description,
        ..NewForm::default()
    };
    // Home is the default place.
    if form.place_id.is_empty()
        && let Some(p) = or_page(&user.page, resident_places(&s, &user).await)?.first()
    {
        form.place_id = p.0.clone();
    }
    let tpl = new_form_page(&s, user, form, FieldErrors::default(), true, false).await?;
    Ok(render(&tpl))
}

/// Read the filing form: multipart with photos (the page's form), or a plain form without. A
/// photo is read only to just past the store's size limit (the store then refuses it by size,
/// naming it) and the rest of it is skipped, so the fields after it still arrive. A body cut
/// off by the route's limit, or malformed, comes back as the error beside what was read.
async fn read_new_form(s: &AppState, req: Request) -> (NewForm, Vec<Upload>, Option<AppError>) {
    let mut form = NewForm::default();
    let mut uploads = Vec::new();
    let stream_error = |e: MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::new(ErrorKind::PayloadTooLarge, "payload_too_large")
                .arg("limit", format!("{} MB", MAX_PHOTO_BYTES / 1_048_576))
        } else {
            AppError::bad_request("bad_request").arg("detail", e.body_text())
        }
    };
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("multipart/form-data"));
    if !multipart {
        return match axum::Form::<NewForm>::from_request(req, s).await {
            Ok(axum::Form(f)) => (f, uploads, None),
            Err(e) => (
                form,
                uploads,
                Some(AppError::bad_request("bad_request").arg("detail", e.body_text())),
            ),
        };
    }
    let mut mp = match Multipart::from_request(req, s).await {
        Ok(mp) => mp,
        Err(e) => {
            return (
                form,
                uploads,
                Some(AppError::bad_request("bad_request").arg("detail", e.body_text())),
            );
        }
    };
    loop {
        let mut field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return (form, uploads, Some(stream_error(e))),
        };
        let Some(name) = field.name().map(str::to_string) else {
            continue;
        };
        if name == "photos" {
            let file_name = field.file_name().unwrap_or_default().to_string();
            // One photo more than the store takes is kept (so it names the limit); the parts
            // after that are read and dropped.
            let keep = uploads.len() <= MAX_PHOTOS as usize;
            let mut bytes = Vec::new();
            loop {
                match field.chunk().await {
                    Ok(Some(c)) if keep => {
                        let room = (MAX_PHOTO_BYTES + 1).saturating_sub(bytes.len());
                        bytes.extend_from_slice(&c[..c.len().min(room)]);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => return (form, uploads, Some(stream_error(e))),
                }
            }
            if !keep {
                continue;
            }
            // A file input left empty still sends a part, without a name or content.
            if !(file_name.is_empty() && bytes.is_empty()) {
                uploads.push(Upload {
                    name: file_name,
                    bytes,
                });
            }
            continue;
        }
        // Text fields are short (the longest, the description, is checked by the store); one
        // longer than any of them is refused without being kept.
        match field_text(&mut field, MAX_TEXT_FIELD).await {
            Ok(Some(v)) => form.set(&name, v),
            Ok(None) => {
                let e = AppError::bad_request("validation.too_long").arg("field", name);
                return (form, uploads, Some(e));
            }
            Err(e) => return (form, uploads, Some(stream_error(e))),
        }
    }
    (form, uploads, None)
}

/// The numbers of the position fields; what is not a number, or half of a pair, is a field
/// error (ranges and placement are the store's).
struct Position {
    lat: Option<f64>,
    lon: Option<f64>,
    plan: Option<(i64, i64)>,
}

fn read_position(page: &Page, f: &NewForm, errors: &mut FieldErrors) -> Position {
    let mut number = |field: &str, text: &str, bad: &str| -> Option<f64> {
        let t = text.trim();
        if t.is_empty() {
            return None;
        }
        match t.replace(',', ".").parse::<f64>() {
            Ok(v) => Some(v),
            Err(_) => {
                errors.0.insert(field.to_string(), page.t(bad));
                None
            }
        }
    };
    let lat = number("lat", &f.lat, "web-report-lat-invalid");
    let lon = number("lon", &f.lon, "web-report-lon-invalid");
    let px = number("plan_x", &f.plan_x, "web-report-plan-invalid");
    let py = number("plan_y", &f.plan_y, "web-report-plan-invalid");
    for (a, b, field_a, field_b, msg) in [
        (&f.lat, &f.lon, "lat", "lon", "web-report-point-pair"),
        (
            &f.plan_x,
            &f.plan_y,
            "plan_x",
            "plan_y",
            "web-report-plan-pair",
        ),
    ] {
        let (a, b) = (a.trim().is_empty(), b.trim().is_empty());
        if a != b {
            let missing = if a { field_a } else { field_b };
            errors.0.entry(missing.to_string()).or_insert(page.t(msg));
        }
    }
    // Plan coordinates are whole units; the store checks their range.
    let whole = |v: f64| (v.is_finite() && v.fract() == 0.0 && v.abs() < 1e9).then_some(v as i64);
    let plan = match (px, py) {
        (Some(x), Some(y)) => match (whole(x), whole(y)) {
            (Some(x), Some(y)) => Some((x, y)),
            _ => {
                errors
                    .0
                    .insert("plan_x".into(), page.t("web-report-plan-invalid"));
                None
            }
        },
        _ => None,
    };
    Position {
        lat: lat.filter(|_| lon.is_some()),
        lon: lon.filter(|_| lat.is_some()),
        plan,
    }
}

/// The field a store error on the filing form belongs beside, with the message shown there.
fn new_form_errors(page: &Page, e: &AppError, f: &NewForm, names: &[String]) -> FieldErrors {
    let by_point = f.place_id.trim().is_empty() && !f.lat.trim().is_empty();
    let field = match e.code {
        "report.unknown_category" => "category",
        "report.photo_invalid" | "payload_too_large" | "report.too_many_photos" => "photos",
        "report.point_in_no_community" => "lat",
        "report.location_required" | "report.place_outside_community" if by_point => "lat",
        "report.location_required" | "report.place_outside_community" => "place_id",
        _ => "description",
    };
    let mut errors = FieldErrors::from_app(page, e, field);
    let arg = |k: &str| e.args.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    // A bad photo is named; a number out of range gets the field's own wording.
    if let Some(i) = arg("photo").and_then(|i| i.parse::<usize>().ok()) {
        let name = names
            .get(i.wrapping_sub(1))
            .cloned()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("#{i}"));
        let text = i18n::t_args(
            page.lang,
            "web-report-photo-which",
            &[("name", name), ("error", e.message(page.lang))],
        );
        errors.0.insert("photos".into(), text);
    } else if e.code == "validation.bad_value"
        && let Some(field) = arg("field")
    {
        let key = match field.as_str() {
            "lat" => Some("web-report-lat-invalid"),
            "lon" => Some("web-report-lon-invalid"),
            "plan_x" | "plan_y" => Some("web-report-plan-invalid"),
            _ => None,
        };
        if let Some(key) = key {
            errors.0.insert(field, page.t(key));
        }
    }
    errors
}

/// File a report from the phone page: the fields, the position (a place, a point, a spot on the
/// site plan) and up to [`MAX_PHOTOS`] photos, created all or nothing by the store. A bad field
/// or photo brings the form back with the typed values and the error beside the field.
async fn create_report(State(s): State<AppState>, user: WebUser, req: Request) -> WebResult {
    let (f, uploads, read_error) = read_new_form(&s, req).await;
    check_csrf(&user.page, &f._csrf)?;
    or_page(&user.page, resident(&user))?;
    if let Once::Repeat(loc) = s.form_once.claim(&f._once).await {
        return Ok(Redirect::to(loc.as_deref().unwrap_or("/me/reports")).into_response());
    }
    let photos_sent = !uploads.is_empty();
    let back =
        |s: &AppState, user: WebUser, f: NewForm, errors: FieldErrors, status: StatusCode| {
            let s = s.clone();
            async move {
                s.form_once.release(&f._once).await;
                let tpl = new_form_page(&s, user, f, errors, false, photos_sent).await?;
                Ok::<_, axum::response::Response>((status, render(&tpl)).into_response())
            }
        };
    if let Some(e) = read_error {
        let status = StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let errors = FieldErrors::from_app(&user.page, &e, "photos");
        return back(&s, user, f, errors, status).await;
    }
    let mut errors = FieldErrors::default();
    let pos = read_position(&user.page, &f, &mut errors);
    if !errors.is_empty() {
        return back(&s, user, f, errors, StatusCode::BAD_REQUEST).await;
    }
    // "By the position below" with a spot on the site plan: the building drawn there, else the
    // plan's community unless a point decides it.
    let mut place_id = Some(f.place_id.trim().to_string()).filter(|p| !p.is_empty());
    if place_id.is_none()
        && let Some((x, y)) = pos.plan
        && let Some((community, plan)) = or_page(&user.page, home_plan(&s, &user).await)?
    {
        place_id = plan
            .iter()
            .find(|b| b.holds(x, y))
            .map(|b| b.id.clone())
            .or_else(|| pos.lat.is_none().then_some(community));
    }
    let new = NewReport {
        category: f.category.clone(),
        description: f.description.clone(),
        place_id,
        lat: pos.lat,
        lon: pos.lon,
        plan_x: pos.plan.map(|p| p.0),
        plan_y: pos.plan.map(|p| p.1),
        anonymous: f.anonymous.is_some(),
        public: f.public.is_some(),
        ..NewReport::default()
    };
    let (names, photos): (Vec<String>, Vec<Vec<u8>>) =
        uploads.into_iter().map(|u| (u.name, u.bytes)).unzip();
    match s
        .store
        .create_report_with_photos(&user.principal, &s.config.data_dir, new, &photos)
        .await
    {
        Ok(c) => {
            let mut loc = format!("/me/reports/{}", c.created.report.id);
            if c.failed > 0 {
                loc.push_str(&format!("?photos_failed={}", c.failed));
            }
            s.form_once.finish(&f._once, &loc).await;
            Ok(Redirect::to(&loc).into_response())
        }
        Err(e) if matches!(e.kind, ErrorKind::BadRequest | ErrorKind::PayloadTooLarge) => {
            let status = StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::BAD_REQUEST);
            let errors = new_form_errors(&user.page, &e, &f, &names);
            back(&s, user, f, errors, status).await
        }
        Err(e) => {
            s.form_once.release(&f._once).await;
            Err(error_page(&user.page, e))
        }
    }
}

#[derive(Template)]
#[template(path = "reports_detail.html")]
struct DetailTpl {
    page: Page,
    v: ReportView,
    cat: String,
    staff: bool,
    /// Staff: the actions offered in this status.
    actions: Vec<&'static str>,
    /// Staff: units to dispatch / transfer / summon to (id, name).
    units: Vec<(String, String)>,
    /// Staff who may assign: the unit's eligible people.
    assignees: Vec<Assignee>,
    flash: Option<String>,
    /// Staff: the working-day calendar banner.
    calendar_warning: Option<String>,
}

impl DetailTpl {
    fn status(&self, s: &str) -> String {
        self.page.code("report-status", s)
    }
    fn opt_time(&self, t: &Option<i64>) -> String {
        t.map(|t| self.page.datetime(&t))
            .unwrap_or_else(|| "—".into())
    }
    fn yuan(&self, fen: &Option<i64>) -> String {
        fen.map(fen_to_yuan).unwrap_or_else(|| "—".into())
    }
    fn open_tasks(&self, a: &Assignee) -> String {
        self.page
            .t1("web-report-open-tasks", "count", &a.open_tasks.to_string())
    }
    /// Whether the resident is asked to answer a price quote.
    fn quote_waiting(&self) -> bool {
        let r = &self.v.report;
        r.paid && r.status == "in_progress" && r.quote_status.as_deref() == Some("pending")
    }
}

/// ¥12.50 from 1250 fen.
fn fen_to_yuan(fen: i64) -> String {
    linli_core::reports::repairs::yuan(fen)
}

/// Fen from a yuan amount typed in a form ("120", "120.5", "120.50"); `None` if it is not one.
fn yuan_to_fen(s: &str) -> Option<i64> {
    let s = s.trim().trim_start_matches('¥');
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || frac.len() > 2 || !whole.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let frac: i64 = format!("{frac:0<2}").parse().ok()?;
    whole.checked_mul(100)?.checked_add(frac)
}

#[derive(Deserialize)]
struct Flash {
    done: Option<String>,
    /// Filed, but this many photos could not be written (see `create_report_with_photos`).
    photos_failed: Option<usize>,
}

fn flash_text(page: &Page, f: &Flash) -> Option<String> {
    if let Some(n) = f.photos_failed.filter(|n| *n > 0) {
        return Some(page.t1("web-report-photos-failed", "count", &n.to_string()));
    }
    f.done.as_ref().map(|_| page.t("web-saved"))
}

/// The detail page, resident (public timeline) or staff (full, with action forms).
async fn detail(
    s: &AppState,
    user: WebUser,
    id: &str,
    as_staff: bool,
    flash: Option<String>,
) -> WebResult {
    if as_staff {
        or_page(&user.page, staff(&user))?;
    }
    let v = or_page(&user.page, s.store.report_viewer(&user.principal).await)?;
    let view = or_page(&user.page, s.store.report(&v, id).await)?;
    let cats = or_page(&user.page, s.store.report_categories().await)?;
    let cat = category_name(user.page.lang, &cats, &view.report.category);
    let mut actions = Vec::new();
    let mut units = Vec::new();
    let mut assignees = Vec::new();
    if as_staff {
        actions = actions_for(&view.report);
        if view.report.public_requested && !actions.contains(&"moderate") {
            actions.push("moderate");
        }
        // The price is stated by the job's assignee, or a dispatcher for them (the store
        // decides; the page does not offer what would be refused).
        let r = &view.report;
        let may_quote = r.assignee_user_id.as_deref() == Some(user.principal.user_id())
            || user.principal.may(Action::ReportDispatch, &r.path);
        if !may_quote {
            actions.retain(|a| *a != "quote");
        }
        if actions.contains(&"assign") {
            // Only those who may assign get the list (others: the action is not offered).
            match s.store.report_assignees(&user.principal, id).await {
                Ok(list) => assignees = list,
                Err(_) => actions.retain(|a| *a != "assign"),
            }
        }
        if let Ok(g) = user.principal.grant(Action::OrgRead) {
            units = s
                .store
                .orgs(&g, None)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|o| (o.id, o.name))
                .collect();
        }
    }
    let calendar_warning = if as_staff {
        calendar_banner(s, &user).await
    } else {
        None
    };
    Ok(render(&DetailTpl {
        page: user.page,
        v: view,
        cat,
        staff: as_staff,
        actions,
        units,
        assignees,
        flash,
        calendar_warning,
    }))
}

/// The link every notice about a report carries (inbox, e-mail, webhooks): the same for every
/// recipient, it opens the report as the recipient may see it — the staff page for staff of its
/// area or unit, the resident's page for the reporter, the household and neighbours.
async fn open_report(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
) -> WebResult {
    let v = or_page(&user.page, s.store.report_viewer(&user.principal).await)?;
    let view = or_page(&user.page, s.store.report(&v, &id).await)?;
    let to = if view.staff_view && user.page.staff {
        format!("/staff/reports/{id}")
    } else {
        format!("/me/reports/{id}")
    };
    Ok(Redirect::to(&to).into_response())
}

async fn my_report(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Query(f): Query<Flash>,
) -> WebResult {
    let flash = flash_text(&user.page, &f);
    detail(&s, user, &id, false, flash).await
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    _csrf: String,
}

async fn me_too(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    match s.store.report_me_too(&user.principal, &id).await {
        Ok(_) => Ok(Redirect::to(&format!("/me/reports/{id}?done=1")).into_response()),
        Err(e) if e.kind == ErrorKind::Conflict => {
            let msg = e.message(user.page.lang);
            let mut r = detail(&s, user, &id, false, Some(msg)).await?;
            *r.status_mut() = StatusCode::CONFLICT;
            Ok(r)
        }
        Err(e) => Err(error_page(&user.page, e)),
    }
}

#[derive(Deserialize)]
struct RateForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    rating: String,
    #[serde(default)]
    solved: String,
    #[serde(default)]
    public_note: String,
    /// The report's version the page showed: the rating is of the reply read there.
    #[serde(default)]
    version: String,
}

async fn rate(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<RateForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let version = shown(&user, &f.version, "version")?;
    let a = ReportAction {
        action: "visit".into(),
        rating: f.rating.parse().ok(),
        solved: Some(f.solved == "yes"),
        public_note: Some(f.public_note).filter(|n| !n.trim().is_empty()),
        version: Some(version),
        ..ReportAction::default()
    };
    act_and_redirect(&s, user, &id, a, &format!("/me/reports/{id}")).await
}

#[derive(Deserialize)]
struct QuoteAnswerForm {
    #[serde(default)]
    _csrf: String,
    /// `accept` or `decline`.
    #[serde(default)]
    decision: String,
    #[serde(default)]
    public_note: String,
    /// The quote the page showed: its amount in fen and its `quoted_at`.
    #[serde(default)]
    amount_fen: String,
    #[serde(default)]
    quoted_at: String,
}

/// The resident accepts or declines the price quote of a paid repair.
async fn answer_quote(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<QuoteAnswerForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let action = match f.decision.as_str() {
        "accept" => "quote_accept",
        "decline" => "quote_decline",
        _ => {
            return Err(error_page(
                &user.page,
                AppError::bad_request("validation.bad_value").arg("field", "decision"),
            ));
        }
    };
    let a = ReportAction {
        action: action.into(),
        public_note: some(&f.public_note),
        amount_fen: Some(shown(&user, &f.amount_fen, "amount_fen")?),
        quoted_at: Some(shown(&user, &f.quoted_at, "quoted_at")?),
        ..ReportAction::default()
    };
    act_and_redirect(&s, user, &id, a, &format!("/me/reports/{id}")).await
}

/// A number a page drew into a confirmation form (what the person was shown); a form without
/// it is not one of ours.
fn shown(user: &WebUser, v: &str, field: &'static str) -> Result<i64, axum::response::Response> {
    v.trim().parse().map_err(|_| {
        error_page(
            &user.page,
            AppError::bad_request("validation.required").arg("field", field),
        )
    })
}

async fn act_and_redirect(
    s: &AppState,
    user: WebUser,
    id: &str,
    a: ReportAction,
    back: &str,
) -> WebResult {
    match s.store.report_act(&user.principal, id, a).await {
        Ok(_) => Ok(Redirect::to(&format!("{back}?done=1")).into_response()),
        // Illegal moves and bad input come back to the page as the localized message.
        Err(e) if matches!(e.kind, ErrorKind::Conflict | ErrorKind::BadRequest) => {
            let msg = e.message(user.page.lang);
            let mut r = detail(s, user, id, back.starts_with("/staff"), Some(msg)).await?;
            *r.status_mut() = StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::CONFLICT);
            Ok(r)
        }
        Err(e) => Err(error_page(&user.page, e)),
    }
}

/// A short multipart text field (a token, a page name): empty when it is longer than any.
async fn short_text(field: &mut axum::extract::multipart::Field<'_>) -> String {
    field_text(field, 256)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// A photo from the detail page (multipart: `_csrf`, `back`, `photo`); the store validates the
/// image and strips its metadata.
async fn upload_photo(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    mut mp: Multipart,
) -> WebResult {
    let mut csrf = String::new();
    let mut staff_page = false;
    let mut photo: Option<Vec<u8>> = None;
    let too_big = || {
        AppError::new(ErrorKind::PayloadTooLarge, "payload_too_large")
            .arg("limit", format!("{} MB", MAX_PHOTO_BYTES / 1_048_576))
    };
    loop {
        let mut field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(error_page(&user.page, too_big()));
            }
            Err(e) => {
                return Err(error_page(
                    &user.page,
                    AppError::bad_request("bad_request").arg("detail", e.body_text()),
                ));
            }
        };
        match field.name() {
            Some("_csrf") => csrf = short_text(&mut field).await,
            Some("back") => staff_page = short_text(&mut field).await == "staff",
            Some("photo") => match field.bytes().await {
                Ok(b) => photo = Some(b.to_vec()),
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    return Err(error_page(&user.page, too_big()));
                }
                Err(e) => {
                    return Err(error_page(
                        &user.page,
                        AppError::bad_request("bad_request").arg("detail", e.body_text()),
                    ));
                }
            },
            _ => {}
        }
    }
    check_csrf(&user.page, &csrf)?;
    let back = if staff_page {
        format!("/staff/reports/{id}")
    } else {
        format!("/me/reports/{id}")
    };
    let bytes = photo.unwrap_or_default();
    match s
        .store
        .report_add_photo(&user.principal, &s.config.data_dir, &id, &bytes)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("{back}?done=1")).into_response()),
        Err(e) if matches!(e.kind, ErrorKind::BadRequest | ErrorKind::Conflict) => {
            let msg = e.message(user.page.lang);
            let mut r = detail(&s, user, &id, staff_page, Some(msg)).await?;
            *r.status_mut() =
                StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::BAD_REQUEST);
            Ok(r)
        }
        Err(e) => Err(error_page(&user.page, e)),
    }
}

// ---------------------------------------------------------------------------------------------
// Staff

#[derive(Debug, Default, Deserialize)]
struct QueueQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    overdue: String,
    /// `mine` (我的工单), `grab` (待抢单) or empty (all).
    #[serde(default)]
    tab: String,
    #[serde(default)]
    offset: Option<i64>,
    /// Keyset paging: older than this (`created_at.id`, from the previous page's link).
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "reports_queue.html")]
struct QueueTpl {
    page: Page,
    reports: Vec<Report>,
    cats: Vec<Category>,
    statuses: &'static [&'static str],
    q: QueueQuery,
    prev: Option<String>,
    next: Option<String>,
    can_stats: bool,
    calendar_warning: Option<String>,
}

impl QueueTpl {
    fn cat(&self, code: &str) -> String {
        category_name(self.page.lang, &self.cats, code)
    }
    fn cat_label(&self, c: &Category) -> String {
        category_name(self.page.lang, std::slice::from_ref(c), &c.code)
    }
    fn opt_time(&self, t: &Option<i64>) -> String {
        t.map(|t| self.page.datetime(&t))
            .unwrap_or_else(|| "—".into())
    }
}

/// A link to the queue with the same tab and filters, at a keyset position (`None`: the first
/// page).
fn queue_link(q: &QueueQuery, cursor: Option<&str>) -> String {
    let mut link = format!(
        "/staff/reports?tab={}&status={}&category={}&overdue={}",
        crate::web::urlencode(&q.tab),
        crate::web::urlencode(&q.status),
        crate::web::urlencode(&q.category),
        crate::web::urlencode(&q.overdue),
    );
    if let Some(c) = cursor {
        link.push_str("&cursor=");
        link.push_str(&crate::web::urlencode(c));
    }
    link
}

async fn staff_queue(
    State(s): State<AppState>,
    user: WebUser,
    Query(q): Query<QueueQuery>,
) -> WebResult {
    or_page(&user.page, staff(&user))?;
    let v = or_page(&user.page, s.store.report_viewer(&user.principal).await)?;
    let cats = or_page(&user.page, s.store.report_categories().await)?;
    let can_stats = user.principal.can(Action::ReportStats);
    let calendar_warning = calendar_banner(&s, &user).await;
    if q.tab == "grab" {
        // The grab pool is short (unassigned jobs of one's units): one page, oldest first.
        let reports = or_page(&user.page, s.store.grab_pool(&user.principal).await)?;
        return Ok(render(&QueueTpl {
            calendar_warning,
            page: user.page,
            reports,
            cats,
            statuses: &STATUSES,
            q,
            prev: None,
            next: None,
            can_stats,
        }));
    }
    // Keyset paging (newest first); an old `offset` link still works.
    let offset = q.offset.unwrap_or(0).clamp(0, 1_000_000);
    let cursor = q.cursor.clone().filter(|c| !c.is_empty());
    let rq = ReportQuery {
        assignee: (q.tab == "mine").then(|| "me".to_string()),
        status: Some(q.status.clone()).filter(|x| STATUSES.contains(&x.as_str())),
        category: Some(q.category.clone()).filter(|x| !x.is_empty()),
        overdue: (q.overdue == "1").then_some(true),
        limit: Some(PAGE_SIZE),
        offset: Some(offset),
        cursor: cursor.clone(),
        ..ReportQuery::default()
    };
    let page_ = or_page(&user.page, s.store.reports(&v, &rq).await)?;
    // Back to the newest page (keyset pages only go forward).
    let prev = (offset > 0 || cursor.is_some()).then(|| queue_link(&q, None));
    let next = page_
        .next_cursor
        .as_deref()
        .map(|c| queue_link(&q, Some(c)));
    Ok(render(&QueueTpl {
        calendar_warning,
        page: user.page,
        reports: page_.items,
        cats,
        statuses: &STATUSES,
        q,
        prev,
        next,
        can_stats,
    }))
}

/// The actions worth offering for a report (the store still decides; illegal ones come back as
/// the localized error).
fn actions_for(r: &Report) -> Vec<&'static str> {
    let mut out = status_actions(&r.status);
    if matches!(r.status.as_str(), "dispatched" | "in_progress") && r.unit_id.is_some() {
        if r.dispatch_mode.as_deref() == Some("grab") && r.assignee_user_id.is_none() {
            out.insert(0, "grab");
        }
        out.insert(0, "assign");
    }
    if r.paid && r.status == "in_progress" && r.quote_status.as_deref() != Some("accepted") {
        out.insert(0, "quote");
    }
    out
}

fn status_actions(status: &str) -> Vec<&'static str> {
    match status {
        "submitted" => vec!["accept", "reject"],
        "accepted" => vec!["dispatch", "reject"],
        "dispatched" => vec!["sign", "return", "transfer", "escalate"],
        "in_progress" => vec![
            "contact",
            "reply",
            "extend_request",
            "extend",
            "transfer",
            "escalate",
            "whistle",
        ],
        "replied" => vec!["review_pass", "review_fail"],
        "awaiting_visit" => vec!["visit"],
        "closed" => vec!["reopen", "moderate"],
        _ => vec![],
    }
}

async fn staff_report(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Query(f): Query<Flash>,
) -> WebResult {
    let flash = flash_text(&user.page, &f);
    detail(&s, user, &id, true, flash).await
}

#[derive(Deserialize)]
struct ActForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    public_note: String,
    #[serde(default)]
    internal_note: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    unit_id: String,
    #[serde(default)]
    days: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    rating: String,
    #[serde(default)]
    solved: String,
    #[serde(default)]
    public: String,
    #[serde(default)]
    assignee_user_id: String,
    /// quote: yuan, e.g. `120.50`.
    #[serde(default)]
    amount_yuan: String,
    #[serde(default)]
    version: String,
}

fn some(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

async fn staff_act(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<ActForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    or_page(&user.page, staff(&user))?;
    let unit = some(&f.unit_id);
    let amount_fen = match some(&f.amount_yuan) {
        Some(y) => Some(yuan_to_fen(&y).ok_or_else(|| {
            error_page(
                &user.page,
                AppError::bad_request("validation.bad_value").arg("field", "amount_yuan"),
            )
        })?),
        None => None,
    };
    let a = ReportAction {
        assignee_user_id: some(&f.assignee_user_id),
        amount_fen,
        action: f.action.clone(),
        public_note: some(&f.public_note),
        internal_note: some(&f.internal_note),
        reason: some(&f.reason),
        unit_ids: if f.action == "whistle" {
            unit.iter().cloned().collect()
        } else {
            Vec::new()
        },
        unit_id: unit,
        days: f.days.trim().parse().ok(),
        outcome: some(&f.outcome),
        rating: f.rating.trim().parse().ok(),
        solved: some(&f.solved).map(|x| x == "yes"),
        public: some(&f.public).map(|x| x == "yes"),
        version: f.version.trim().parse().ok(),
        ..ReportAction::default()
    };
    act_and_redirect(&s, user, &id, a, &format!("/staff/reports/{id}")).await
}

// ---------------------------------------------------------------------------------------------
// Dashboard

#[derive(Deserialize)]
struct StatsForm {
    #[serde(default)]
    by: String,
}

/// One bar of the chart: y, width, label, value text.
struct Bar {
    y: i64,
    w: i64,
    label: String,
    value: String,
}

#[derive(Template)]
#[template(path = "reports_stats.html")]
struct StatsTpl {
    page: Page,
    by: String,
    rows: Vec<StatsRow>,
    bars: Vec<Bar>,
    chart_h: i64,
    calendar_warning: Option<String>,
}

impl StatsTpl {
    fn pct(&self, r: &Option<f64>) -> String {
        r.map(|r| format!("{:.1}%", r * 100.0))
            .unwrap_or_else(|| "—".into())
    }
}

async fn stats(State(s): State<AppState>, user: WebUser, Query(q): Query<StatsForm>) -> WebResult {
    let scope = or_page(
        &user.page,
        StatsScope::of(&user.principal).map_err(AppError::from),
    )?;
    if !user.page.staff {
        return Err(error_page(
            &user.page,
            AppError::new(ErrorKind::Forbidden, "auth.forbidden"),
        ));
    }
    let by = match q.by.as_str() {
        "category" | "area" | "month" => q.by.clone(),
        _ => "unit".to_string(),
    };
    let rows = or_page(
        &user.page,
        s.store
            .report_stats(
                &scope,
                &StatsQuery {
                    by: Some(by.clone()),
                    place_id: None,
                    from: None,
                    to: None,
                },
            )
            .await,
    )?;
    // Horizontal bars of the on-time rate (按时办结率), 0–100 % over 300 px.
    let bars: Vec<Bar> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let rate = r.on_time_rate.unwrap_or(0.0).clamp(0.0, 1.0);
            Bar {
                y: i as i64 * 24 + 4,
                w: (rate * 300.0).round() as i64,
                label: r.label.chars().take(14).collect(),
                value: r
                    .on_time_rate
                    .map(|x| format!("{:.0}%", x * 100.0))
                    .unwrap_or_else(|| "—".into()),
            }
        })
        .collect();
    let chart_h = bars.len() as i64 * 24 + 8;
    let calendar_warning = calendar_banner(&s, &user).await;
    Ok(render(&StatsTpl {
        calendar_warning,
        page: user.page,
        by,
        rows,
        bars,
        chart_h,
    }))
}

/// HTML rendering fuzz target: hostile report text (title, description, notes, unit and actor
/// names, the category name, the flash message and the user's name) rendered through the real
/// detail template, for staff and for residents, adds no markup.
#[cfg(test)]
mod fuzz {
    use askama::Template;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::web::fuzz_support::{cases, markup, page, user_text};
    use linli_store::reports::queries::{ReportEvent, Summons};

    fn view(text: &str) -> ReportView {
        let report: Report = serde_json::from_value(json!({
            "id": "r1", "kind": "public_affair", "category": "environment",
            "title": text, "description": text, "place_id": "p1", "path": "/1/2/",
            "channel": "phone", "anonymous": false, "status": "in_progress",
            "unit_id": "u1", "unit_name": text, "calendar_warning": text,
            "overdue_sign": false, "overdue_resolve": true, "public_requested": true,
            "public": false, "returned_count": 0, "reopened_count": 0, "extended_count": 0,
            "escalation_level": 0, "supporters": 2, "version": 3,
            "created_at": 1_764_000_000_000i64, "updated_at": 1_764_000_000_000i64,
            "resolve_by": 1_764_100_000_000i64, "rating": 4,
            "open311_status": "open", "extended_status": "IN_PROGRESS",
            "assignee_user_id": "u9", "assignee_name": text, "dispatch_mode": "grab",
            "paid": true, "quote_fen": 12_050, "quote_note": text, "quote_status": "pending",
        }))
        .expect("a report");
        ReportView {
            address: String::new(),
            reporter: None,
            report,
            staff_view: true,
            events: vec![ReportEvent {
                id: "e1".into(),
                action: "accept".into(),
                from_status: Some("submitted".into()),
                to_status: "accepted".into(),
                actor: text.into(),
                at: 1_764_000_000_000,
                public_note: Some(text.into()),
                internal_note: Some(text.into()),
                data: json!({ "note": text }),
            }],
            summons: vec![Summons {
                id: "s1".into(),
                unit_id: "u2".into(),
                unit_name: text.into(),
                summoned_at: 1_764_000_000_000,
                signed_at: None,
                replied_at: None,
                reply: Some(text.into()),
            }],
            photos: Vec::new(),
            contact: Some(linli_store::reports::contacts::ReportContact {
                first_name: Some(text.into()),
                last_name: Some(text.into()),
                email: Some(text.into()),
                phone: Some(text.into()),
                device_id: Some(text.into()),
                account_id: Some(text.into()),
                user_id: Some("u8".into()),
                user_name: Some(text.into()),
            }),
        }
    }

    fn render_detail(text: &str, staff: bool, lang: Lang) -> String {
        let v = view(text);
        DetailTpl {
            calendar_warning: Some(text.into()),
            page: page(lang, text),
            actions: actions_for(&v.report),
            v,
            cat: text.into(),
            staff,
            units: vec![("u1".into(), text.into())],
            assignees: vec![Assignee {
                user_id: "u9".into(),
                display_name: text.into(),
                open_tasks: 1,
            }],
            flash: Some(text.into()),
        }
        .render()
        .expect("the template renders")
    }

    proptest! {
        #![proptest_config(cases())]

        #[test]
        fn report_text_adds_no_markup_to_the_detail_page(text in user_text(), staff in any::<bool>(), en in any::<bool>()) {
            let lang = if en { Lang::En } else { Lang::ZhCn };
            let html = render_detail(&text, staff, lang);
            let benign = render_detail("x", staff, lang);
            prop_assert_eq!(markup(&html), markup(&benign));
            // The known payload never appears raw (the page's own markup may contain `<` alone).
            if text.contains("<script>alert(1)") {
                prop_assert!(!html.contains("<script>alert(1)"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_amounts_parse_to_fen() {
        assert_eq!(yuan_to_fen("120"), Some(12_000));
        assert_eq!(yuan_to_fen("120.5"), Some(12_050));
        assert_eq!(yuan_to_fen("¥0.07"), Some(7));
        for bad in ["", "1.234", "-3", "1e3", "abc", ".5", "1.x"] {
            assert_eq!(yuan_to_fen(bad), None, "{bad}");
        }
        assert_eq!(fen_to_yuan(12_050), "¥120.50");
    }
}
