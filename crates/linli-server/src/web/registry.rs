//! Staff pages of the registry: place tree with the community site plan, household page and
//! edit, person search, person page with edit and audited reveal, labels, export.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use linli_core::auth::{Action, Grant};
use linli_core::{AppError, ErrorKind};
use linli_store::audit::{Actor, AuditFilter, AuditRecord};
use linli_store::registry::households::{HouseholdPatch, HouseholdSummary, HouseholdView, TENURES};
use linli_store::registry::labels::{Label, NewLabel};
use linli_store::registry::persons::{
    PersonPatch, PersonQuery, PersonSummary, RELATIONS, RevealRequest,
};
use linli_store::registry::places::Place;

use crate::AppState;
use crate::api::sensitive;
use crate::manifest::Pages;
use crate::web::{
    FieldErrors, FormOnce, Once, Page, WebResult, WebUser, check_csrf, error_page, or_page, render,
    urlencode,
};

pub fn pages() -> Pages {
    Pages::new()
        .get("/registry", tree)
        .get("/registry/households/{id}", household)
        .get("/registry/households/{id}/edit", household_edit)
        .post("/registry/households/{id}/edit", household_save)
        .get("/registry/persons", persons)
        .get("/registry/persons/{id}", person)
        .post("/registry/persons/{id}", person_save)
        .post("/registry/persons/{id}/reveal", person_reveal)
        .get("/registry/links", person_links)
        .post("/registry/links/{id}", person_link_decide)
        .get("/registry/labels", labels)
        .post("/registry/labels", label_create)
        .get("/registry/export", export)
        .post("/registry/export/revealed", export_revealed)
}

pub(crate) fn grant(
    page: &Page,
    p: &linli_core::auth::Principal,
    a: Action,
) -> Result<Grant, axum::response::Response> {
    p.grant(a)
        .map_err(|_| error_page(page, AppError::forbidden()))
}

/// One building drawn on the community site plan (1000×700 units).
pub(crate) struct PlanBuilding {
    pub id: String,
    pub name: String,
    pub path: String,
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
    pub tx: i32,
    pub ty: i32,
}

/// The buildings of a community (or grid) with a footprint, for the server-drawn site plan.
pub(crate) async fn site_plan(
    store: &linli_store::Store,
    g: &Grant,
    community: &Place,
) -> Result<Vec<PlanBuilding>, AppError> {
    let buildings = store.places(g, None, Some("building")).await?;
    Ok(buildings
        .into_iter()
        .filter(|b| b.path.starts_with(&community.path))
        .filter_map(PlanBuilding::from_place)
        .collect())
}

impl PlanBuilding {
    /// A building with a footprint, drawn on the plan (`None` without one).
    pub(crate) fn from_place(b: Place) -> Option<PlanBuilding> {
        let [x, y, w, h] = b.plan?;
        Some(PlanBuilding {
            id: b.id,
            name: b.name,
            path: b.path,
            x,
            y,
            w,
            h,
            tx: x + w / 2,
            ty: y + h / 2 + 6,
        })
    }

    /// Whether a plan point lies on this building's footprint.
    pub(crate) fn holds(&self, x: i64, y: i64) -> bool {
        let (x0, y0) = (i64::from(self.x), i64::from(self.y));
        (x0..=x0 + i64::from(self.w)).contains(&x) && (y0..=y0 + i64::from(self.h)).contains(&y)
    }
}

#[derive(Template)]
#[template(path = "registry_tree.html")]
struct TreeTpl {
    page: Page,
    crumbs: Vec<(String, String)>,
    current: Option<Place>,
    children: Vec<Place>,
    plan: Vec<PlanBuilding>,
    households: Vec<HouseholdSummary>,
    /// The caller may search persons (the "persons here" link).
    can_list_persons: bool,
}

#[derive(Deserialize)]
struct TreeQuery {
    place: Option<String>,
}

async fn tree(State(s): State<AppState>, user: WebUser, Query(q): Query<TreeQuery>) -> WebResult {
    let page = &user.page;
    let g = grant(page, &user.principal, Action::PlaceRead)?;
    let current = match q.place.as_deref().filter(|p| !p.is_empty()) {
        Some(id) => Some(or_page(page, s.store.place(&g, id).await)?),
        None => None,
    };
    let children = or_page(
        page,
        s.store
            .places(&g, current.as_ref().map(|p| p.id.as_str()), None)
            .await,
    )?;
    // Breadcrumb from the top of the caller's area down to the current place.
    let mut crumbs = Vec::new();
    if let Some(c) = &current {
        let ids: Vec<&str> = c.path.split('/').filter(|x| !x.is_empty()).collect();
        let names = or_page(page, s.store.place_names(&ids).await)?;
        let mut path = String::from("/");
        for id in ids {
            path.push_str(id);
            path.push('/');
            if g.allows(Action::PlaceRead, &path)
                && let Some((_, n)) = names.get(id)
            {
                crumbs.push((id.to_string(), n.clone()));
            }
        }
    }
    // The community site plan: every building below, drawn from its footprint.
    let plan = match current
        .as_ref()
        .filter(|c| c.kind == "community" || c.kind == "grid")
    {
        Some(c) => or_page(page, site_plan(&s.store, &g, c).await)?,
        None => Vec::new(),
    };
    let households = match &current {
        Some(c) if c.kind == "room" && user.principal.can(Action::HouseholdRead) => {
            let hg = grant(page, &user.principal, Action::HouseholdRead)?;
            let q = linli_store::registry::households::HouseholdQuery {
                place_id: Some(c.id.clone()),
                limit: Some(50),
                offset: None,
            };
            or_page(page, s.store.households(&hg, &q).await)?.items
        }
        _ => Vec::new(),
    };
    Ok(render(&TreeTpl {
        can_list_persons: user.principal.can(Action::PersonRead),
        page: user.page,
        crumbs,
        current,
        children,
        plan,
        households,
    }))
}

#[derive(Template)]
#[template(path = "household.html")]
struct HouseholdTpl {
    page: Page,
    h: HouseholdView,
    can_edit: bool,
    can_edit_person: bool,
    flash: Option<String>,
    log: Vec<AuditRecord>,
    record: Vec<crate::web::record::RecordTable>,
}

impl HouseholdTpl {
    fn action_words(&self, code: &str) -> String {
        crate::web::admin::audit_action_words(&self.page, code)
    }
}

#[derive(Deserialize)]
struct Flash {
    saved: Option<String>,
}

async fn household(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Query(f): Query<Flash>,
) -> WebResult {
    let page = &user.page;
    let g = grant(page, &user.principal, Action::HouseholdRead)?;
    let h = or_page(
        page,
        s.store
            .household(&g, sensitive(&user.principal).as_ref(), &id)
            .await,
    )?;
    let log = match user.principal.grant(Action::AuditRead) {
        Ok(ag) => s
            .store
            .audit_list(
                &ag,
                &AuditFilter {
                    entity: Some("household".into()),
                    entity_id: Some(id.clone()),
                    limit: Some(10),
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let room_path = h.path.clone();
    let can_edit = user.principal.may(Action::HouseholdWrite, &room_path);
    let can_edit_person = user.principal.can(Action::PersonRead);
    let flash = f.saved.map(|_| page.t("web-saved"));
    let record = or_page(
        page,
        crate::web::record::record_tables(&s, page, &user.principal, &id, true).await,
    )?;
    Ok(render(&HouseholdTpl {
        page: user.page,
        h,
        can_edit,
        can_edit_person,
        flash,
        log,
        record,
    }))
}

#[derive(Template)]
#[template(path = "household_edit.html")]
struct HouseholdEditTpl {
    page: Page,
    h: HouseholdView,
    tenures: &'static [&'static str],
    errors: FieldErrors,
    form_tenure: String,
    form_moved_in: String,
    form_note: String,
}

async fn household_edit(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
) -> WebResult {
    let page = &user.page;
    grant(page, &user.principal, Action::HouseholdWrite)?;
    let g = grant(page, &user.principal, Action::HouseholdRead)?;
    let h = or_page(
        page,
        s.store
            .household(&g, sensitive(&user.principal).as_ref(), &id)
            .await,
    )?;
    Ok(render(&HouseholdEditTpl {
        form_tenure: h.tenure.clone(),
        form_moved_in: h.moved_in.clone().unwrap_or_default(),
        form_note: h.note.clone(),
        page: user.page,
        h,
        tenures: &TENURES,
        errors: FieldErrors::default(),
    }))
}

#[derive(Deserialize)]
struct HouseholdForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    version: i64,
    #[serde(default)]
    tenure: String,
    #[serde(default)]
    moved_in: String,
    #[serde(default)]
    note: String,
}

async fn household_save(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<HouseholdForm>,
) -> WebResult {
    let page = &user.page;
    check_csrf(page, &f._csrf)?;
    let g = grant(page, &user.principal, Action::HouseholdWrite)?;
    let patch = HouseholdPatch {
        version: f.version,
        tenure: Some(f.tenure.clone()),
        moved_in: Some(f.moved_in.clone()),
        note: Some(f.note.clone()),
    };
    let sens = sensitive(&user.principal);
    match s
        .store
        .update_household(&g, sens.as_ref(), &Actor::from(&user.principal), &id, patch)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/registry/households/{id}?saved=1")).into_response()),
        Err(e) if matches!(e.kind, ErrorKind::BadRequest | ErrorKind::Conflict) => {
            let rg = grant(page, &user.principal, Action::HouseholdRead)?;
            let h = or_page(page, s.store.household(&rg, sens.as_ref(), &id).await)?;
            let errors = if e.kind == ErrorKind::Conflict {
                FieldErrors(
                    [("_form".to_string(), e.message(page.lang))]
                        .into_iter()
                        .collect(),
                )
            } else {
                FieldErrors::from_app(page, &e, "note")
            };
            let tpl = HouseholdEditTpl {
                page: user.page,
                h,
                tenures: &TENURES,
                errors,
                form_tenure: f.tenure,
                form_moved_in: f.moved_in,
                form_note: f.note,
            };
            Ok((StatusCode::BAD_REQUEST, render(&tpl)).into_response())
        }
        Err(e) => Err(error_page(page, e)),
    }
}

#[derive(Template)]
#[template(path = "persons.html")]
struct PersonsTpl {
    page: Page,
    q: PersonQuery,
    labels: Vec<Label>,
    places: Vec<(String, String)>,
    items: Vec<PersonSummary>,
    total_text: String,
    error: Option<String>,
    prev_link: Option<String>,
    next_link: Option<String>,
}

const PAGE_SIZE: i64 = 30;

async fn persons(
    State(s): State<AppState>,
    user: WebUser,
    Query(mut q): Query<PersonQuery>,
) -> WebResult {
    let page = &user.page;
    let g = grant(page, &user.principal, Action::PersonRead)?;
    let sens = sensitive(&user.principal);
    let labels: Vec<Label> = or_page(page, s.store.labels().await)?
        .into_iter()
        .filter(|l| {
            l.parent_id.is_some()
                && (!l.sensitive
                    || sens.as_ref().is_some_and(|sg| {
                        g.area(Action::PersonRead)
                            .iter()
                            .all(|p| sg.allows(Action::SensitiveLabelRead, p))
                    }))
        })
        .collect();
    // Grids and buildings of the caller's area, as "community / building".
    let pg = grant(page, &user.principal, Action::PlaceRead)?;
    let mut places = Vec::new();
    for kind in ["community", "grid", "building"] {
        for p in or_page(page, s.store.places(&pg, None, Some(kind)).await)? {
            let label = if kind == "community" {
                p.name.clone()
            } else {
                format!(
                    "{} · {}",
                    or_page(page, s.store.address(&p.path).await)?,
                    p.name
                )
            };
            places.push((p.id, label));
        }
    }
    q.limit = Some(PAGE_SIZE);
    let offset = q.offset.unwrap_or(0).max(0);
    q.offset = Some(offset);
    let (items, total, capped, error) = match s.store.search_persons(&g, sens.as_ref(), &q).await {
        Ok(r) => (r.items, r.total, r.total_is_capped, None),
        Err(e) if e.kind != ErrorKind::Internal => {
            (Vec::new(), 0, false, Some(e.message(page.lang)))
        }
        Err(e) => return Err(error_page(page, e)),
    };
    let link = |off: i64| {
        let mut parts = vec![format!("offset={off}")];
        for (k, v) in [
            ("name", &q.name),
            ("id_number", &q.id_number),
            ("phone", &q.phone),
            ("label", &q.label),
            ("place_id", &q.place_id),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                parts.push(format!("{k}={}", urlencode(v)));
            }
        }
        format!("/registry/persons?{}", parts.join("&"))
    };
    let prev_link = (offset > 0).then(|| link((offset - PAGE_SIZE).max(0)));
    let next_link = (offset + PAGE_SIZE < total || capped)
        .then(|| link(offset + PAGE_SIZE))
        .filter(|_| items.len() as i64 == PAGE_SIZE);
    let total_text = if capped {
        format!("{total}+")
    } else {
        total.to_string()
    };
    Ok(render(&PersonsTpl {
        page: user.page,
        q,
        labels,
        places,
        items,
        total_text,
        error,
        prev_link,
        next_link,
    }))
}

#[derive(Template)]
#[template(path = "person_edit.html")]
struct PersonTpl {
    page: Page,
    p: PersonSummary,
    labels: Vec<(Label, bool)>,
    relations: &'static [&'static str],
    can_edit: bool,
    can_reveal: bool,
    revealed_id: Option<String>,
    revealed_phone: Option<String>,
    why: String,
    errors: FieldErrors,
    flash: Option<String>,
    form_name: String,
    form_phone: String,
}

struct PersonExtras {
    revealed: Option<(Option<String>, Option<String>)>,
    errors: FieldErrors,
    flash: Option<String>,
    form: Option<(String, String)>,
}

async fn person_page(
    s: &AppState,
    user: WebUser,
    id: &str,
    x: PersonExtras,
    status: StatusCode,
) -> WebResult {
    let page = &user.page;
    let g = grant(page, &user.principal, Action::PersonRead)?;
    let sens = sensitive(&user.principal);
    let p = or_page(page, s.store.person(&g, sens.as_ref(), id).await)?;
    let path = p.home_path.clone().unwrap_or_default();
    let can_edit = user.principal.may(Action::PersonWrite, &path);
    let can_reveal = user.principal.may(Action::PersonReveal, &path);
    let show_sensitive = sens
        .as_ref()
        .is_some_and(|g| g.allows(Action::SensitiveLabelRead, &path));
    let labels = or_page(page, s.store.labels().await)?
        .into_iter()
        .filter(|l| l.parent_id.is_some() && (show_sensitive || !l.sensitive))
        .map(|l| {
            let on = p.labels.iter().any(|x| x.code == l.code);
            (l, on)
        })
        .collect();
    let roles: Vec<String> = user
        .principal
        .roles()
        .iter()
        .map(|r| page.code("role", r.as_str()))
        .collect();
    let why = page.t1("web-why-shown-text", "roles", &roles.join("、"));
    let (form_name, form_phone) = x.form.unwrap_or_else(|| (p.name.clone(), String::new()));
    let (revealed_id, revealed_phone) = x.revealed.unwrap_or((None, None));
    let tpl = PersonTpl {
        page: user.page,
        p,
        labels,
        relations: &RELATIONS,
        can_edit,
        can_reveal,
        revealed_id,
        revealed_phone,
        why,
        errors: x.errors,
        flash: x.flash,
        form_name,
        form_phone,
    };
    Ok((status, render(&tpl)).into_response())
}

async fn person(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Query(f): Query<Flash>,
) -> WebResult {
    let flash = f.saved.map(|_| user.page.t("web-saved"));
    person_page(
        &s,
        user,
        &id,
        PersonExtras {
            revealed: None,
            errors: FieldErrors::default(),
            flash,
            form: None,
        },
        StatusCode::OK,
    )
    .await
}

async fn person_save(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    form: crate::extract::FormPairs,
) -> WebResult {
    let get = |k: &str| form.get(k);
    check_csrf(&user.page, &get("_csrf"))?;
    let g = grant(&user.page, &user.principal, Action::PersonWrite)?;
    let labels: Vec<String> = form.all("labels");
    let phone = get("phone");
    let patch = PersonPatch {
        version: get("version").parse().unwrap_or(0),
        name: Some(get("name")),
        phone: Some(phone.clone()).filter(|p| !p.trim().is_empty()),
        relation: Some(get("relation")).filter(|r| !r.is_empty()),
        labels: Some(labels),
    };
    let sens = sensitive(&user.principal);
    match s
        .store
        .update_person(&g, sens.as_ref(), &Actor::from(&user.principal), &id, patch)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/registry/persons/{id}?saved=1")).into_response()),
        Err(e) if matches!(e.kind, ErrorKind::BadRequest | ErrorKind::Conflict) => {
            let errors = if e.kind == ErrorKind::Conflict {
                FieldErrors(
                    [("_form".to_string(), e.message(user.page.lang))]
                        .into_iter()
                        .collect(),
                )
            } else {
                FieldErrors::from_app(&user.page, &e, "name")
            };
            let x = PersonExtras {
                revealed: None,
                errors,
                flash: None,
                form: Some((get("name"), phone)),
            };
            person_page(&s, user, &id, x, StatusCode::BAD_REQUEST).await
        }
        Err(e) => Err(error_page(&user.page, e)),
    }
}

#[derive(Deserialize)]
struct RevealForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    purpose: String,
}

async fn person_reveal(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<RevealForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let g = grant(&user.page, &user.principal, Action::PersonReveal)?;
    let req = RevealRequest {
        purpose: f.purpose.clone(),
        fields: vec!["id_number".into(), "phone".into()],
    };
    match s
        .store
        .reveal_person(&g, &Actor::from(&user.principal), &id, &req)
        .await
    {
        Ok(r) => {
            let x = PersonExtras {
                revealed: Some((r.id_number, r.phone)),
                errors: FieldErrors::default(),
                flash: None,
                form: None,
            };
            person_page(&s, user, &id, x, StatusCode::OK).await
        }
        Err(e) if e.kind == ErrorKind::BadRequest => {
            let x = PersonExtras {
                revealed: None,
                errors: FieldErrors::from_app(&user.page, &e, "purpose"),
                flash: None,
                form: None,
            };
            person_page(&s, user, &id, x, StatusCode::BAD_REQUEST).await
        }
        Err(e) => Err(error_page(&user.page, e)),
    }
}

#[derive(Template)]
#[template(path = "labels.html")]
struct LabelsTpl {
    page: Page,
    labels: Vec<Label>,
    can_write: bool,
    can_list: bool,
    once: String,
    errors: FieldErrors,
    form: (String, String, String),
    flash: Option<String>,
}

async fn labels(State(s): State<AppState>, user: WebUser, Query(f): Query<Flash>) -> WebResult {
    let labels = or_page(&user.page, s.store.labels().await)?;
    let flash = f.saved.map(|_| user.page.t("web-saved"));
    let tpl = LabelsTpl {
        can_write: user.principal.can(Action::LabelWrite),
        can_list: user.principal.can(Action::PersonRead),
        page: user.page,
        labels,
        once: FormOnce::new_token(),
        errors: FieldErrors::default(),
        form: Default::default(),
        flash,
    };
    Ok(render(&tpl))
}

async fn label_create(
    State(s): State<AppState>,
    user: WebUser,
    form: crate::extract::FormPairs,
) -> WebResult {
    let get = |k: &str| form.get(k);
    check_csrf(&user.page, &get("_csrf"))?;
    let g = grant(&user.page, &user.principal, Action::LabelWrite)?;
    let once = get("_once");
    if let Once::Repeat(_) = s.form_once.claim(&once).await {
        return Ok(Redirect::to("/registry/labels?saved=1").into_response());
    }
    let new = NewLabel {
        parent_code: Some(get("parent_code")).filter(|p| !p.is_empty()),
        code: get("code"),
        name_zh: get("name_zh"),
        name_en: get("name_en"),
        sensitive: get("sensitive") == "1",
    };
    match s
        .store
        .create_label(&g, &Actor::from(&user.principal), new)
        .await
    {
        Ok(_) => {
            s.form_once.finish(&once, "/registry/labels?saved=1").await;
            Ok(Redirect::to("/registry/labels?saved=1").into_response())
        }
        Err(e)
            if matches!(
                e.kind,
                ErrorKind::BadRequest | ErrorKind::Conflict | ErrorKind::NotFound
            ) =>
        {
            s.form_once.release(&once).await;
            let errors = FieldErrors::from_app(&user.page, &e, "code");
            let labels = or_page(&user.page, s.store.labels().await)?;
            let tpl = LabelsTpl {
                can_write: true,
                can_list: user.principal.can(Action::PersonRead),
                page: user.page,
                labels,
                once: FormOnce::new_token(),
                errors,
                form: (get("code"), get("name_zh"), get("name_en")),
                flash: None,
            };
            Ok((StatusCode::BAD_REQUEST, render(&tpl)).into_response())
        }
        Err(e) => {
            s.form_once.release(&once).await;
            Err(error_page(&user.page, e))
        }
    }
}

#[derive(Template)]
#[template(path = "export.html")]
struct ExportTpl {
    page: Page,
    can_reveal: bool,
    kinds: &'static [&'static str],
    errors: FieldErrors,
    kind: String,
    purpose: String,
}

impl ExportTpl {
    fn kind_words(&self, k: &str) -> String {
        self.page.t(&format!("web-export-kind-{k}"))
    }
    fn is_kind(&self, k: &str) -> bool {
        self.kind == k
    }
}

/// Why full numbers leave the system, chosen from a list (the audit log can be counted by it)
/// and said in the worker's own words.
const EXPORT_PURPOSES: &[&str] = &["subsidy", "statistics", "emergency", "judicial", "other"];

async fn export(user: WebUser) -> WebResult {
    grant(&user.page, &user.principal, Action::RegistryExport)?;
    Ok(render(&ExportTpl {
        can_reveal: user.principal.can(Action::PersonReveal),
        page: user.page,
        kinds: EXPORT_PURPOSES,
        errors: FieldErrors::default(),
        kind: String::new(),
        purpose: String::new(),
    }))
}

#[derive(Deserialize)]
struct RevealedExportForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    purpose: String,
    confirm: Option<String>,
}

/// Full ID and phone numbers as a spreadsheet: a POST (never a link that lands in a browser's
/// history or a proxy's log) with a purpose from the list plus free text and a confirmation;
/// the store audits it with that purpose.
async fn export_revealed(
    State(s): State<AppState>,
    user: WebUser,
    axum::Form(f): axum::Form<RevealedExportForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let g = grant(&user.page, &user.principal, Action::RegistryExport)?;
    let rg = grant(&user.page, &user.principal, Action::PersonReveal)?;
    let purpose = f.purpose.trim();
    let mut errors = std::collections::HashMap::new();
    if !EXPORT_PURPOSES.contains(&f.kind.as_str()) {
        errors.insert("kind".to_string(), user.page.t("web-export-kind-required"));
    }
    if purpose.chars().count() < 2 {
        errors.insert(
            "purpose".to_string(),
            user.page.t("web-export-purpose-required"),
        );
    }
    if f.confirm.is_none() {
        errors.insert(
            "confirm".to_string(),
            user.page.t("web-export-confirm-required"),
        );
    }
    if !errors.is_empty() {
        let mut r = render(&ExportTpl {
            can_reveal: true,
            kinds: EXPORT_PURPOSES,
            errors: FieldErrors(errors),
            kind: f.kind.clone(),
            purpose: purpose.to_string(),
            page: user.page,
        });
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(r);
    }
    let said = format!(
        "{}：{purpose}",
        user.page.t(&format!("web-export-kind-{}", f.kind))
    );
    let exported = or_page(
        &user.page,
        s.store
            .export_persons(
                &g,
                sensitive(&user.principal).as_ref(),
                &Actor::from(&user.principal),
                linli_store::registry::export::Masking::Revealed {
                    grant: &rg,
                    purpose: &said,
                },
            )
            .await,
    )?;
    crate::api::import_export::file_response("xlsx", "persons", &exported.headers, &exported.rows)
        .map_err(|e| crate::web::error_page(&user.page, e.0))
}

/// HTML rendering fuzz target: hostile search input echoed into the person search form and
/// hostile person data (names, addresses, label names) in the result list, rendered through the
/// real template, add no markup.
#[cfg(test)]
mod fuzz {
    use askama::Template;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::web::fuzz_support::{cases, markup, page, user_text};
    use linli_core::i18n::Lang;

    fn render_persons(text: &str) -> String {
        let person: PersonSummary = serde_json::from_value(json!({
            "id": "p1", "name": text, "gender": "female", "birth_year": 1950,
            "id_number_masked": "420102********123X", "phone_masked": "138****5678",
            "labels": [], "household_id": "h1", "relation": "head", "address": text,
            "version": 1,
        }))
        .expect("a person");
        PersonsTpl {
            page: page(Lang::ZhCn, text),
            q: PersonQuery {
                name: Some(text.into()),
                id_number: Some(text.into()),
                phone: Some(text.into()),
                label: Some(text.into()),
                place_id: Some(text.into()),
                limit: Some(30),
                offset: Some(0),
            },
            labels: vec![Label {
                id: "l1".into(),
                parent_id: Some("l0".into()),
                code: "elderly_alone".into(),
                name_zh: text.into(),
                name_en: text.into(),
                sensitive: false,
            }],
            places: vec![("c1".into(), text.into())],
            items: vec![person],
            total_text: "1".into(),
            error: Some(text.into()),
            prev_link: Some(format!(
                "/registry/persons?offset=0&name={}",
                urlencode(text)
            )),
            next_link: Some(format!(
                "/registry/persons?offset=60&name={}",
                urlencode(text)
            )),
        }
        .render()
        .expect("the template renders")
    }

    proptest! {
        #![proptest_config(cases())]

        #[test]
        fn search_input_and_person_data_add_no_markup(text in user_text()) {
            let html = render_persons(&text);
            prop_assert_eq!(markup(&html), markup(&render_persons("x")));
            // The known payload never appears raw (the page's own markup may contain `<` alone).
            if text.contains("<script>alert(1)") {
                prop_assert!(!html.contains("<script>alert(1)"));
            }
        }
    }
}

#[derive(Template)]
#[template(path = "person_links.html")]
struct PersonLinksTpl {
    page: Page,
    items: Vec<linli_store::registry::links::PersonLink>,
    flash: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
struct LinksFlash {
    done: Option<String>,
}

/// Link requests about persons of the caller's area (another community registered someone
/// with the same name and ID number): confirm or decline each.
async fn person_links(
    State(s): State<AppState>,
    user: WebUser,
    Query(f): Query<LinksFlash>,
) -> WebResult {
    let g = grant(&user.page, &user.principal, Action::PersonWrite)?;
    let items = or_page(&user.page, s.store.person_links(&g, false).await)?;
    let flash = match f.done.as_deref() {
        Some("confirmed") => Some(user.page.t("web-person-link-confirmed")),
        Some("declined") => Some(user.page.t("web-person-link-declined")),
        _ => None,
    };
    Ok(render(&PersonLinksTpl {
        page: user.page,
        items,
        flash,
        error: None,
    }))
}

#[derive(Deserialize)]
struct LinkForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    note: String,
}

async fn person_link_decide(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<LinkForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let g = grant(&user.page, &user.principal, Action::PersonWrite)?;
    let confirm = match f.decision.as_str() {
        "confirm" => true,
        "decline" => false,
        _ => {
            return Err(error_page(
                &user.page,
                AppError::bad_request("validation.bad_value").arg("field", "decision"),
            ));
        }
    };
    let d = linli_store::registry::links::LinkDecision {
        note: Some(f.note).filter(|n| !n.trim().is_empty()),
    };
    match s
        .store
        .decide_person_link(&g, &Actor::from(&user.principal), &id, confirm, &d)
        .await
    {
        Ok(_) => {
            let done = if confirm { "confirmed" } else { "declined" };
            Ok(Redirect::to(&format!("/registry/links?done={done}")).into_response())
        }
        // A second click on a decided request just shows the list.
        Err(e) if e.code == "registry.link.already_decided" => {
            Ok(Redirect::to("/registry/links").into_response())
        }
        // A refused form comes back with the reason (a decline without one).
        Err(e) if e.kind == linli_core::ErrorKind::BadRequest => {
            let items = or_page(&user.page, s.store.person_links(&g, false).await)?;
            let error = Some(e.message(user.page.lang));
            let tpl = PersonLinksTpl {
                page: user.page,
                items,
                flash: None,
                error,
            };
            Ok((axum::http::StatusCode::BAD_REQUEST, render(&tpl)).into_response())
        }
        Err(e) => Err(error_page(&user.page, e)),
    }
}
