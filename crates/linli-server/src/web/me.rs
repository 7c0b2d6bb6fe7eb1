//! The resident's pages: my household (一户一表 as the resident may see it), export, corrections.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use linli_core::ErrorKind;
use linli_store::registry::corrections::{FIELDS, NewCorrection};
use linli_store::registry::households::HouseholdView;

use crate::AppState;
use crate::manifest::Pages;
use crate::web::{
    FieldErrors, FormOnce, Once, Page, WebResult, WebUser, check_csrf, error_page, or_page, render,
};

pub fn pages() -> Pages {
    Pages::new()
        .get("/me", my_household)
        .get("/me/corrections/new", correction_form)
        .post("/me/corrections", correction_submit)
}

#[derive(Template)]
#[template(path = "me.html")]
struct MeTpl {
    page: Page,
    h: HouseholdView,
    flash: Option<String>,
    /// The rest of the household's record (reports, devices, vehicles, contacts …).
    record: Vec<crate::web::record::RecordTable>,
    /// The modules' services for residents: (link, label, icon).
    tiles: Vec<(&'static str, String, &'static str)>,
}

#[derive(Deserialize)]
struct Flash {
    done: Option<String>,
}

async fn my_household(
    State(s): State<AppState>,
    user: WebUser,
    Query(f): Query<Flash>,
) -> WebResult {
    let h = or_page(&user.page, s.store.own_household(&user.principal).await)?;
    let record = or_page(
        &user.page,
        crate::web::record::record_tables(&s, &user.page, &user.principal, &h.id, false).await,
    )?;
    let flash = f.done.map(|_| user.page.t("web-correction-sent"));
    let tiles = crate::modules::ALL
        .iter()
        .flat_map(|m| m.tiles.iter())
        .filter(|t| t.href != "/me" && (t.visible)(&user.principal))
        .map(|t| (t.href, user.page.t(t.label), t.icon))
        .collect();
    Ok(render(&MeTpl {
        page: user.page,
        h,
        flash,
        record,
        tiles,
    }))
}

#[derive(Template)]
#[template(path = "correction.html")]
struct CorrectionTpl {
    page: Page,
    once: String,
    fields: &'static [&'static str],
    members: Vec<(String, String)>,
    errors: FieldErrors,
    form_field: String,
    form_person: String,
    form_value: String,
    form_reason: String,
}

async fn correction_form(State(s): State<AppState>, user: WebUser) -> WebResult {
    let h = or_page(&user.page, s.store.own_household(&user.principal).await)?;
    let members = h
        .members
        .iter()
        .map(|m| (m.person.id.clone(), m.person.name.clone()))
        .collect();
    Ok(render(&CorrectionTpl {
        page: user.page,
        once: FormOnce::new_token(),
        fields: &FIELDS,
        members,
        errors: FieldErrors::default(),
        form_field: "phone".into(),
        form_person: String::new(),
        form_value: String::new(),
        form_reason: String::new(),
    }))
}

#[derive(Deserialize)]
struct CorrectionForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    _once: String,
    #[serde(default)]
    field: String,
    #[serde(default)]
    person_id: String,
    #[serde(default)]
    new_value: String,
    #[serde(default)]
    reason: String,
}

async fn correction_submit(
    State(s): State<AppState>,
    user: WebUser,
    axum::Form(f): axum::Form<CorrectionForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    if let Once::Repeat(_) = s.form_once.claim(&f._once).await {
        return Ok(Redirect::to("/me?done=1").into_response());
    }
    let new = NewCorrection {
        person_id: Some(f.person_id.clone()).filter(|p| !p.is_empty()),
        field: f.field.clone(),
        new_value: f.new_value.clone(),
        reason: f.reason.clone(),
    };
    match s.store.submit_correction(&user.principal, new).await {
        Ok(_) => {
            s.form_once.finish(&f._once, "/me?done=1").await;
            Ok(Redirect::to("/me?done=1").into_response())
        }
        Err(e) if matches!(e.kind, ErrorKind::BadRequest | ErrorKind::NotFound) => {
            s.form_once.release(&f._once).await;
            let h = or_page(&user.page, s.store.own_household(&user.principal).await)?;
            let members = h
                .members
                .iter()
                .map(|m| (m.person.id.clone(), m.person.name.clone()))
                .collect();
            // The value's own checks (a date, a phone number …) show beside the value field.
            let errors = FieldErrors(
                FieldErrors::from_app(&user.page, &e, "new_value")
                    .0
                    .into_iter()
                    .map(|(k, v)| {
                        if k == "field" || k == "person_id" {
                            (k, v)
                        } else {
                            ("new_value".to_string(), v)
                        }
                    })
                    .collect(),
            );
            let tpl = CorrectionTpl {
                once: FormOnce::new_token(),
                fields: &FIELDS,
                members,
                errors,
                form_field: f.field,
                form_person: f.person_id,
                form_value: f.new_value,
                form_reason: f.reason,
                page: user.page,
            };
            Ok((axum::http::StatusCode::BAD_REQUEST, render(&tpl)).into_response())
        }
        Err(e) => {
            s.form_once.release(&f._once).await;
            Err(error_page(&user.page, e))
        }
    }
}
