//! The roles page (`/admin/roles`): the built-in role templates with the actions every module
//! gives them, and the custom roles of the caller's area — composed here from actions grouped by
//! module, sensitive ones named as such, never beyond what the administrator holds. Same store
//! calls as `api::roles`.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};

use linli_core::AppError;
use linli_core::auth::{Action, Principal, RoleKind};
use linli_store::accounts::roles::{NewRole, RolePatch, RoleView, RolesOverview};

use crate::AppState;
use crate::manifest::Pages;
use crate::web::{Page, WebResult, WebUser, check_csrf, error_page, or_page, render};

pub fn pages() -> Pages {
    Pages::new()
        .get("/admin/roles", list)
        .post("/admin/roles", create)
        .get("/admin/roles/{id}", edit)
        .post("/admin/roles/{id}", save)
        .post("/admin/roles/{id}/delete", delete)
}

/// The kinds a custom role may have (residents have the built-in resident role).
const CUSTOM_KINDS: [RoleKind; 3] = [RoleKind::Area, RoleKind::Unit, RoleKind::Member];

/// One module's actions as checkboxes.
struct ActionGroup {
    module: String,
    actions: Vec<ActionBox>,
}

struct ActionBox {
    name: &'static str,
    label: String,
    sensitive: bool,
    /// The administrator holds it (somewhere): only those can be given.
    allowed: bool,
    checked: bool,
}

/// A role as the page lists it.
struct RoleRow {
    label: String,
    kind: String,
    /// Action labels, sensitive ones marked.
    actions: Vec<(String, bool)>,
    href: Option<String>,
}

#[derive(Template)]
#[template(path = "roles.html")]
struct RolesTpl {
    page: Page,
    builtin: Vec<RoleRow>,
    custom: Vec<RoleRow>,
    can_compose: bool,
    groups: Vec<ActionGroup>,
    kinds: Vec<(&'static str, String)>,
    places: Vec<(String, String)>,
    form_name: String,
    form_kind: String,
    form_place: String,
    error: Option<String>,
    flash: Option<String>,
}

#[derive(Template)]
#[template(path = "role_form.html")]
struct RoleFormTpl {
    page: Page,
    role: RoleView,
    groups: Vec<ActionGroup>,
    error: Option<String>,
}

fn action_label(page: &Page, a: Action) -> String {
    page.t(&format!("action-{}", a.as_str()))
}

fn kind_label(page: &Page, k: RoleKind) -> String {
    page.t(&format!("web-role-kind-{}", k.as_str()))
}

fn row(page: &Page, o: &RolesOverview, r: &RoleView) -> RoleRow {
    let sensitive = |a: &Action| o.actions.iter().any(|x| x.name == *a && x.sensitive);
    RoleRow {
        label: match &r.name {
            Some(n) => n.clone(),
            None => page.code("role", r.code.as_str()),
        },
        kind: kind_label(page, r.kind),
        actions: r
            .actions
            .iter()
            .map(|a| (action_label(page, *a), sensitive(a)))
            .collect(),
        href: r.id.as_ref().map(|id| format!("/admin/roles/{id}")),
    }
}

fn groups(page: &Page, p: &Principal, o: &RolesOverview, checked: &[Action]) -> Vec<ActionGroup> {
    let mut out: Vec<ActionGroup> = Vec::new();
    for a in &o.actions {
        let label = page.t(&format!("module-{}", a.module));
        let b = ActionBox {
            name: a.name.as_str(),
            label: action_label(page, a.name),
            sensitive: a.sensitive,
            allowed: p.can(a.name),
            checked: checked.contains(&a.name),
        };
        match out.iter_mut().find(|g| g.module == label) {
            Some(g) => g.actions.push(b),
            None => out.push(ActionGroup {
                module: label,
                actions: vec![b],
            }),
        }
    }
    out
}

/// The places of the caller's role-administration area a role can be defined at.
async fn places(s: &AppState, user: &WebUser) -> Result<Vec<(String, String)>, AppError> {
    let Ok(g) = user.principal.grant(Action::RoleAdmin) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for kind in ["city", "district", "street", "community"] {
        for p in s.store.places(&g, None, Some(kind)).await? {
            if !out.iter().any(|(id, _)| *id == p.id) {
                out.push((
                    p.id,
                    format!("{}（{}）", p.name, user.page.code("kind", kind)),
                ));
            }
        }
    }
    Ok(out)
}

/// The form's fields; checkboxes repeat `actions`.
struct Form {
    csrf: String,
    fields: Vec<(String, String)>,
}

impl Form {
    fn parse(body: &[u8]) -> Form {
        let fields: Vec<(String, String)> = form_urlencoded::parse(body)
            .take(400)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Form {
            csrf: fields
                .iter()
                .find(|(k, _)| k == "_csrf")
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
            fields,
        }
    }
    fn get(&self, key: &str) -> String {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    }
    fn actions(&self) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(k, _)| k == "actions")
            .map(|(_, v)| v.clone())
            .collect()
    }
}

async fn list(State(s): State<AppState>, user: WebUser) -> WebResult {
    let flash = None;
    page_with(&s, user, None, None, flash).await
}

/// The roles page, re-rendered with the form's values and an error when a creation failed.
async fn page_with(
    s: &AppState,
    user: WebUser,
    form: Option<&Form>,
    error: Option<String>,
    flash: Option<String>,
) -> WebResult {
    let o = or_page(&user.page, s.store.roles_overview(&user.principal).await)?;
    let page = &user.page;
    let builtin = o.builtin.iter().map(|r| row(page, &o, r)).collect();
    let custom = o.custom.iter().map(|r| row(page, &o, r)).collect();
    let checked: Vec<Action> = form
        .map(|f| {
            f.actions()
                .iter()
                .filter_map(|n| s.store.catalog().action(n))
                .collect()
        })
        .unwrap_or_default();
    let groups = groups(page, &user.principal, &o, &checked);
    let places = or_page(page, places(s, &user).await)?;
    let kinds = CUSTOM_KINDS
        .iter()
        .map(|k| (k.as_str(), kind_label(page, *k)))
        .collect();
    let tpl = RolesTpl {
        builtin,
        custom,
        can_compose: user.principal.can(Action::RoleAdmin),
        groups,
        kinds,
        places,
        form_name: form.map(|f| f.get("name")).unwrap_or_default(),
        form_kind: form.map(|f| f.get("kind")).unwrap_or_else(|| "area".into()),
        form_place: form.map(|f| f.get("place_id")).unwrap_or_default(),
        error,
        flash,
        page: user.page,
    };
    let status = if tpl.error.is_some() {
        axum::http::StatusCode::BAD_REQUEST
    } else {
        axum::http::StatusCode::OK
    };
    Ok((status, render(&tpl)).into_response())
}

async fn create(State(s): State<AppState>, user: WebUser, body: Bytes) -> WebResult {
    let f = Form::parse(&body);
    check_csrf(&user.page, &f.csrf)?;
    let kind = RoleKind::parse(&f.get("kind")).filter(|k| CUSTOM_KINDS.contains(k));
    let result = match kind {
        None => Err(AppError::bad_request("validation.bad_value").arg("field", "kind")),
        Some(kind) => {
            s.store
                .create_role(
                    &user.principal,
                    NewRole {
                        name: f.get("name"),
                        kind,
                        place_id: f.get("place_id"),
                        actions: f.actions(),
                        based_on: None,
                    },
                )
                .await
        }
    };
    match result {
        Ok(r) => Ok(Redirect::to(&format!(
            "/admin/roles/{}?saved=1",
            r.id.unwrap_or_default()
        ))
        .into_response()),
        Err(e) if e.kind.status() == 400 || e.kind.status() == 403 => {
            let msg = reason(&user.page, &e);
            page_with(&s, user, Some(&f), Some(msg), None).await
        }
        Err(e) => Err(error_page(&user.page, e)),
    }
}

/// A refusal in words: the action the administrator does not hold, or the error's message.
fn reason(page: &Page, e: &AppError) -> String {
    match e
        .details
        .as_ref()
        .and_then(|d| d.get("action"))
        .and_then(|a| a.as_str())
    {
        Some(a) => page.t1(
            "web-role-beyond-own",
            "action",
            &page.t(&format!("action-{a}")),
        ),
        None => e.message(page.lang),
    }
}

async fn edit(State(s): State<AppState>, user: WebUser, Path(id): Path<String>) -> WebResult {
    form_page(&s, user, &id, None).await
}

async fn form_page(s: &AppState, user: WebUser, id: &str, error: Option<String>) -> WebResult {
    let role = or_page(&user.page, s.store.role(&user.principal, id).await)?;
    let o = or_page(&user.page, s.store.roles_overview(&user.principal).await)?;
    let groups = groups(&user.page, &user.principal, &o, &role.actions);
    let status = if error.is_some() {
        axum::http::StatusCode::BAD_REQUEST
    } else {
        axum::http::StatusCode::OK
    };
    Ok((
        status,
        render(&RoleFormTpl {
            page: user.page,
            role,
            groups,
            error,
        }),
    )
        .into_response())
}

async fn save(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    body: Bytes,
) -> WebResult {
    let f = Form::parse(&body);
    check_csrf(&user.page, &f.csrf)?;
    let patch = RolePatch {
        version: f.get("version").parse().unwrap_or(-1),
        name: Some(f.get("name")),
        actions: Some(f.actions()),
    };
    match s.store.update_role(&user.principal, &id, patch).await {
        Ok(_) => {
            s.auth_cache.clear();
            Ok(Redirect::to(&format!("/admin/roles/{id}?saved=1")).into_response())
        }
        Err(e) if matches!(e.kind.status(), 400 | 403 | 409) => {
            let msg = reason(&user.page, &e);
            form_page(&s, user, &id, Some(msg)).await
        }
        Err(e) => Err(error_page(&user.page, e)),
    }
}

async fn delete(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    body: Bytes,
) -> WebResult {
    let f = Form::parse(&body);
    check_csrf(&user.page, &f.csrf)?;
    match s.store.delete_role(&user.principal, &id).await {
        Ok(()) => Ok(Redirect::to("/admin/roles").into_response()),
        Err(e) if e.kind.status() == 409 => {
            let msg = e.message(user.page.lang);
            form_page(&s, user, &id, Some(msg)).await
        }
        Err(e) => Err(error_page(&user.page, e)),
    }
}
