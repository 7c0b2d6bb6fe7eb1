//! A person's care contacts (紧急联系人) on a page, `/staff/persons/{id}/care`: whom the SOS
//! calls first, in order. A community worker adds a family member's account by its login name or
//! the mobile number it signs in with, moves one up, or removes one. Every change binds to the
//! list the worker was shown: when somebody changed it meanwhile, nothing is written.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use linli_core::auth::Action;
use linli_core::{AppError, ErrorKind};
use linli_store::audit::Actor;
use linli_store::iot::sos::{CareContact, NamedCareContact};

use crate::AppState;
use crate::manifest::Pages;
use crate::web::registry::grant;
use crate::web::{FieldErrors, Page, WebResult, WebUser, check_csrf, or_page, render};

pub fn pages() -> Pages {
    Pages::new()
        .get("/staff/persons/{id}/care", care)
        .post("/staff/persons/{id}/care", care_change)
}

#[derive(Template)]
#[template(path = "iot_care.html")]
struct CareTpl {
    page: Page,
    person_id: String,
    person_name: String,
    /// The person's household page (back to the record).
    household_id: Option<String>,
    contacts: Vec<NamedCareContact>,
    /// The list as shown (its accounts in order); a change names it.
    shown: String,
    can_edit: bool,
    flash: Option<String>,
    errors: FieldErrors,
    who: String,
    relation: String,
}

#[derive(Deserialize)]
struct Flash {
    saved: Option<String>,
}

#[derive(Deserialize)]
struct ChangeForm {
    #[serde(default)]
    _csrf: String,
    /// add, up or remove.
    #[serde(default)]
    op: String,
    #[serde(default)]
    shown: String,
    #[serde(default)]
    index: usize,
    #[serde(default)]
    who: String,
    #[serde(default)]
    relation: String,
}

fn fingerprint(contacts: &[NamedCareContact]) -> String {
    contacts
        .iter()
        .map(|c| c.user_id.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

async fn care(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Query(f): Query<Flash>,
) -> WebResult {
    let flash = f.saved.map(|_| user.page.t("web-saved"));
    show(
        &s,
        user,
        &id,
        flash,
        FieldErrors::default(),
        "",
        "",
        StatusCode::OK,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn show(
    s: &AppState,
    user: WebUser,
    id: &str,
    flash: Option<String>,
    errors: FieldErrors,
    who: &str,
    relation: &str,
    status: StatusCode,
) -> WebResult {
    let g = grant(&user.page, &user.principal, Action::PersonRead)?;
    let contacts = or_page(&user.page, s.store.care_contacts_named(&g, id).await)?;
    let person = or_page(&user.page, s.store.person(&g, None, id).await)?;
    let can_edit = user
        .principal
        .grant(Action::PersonWrite)
        .ok()
        .zip(person.home_path.as_deref())
        .is_some_and(|(w, path)| w.allows(Action::PersonWrite, path));
    let mut r = render(&CareTpl {
        shown: fingerprint(&contacts),
        person_id: id.to_string(),
        person_name: person.name,
        household_id: person.household_id,
        contacts,
        can_edit,
        flash,
        errors,
        who: who.to_string(),
        relation: relation.to_string(),
        page: user.page,
    });
    *r.status_mut() = status;
    Ok(r)
}

async fn care_change(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<ChangeForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let g = grant(&user.page, &user.principal, Action::PersonWrite)?;
    let read = grant(&user.page, &user.principal, Action::PersonRead)?;
    let current = or_page(&user.page, s.store.care_contacts_named(&read, &id).await)?;
    let refuse = |field: &str, key: &str| {
        FieldErrors(
            [(field.to_string(), user.page.t(key))]
                .into_iter()
                .collect(),
        )
    };
    if fingerprint(&current) != f.shown {
        let errors = refuse("_form", "web-care-changed");
        return show(
            &s,
            user,
            &id,
            None,
            errors,
            &f.who,
            &f.relation,
            StatusCode::CONFLICT,
        )
        .await;
    }
    let mut list: Vec<CareContact> = current
        .iter()
        .map(|c| CareContact {
            user_id: c.user_id.clone(),
            relation: c.relation.clone(),
        })
        .collect();
    match f.op.as_str() {
        "add" => {
            let relation = f.relation.trim().chars().take(20).collect::<String>();
            let found = or_page(
                &user.page,
                s.store.care_contact_candidate(&g, &id, &f.who).await,
            )?;
            let problem = match &found {
                _ if f.who.trim().is_empty() => Some("web-care-who-required"),
                None => Some("web-care-who-unknown"),
                Some((uid, _)) if list.iter().any(|c| &c.user_id == uid) => {
                    Some("web-care-who-twice")
                }
                Some(_) if list.len() >= 10 => Some("web-care-too-many"),
                Some(_) => None,
            };
            if let Some(key) = problem {
                let errors = refuse("who", key);
                return show(
                    &s,
                    user,
                    &id,
                    None,
                    errors,
                    &f.who,
                    &relation,
                    StatusCode::BAD_REQUEST,
                )
                .await;
            }
            if let Some((uid, _)) = found {
                list.push(CareContact {
                    user_id: uid,
                    relation,
                });
            }
        }
        "up" if f.index > 0 && f.index < list.len() => list.swap(f.index - 1, f.index),
        "remove" if f.index < list.len() => {
            list.remove(f.index);
        }
        _ => {
            return Err(crate::web::error_page(
                &user.page,
                AppError::new(ErrorKind::BadRequest, "validation.bad_value").arg("field", "op"),
            ));
        }
    }
    or_page(
        &user.page,
        s.store
            .set_care_contacts(&g, &Actor::from(&user.principal), &id, &list)
            .await,
    )?;
    Ok(Redirect::to(&format!("/staff/persons/{id}/care?saved=1")).into_response())
}
