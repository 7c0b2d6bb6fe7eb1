//! Staff administration pages: accounts and role bindings, the audit log, correction review.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use linli_core::auth::{Action, Role};
use linli_core::{AppError, ErrorKind};
use linli_store::accounts::users::{BindingSpec, NewUser, UserInfo};
use linli_store::audit::{Actor, AuditFilter, AuditRecord};
use linli_store::registry::corrections::{Correction, Decision};

use crate::AppState;
use crate::manifest::Pages;
use crate::web::{
    FieldErrors, FormOnce, Once, Page, WebResult, WebUser, check_csrf, error_page, or_page, render,
    urlencode,
};

pub fn pages() -> Pages {
    Pages::new()
        .get("/admin/users", users)
        .post("/admin/users", user_create)
        .post("/admin/users/{id}/disable", user_disable)
        .post("/admin/users/{id}/enable", user_enable)
        .get("/admin/audit", audit)
}

/// The review of residents' correction requests (the registry's).
pub fn correction_pages() -> Pages {
    Pages::new()
        .get("/admin/corrections", corrections)
        .post("/admin/corrections/{id}", decide)
}

/// The roles an administrator can give on this page: the built-in roles for staff and
/// participants (not residents, who are bound to their household, nor the administrators of a
/// whole district or city), and the custom roles of the caller's area — each with its label.
async fn assignable_roles(
    s: &AppState,
    user: &WebUser,
) -> Result<Vec<(String, String)>, axum::response::Response> {
    let o = or_page(&user.page, s.store.roles_overview(&user.principal).await)?;
    let mut out: Vec<(String, String)> = o
        .builtin
        .iter()
        .filter(|r| {
            r.kind != linli_core::auth::RoleKind::Household
                && !matches!(r.code.as_str(), "city_admin" | "district_admin")
        })
        .map(|r| {
            (
                r.code.as_str().to_string(),
                user.page.code("role", r.code.as_str()),
            )
        })
        .collect();
    out.extend(o.custom.iter().map(|r| {
        (
            r.code.as_str().to_string(),
            r.name.clone().unwrap_or_default(),
        )
    }));
    Ok(out)
}

#[derive(Default)]
struct UserForm {
    login: String,
    display_name: String,
    phone: String,
    role: String,
    place_id: String,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersTpl {
    page: Page,
    users: Vec<UserInfo>,
    /// (code, label) of the roles this administrator can give.
    roles: Vec<(String, String)>,
    places: Vec<(String, String)>,
    once: String,
    errors: FieldErrors,
    form: UserForm,
    flash: Option<String>,
}

async fn places_for_users(
    s: &AppState,
    user: &WebUser,
) -> Result<Vec<(String, String)>, axum::response::Response> {
    let g = user
        .principal
        .grant(Action::UserAdmin)
        .map_err(|_| error_page(&user.page, AppError::forbidden()))?;
    let pg = user
        .principal
        .grant(Action::PlaceRead)
        .map_err(|_| error_page(&user.page, AppError::forbidden()))?;
    let mut out = Vec::new();
    for kind in ["district", "street", "community", "grid"] {
        for p in or_page(&user.page, s.store.places(&pg, None, Some(kind)).await)? {
            if g.allows(Action::UserAdmin, &p.path) {
                let label = format!("{}（{}）", p.name, user.page.code("kind", &p.kind));
                out.push((p.id, label));
            }
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Flash {
    saved: Option<String>,
    /// `disabled` or `enabled` after the account buttons.
    done: Option<String>,
}

async fn users(State(s): State<AppState>, user: WebUser, Query(f): Query<Flash>) -> WebResult {
    let list = or_page(&user.page, s.store.users(&user.principal).await)?;
    let places = places_for_users(&s, &user).await?;
    let roles = assignable_roles(&s, &user).await?;
    let flash = match f.done.as_deref() {
        Some("disabled") => Some(user.page.t("web-user-disabled-done")),
        Some("enabled") => Some(user.page.t("web-user-enabled-done")),
        _ => f.saved.map(|_| user.page.t("web-saved")),
    };
    let form = UserForm {
        role: "grid_worker".into(),
        ..Default::default()
    };
    Ok(render(&UsersTpl {
        page: user.page,
        users: list,
        roles,
        places,
        once: FormOnce::new_token(),
        errors: FieldErrors::default(),
        form,
        flash,
    }))
}

#[derive(Deserialize)]
struct NewUserForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    _once: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    place_id: String,
}

async fn user_create(
    State(s): State<AppState>,
    user: WebUser,
    axum::Form(f): axum::Form<NewUserForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    if let Once::Repeat(_) = s.form_once.claim(&f._once).await {
        return Ok(Redirect::to("/admin/users?saved=1").into_response());
    }
    let offered = assignable_roles(&s, &user).await?;
    let role =
        Some(Role::from_code(&f.role)).filter(|r| offered.iter().any(|(c, _)| c == r.as_str()));
    let result = match role {
        None => Err(AppError::bad_request("validation.bad_value").arg("field", "role")),
        Some(role) => {
            let new = NewUser {
                login: f.login.clone(),
                display_name: f.display_name.clone(),
                password: f.password.clone(),
                phone: Some(f.phone.clone()).filter(|p| !p.is_empty()),
                person_id: None,
                bindings: vec![BindingSpec {
                    role,
                    place_id: Some(f.place_id.clone()),
                    org_id: None,
                    household_id: None,
                }],
            };
            s.store.create_user(&user.principal, new).await
        }
    };
    match result {
        Ok(_) => {
            s.form_once.finish(&f._once, "/admin/users?saved=1").await;
            Ok(Redirect::to("/admin/users?saved=1").into_response())
        }
        Err(e)
            if matches!(
                e.kind,
                ErrorKind::BadRequest
                    | ErrorKind::Conflict
                    | ErrorKind::Forbidden
                    | ErrorKind::NotFound
            ) =>
        {
            s.form_once.release(&f._once).await;
            let mut errors = FieldErrors::from_app(&user.page, &e, "login");
            if e.kind == ErrorKind::Forbidden {
                errors = FieldErrors(
                    [("bindings".to_string(), e.message(user.page.lang))]
                        .into_iter()
                        .collect(),
                );
            }
            if e.code == "auth.password_too_short" {
                errors = FieldErrors(
                    [("password".to_string(), e.message(user.page.lang))]
                        .into_iter()
                        .collect(),
                );
            }
            let list = or_page(&user.page, s.store.users(&user.principal).await)?;
            let places = places_for_users(&s, &user).await?;
            let form = UserForm {
                login: f.login,
                display_name: f.display_name,
                phone: f.phone,
                role: f.role,
                place_id: f.place_id,
            };
            let tpl = UsersTpl {
                page: user.page,
                users: list,
                roles: offered,
                places,
                once: FormOnce::new_token(),
                errors,
                form,
                flash: None,
            };
            Ok((StatusCode::BAD_REQUEST, render(&tpl)).into_response())
        }
        Err(e) => {
            s.form_once.release(&f._once).await;
            Err(error_page(&user.page, e))
        }
    }
}

#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    _csrf: String,
}

/// Disable an account (a leaver): sessions and API tokens end with it (see
/// `Store::set_user_disabled`).
async fn user_disable(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<CsrfOnly>,
) -> WebResult {
    set_disabled(s, user, id, f, true).await
}

async fn user_enable(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<CsrfOnly>,
) -> WebResult {
    set_disabled(s, user, id, f, false).await
}

async fn set_disabled(
    s: AppState,
    user: WebUser,
    id: String,
    f: CsrfOnly,
    disabled: bool,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    or_page(
        &user.page,
        s.store
            .set_user_disabled(&user.principal, &id, disabled)
            .await,
    )?;
    s.auth_cache.remove_user(&id);
    let done = if disabled { "disabled" } else { "enabled" };
    Ok(Redirect::to(&format!("/admin/users?done={done}")).into_response())
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditTpl {
    page: Page,
    f: AuditFilter,
    entries: Vec<AuditRecord>,
    next_link: Option<String>,
}

/// Every action the store audits under a fixed name (report workflow steps are `report.<step>`),
/// each with words in both languages (`audit-…`): the log and its filter speak words, not codes.
/// tests/it/platform.rs checks that every literal the store audits is listed here.
pub const AUDIT_ACTIONS: &[&str] = &[
    "access.blacklist.add",
    "access.blacklist.remove",
    "access.gate.create",
    "access.gate.update",
    "access.pass.create",
    "access.pass.revoke",
    "access.pass.verify",
    "access.records.ingest",
    "access.settings.update",
    "access.vehicle.add",
    "access.vehicle.remove",
    "alarm.ack",
    "alarm.clear",
    "alarm.raise",
    "calendar.put_year",
    "care.contacts",
    "celebration.hide",
    "celebration.share",
    "correction.approve",
    "correction.reject",
    "correction.submit",
    "demo.seed",
    "demo.seed_iot",
    "device.create",
    "device.token",
    "household.create",
    "household.create_undone",
    "household.update",
    "label.create",
    "notify.channels.update",
    "notify.follow",
    "notify.unfollow",
    "org.create",
    "person.add",
    "person.link",
    "person.link_confirm",
    "person.link_decline",
    "person.link_request",
    "person.move_out",
    "person.reveal",
    "person.update",
    "place.create",
    "place.geo",
    "place.update",
    "registry.export_revealed",
    "registry.import",
    "report.assign",
    "report.create",
    "report.deadline_escalate",
    "report.deadline_urge",
    "report.me_too",
    "report.moderate",
    "report.photo_add",
    "role.create",
    "role.delete",
    "role.update",
    "routing_rule.put",
    "routing_rule.seed",
    "rule.create",
    "token.create",
    "token.revoke",
    "user.create",
    "user.disable",
    "user.enable",
    "user.password_change",
    "webhook.create",
    "webhook.delete",
    "webhook.ping",
    "webhook.retry",
    "webhook.update",
];

/// What an audit entry is about.
pub const AUDIT_ENTITIES: &[&str] = &[
    "access_alert",
    "access_record",
    "alarm",
    "alarm_rule",
    "calendar_year",
    "celebration",
    "correction",
    "demo",
    "device",
    "export",
    "gate",
    "household",
    "import",
    "label",
    "org",
    "person",
    "place",
    "plate_blacklist",
    "report",
    "role",
    "routing_rule",
    "settings",
    "token",
    "user",
    "vehicle",
    "visitor_pass",
    "webhook",
];

/// An audited action in words: its own (`audit-person-reveal`), a report's workflow step
/// (`web-report-action-dispatch`), or — for a name no release knew — the name itself. Used by
/// the audit log and by every page that shows a record's history.
pub fn audit_action_words(page: &Page, code: &str) -> String {
    let key = format!("audit-{}", code.replace('.', "-"));
    if linli_core::i18n::has(page.lang, &key) {
        return page.t(&key);
    }
    if let Some(step) = code.strip_prefix("report.") {
        let step_key = format!("web-report-action-{step}");
        if linli_core::i18n::has(page.lang, &step_key) {
            return format!("{}{}", page.t("audit-report-prefix"), page.t(&step_key));
        }
    }
    code.to_string()
}

impl AuditTpl {
    fn action_words(&self, code: &str) -> String {
        audit_action_words(&self.page, code)
    }
    fn entity_words(&self, code: &str) -> String {
        let key = format!("audit-entity-{code}");
        if linli_core::i18n::has(self.page.lang, &key) {
            self.page.t(&key)
        } else {
            code.to_string()
        }
    }
    fn actions(&self) -> &'static [&'static str] {
        AUDIT_ACTIONS
    }
    fn entities(&self) -> &'static [&'static str] {
        AUDIT_ENTITIES
    }
    fn is_action(&self, code: &str) -> bool {
        self.f.action.as_deref() == Some(code)
    }
    fn is_entity(&self, code: &str) -> bool {
        self.f.entity.as_deref() == Some(code)
    }
}

async fn audit(
    State(s): State<AppState>,
    user: WebUser,
    Query(mut f): Query<AuditFilter>,
) -> WebResult {
    let g = user
        .principal
        .grant(Action::AuditRead)
        .map_err(|_| error_page(&user.page, AppError::forbidden()))?;
    for v in [&mut f.actor, &mut f.action, &mut f.entity, &mut f.entity_id] {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            *v = None;
        }
    }
    f.limit = Some(50);
    let entries = or_page(&user.page, s.store.audit_list(&g, &f).await)?;
    let next_link = (entries.len() == 50).then(|| {
        let mut parts = vec![format!(
            "before_seq={}",
            entries.last().map(|e| e.seq).unwrap_or(0)
        )];
        for (k, v) in [
            ("actor", &f.actor),
            ("action", &f.action),
            ("entity", &f.entity),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={}", urlencode(v)));
            }
        }
        format!("/admin/audit?{}", parts.join("&"))
    });
    Ok(render(&AuditTpl {
        page: user.page,
        f,
        entries,
        next_link,
    }))
}

#[derive(Template)]
#[template(path = "corrections.html")]
struct CorrectionsTpl {
    page: Page,
    items: Vec<Correction>,
    flash: Option<String>,
}

async fn corrections(
    State(s): State<AppState>,
    user: WebUser,
    Query(f): Query<Flash>,
) -> WebResult {
    let g = user
        .principal
        .grant(Action::CorrectionReview)
        .map_err(|_| error_page(&user.page, AppError::forbidden()))?;
    let items = or_page(&user.page, s.store.corrections(&g, None).await)?;
    let flash = f.saved.map(|_| user.page.t("web-saved"));
    Ok(render(&CorrectionsTpl {
        page: user.page,
        items,
        flash,
    }))
}

#[derive(Deserialize)]
struct DecisionForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    approve: String,
    #[serde(default)]
    note: String,
}

async fn decide(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<DecisionForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let g = user
        .principal
        .grant(Action::CorrectionReview)
        .map_err(|_| error_page(&user.page, AppError::forbidden()))?;
    let d = Decision {
        approve: f.approve == "1",
        note: Some(f.note).filter(|n| !n.trim().is_empty()),
    };
    match s
        .store
        .decide_correction(&g, &Actor::from(&user.principal), &id, d)
        .await
    {
        Ok(_) => Ok(Redirect::to("/admin/corrections?saved=1").into_response()),
        // A second click on an already-decided request just shows the list.
        Err(e) if e.code == "registry.correction.already_decided" => {
            Ok(Redirect::to("/admin/corrections").into_response())
        }
        Err(e) => Err(error_page(&user.page, e)),
    }
}
